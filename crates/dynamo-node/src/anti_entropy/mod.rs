//! Anti-entropy (paper section 4.7): replicas of a partition periodically
//! compare Merkle trees and exchange only the keys that differ. It repairs
//! what the write path and read repair miss: writes a replica never
//! received (it was down, a hint was lost), and a replica that lost its
//! disk and came back empty.
//!
//! The parts, each in its own place:
//! - the **trees** are pure ([`dynamo_core::merkle`]): fixed shape, leaves
//!   that are sums of `H(key, object digest)` so that one write updates
//!   them in O(1), a top-down comparison as a state machine;
//! - the **index** ([`MerkleIndex`](crate::merkle_index::MerkleIndex), in [`crate::merkle_index`], below the
//!   replica and these workers) holds one tree per partition, with the
//!   sorted key list the leaves summarize. It is built by one full scan at
//!   start-up and then kept in step by the replica, which reports every
//!   write with the key's digest before and after; it is never rebuilt by
//!   a scan per exchange (only a partition found to disagree with storage
//!   is rebuilt, once);
//! - the **two sides of an exchange**: the initiator (`exchange.rs`) walks
//!   the trees, compares listings and repairs; the peer only answers
//!   questions about its index ([`MerkleIndex::serve`](crate::merkle_index::MerkleIndex::serve), reached through the RPC handler
//!   as `MerkleHashes` and `MerkleKeys` requests). Repairs use the ordinary
//!   replica messages: `Read` to pull the peer's state, then a local merge,
//!   and `Write` to push the merge back, which the peer merges. Nothing is
//!   ever overwritten;
//! - the **scheduler** ([`AntiEntropy::run`]): every `interval` it takes the
//!   next partition this node replicates (round-robin) and exchanges it with
//!   one other replica (the replicas take turns). One exchange runs at a
//!   time on a node, repairs are paced to `max_keys_per_sec`, every call to
//!   the peer has a timeout, and an exchange repairs at most
//!   [`MAX_DIFFERENCES_PER_EXCHANGE`] keys. An admin request can run an
//!   exchange of every partition (or one) at once
//!   ([`AntiEntropy::trigger`]), still one at a time.
//!
//! **Which partitions.** This node exchanges the partitions whose
//! preference list, for n = the largest n of any bucket (the configured
//! default or a bucket's props), contains it. A tree holds every key of its
//! partition whatever its bucket, so the trees of two replicas are
//! comparable only over the same set of buckets: a bucket with a smaller n
//! than the largest has keys the second or third node of the list
//! legitimately lacks. Such keys show up as differences and are skipped
//! (never copied to a node outside their own preference list), at the cost
//! of comparing them again at every exchange. Trees per (partition, n), as
//! Riak keeps them, would remove that cost; with one n per cluster, as
//! today, it does not arise.

mod exchange;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dynamo_core::ring::NodeId;
use serde::Serialize;
use thiserror::Error;
use tracing::{debug, info, warn};

pub use exchange::{ExchangeReport, MAX_DIFFERENCES_PER_EXCHANGE};

use crate::buckets::PropsStoreError;
use crate::clock::WallClock;
use crate::services::NodeServices;
use exchange::{Exchange, RepairPacer};

/// Settings of the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AntiEntropyConfig {
    /// Time between two scheduled exchanges; zero disables the scheduler
    /// (this node still answers its peers' exchanges and admin triggers).
    pub interval: Duration,
    /// Most keys repaired per second, over all exchanges of this node.
    pub max_keys_per_sec: u32,
    /// Deadline of each call to a peer.
    pub call_timeout: Duration,
}

impl ExchangeReport {
    fn new(partition: u32, peer: &NodeId, started_ms: u64) -> Self {
        Self { partition, peer: peer.to_string(), started_ms, complete: true, ..Self::default() }
    }

    fn failed(&self) -> bool {
        self.errors > 0 && !self.complete
    }
}

/// Counters over every exchange this node started since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AntiEntropyTotals {
    /// Exchanges finished (including failed ones).
    pub exchanges: u64,
    /// Exchanges that stopped on an error.
    pub failed_exchanges: u64,
    /// Keys compared.
    pub keys_compared: u64,
    /// Keys found differing.
    pub keys_differing: u64,
    /// Keys repaired.
    pub keys_repaired: u64,
    /// Keys skipped.
    pub keys_skipped: u64,
    /// Bytes sent to peers.
    pub bytes_sent: u64,
    /// Bytes received from peers.
    pub bytes_received: u64,
    /// Errors.
    pub errors: u64,
}

impl AntiEntropyTotals {
    fn add(&mut self, report: &ExchangeReport) {
        self.exchanges += 1;
        self.failed_exchanges += u64::from(report.failed());
        self.keys_compared += report.keys_compared;
        self.keys_differing += report.keys_differing;
        self.keys_repaired += report.keys_repaired;
        self.keys_skipped += report.keys_skipped;
        self.bytes_sent += report.bytes_sent;
        self.bytes_received += report.bytes_received;
        self.errors += report.errors;
    }

