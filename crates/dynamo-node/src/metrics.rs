//! Prometheus metrics of a node (paper section 6: Amazon watched the 99.9th
//! percentile, so every operation has a latency histogram fine enough to
//! read it). Hand-written text exposition: a handful of atomics needs no
//! metrics framework.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dynamo_storage::StoreStats;

use dynamo_core::membership::{ClusterState, MemberStatus};

use crate::anti_entropy::AntiEntropyTotals;
use crate::failure_detector::PeerReport;
use crate::gossip::GossipStats;
use crate::hints::HintStats;

/// Upper bounds of the latency buckets, in seconds: fine below 10 ms where a
/// healthy store lives, coarse above.
const LATENCY_BUCKETS_S: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 10.0,
];

/// The latency buckets' upper bounds, in milliseconds.
pub fn latency_bounds_ms() -> Vec<f64> {
    LATENCY_BUCKETS_S.iter().map(|bound| bound * 1000.0).collect()
}

/// Client operations that are measured separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Object read.
    Get,
    /// Object write.
    Put,
    /// Object delete.
    Delete,
    /// Bucket props read or write.
    Props,
    /// Anything else (ping, metrics, admin, unknown routes).
    Other,
}

impl Operation {
    const ALL: [Operation; 5] = [Operation::Get, Operation::Put, Operation::Delete, Operation::Props, Operation::Other];

