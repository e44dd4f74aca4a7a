//! The simulation's only source of randomness: SplitMix64 (Steele, Lea and
//! Flood, 2014), seeded from the run's seed. Small, fast, good enough for
//! choosing faults and workloads, and ours: no dependency whose algorithm
//! could change under a version bump and silently change what a seed means.
//!
//! Every component that needs randomness gets its own generator, forked
//! from the run's root generator in a fixed order (see [`crate::harness`]),
//! so adding a draw in one component does not shift the others' streams.

/// A SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

/// The golden-ratio increment of SplitMix64.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator whose stream is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        finalize(self.state)
    }

    /// A number in `0..bound`. The modulo bias is below 2^-40 for the small
    /// bounds used here, far below anything a simulation could notice.
    ///
    /// # Panics
    /// If `bound` is zero (a caller bug: there is nothing to choose from).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SplitMix64::below(0)");
        self.next_u64() % bound
    }

    /// A number in `low..=high`.
    ///
    /// # Panics
    /// If `low > high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "SplitMix64::between({low}, {high})");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index into a slice of `len` elements.
    ///
    /// # Panics
    /// If `len` is zero.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A new, independent generator (for one component of the run).
    pub fn fork(&mut self) -> SplitMix64 {
        SplitMix64::new(self.next_u64())
    }
}

/// Mixes two numbers into one well-distributed number (for ids derived from
/// a seed and an index, e.g. a node's actor id per incarnation).
pub fn mix(a: u64, b: u64) -> u64 {
    finalize(a.wrapping_add(finalize(b.wrapping_add(GAMMA))))
}

/// The SplitMix64 output function (a bijection on u64).
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_first_value() {
        let mut a = SplitMix64::new(0);
        let mut b = SplitMix64::new(0);
        // The published first output of SplitMix64 seeded with 0.
        assert_eq!(a.next_u64(), 0xE220_A839_7B1D_CDAF);
        b.next_u64();
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn between_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = rng.between(3, 5);
            assert!((3..=5).contains(&x));
        }
        // The full range must not overflow.
        let _ = rng.between(0, u64::MAX);
    }
}