    /// The sum of `reports`.
    pub fn of(reports: &[ExchangeReport]) -> Self {
        let mut totals = Self::default();
        reports.iter().for_each(|report| totals.add(report));
        totals
    }
}

/// One partition's anti-entropy history on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u32,
    /// Exchanges of it this node started.
    pub exchanges: u64,
    /// Of those, the ones that stopped on an error.
    pub failed_exchanges: u64,
    /// The last one.
    pub last: ExchangeReport,
}

/// Everything `GET /admin/anti-entropy` shows.
#[derive(Clone, Debug, Serialize)]
pub struct AntiEntropyStatus {
    /// This node.
    pub node: String,
    /// Whether the scheduler runs.
    pub enabled: bool,
    /// Time between scheduled exchanges.
    pub interval_ms: u64,
    /// Repair rate cap.
    pub max_keys_per_sec: u32,
    /// Keys in this node's trees.
    pub indexed_keys: u64,
    /// Partitions found disagreeing with storage, to be rebuilt.
    pub suspect_partitions: Vec<u32>,
    /// Counters over all exchanges.
    pub totals: AntiEntropyTotals,
    /// Per partition exchanged so far, in partition order.
    pub partitions: Vec<PartitionStatus>,
}

/// Why a triggered exchange could not run.
#[derive(Debug, Error)]
pub enum TriggerError {
    /// The partition is not below Q.
    #[error("partition {partition} does not exist; partitions are 0 to {last}")]
    NoSuchPartition {
        /// The partition asked for.
        partition: u32,
        /// The last partition.
        last: u32,
    },
    /// This node holds no replica of the partition.
    #[error("this node does not replicate partition {0}; ask one of its replicas")]
    NotReplicated(u32),
    /// The bucket props could not be read.
    #[error(transparent)]
    Props(#[from] PropsStoreError),
}

#[derive(Default)]
struct StatusBook {
    partitions: BTreeMap<u32, PartitionStatus>,
    totals: AntiEntropyTotals,
}

/// The anti-entropy service of one node (see the module docs).
pub struct AntiEntropy {
    services: NodeServices,
    wall: Arc<dyn WallClock>,
    config: AntiEntropyConfig,
    /// Held for the whole of an exchange, so at most one runs at a time; it
    /// guards the pacer shared by all exchanges.
    running: tokio::sync::Mutex<RepairPacer>,
    /// Where the round-robin over partitions resumes.
    next_partition: AtomicU32,
    status: Mutex<StatusBook>,
}

impl AntiEntropy {
    /// The service over the node's replica, cluster view and peers.
    pub fn new(services: NodeServices, wall: Arc<dyn WallClock>, config: AntiEntropyConfig) -> Self {
        let pacer = RepairPacer::new(config.max_keys_per_sec, services.background.clone());
        Self {
            services,
            wall,
            running: tokio::sync::Mutex::new(pacer),
            config,
            next_partition: AtomicU32::new(0),
            status: Mutex::new(StatusBook::default()),
        }
    }

