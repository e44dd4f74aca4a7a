//! What a run measures: per operation type, a latency histogram of the
//! successful operations (HdrHistogram, microseconds, 3 significant digits)
//! plus error and outcome counts; and, for the progress line, the same for
//! the current interval. Each worker owns its own [`WorkerStats`] (no shared
//! hot counters); the driver merges them.

use hdrhistogram::Histogram;
use hdrhistogram::errors::AdditionError;

use super::workload::OpKind;

/// Highest latency the histograms track, in microseconds (60 s; the client
/// gives up after 10 s). Longer values are clamped to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Error messages kept per operation type: enough to diagnose, bounded.
pub const MAX_ERROR_SAMPLES: usize = 5;
/// Longest error message kept, in bytes (a 503 body can be long).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 400;

/// How one operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A read returned one value.
    Found,
    /// A read returned this many concurrent siblings.
    Siblings(usize),
    /// A read found nothing (never written, or deleted).
    NotFound,
    /// A write was acknowledged.
    Written,
    /// The operation failed.
    Failed {
        /// Why.
        message: String,
        /// Whether the connection is unusable and must be reopened.
        broken: bool,
    },
}

/// A histogram of latencies in microseconds with `digits` significant
/// digits over 1 µs ..= [`LATENCY_US_MAX`].
pub fn latency_histogram(digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, digits).expect("constant histogram bounds are valid")
}

/// Measurements of one operation type.
#[derive(Clone, Debug)]
pub struct OpStats {
    /// Latency of successful operations, in µs.
    pub latency_us: Histogram<u64>,
    /// Failed operations.
    pub errors: u64,
    /// Reads that found no value (successes, also in `latency_us`).
    pub not_found: u64,
    /// Reads that returned siblings (successes, also in `latency_us`).
    pub siblings: u64,
    /// Most siblings returned by one read.
    pub siblings_max: u64,
    /// The first distinct error messages, at most [`MAX_ERROR_SAMPLES`].
    pub error_samples: Vec<String>,
}

impl Default for OpStats {
    fn default() -> OpStats {
        OpStats {
            latency_us: latency_histogram(3),
            errors: 0,
            not_found: 0,
            siblings: 0,
            siblings_max: 0,
            error_samples: Vec::new(),
        }
    }
}

impl OpStats {
    /// Successful operations.
    pub fn succeeded(&self) -> u64 {
        self.latency_us.len()
    }

    /// All operations, successful or not.
    pub fn attempted(&self) -> u64 {
        self.succeeded() + self.errors
    }

    /// Records one operation.
    pub fn record(&mut self, outcome: &Outcome, latency_us: u64) {
        match outcome {
            Outcome::Failed { message, .. } => {
                self.errors += 1;
                keep_sample(&mut self.error_samples, message);
            }
            _ => {
                self.latency_us.saturating_record(latency_us.max(1));
                self.not_found += u64::from(*outcome == Outcome::NotFound);
                if let Outcome::Siblings(count) = outcome {
                    self.siblings += 1;
                    self.siblings_max = self.siblings_max.max(*count as u64);
                }
            }
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) -> Result<(), AdditionError> {
        self.latency_us.add(&other.latency_us)?;
        self.errors += other.errors;
        self.not_found += other.not_found;
        self.siblings += other.siblings;
        self.siblings_max = self.siblings_max.max(other.siblings_max);
        for message in &other.error_samples {
            keep_sample(&mut self.error_samples, message);
        }
        Ok(())
    }
}

/// Keeps `message` if it is new and there is room, cut to
/// [`MAX_ERROR_MESSAGE_BYTES`].
pub fn keep_sample(samples: &mut Vec<String>, message: &str) {
    if samples.len() >= MAX_ERROR_SAMPLES {
        return;
    }
    let mut end = message.len().min(MAX_ERROR_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let message = &message[..end];
    if !samples.iter().any(|kept| kept == message) {
        samples.push(message.to_string());
    }
}

/// Operations of one progress interval, all types together.
#[derive(Clone, Debug)]
pub struct IntervalStats {
    /// Latency of successful operations, in µs (2 significant digits is
    /// plenty for a progress line and keeps the histogram small).
    pub latency_us: Histogram<u64>,
    /// Operations completed, successful or not.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
}

impl Default for IntervalStats {
    fn default() -> IntervalStats {
        IntervalStats { latency_us: latency_histogram(2), ops: 0, errors: 0 }
    }
}

impl IntervalStats {
    /// Adds `other` into `self` and empties `other`.
    pub fn drain_from(&mut self, other: &mut IntervalStats) -> Result<(), AdditionError> {
        self.latency_us.add(&other.latency_us)?;
        self.ops += other.ops;
        self.errors += other.errors;
        other.latency_us.reset();
        other.ops = 0;
        other.errors = 0;
        Ok(())
    }
}

/// Everything one worker measured.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// Measured reads.
    pub read: OpStats,
    /// Measured updates.
    pub update: OpStats,
    /// The current progress interval (warmup included).
    pub interval: IntervalStats,
}

impl WorkerStats {
    /// Records one operation; `measured` is false during warmup, when only
    /// the progress interval sees it.
    pub fn record(&mut self, measured: bool, op: OpKind, outcome: &Outcome, latency_us: u64) {
        let failed = matches!(outcome, Outcome::Failed { .. });
        self.interval.ops += 1;
        if failed {
            self.interval.errors += 1;
        } else {
            self.interval.latency_us.saturating_record(latency_us.max(1));
        }
        if measured {
            match op {
                OpKind::Read => self.read.record(outcome, latency_us),
                OpKind::Update => self.update.record(outcome, latency_us),
            }
        }
    }

