//! A small deterministic random number generator (SplitMix64): the nemesis
//! schedule must be a pure function of the seed so that a failing run can
//! be replayed with `DYNAMO_CHAOS_SEED`. Not for anything cryptographic.

use std::time::Duration;

use dynamo_core::rng::SplitMix64;

/// The project's SplitMix64 ([`dynamo_core::rng`]) with the draws the
/// nemesis and the clients use.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: SplitMix64,
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng { inner: SplitMix64::new(seed) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "below(0)");
        (self.next_u64() % bound as u64) as usize
    }

    /// A duration between `low_ms` and `high_ms` milliseconds, inclusive.
    pub fn millis_between(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        assert!(low_ms <= high_ms);
        Duration::from_millis(low_ms + self.next_u64() % (high_ms - low_ms + 1))
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.next_u64() % denominator < numerator
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            items.swap(index, self.below(index + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut first = Rng::new(42);
        let mut second = Rng::new(42);
        let a: Vec<u64> = (0..10).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..10).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::new(43).next_u64(), a[0]);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..20).collect();
        Rng::new(7).shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..20).collect::<Vec<u32>>());
    }
}
