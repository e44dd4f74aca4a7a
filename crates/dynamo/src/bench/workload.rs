//! What each operation is and which key it touches: the YCSB core workloads
//! (A, B, C), the key distributions, and the key names. Pure and seeded, so a
//! worker's sequence of choices is reproducible.

use bytes::Bytes;
use serde::Serialize;

use super::rng::SplitMix64;
use super::zipfian::Zipfian;

/// The YCSB core workloads this tool reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Update heavy: 50% reads, 50% updates (a session store).
    A,
    /// Read mostly: 95% reads, 5% updates (photo tagging).
    B,
    /// Read only (a user-profile cache).
    C,
    /// Counters (issue 12): 50% reads, 50% increments, in a bucket of
    /// datatype counter.
    Counter,
    /// Sets (issue 12): 50% reads, 50% adds of a fresh element, in a
    /// bucket of datatype set (a hot key's set grows through the run).
    Set,
}

impl Workload {
    /// The fraction of operations that are reads.
    pub fn read_fraction(self) -> f64 {
        match self {
            Workload::A => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
            Workload::Counter | Workload::Set => 0.5,
        }
    }

    /// The bucket datatype a data-type workload needs (`None` for the YCSB
    /// workloads, which write opaque values).
    pub fn datatype(self) -> Option<&'static str> {
        match self {
            Workload::A | Workload::B | Workload::C => None,
            Workload::Counter => Some("counter"),
            Workload::Set => Some("set"),
        }
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// A few keys very hot (YCSB's default).
    Zipfian,
}

/// The two operations of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A get.
    Read,
    /// A put of a fresh value (see `worker` for the context it carries).
    Update,
}

impl OpKind {
    /// Draws an operation: a read with probability `read_fraction`.
    pub fn choose(rng: &mut SplitMix64, read_fraction: f64) -> OpKind {
        if rng.next_f64() < read_fraction { OpKind::Read } else { OpKind::Update }
    }
}

/// Picks key indexes in `0..keys`. Cheap to clone (one per worker).
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Uniform over the keyspace.
    Uniform {
        /// Keyspace size.
        keys: u64,
    },
    /// Zipfian; index 0 is the hottest key. Keys are not scrambled: their
    /// position on the ring comes from MD5, so hot keys are spread anyway.
    Zipfian(Zipfian),
}

impl KeyChooser {
    /// The chooser for a keyspace of `keys` (at least one).
    pub fn new(distribution: Distribution, keys: u64, theta: f64) -> KeyChooser {
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { keys },
            Distribution::Zipfian => KeyChooser::Zipfian(Zipfian::new(keys, theta)),
        }
    }

    /// The next key index.
    pub fn next(&self, rng: &mut SplitMix64) -> u64 {
        match self {
            KeyChooser::Uniform { keys } => rng.below(*keys),
            KeyChooser::Zipfian(zipfian) => zipfian.sample(rng),
        }
    }
}

/// The key stored for index `index`: `key` and the decimal index, so keys
/// are readable in `dynamo get` and in the admin tools.
pub fn key_name(index: u64) -> Vec<u8> {
    format!("key{index}").into_bytes()
}

/// Extra random bytes in a [`ValuePool`] beyond one value: the number of
/// distinct offsets a value can start at.
const VALUE_POOL_SLACK_BYTES: usize = 4096;

/// Random values for puts without allocating per operation: one random
/// buffer, sliced at a random offset (a cheap `Bytes` clone). Values differ
/// from put to put, so storage compression cannot flatter the numbers.
#[derive(Clone, Debug)]
pub struct ValuePool {
    /// Random bytes: one value plus the slack.
    bytes: Bytes,
    /// Length of every value.
    value_size: usize,
}

impl ValuePool {
    /// A pool of `value_size`-byte values drawn from `rng`.
    pub fn new(rng: &mut SplitMix64, value_size: usize) -> ValuePool {
        let mut bytes = vec![0u8; value_size + VALUE_POOL_SLACK_BYTES];
        rng.fill(&mut bytes);
        ValuePool { bytes: Bytes::from(bytes), value_size }
    }

    /// The next value.
    pub fn pick(&self, rng: &mut SplitMix64) -> Bytes {
        let offset = rng.below(VALUE_POOL_SLACK_BYTES as u64 + 1) as usize;
        self.bytes.slice(offset..offset + self.value_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_share(read_fraction: f64, draws: u32) -> f64 {
        let mut rng = SplitMix64::new(11);
        let reads = (0..draws).filter(|_| OpKind::choose(&mut rng, read_fraction) == OpKind::Read).count();
        reads as f64 / f64::from(draws)
    }

    #[test]
    fn the_op_mix_matches_the_read_fraction() {
        for workload in [Workload::A, Workload::B, Workload::C] {
            let fraction = workload.read_fraction();
            let share = read_share(fraction, 100_000);
            assert!((share - fraction).abs() < 0.01, "{workload:?}: {share} reads, want {fraction}");
        }
    }

    #[test]
    fn extreme_fractions_are_exact() {
        assert_eq!(read_share(0.0, 10_000), 0.0);
        assert_eq!(read_share(1.0, 10_000), 1.0);
    }

    #[test]
    fn uniform_keys_cover_the_keyspace_evenly() {
        let chooser = KeyChooser::new(Distribution::Uniform, 10, 0.99);
        let mut rng = SplitMix64::new(2);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[chooser.next(&mut rng) as usize] += 1;
        }
        assert!(counts.iter().all(|&count| (9_000..11_000).contains(&count)), "{counts:?}");
    }

    #[test]
    fn values_have_the_requested_size_and_vary() {
        let mut rng = SplitMix64::new(4);
        let pool = ValuePool::new(&mut rng, 1024);
        let values: Vec<Bytes> = (0..10).map(|_| pool.pick(&mut rng)).collect();
        assert!(values.iter().all(|value| value.len() == 1024));
        assert!(values.windows(2).any(|pair| pair[0] != pair[1]));
        assert!(ValuePool::new(&mut rng, 0).pick(&mut rng).is_empty());
    }

    #[test]
    fn key_names_are_distinct_and_readable() {
        assert_eq!(key_name(0), b"key0");
        assert_ne!(key_name(12), key_name(1));
    }
}