    /// Measured operations so far (successful or not) and failures.
    pub fn measured_ops_and_errors(&self) -> (u64, u64) {
        (self.read.attempted() + self.update.attempted(), self.read.errors + self.update.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> Outcome {
        Outcome::Failed { message: message.to_string(), broken: false }
    }

    #[test]
    fn warmup_operations_reach_only_the_interval() {
        let mut stats = WorkerStats::default();
        stats.record(false, OpKind::Read, &Outcome::Found, 100);
        stats.record(true, OpKind::Update, &Outcome::Written, 200);
        assert_eq!(stats.interval.ops, 2);
        assert_eq!((stats.read.attempted(), stats.update.attempted()), (0, 1));
    }

    #[test]
    fn outcomes_are_counted_by_kind() {
        let mut stats = OpStats::default();
        stats.record(&Outcome::Found, 10);
        stats.record(&Outcome::NotFound, 10);
        stats.record(&Outcome::Siblings(3), 10);
        stats.record(&Outcome::Siblings(2), 10);
        stats.record(&failed("boom"), 10);
        assert_eq!((stats.succeeded(), stats.errors, stats.not_found, stats.siblings), (4, 1, 1, 2));
        assert_eq!(stats.siblings_max, 3);
    }

    #[test]
    fn error_samples_are_distinct_bounded_and_short() {
        let mut stats = OpStats::default();
        for index in 0..100 {
            stats.record(&failed(&format!("error {}", index % 7)), 1);
        }
        stats.record(&failed(&"é".repeat(1000)), 1);
        assert_eq!(stats.errors, 101);
        assert_eq!(stats.error_samples.len(), MAX_ERROR_SAMPLES);
        assert!(stats.error_samples.iter().all(|message| message.len() <= MAX_ERROR_MESSAGE_BYTES));
    }

    #[test]
    fn merging_adds_counts_and_latencies() {
        let mut total = OpStats::default();
        let mut part = OpStats::default();
        part.record(&Outcome::Found, 1_000);
        part.record(&failed("x"), 1);
        total.merge(&part).expect("same bounds");
        total.merge(&part).expect("same bounds");
        assert_eq!((total.succeeded(), total.errors), (2, 2));
        assert_eq!(total.error_samples, vec!["x".to_string()]);
        assert!(total.latency_us.max() >= 1_000);
    }

    #[test]
    fn draining_an_interval_empties_it() {
        let mut worker = IntervalStats { ops: 3, ..IntervalStats::default() };
        worker.latency_us.saturating_record(50);
        let mut sum = IntervalStats::default();
        sum.drain_from(&mut worker).expect("same bounds");
        assert_eq!((sum.ops, sum.latency_us.len(), worker.ops, worker.latency_us.len()), (3, 1, 0, 0));
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut stats = OpStats::default();
        stats.record(&Outcome::Written, u64::MAX);
        assert_eq!(stats.succeeded(), 1);
    }
}
