//! A small deterministic PRNG (SplitMix64, Steele et al. 2014). The load
//! generator needs fast, reproducible choices (same `--seed`, same keys and
//! operations per worker), not cryptographic quality, and no extra crate.

/// Increment of the SplitMix64 state (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64: one `u64` of state, passes BigCrush, a few cycles a number.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent-looking generator for stream `stream` of `seed` (one
    /// per worker), so workers do not all pick the same keys.
    pub fn for_stream(seed: u64, stream: u64) -> SplitMix64 {
        SplitMix64::new(mix(seed ^ mix(stream.wrapping_add(1))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, bound)` (multiply-shift; the bias is below 2^-32 for
    /// any bound we use). `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0, "below(0) has no valid answer");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The SplitMix64 finalizer: a bijective mix of 64 bits.
fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn floats_and_bounded_integers_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            assert!(rng.below(10) < 10);
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn streams_of_one_seed_differ() {
        let mut first = SplitMix64::for_stream(1, 0);
        let mut second = SplitMix64::for_stream(1, 1);
        assert_ne!(first.next_u64(), second.next_u64());
    }

    #[test]
    fn fill_covers_odd_lengths() {
        let mut buf = [0u8; 13];
        SplitMix64::new(3).fill(&mut buf);
        assert!(buf.iter().any(|&byte| byte != 0));
    }
}