    fn label(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Put => "put",
            Operation::Delete => "delete",
            Operation::Props => "props",
            Operation::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status classes counted per operation.
const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "other"];

fn status_class_index(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = LATENCY_BUCKETS_S.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct OperationMetrics {
    by_status: [AtomicU64; STATUS_CLASSES.len()],
    latency: Histogram,
}

/// All counters of a node. Shared by reference; every update is one atomic.
#[derive(Default)]
pub struct Metrics {
    operations: [OperationMetrics; 5],
    reads_with_siblings: AtomicU64,
    siblings_returned: AtomicU64,
    values_too_large: AtomicU64,
}

impl Metrics {
    /// Records one finished client request.
    pub fn record_request(&self, operation: Operation, status: u16, elapsed: Duration) {
        let op = &self.operations[operation.index()];
        op.by_status[status_class_index(status)].fetch_add(1, Ordering::Relaxed);
        op.latency.observe(elapsed);
    }

    /// Records a read answered with `count` versions (siblings when > 1).
    pub fn record_siblings(&self, count: usize) {
        if count > 1 {
            self.reads_with_siblings.fetch_add(1, Ordering::Relaxed);
        }
        self.siblings_returned.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// The latency bucket counts of every client data request (get, put,
    /// delete) finished so far, summed; bucket `i` holds latencies up to
    /// [`latency_bounds_ms`]`[i]`. Two snapshots give a window's p99
    /// ([`dynamo_core::admission::window_quantile`]).
    pub fn foreground_latency_counts(&self) -> Vec<u64> {
        let foreground = [Operation::Get, Operation::Put, Operation::Delete];
        (0..LATENCY_BUCKETS_S.len())
            .map(|bucket| {
                foreground
                    .iter()
                    .map(|op| self.operations[op.index()].latency.buckets[bucket].load(Ordering::Relaxed))
                    .sum()
            })
            .collect()
    }

    /// The latency bucket counts of `operation` so far (bounds:
    /// [`latency_bounds_ms`]).
    pub fn latency_counts(&self, operation: Operation) -> Vec<u64> {
        let latency = &self.operations[operation.index()].latency;
        latency.buckets.iter().map(|count| count.load(Ordering::Relaxed)).collect()
    }

    /// Reads answered with siblings so far.
    pub fn reads_with_siblings(&self) -> u64 {
        self.reads_with_siblings.load(Ordering::Relaxed)
    }

    /// Records a write refused for its size.
    pub fn record_value_too_large(&self) {
        self.values_too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, node_id: &str, store: StoreStats) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let node = escape_label(node_id);
        self.render_requests(&mut out, &node);
        self.render_latency(&mut out, &node);
        counter(
            &mut out,
            "dynamo_reads_with_siblings_total",
            "Reads that returned more than one version.",
            &node,
            self.reads_with_siblings.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dynamo_siblings_returned_total",
            "Versions returned by reads (one per sibling).",
            &node,
            self.siblings_returned.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dynamo_values_too_large_total",
            "Writes refused because the value exceeded max_value_bytes.",
            &node,
            self.values_too_large.load(Ordering::Relaxed),
        );
        counter(&mut out, "dynamo_storage_fsyncs_total", "Fsyncs performed by group commit.", &node, store.syncs);
        counter(
            &mut out,
            "dynamo_storage_durable_writes_total",
            "Writes acknowledged after an fsync.",
            &node,
            store.durable_writes,
        );
        counter(
            &mut out,
            "dynamo_storage_corruptions_total",
            "Stored records that failed their checksum on read.",
            &node,
            store.corruptions,
        );
        out
    }

    fn render_requests(&self, out: &mut String, node: &str) {
        let _ = writeln!(out, "# HELP dynamo_requests_total Client requests by operation and status class.");
        let _ = writeln!(out, "# TYPE dynamo_requests_total counter");
        for operation in Operation::ALL {
            let op = &self.operations[operation.index()];
            for (index, class) in STATUS_CLASSES.iter().enumerate() {
                let value = op.by_status[index].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "dynamo_requests_total{{node=\"{node}\",op=\"{}\",status=\"{class}\"}} {value}",
                    operation.label()
                );
            }
        }
    }

    fn render_latency(&self, out: &mut String, node: &str) {
        let name = "dynamo_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Client request latency by operation.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for operation in Operation::ALL {
            let histogram = &self.operations[operation.index()].latency;
            let labels = format!("node=\"{node}\",op=\"{}\"", operation.label());
            let mut cumulative = 0;
            for (index, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
                cumulative += histogram.buckets[index].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let count = histogram.count.load(Ordering::Relaxed);
            let sum_s = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_s}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// Renders the failure-handling metrics: each peer's reachability as this
/// The admission controller's current budget (`crate::admission`): the
/// share of their configured rates background work may use.
pub fn render_background_budget(out: &mut String, node_id: &str, budget: f64) {
    let node = escape_label(node_id);
    let _ = writeln!(
        out,
        "# HELP dynamo_background_budget Share of its configured rate background work (repair, transfers, listing) may \
         use now; admission control lowers it while the foreground p99 is over target.\n# TYPE \
         dynamo_background_budget gauge\ndynamo_background_budget{{node=\"{node}\"}} {budget}"
    );
}

/// node's failure detector sees it, and the hint store.
pub fn render_failure_handling(node_id: &str, peers: &[PeerReport], hints: HintStats) -> String {
    let mut out = String::with_capacity(2 * 1024);
    let node = escape_label(node_id);
    let name = "dynamo_peer_up";
    let _ = writeln!(out, "# HELP {name} 1 if this node's failure detector routes to the peer, 0 if it marks it down.");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for peer in peers {
        let up = u8::from(peer.state == "up");
        let _ = writeln!(out, "{name}{{node=\"{node}\",peer=\"{}\"}} {up}", escape_label(&peer.node));
    }
    gauge(&mut out, "dynamo_hints_stored", "Hints held for unreachable replicas.", &node, hints.stored);
    gauge(&mut out, "dynamo_hints_stored_bytes", "Bytes of hints held.", &node, hints.stored_bytes);
    gauge(&mut out, "dynamo_hints_max_bytes", "Bound of the hint store (max_hint_bytes).", &node, hints.max_bytes);
    counter(&mut out, "dynamo_hints_accepted_total", "Hints written (new or merged).", &node, hints.accepted);
    counter(
        &mut out,
        "dynamo_hints_refused_total",
        "Hints refused because the hint store was at max_hint_bytes.",
        &node,
        hints.refused_full,
    );
    counter(
        &mut out,
        "dynamo_hints_delivered_total",
        "Hints acknowledged by their owner and removed.",
        &node,
        hints.delivered,
    );
    out
}

fn gauge(out: &mut String, name: &str, help: &str, node: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
}

/// Appends the anti-entropy counters (paper section 6's "anti-entropy
/// repairs", and what they cost in bytes) to a rendering.
pub fn render_anti_entropy(out: &mut String, node_id: &str, totals: &AntiEntropyTotals) {
    let node = escape_label(node_id);
    let name = "dynamo_anti_entropy_exchanges_total";
    let _ = writeln!(out, "# HELP {name} Anti-entropy exchanges this node started, by result.");
    let _ = writeln!(out, "# TYPE {name} counter");
    let ok = totals.exchanges - totals.failed_exchanges;
    let _ = writeln!(out, "{name}{{node=\"{node}\",result=\"ok\"}} {ok}");
    let _ = writeln!(out, "{name}{{node=\"{node}\",result=\"failed\"}} {}", totals.failed_exchanges);
    let series = [
        (
            "dynamo_anti_entropy_keys_compared_total",
            "Keys compared by anti-entropy under differing leaves.",
            totals.keys_compared,
        ),
        ("dynamo_anti_entropy_keys_differing_total", "Keys anti-entropy found differing.", totals.keys_differing),
        ("dynamo_anti_entropy_keys_repaired_total", "Keys anti-entropy merged on both replicas.", totals.keys_repaired),
        ("dynamo_anti_entropy_bytes_sent_total", "Bytes of anti-entropy requests sent to peers.", totals.bytes_sent),
        (
            "dynamo_anti_entropy_bytes_received_total",
            "Bytes of anti-entropy responses from peers.",
            totals.bytes_received,
        ),
    ];
    for (name, help, value) in series {
        counter(out, name, help, &node, value);
    }
}

/// Appends the membership gauges (committed epoch, members by status) and
/// gossip counters to a rendering.
pub fn render_membership(out: &mut String, node_id: &str, state: &ClusterState, gossip: &GossipStats) {
    let node = escape_label(node_id);
    gauge(out, "dynamo_cluster_epoch", "Epoch of the committed ring this node routes by.", &node, state.epoch());
    let name = "dynamo_cluster_members";
    let _ = writeln!(out, "# HELP {name} Member records this node knows, by status.");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for status in [MemberStatus::Joining, MemberStatus::Member, MemberStatus::Leaving, MemberStatus::Removed] {
        let count = state.members().filter(|member| member.status == status).count();
        let _ = writeln!(out, "{name}{{node=\"{node}\",status=\"{status}\"}} {count}");
    }
    let name = "dynamo_gossip_exchanges_total";
    let _ = writeln!(out, "# HELP {name} Gossip exchanges this node started, by result.");
    let _ = writeln!(out, "# TYPE {name} counter");
    let ok = gossip.exchanges.saturating_sub(gossip.failed);
    let _ = writeln!(out, "{name}{{node=\"{node}\",result=\"ok\"}} {ok}");
    let _ = writeln!(out, "{name}{{node=\"{node}\",result=\"failed\"}} {}", gossip.failed);
    counter(
        out,
        "dynamo_gossip_learned_total",
        "Gossip exchanges in which this node learned a change.",
        &node,
        gossip.learned,
    );
}

/// Appends the partition-transfer metrics (paper section 4.9).
pub fn render_transfers(out: &mut String, node_id: &str, report: &crate::transfers::TransfersReport) {
    let node = escape_label(node_id);
    gauge(
        out,
        "dynamo_transfers_pending",
        "Partition copies of the current ring change not yet done, cluster-wide.",
        &node,
        report.pending as u64,
    );
    let local_pending = report.pending_by_node.get(node_id).copied().unwrap_or(0);
    gauge(
        out,
        "dynamo_transfers_in_flight",
        "Partition copies this node still has to make.",
        &node,
        local_pending as u64,
    );
    gauge(
        out,
        "dynamo_transfers_unsettled_partitions",
        "Partitions whose reads still go to their previous replicas.",
        &node,
        report.unsettled_partitions as u64,
    );
    let totals = &report.totals;
    counter(
        out,
        "dynamo_transfer_pulls_completed_total",
        "Partition copies this node completed.",
        &node,
        totals.pulls_completed,
    );
    counter(out, "dynamo_transfer_keys_total", "Objects this node copied in partition transfers.", &node, totals.keys);
    counter(
        out,
        "dynamo_transfer_bytes_total",
        "Bytes this node received in partition transfers.",
        &node,
        totals.bytes,
    );
    counter(
        out,
        "dynamo_transfer_failures_total",
        "Transfer pages that failed (retried later).",
        &node,
        totals.failures,
    );
}

/// Renders the count of requests this node forwarded to another node to
/// coordinate (writes and data-type updates sent to a node outside the
/// key's preference list). A partition-aware client keeps it at 0.
pub fn render_forwarded(out: &mut String, node_id: &str, forwarded: u64) {
    counter(
        out,
        "dynamo_forwarded_requests_total",
        "Requests this node forwarded to another node to coordinate (one per attempt).",
        &escape_label(node_id),
        forwarded,
    );
}

fn counter(out: &mut String, name: &str, help: &str, node: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
}

/// Escapes a label value per the exposition format.
pub(crate) fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it_and_in_every_later_one() {
        let metrics = Metrics::default();
        metrics.record_request(Operation::Get, 200, Duration::from_micros(1_200));
        let text = metrics.render("n1", StoreStats::default());
        assert!(
            text.contains("dynamo_request_duration_seconds_bucket{node=\"n1\",op=\"get\",le=\"0.001\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("dynamo_request_duration_seconds_bucket{node=\"n1\",op=\"get\",le=\"0.0015\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dynamo_request_duration_seconds_bucket{node=\"n1\",op=\"get\",le=\"+Inf\"} 1"),
            "{text}"
        );
        assert!(text.contains("dynamo_requests_total{node=\"n1\",op=\"get\",status=\"2xx\"} 1"), "{text}");
    }

    #[test]
    fn anti_entropy_counters_are_rendered_with_the_node_label() {
        let mut text = String::new();
        let totals = AntiEntropyTotals { exchanges: 5, failed_exchanges: 1, keys_repaired: 3, ..Default::default() };
        render_anti_entropy(&mut text, "n1", &totals);
        assert!(text.contains("dynamo_anti_entropy_exchanges_total{node=\"n1\",result=\"ok\"} 4"), "{text}");
        assert!(text.contains("dynamo_anti_entropy_exchanges_total{node=\"n1\",result=\"failed\"} 1"), "{text}");
        assert!(text.contains("dynamo_anti_entropy_keys_repaired_total{node=\"n1\"} 3"), "{text}");
    }

    #[test]
    fn membership_gauges_count_members_by_status() {
        let specs = [(dynamo_core::ring::NodeSpec::new("a", 1), "a:1".to_string())];
        let state = ClusterState::from_static(8, &specs).expect("state");
        let gossip = GossipStats { exchanges: 5, failed: 2, learned: 1, ..GossipStats::default() };
        let mut text = String::new();
        render_membership(&mut text, "a", &state, &gossip);
        assert!(text.contains("dynamo_cluster_epoch{node=\"a\"} 1"), "{text}");
        assert!(text.contains("dynamo_cluster_members{node=\"a\",status=\"member\"} 1"), "{text}");
        assert!(text.contains("dynamo_cluster_members{node=\"a\",status=\"joining\"} 0"), "{text}");
        assert!(text.contains("dynamo_gossip_exchanges_total{node=\"a\",result=\"ok\"} 3"), "{text}");
        assert!(text.contains("dynamo_gossip_learned_total{node=\"a\"} 1"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
