//! Staleness, measured (issue 16; Bailis et al., "Probabilistically
//! Bounded Staleness", VLDB 2012): how long a write takes to be on every
//! replica (*t-visibility*), and how often a read answered with less than
//! the replicas held (*k-staleness*: by how many writes).
//!
//! The coordinator already waits, after answering, for the replicas beyond
//! W (to keep hints for those that miss the write) and beyond R (for read
//! repair); this module records what those waits see, so measuring costs
//! a few atomic adds and no extra message:
//!
//! - a write's visibility is the time from when its coordinator took it to
//!   when the last of its N replicas acknowledged it, counted only for
//!   writes every replica itself acknowledged within the request deadline
//!   (the others are counted apart: a hint does not make a write visible);
//! - a read is stale when the merge of every reply that arrived within the
//!   read-repair wait holds a write the answer given to the client did
//!   not; it is `k` versions behind, counting the versions of that merge
//!   the answer's context does not cover
//!   ([`dynamo_core::object::VersionedObject::versions_missing_from`]).
//!
//! A write still in flight when the read ran (held by one replica whose
//! reply arrived within the wait, not yet acknowledged to its client)
//! counts too, so under concurrent writes to the same keys the stale count
//! is an upper bound of PBS staleness, which is judged against writes
//! that completed before the read began; for keys not being written it is
//! exact. Measured: 3-4 % "stale" R=2 answers under YCSB-A's zipfian
//! updates, and none in a test of reads after writes had completed
//! (docs/benchmarks.md).
//!
//! Percentiles come from fixed buckets (upper bounds in
//! [`VISIBILITY_BUCKETS_MS`]): each is reported as the bound of the bucket
//! it falls in, which is what a Prometheus histogram would say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// Upper bounds (ms) of the visibility histogram's buckets; one more bucket
/// holds everything above the last.
pub const VISIBILITY_BUCKETS_MS: [f64; 22] = [
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
    2000.0, 5000.0, 10000.0,
];
/// k-staleness is counted exactly up to this many versions behind; more are
/// counted together.
pub const MAX_K: usize = 4;

/// The staleness a node's coordinator has measured since it started.
#[derive(Default)]
pub struct Staleness {
    visibility: [AtomicU64; VISIBILITY_BUCKETS_MS.len() + 1],
    visibility_sum_us: AtomicU64,
    writes_not_visible: AtomicU64,
    reads_checked: AtomicU64,
    stale_reads: AtomicU64,
    /// `k_behind[k - 1]`: stale reads `k` versions behind (the last: `MAX_K`
    /// or more).
    k_behind: [AtomicU64; MAX_K],
    replica_replies: AtomicU64,
    stale_replica_replies: AtomicU64,
}

/// Where `elapsed` falls among [`VISIBILITY_BUCKETS_MS`].
fn bucket_of(elapsed: Duration) -> usize {
    let ms = elapsed.as_secs_f64() * 1000.0;
    VISIBILITY_BUCKETS_MS.iter().position(|bound| ms <= *bound).unwrap_or(VISIBILITY_BUCKETS_MS.len())
}

/// The bound (ms) of the bucket the `quantile` of `counts` falls in;
/// `None` without samples, infinity for the overflow bucket.
fn quantile_ms(counts: &[u64], quantile: f64) -> Option<f64> {
    let index = dynamo_core::admission::quantile_bucket(counts, quantile)?;
    Some(VISIBILITY_BUCKETS_MS.get(index).copied().unwrap_or(f64::INFINITY))
}

