//! Admission control of background work (paper section 6.5): a feedback
//! controller that sets the share of its configured rate that background
//! work (key listings, anti-entropy repair, partition transfers) may use,
//! from the foreground's latency.
//!
//! The paper's nodes watch foreground latency and hand background tasks
//! time slices accordingly. Here every window (a second by default) the
//! node measures the p99 of the client requests it finished in that
//! window and feeds it to [`AdmissionController::observe`]:
//!
//! - above the target: the budget halves (multiplicative decrease), so a
//!   step up in latency is answered within one window;
//! - below three quarters of the target, or with no foreground requests at
//!   all: the budget grows by a tenth of the full rate (additive
//!   increase), so calm gives the rate back within ten windows;
//! - in between: it holds, so the controller does not oscillate around
//!   the target.
//!
//! The budget never leaves `[MIN_BUDGET, 1]`: background work always
//! progresses (a repair stalled for ever is its own outage), and never
//! runs faster than its configured cap. Pure: no clock, no I/O; the node
//! drives it.

/// The smallest budget: background work keeps a twentieth of its rate
/// however loaded the foreground is.
pub const MIN_BUDGET: f64 = 0.05;
/// Budget added per calm window.
pub const INCREASE: f64 = 0.1;
/// Factor applied per window over target.
pub const DECREASE: f64 = 0.5;
/// Below this fraction of the target, a window counts as calm.
pub const CALM_BELOW: f64 = 0.75;

/// The controller's state.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionController {
    target_ms: f64,
    budget: f64,
}

impl AdmissionController {
    /// A controller keeping the foreground p99 under `target_ms`, starting
    /// at the full rate.
    pub fn new(target_ms: f64) -> Self {
        Self { target_ms: target_ms.max(f64::MIN_POSITIVE), budget: 1.0 }
    }

    /// The share of its configured rate background work may use now.
    pub fn budget(&self) -> f64 {
        self.budget
    }

    /// One window's foreground p99 (`None`: no foreground request
    /// finished in it); returns the new budget.
    pub fn observe(&mut self, p99_ms: Option<f64>) -> f64 {
        self.budget = match p99_ms {
            Some(p99) if p99 > self.target_ms => self.budget * DECREASE,
            Some(p99) if p99 >= self.target_ms * CALM_BELOW => self.budget,
            _ => self.budget + INCREASE,
        }
        .clamp(MIN_BUDGET, 1.0);
        self.budget
    }
}

/// The `quantile` of the requests counted between two snapshots of a
/// latency histogram (`before`, `after`: per-bucket counts, bucket `i`
/// holding latencies up to `bounds_ms[i]`), as the upper bound of the
/// bucket it falls in; `None` when nothing was counted between them. A
/// count past the last bound (if `after` has one more bucket) reads as
/// that last bound.
pub fn window_quantile(before: &[u64], after: &[u64], bounds_ms: &[f64], quantile: f64) -> Option<f64> {
    let window: Vec<u64> = after.iter().zip(before).map(|(now, then)| now.saturating_sub(*then)).collect();
    let index = quantile_bucket(&window, quantile)?;
    bounds_ms.get(index).or(bounds_ms.last()).copied()
}

/// The index of the bucket of `counts` (a histogram's per-bucket counts)
/// that holds its `quantile`; `None` when it counts nothing.
pub fn quantile_bucket(counts: &[u64], quantile: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    counts.iter().position(|count| {
        seen += count;
        seen >= rank
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_step_up_in_latency_shrinks_the_budget_within_one_window_and_calm_grows_it_back() {
        let mut controller = AdmissionController::new(50.0);
        assert_eq!(controller.observe(Some(10.0)), 1.0, "calm at the full rate stays there");
        assert_eq!(controller.observe(Some(200.0)), 0.5, "one window over target halves it");
        assert_eq!(controller.observe(Some(200.0)), 0.25);
        for _ in 0..10 {
            controller.observe(Some(500.0));
        }
        assert_eq!(controller.budget(), MIN_BUDGET, "never to zero");
        assert_eq!(controller.observe(Some(45.0)), MIN_BUDGET, "near the target it holds");
        let mut windows = 0;
        while controller.observe(None) < 1.0 {
            windows += 1;
        }
        assert!(windows <= 10, "calm (here: no foreground at all) gives the rate back in ten windows");
    }

    #[test]
    fn the_window_quantile_counts_only_what_happened_between_snapshots() {
        let bounds = [1.0, 5.0, 50.0];
        assert_eq!(window_quantile(&[3, 0, 0], &[3, 0, 0], &bounds, 0.99), None);
        // Before the window: 1,000 fast requests; in it: 98 fast, 2 slow.
        let before = [1_000, 0, 0];
        let after = [1_098, 0, 2];
        assert_eq!(window_quantile(&before, &after, &bounds, 0.5), Some(1.0));
        assert_eq!(window_quantile(&before, &after, &bounds, 0.99), Some(50.0));
        // A count past the last bound reads as the last bound.
        assert_eq!(window_quantile(&[0, 0, 0, 0], &[0, 0, 0, 1], &bounds, 0.99), Some(50.0));
    }

    proptest! {
        #[test]
        fn the_budget_stays_within_its_bounds_whatever_the_latencies(
            latencies in proptest::collection::vec(proptest::option::of(0.0f64..10_000.0), 0..200),
            target in 1.0f64..1_000.0,
        ) {
            let mut controller = AdmissionController::new(target);
            for latency in latencies {
                let budget = controller.observe(latency);
                prop_assert!((MIN_BUDGET..=1.0).contains(&budget));
            }
        }
    }
}
