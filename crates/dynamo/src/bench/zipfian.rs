//! Zipfian key popularity, as YCSB generates it: the algorithm of Gray et
//! al., "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD
//! 1994). Item `i` (0-based) is drawn with probability proportional to
//! `1 / (i + 1)^theta`; with YCSB's theta 0.99 a few keys are very hot, which
//! is what exposes contention, siblings and hot partitions.
//!
//! The constant `zeta(n, theta)` is summed once (O(n)); each sample then
//! costs one `powf`.

use super::rng::SplitMix64;

/// YCSB's default skew.
pub const YCSB_THETA: f64 = 0.99;

/// A zipfian distribution over `0..items`, most popular first.
#[derive(Clone, Debug)]
pub struct Zipfian {
    /// Number of items.
    items: u64,
    /// Skew.
    theta: f64,
    /// `1 / (1 - theta)`.
    alpha: f64,
    /// `zeta(items, theta)`: the normalising constant.
    zeta_n: f64,
    /// Gray et al.'s `eta`, fixed per distribution.
    eta: f64,
}

impl Zipfian {
    /// The distribution over `0..items` with skew `theta` (`0 < theta < 1`,
    /// `items >= 1`; the caller validates both).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        assert!(items >= 1, "a zipfian distribution needs at least one item");
        assert!(theta > 0.0 && theta < 1.0, "theta must be in (0, 1), got {theta}");
        let zeta_n = zeta(items, theta);
        let zeta_2 = zeta(2, theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipfian { items, theta, alpha: 1.0 / (1.0 - theta), zeta_n, eta }
    }

    /// Probability of item 0, the most popular one.
    #[cfg(test)]
    pub fn top_probability(&self) -> f64 {
        1.0 / self.zeta_n
    }

    /// Draws one item in `0..items`.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let item = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        // Rounding at the top end can land on `items`; clamp into range.
        item.min(self.items - 1)
    }
}

/// `sum_{i=1..=n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| (i as f64).powf(-theta)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(zipf: &Zipfian, seed: u64, samples: usize) -> Vec<u64> {
        let mut rng = SplitMix64::new(seed);
        let mut counts = vec![0u64; zipf.items as usize];
        for _ in 0..samples {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn samples_stay_in_range() {
        for items in [1, 2, 3, 10, 1000] {
            let zipf = Zipfian::new(items, YCSB_THETA);
            let mut rng = SplitMix64::new(items);
            for _ in 0..20_000 {
                assert!(zipf.sample(&mut rng) < items);
            }
        }
    }

    #[test]
    fn the_top_key_is_far_hotter_than_the_median_key() {
        let zipf = Zipfian::new(1000, YCSB_THETA);
        let counts = histogram(&zipf, 42, 200_000);
        let top = counts[0];
        let median = counts[500].max(1);
        assert!(top > 100 * median, "top {top}, median {median}");
        assert!(counts.iter().all(|&count| count <= top), "item 0 must be the most popular");
    }

    #[test]
    fn frequencies_follow_the_zipf_law() {
        let zipf = Zipfian::new(1000, YCSB_THETA);
        let samples = 400_000;
        let counts = histogram(&zipf, 9, samples);
        let p0 = counts[0] as f64 / samples as f64;
        assert!((p0 - zipf.top_probability()).abs() < 0.005, "p0 {p0} vs {}", zipf.top_probability());
        // Item 1 is 2^theta times less popular than item 0.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((ratio - 2f64.powf(YCSB_THETA)).abs() < 0.15, "ratio {ratio}");
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let zipf = Zipfian::new(10_000, YCSB_THETA);
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..1000).map(|_| zipf.sample(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn a_single_item_is_always_chosen() {
        let zipf = Zipfian::new(1, YCSB_THETA);
        let mut rng = SplitMix64::new(1);
        assert!((0..100).all(|_| zipf.sample(&mut rng) == 0));
    }
}