impl Staleness {
    /// A write every replica acknowledged, `elapsed` after its coordinator
    /// took it.
    pub fn record_visible(&self, elapsed: Duration) {
        self.visibility[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.visibility_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// A write that some replica did not acknowledge by the deadline.
    pub fn record_not_visible(&self) {
        self.writes_not_visible.fetch_add(1, Ordering::Relaxed);
    }

    /// A read checked against every reply that came: its answer was
    /// `behind` versions behind their merge (0: fresh), and `stale_replies`
    /// of the `replies` lacked something of the merge.
    pub fn record_read(&self, behind: usize, replies: usize, stale_replies: usize) {
        self.reads_checked.fetch_add(1, Ordering::Relaxed);
        if behind > 0 {
            self.stale_reads.fetch_add(1, Ordering::Relaxed);
            let index = behind.clamp(1, MAX_K) - 1;
            self.k_behind[index].fetch_add(1, Ordering::Relaxed);
        }
        self.replica_replies.fetch_add(replies as u64, Ordering::Relaxed);
        self.stale_replica_replies.fetch_add(stale_replies as u64, Ordering::Relaxed);
    }

    /// The visibility histogram's counts so far (bounds:
    /// [`VISIBILITY_BUCKETS_MS`], then one bucket above the last).
    pub fn visibility_counts(&self) -> Vec<u64> {
        self.visibility.iter().map(|count| count.load(Ordering::Relaxed)).collect()
    }

    /// What `GET /admin/staleness` answers.
    pub fn report(&self) -> Value {
        let counts = self.visibility_counts();
        let visible: u64 = counts.iter().sum();
        let quantile = |q| quantile_ms(&counts, q).map(|ms| if ms.is_finite() { json!(ms) } else { json!("+Inf") });
        let reads = self.reads_checked.load(Ordering::Relaxed);
        let stale = self.stale_reads.load(Ordering::Relaxed);
        let replies = self.replica_replies.load(Ordering::Relaxed);
        let stale_replies = self.stale_replica_replies.load(Ordering::Relaxed);
        let fraction = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
        let mut k = serde_json::Map::new();
        for (index, count) in self.k_behind.iter().enumerate() {
            let label = if index + 1 == MAX_K { format!("{MAX_K}+") } else { (index + 1).to_string() };
            k.insert(label, json!(count.load(Ordering::Relaxed)));
        }
        json!({
            "t_visibility_ms": {
                "writes": visible,
                "p50": quantile(0.5),
                "p90": quantile(0.9),
                "p99": quantile(0.99),
                "p999": quantile(0.999),
                "mean": if visible == 0 { 0.0 } else {
                    self.visibility_sum_us.load(Ordering::Relaxed) as f64 / 1000.0 / visible as f64
                },
            },
            "writes_not_visible_by_deadline": self.writes_not_visible.load(Ordering::Relaxed),
            "reads_checked": reads,
            "stale_reads": stale,
            "stale_read_fraction": fraction(stale, reads),
            "stale_reads_by_versions_behind": Value::Object(k),
            "replica_replies": replies,
            "stale_replica_replies": stale_replies,
            "stale_replica_reply_fraction": fraction(stale_replies, replies),
            "bucket_bounds_ms": VISIBILITY_BUCKETS_MS.to_vec(),
        })
    }

    /// The Prometheus lines: the visibility histogram
    /// (`dynamo_write_visibility_seconds`) and the read counters.
    pub fn render(&self, out: &mut String, node: &str) {
        use std::fmt::Write as _;
        let counts = self.visibility_counts();
        out.push_str(
            "# HELP dynamo_write_visibility_seconds Time from a write's arrival at its coordinator until all N \
             replicas acknowledged it.\n# TYPE dynamo_write_visibility_seconds histogram\n",
        );
        let mut cumulative = 0;
        for (index, bound) in VISIBILITY_BUCKETS_MS.iter().enumerate() {
            cumulative += counts[index];
            let _ = writeln!(
                out,
                "dynamo_write_visibility_seconds_bucket{{node=\"{node}\",le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        cumulative += counts[VISIBILITY_BUCKETS_MS.len()];
        let _ = writeln!(out, "dynamo_write_visibility_seconds_bucket{{node=\"{node}\",le=\"+Inf\"}} {cumulative}");
        let sum_s = self.visibility_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "dynamo_write_visibility_seconds_sum{{node=\"{node}\"}} {sum_s}");
        let _ = writeln!(out, "dynamo_write_visibility_seconds_count{{node=\"{node}\"}} {cumulative}");
        for (name, help, value) in [
            (
                "dynamo_writes_not_visible_total",
                "Writes some replica did not itself acknowledge by the request deadline.",
                &self.writes_not_visible,
            ),
            ("dynamo_reads_checked_total", "Reads checked for staleness against every reply.", &self.reads_checked),
            ("dynamo_reads_stale_total", "Reads whose answer lacked a write some replica held.", &self.stale_reads),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{node=\"{node}\"}} {}", value.load(Ordering::Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_percentiles_are_the_bounds_of_their_buckets() {
        let staleness = Staleness::default();
        assert_eq!(staleness.report()["t_visibility_ms"]["p50"], Value::Null, "no samples, no percentile");
        for _ in 0..90 {
            staleness.record_visible(Duration::from_micros(800));
        }
        for _ in 0..9 {
            staleness.record_visible(Duration::from_millis(40));
        }
        staleness.record_visible(Duration::from_secs(60));
        let report = staleness.report();
        assert_eq!(report["t_visibility_ms"]["writes"], 100);
        assert_eq!(report["t_visibility_ms"]["p50"], 1.0);
        assert_eq!(report["t_visibility_ms"]["p90"], 1.0);
        assert_eq!(report["t_visibility_ms"]["p99"], 50.0);
        assert_eq!(report["t_visibility_ms"]["p999"], "+Inf");
    }

    #[test]
    fn stale_reads_are_counted_by_how_many_writes_they_lag() {
        let staleness = Staleness::default();
        staleness.record_read(0, 3, 0);
        staleness.record_read(1, 3, 1);
        staleness.record_read(7, 3, 2);
        let report = staleness.report();
        assert_eq!(report["reads_checked"], 3);
        assert_eq!(report["stale_reads"], 2);
        assert_eq!(report["stale_reads_by_versions_behind"]["1"], 1);
        assert_eq!(report["stale_reads_by_versions_behind"]["4+"], 1);
        assert_eq!(report["stale_replica_replies"], 3);
        let fraction = report["stale_read_fraction"].as_f64().expect("a number");
        assert!((fraction - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_prometheus_histogram_is_cumulative() {
        let staleness = Staleness::default();
        staleness.record_visible(Duration::from_micros(100));
        staleness.record_visible(Duration::from_millis(3));
        let mut out = String::new();
        staleness.render(&mut out, "n0");
        assert!(out.contains("dynamo_write_visibility_seconds_bucket{node=\"n0\",le=\"0.00025\"} 1"), "{out}");
        assert!(out.contains("dynamo_write_visibility_seconds_bucket{node=\"n0\",le=\"0.003\"} 2"), "{out}");
        assert!(out.contains("dynamo_write_visibility_seconds_count{node=\"n0\"} 2"), "{out}");
    }
}
