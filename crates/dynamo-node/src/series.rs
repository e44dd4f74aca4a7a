//! The last 15 minutes of a node, one sample a second, for the dashboard's
//! live charts (issue 16, `GET /admin/series`): requests per second and
//! p50/p99/p99.9 per operation, reads with siblings, anti-entropy repairs,
//! hints delivered, the p99 of write visibility, and the background
//! budget of admission control.
//!
//! Every figure is a difference between two snapshots of counters the node
//! keeps anyway (the request histograms of [`crate::metrics`], the
//! staleness histogram, the anti-entropy and hint totals), so sampling
//! costs a few hundred atomic loads a second and the history is bounded
//! ([`SAMPLES`] entries of fixed size, about 100 KiB).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_core::admission::window_quantile;
use serde::Serialize;

use crate::anti_entropy::AntiEntropy;
use crate::metrics::{Metrics, Operation, latency_bounds_ms};
use crate::services::NodeServices;
use crate::staleness::{Staleness, VISIBILITY_BUCKETS_MS};

/// Samples kept: 15 minutes at one a second.
pub const SAMPLES: usize = 900;
/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One operation's second.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct OperationSample {
    /// Requests finished in the second.
    pub ops: u64,
    /// Latency percentiles of those (bucket bounds, ms); `None` without
    /// requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
}

/// One second of the node.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Sample {
    /// When it ended (unix ms).
    pub at_ms: u64,
    /// Object reads.
    pub get: OperationSample,
    /// Object writes and data-type updates.
    pub put: OperationSample,
    /// Deletes.
    pub delete: OperationSample,
    /// Reads answered with siblings.
    pub reads_with_siblings: u64,
    /// Keys anti-entropy repaired.
    pub anti_entropy_repairs: u64,
    /// Hints delivered.
    pub hints_delivered: u64,
    /// p99 of the write visibility measured in the second (ms).
    pub visibility_p99_ms: Option<f64>,
    /// The admission budget at the end of the second.
    pub background_budget: f64,
}

/// The counters a sample is the difference of.
#[derive(Clone, Default)]
struct Snapshot {
    latency: [Vec<u64>; 3],
    siblings: u64,
    repairs: u64,
    delivered: u64,
    visibility: Vec<u64>,
}

/// The node's recent history.
#[derive(Default)]
pub struct Series {
    samples: Mutex<VecDeque<Sample>>,
}

/// What the sampler reads.
pub struct Sources {
    /// Request histograms.
    pub metrics: Arc<Metrics>,
    /// Hints and the admission budget.
    pub services: NodeServices,
    /// Repair totals.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Visibility histogram.
    pub staleness: Arc<Staleness>,
}

const OPERATIONS: [Operation; 3] = [Operation::Get, Operation::Put, Operation::Delete];

impl Sources {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            latency: OPERATIONS.map(|operation| self.metrics.latency_counts(operation)),
            siblings: self.metrics.reads_with_siblings(),
            repairs: self.anti_entropy.totals().keys_repaired,
            delivered: self.services.hints.stats().delivered,
            visibility: self.staleness.visibility_counts(),
        }
    }
}

/// One operation's second from two snapshots of its histogram.
fn operation_sample(before: &[u64], after: &[u64], bounds: &[f64]) -> OperationSample {
    let ops = after.iter().sum::<u64>().saturating_sub(before.iter().sum());
    OperationSample {
        ops,
        p50_ms: window_quantile(before, after, bounds, 0.5),
        p99_ms: window_quantile(before, after, bounds, 0.99),
        p999_ms: window_quantile(before, after, bounds, 0.999),
    }
}

fn sample(before: &Snapshot, after: &Snapshot, at_ms: u64, budget: f64) -> Sample {
    let bounds = latency_bounds_ms();
    let [get, put, delete] =
        [0, 1, 2].map(|index| operation_sample(&before.latency[index], &after.latency[index], &bounds));
    Sample {
        at_ms,
        get,
        put,
        delete,
        reads_with_siblings: after.siblings.saturating_sub(before.siblings),
        anti_entropy_repairs: after.repairs.saturating_sub(before.repairs),
        hints_delivered: after.delivered.saturating_sub(before.delivered),
        visibility_p99_ms: window_quantile(&before.visibility, &after.visibility, &VISIBILITY_BUCKETS_MS, 0.99),
        background_budget: budget,
    }
}

impl Series {
    fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().expect("series lock");
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("series lock").iter().copied().collect()
    }

    /// Samples every [`INTERVAL`] until `stop`, with `now_ms` the node's
    /// wall clock.
    pub async fn run(
        self: Arc<Self>,
        sources: Sources,
        now_ms: impl Fn() -> u64,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut before = sources.snapshot();
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = ticks.tick() => {}
            }
            let after = sources.snapshot();
            self.push(sample(&before, &after, now_ms(), sources.services.background.get()));
            before = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_the_difference_of_two_snapshots() {
        let metrics = Metrics::default();
        let snapshot = |metrics: &Metrics, repairs: u64| Snapshot {
            latency: OPERATIONS.map(|operation| metrics.latency_counts(operation)),
            siblings: metrics.reads_with_siblings(),
            repairs,
            delivered: 0,
            visibility: vec![0; VISIBILITY_BUCKETS_MS.len() + 1],
        };
        metrics.record_request(Operation::Get, 200, Duration::from_millis(1));
        let before = snapshot(&metrics, 10);
        for _ in 0..3 {
            metrics.record_request(Operation::Get, 200, Duration::from_millis(4));
        }
        metrics.record_request(Operation::Put, 204, Duration::from_millis(20));
        let after = snapshot(&metrics, 12);
        let second = sample(&before, &after, 5_000, 0.5);
        assert_eq!(second.get.ops, 3, "only what happened in the second");
        assert_eq!(second.get.p50_ms, Some(5.0));
        assert_eq!(second.put.ops, 1);
        assert_eq!(second.delete, OperationSample::default());
        assert_eq!(second.anti_entropy_repairs, 2);
        assert_eq!((second.at_ms, second.background_budget), (5_000, 0.5));
    }

    #[test]
    fn the_history_keeps_the_last_fifteen_minutes() {
        let series = Series::default();
        for second in 0..(SAMPLES as u64 + 10) {
            series.push(Sample { at_ms: second, ..Sample::default() });
        }
        let samples = series.samples();
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[0].at_ms, 10, "the oldest go first");
    }
}