    /// The scheduler: one exchange every `interval`, until `stop`
    /// completes (an exchange in progress is abandoned; its repairs so far
    /// are merges, complete or not sent). Returns at once when disabled.
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        if self.config.interval.is_zero() {
            info!("anti-entropy scheduler disabled (anti_entropy_interval_ms = 0)");
            return;
        }
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick of an interval is immediate; start one interval in.
        ticks.tick().await;
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = &mut stop => return,
                _ = self.exchange_next() => {}
            }
        }
    }

    /// Exchanges the next partition of the round-robin with one of its
    /// other replicas. `None` when there is nothing to exchange (no
    /// partition, or no other replica).
    pub async fn exchange_next(&self) -> Option<ExchangeReport> {
        let n = match self.services.buckets.largest_n() {
            Ok(n) => n,
            Err(error) => {
                warn!(%error, "anti-entropy: cannot read bucket props");
                return None;
            }
        };
        let partition = self.pick_next(&self.replicated_partitions(n))?;
        let mut pacer = self.running.lock().await;
        self.exchange_partition(partition, n, &mut pacer).await
    }

    /// Exchanges `partition`, or every partition this node replicates,
    /// now, one after the other; returns when all are done.
    pub async fn trigger(&self, partition: Option<u32>) -> Result<Vec<ExchangeReport>, TriggerError> {
        let n = self.services.buckets.largest_n()?;
        let replicated = self.replicated_partitions(n);
        let chosen = match partition {
            None => replicated,
            Some(partition) if partition >= self.services.cluster.ring().partitions() => {
                let last = self.services.cluster.ring().partitions() - 1;
                return Err(TriggerError::NoSuchPartition { partition, last });
            }
            Some(partition) if !replicated.contains(&partition) => return Err(TriggerError::NotReplicated(partition)),
            Some(partition) => vec![partition],
        };
        let mut pacer = self.running.lock().await;
        let mut reports = Vec::with_capacity(chosen.len());
        for partition in chosen {
            reports.extend(self.exchange_partition(partition, n, &mut pacer).await);
        }
        Ok(reports)
    }

    /// The partitions whose preference list of `n` holds this node.
    fn replicated_partitions(&self, n: u8) -> Vec<u32> {
        let cluster = &self.services.cluster;
        (0..cluster.ring().partitions())
            .filter(|partition| cluster.ring().preference_list(*partition, usize::from(n)).contains(cluster.local()))
            .collect()
    }

    fn pick_next(&self, replicated: &[u32]) -> Option<u32> {
        let cursor = self.next_partition.load(Ordering::Relaxed);
        let partition = *replicated.iter().find(|partition| **partition >= cursor).or(replicated.first())?;
        self.next_partition.store(partition + 1, Ordering::Relaxed);
        Some(partition)
    }

    /// The replica of `partition` to exchange with: the other replicas take
    /// turns, so over time every pair is compared.
    fn peer_for(&self, partition: u32, n: u8) -> Option<NodeId> {
        let cluster = &self.services.cluster;
        let others: Vec<NodeId> = cluster
            .ring()
            .preference_list(partition, usize::from(n))
            .into_iter()
            .filter(|node| node != cluster.local())
            .collect();
        let turn = self.lock_status().partitions.get(&partition).map_or(0, |status| status.exchanges);
        let count = others.len() as u64;
        (count > 0).then(|| others[(turn % count) as usize].clone())
    }

    async fn exchange_partition(&self, partition: u32, n: u8, pacer: &mut RepairPacer) -> Option<ExchangeReport> {
        let peer = self.peer_for(partition, n)?;
        let mut report = ExchangeReport::new(partition, &peer, self.wall.now_ms());
        if self.rebuild_if_suspect(partition, &mut report) {
            let exchange = Exchange {
                services: &self.services,
                partition,
                peer,
                timeout: self.config.call_timeout,
                report: &mut report,
            };
            exchange.run(pacer).await;
        }
        report.finished_ms = self.wall.now_ms();
        self.log(&report);
        self.record(&report);
        Some(report)
    }

    /// Rebuilds a partition found disagreeing with storage; false (and the
    /// error in the report) when that failed.
    fn rebuild_if_suspect(&self, partition: u32, report: &mut ExchangeReport) -> bool {
        let index = self.services.replica.index();
        if !index.is_suspect(partition) {
            return true;
        }
        match index.rebuild(partition) {
            Ok(keys) => {
                info!(partition, keys, "anti-entropy: rebuilt a partition's tree from storage");
                true
            }
            Err(error) => {
                report.errors += 1;
                report.complete = false;
                report.error_messages.push(format!("rebuilding the tree failed: {error}"));
                false
            }
        }
    }

    fn log(&self, report: &ExchangeReport) {
        if report.failed() {
            debug!(partition = report.partition, peer = %report.peer, errors = ?report.error_messages,
                   "anti-entropy exchange failed");
        } else if report.keys_differing > 0 {
            info!(partition = report.partition, peer = %report.peer, differing = report.keys_differing,
                  repaired = report.keys_repaired, skipped = report.keys_skipped, errors = report.errors,
                  "anti-entropy exchange repaired keys");
        }
    }

    fn record(&self, report: &ExchangeReport) {
        let mut book = self.lock_status();
        book.totals.add(report);
        let status = book.partitions.entry(report.partition).or_insert_with(|| PartitionStatus {
            partition: report.partition,
            exchanges: 0,
            failed_exchanges: 0,
            last: ExchangeReport::default(),
        });
        status.exchanges += 1;
        status.failed_exchanges += u64::from(report.failed());
        status.last = report.clone();
    }

    /// The counters over every exchange so far (for metrics).
    pub fn totals(&self) -> AntiEntropyTotals {
        self.lock_status().totals
    }

    /// Status of the scheduler, the index and every partition exchanged.
    pub fn status(&self) -> AntiEntropyStatus {
        let index = self.services.replica.index();
        let (indexed_keys, suspect_partitions) = (index.keys(), index.suspect_partitions());
        let book = self.lock_status();
        AntiEntropyStatus {
            node: self.services.cluster.local().to_string(),
            enabled: !self.config.interval.is_zero(),
            interval_ms: self.config.interval.as_millis() as u64,
            max_keys_per_sec: self.config.max_keys_per_sec,
            indexed_keys,
            suspect_partitions,
            totals: book.totals,
            partitions: book.partitions.values().cloned().collect(),
        }
    }

    fn lock_status(&self) -> MutexGuard<'_, StatusBook> {
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
