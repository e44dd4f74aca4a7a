//! Partition transfers (paper section 4.9): after a commit, each node that
//! became a replica of a partition copies it from the partition's previous
//! replicas, then records the copy as done in the gossiped cluster state.
//! What is copied and why it keeps every acknowledged write is decided in
//! the pure core ([`dynamo_core::transition`]); this module moves the bytes.
//!
//! **The pull.** For each of its pending pulls, in partition order, the
//! node asks every source (the partition's replicas under the previous
//! ring, removed nodes excepted) for pages of objects in storage-key order
//! (`TransferPage`, at most 512 objects or about 1 MiB each) and *merges*
//! each object into its own replica, like anti-entropy would: never an
//! overwrite, so writes that reach it meanwhile (writes go to both rings'
//! replicas during the move) are kept. Only keys of buckets whose
//! replicas now include this node are kept: a bucket of smaller n may not
//! belong here.
//!
//! **Sources know the new ring first.** A page request names the epoch
//! of the transfer, and a source still on an older ring refuses it until
//! gossip brings it the new one. A source that still routed by the old
//! ring alone could otherwise coordinate a write after its copy was taken
//! and have it acknowledged by old replicas only; once it knows the new
//! ring, its writes need W of the new replicas too, and any write it
//! coordinated before was applied to its own copy first, so the copy,
//! which starts after, carries it.
//!
//! **Resumable.** After each page the last key copied from that source is
//! saved in the `meta` namespace (buffered, after the page's objects, so a
//! crash that loses the objects loses the cursor too). A restarted puller
//! goes on from there; a source that fails or is down is retried from its
//! cursor at the next round. A pull is reported done only after an fsync
//! of everything it copied: a completion others can see is never ahead of
//! the data on disk.
//!
//! **Throttled** (paper section 6.5): pages are spaced so that copying stays
//! below `transfer_max_bytes_per_sec`, leaving the disk and network to
//! foreground requests; pulls run one at a time.
//!
//! **Dropping what moved away.** Once a ring change has settled (no pull
//! pending anywhere), a node deletes its copies of the partitions it no
//! longer replicates: every write acknowledged during the move reached W
//! of the new replicas (writes needed W in both rings' lists), and every
//! earlier one was copied. Kept, those copies would come back the next
//! time the node replicates the partition, with deletes whose tombstones
//! were collected meanwhile among them. The node waits until the settled
//! ring has stayed committed for a quiet period of several gossip rounds,
//! so that a competing commit of the same epoch made elsewhere reaches it
//! first ([`PurgeGate`]). If the node becomes a replica of the partition
//! again before it is done, the purge stops (the ring changed), and its
//! pull copies the partition back from the replicas.
//!
//! **Leaving.** A node marked `leaving` that owns nothing in the committed
//! ring waits until no pending pull names it as a source, then marks itself
//! `removed`, pushes that to the members and stops ([`Transfers::left`]).
//!
//! **Progress** is visible in `GET /admin/transfers` ([`TransfersReport`]):
//! the cluster-wide pending pulls from the gossiped state, and this node's
//! own pulls with keys, bytes and rate; and in the `dynamo_transfer*`
//! metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dynamo_core::codec::encode_object;
use dynamo_core::keys::ObjectKey;
use dynamo_core::membership::{MemberStatus, ring_digest};
use dynamo_core::messages::{Request, Response};
use dynamo_core::object::VersionedObject;
use dynamo_core::ring::NodeId;
use dynamo_core::transition::Pull;
use dynamo_storage::{Durability, Namespace, StorageError};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::lock;
use crate::membership::Membership;
use crate::services::NodeServices;

/// Prefix of the saved cursors in the `meta` namespace: `transfer/ | epoch
/// u64 | partition u32 | source id`.
const CURSOR_PREFIX: &[u8] = b"transfer/";
/// Most pulls the report lists (the counts are exact).
const MAX_REPORTED_PULLS: usize = 256;
/// Objects removed per batch when a partition that moved away is purged.
const PURGE_BATCH: usize = 1024;

/// Settings of the transfer service.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// Most bytes copied per second by this node (at least 1).
    pub max_bytes_per_sec: u64,
    /// How often the node looks for pulls to do (and retries failed ones).
    pub poll_interval: Duration,
    /// Timeout of each page request.
    pub call_timeout: Duration,
    /// How long a settled ring change must stay the committed ring before
    /// this node deletes the partitions that moved away (see
    /// [`PurgeGate`]).
    pub purge_quiet: Duration,
}

/// Decides when a node may delete the partitions that moved away from it.
///
/// Commits are not coordinated: two nodes that commit different plans at
/// the same moment make two rings of the same epoch, and gossip settles on
/// one of them (the higher digest). A node that saw the other ring first
/// may find it settled (its pulls done) before the winner arrives, and
/// deleting by the losing ring could drop a partition the winning ring
/// still gives it, with no pull to bring the data back. So the node deletes
/// only after the same ring has been committed and settled, without a
/// break, for a quiet period of several gossip rounds: long enough for a
/// competing commit to have reached it.
#[derive(Debug, Default)]
pub struct PurgeGate {
    /// The settled ring (its digest) and since when it has been seen so.
    settled: Option<([u8; 32], Instant)>,
}

impl PurgeGate {
    /// Whether deleting is allowed now, given the digest of the committed
    /// ring when its change has settled (`None`: pulls are pending).
    pub fn open(&mut self, settled_ring: Option<[u8; 32]>, now: Instant, quiet: Duration) -> bool {
        match (settled_ring, self.settled) {
            (None, _) => {
                self.settled = None;
                false
            }
            (Some(digest), Some((seen, since))) if seen == digest => now.duration_since(since) >= quiet,
            (Some(digest), _) => {
                self.settled = Some((digest, now));
                quiet.is_zero()
            }
        }
    }
}

/// One pull of this node, as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PullProgress {
    /// The partition.
    pub partition: u32,
    /// `waiting`, `copying`, `done` or `retrying`.
    pub state: &'static str,
    /// The nodes it copies from.
    pub sources: Vec<String>,
    /// Sources completely copied.
    pub sources_done: usize,
    /// Objects copied (merged) so far.
    pub keys: u64,
    /// Bytes received so far.
    pub bytes: u64,
    /// Seconds spent copying.
    pub seconds: f64,
    /// Bytes per second while copying.
    pub bytes_per_sec: f64,
    /// Why the last attempt stopped, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /admin/transfers`.
#[derive(Clone, Debug, Serialize)]
pub struct TransfersReport {
    /// The node reporting.
    pub node: String,
    /// The committed epoch.
    pub epoch: u64,
    /// The epoch being left, while partitions still move.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_from_epoch: Option<u64>,
    /// Pulls of the current change in the whole cluster.
    pub total: usize,
    /// Of which still pending (cluster-wide, as this node's state says).
    pub pending: usize,
    /// Pending pulls per node.
    pub pending_by_node: BTreeMap<String, usize>,
    /// Partitions whose reads still go to the previous replicas.
    pub unsettled_partitions: usize,
    /// This node's pulls of the current change (at most 256 listed).
    pub local: Vec<PullProgress>,
    /// Totals of this node since it started.
    pub totals: TransferTotals,
    /// Whether this node is leaving (and stops once nothing is pulled from it).
    pub leaving: bool,
}

/// Counters since the node started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransferTotals {
    /// Pulls completed.
    pub pulls_completed: u64,
    /// Objects copied.
    pub keys: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Page requests that failed.
    pub failures: u64,
    /// Objects deleted from partitions that moved away from this node.
    pub purged: u64,
}

/// What the transfer service works with.
pub struct TransferParts {
    /// The node's replica, bucket props, cluster view and peers.
    pub services: NodeServices,
    /// The membership service, to record completed pulls.
    pub membership: Arc<Membership>,
    /// Settings.
    pub config: TransferConfig,
}

/// The transfer service (see the module documentation).
pub struct Transfers {
    services: NodeServices,
    membership: Arc<Membership>,
    config: TransferConfig,
    /// This node's pulls of the epoch in `progress_epoch`.
    progress: Mutex<(u64, BTreeMap<u32, PullProgress>)>,
    pulls_completed: AtomicU64,
    keys: AtomicU64,
    bytes: AtomicU64,
    failures: AtomicU64,
    /// Turns true once this node has left the cluster.
    left: watch::Sender<bool>,
    /// When the partitions that moved away may be deleted.
    purge_gate: Mutex<PurgeGate>,
    /// Digest of the last ring whose moved-away partitions this node purged.
    purged_ring: Mutex<Option<[u8; 32]>>,
    /// Objects purged since start.
    purged: AtomicU64,
}

/// Why one pull stopped.
#[derive(Debug)]
struct PullError(String);

impl Transfers {
    /// The service over `parts`.
    pub fn new(parts: TransferParts) -> Self {
        let TransferParts { services, membership, config } = parts;
        Self {
            services,
            membership,
            config,
            progress: Mutex::new((0, BTreeMap::new())),
            pulls_completed: AtomicU64::new(0),
            keys: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            left: watch::channel(false).0,
            purge_gate: Mutex::new(PurgeGate::default()),
            purged_ring: Mutex::new(None),
            purged: AtomicU64::new(0),
        }
    }

    /// Completes once this node has left the cluster (a graceful leave
    /// finished): whoever runs the node then stops it.
    pub fn left(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.left.subscribe();
        async move {
            let _ = receiver.wait_for(|left| *left).await;
        }
    }

    /// Runs forever: every poll interval, does this node's pending pulls
    /// and checks whether a leave has finished.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.round().await;
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// One round: every pending pull of this node, one at a time.
    pub async fn round(&self) {
        let local = self.membership.cluster().local().clone();
        let view = self.membership.cluster().view();
        let epoch = view.state().epoch();
        let mine: Vec<Pull> = view.state().pending_pulls().into_iter().filter(|pull| pull.node == local).collect();
        let sources = |partition| {
            let mut sources = view.state().pull_sources(partition);
            sources.retain(|source| *source != local);
            sources
        };
        self.track(epoch, &mine, sources);
        for pull in mine {
            if self.membership.cluster().view().state().epoch() != epoch {
                break;
            }
            match self.pull(epoch, pull.partition).await {
                Ok(()) => {}
                Err(PullError(reason)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    debug!(partition = pull.partition, %reason, "partition transfer will be retried");
                    self.set_progress(pull.partition, |progress| {
                        progress.state = "retrying";
                        progress.last_error = Some(reason);
                    });
                }
            }
        }
        self.purge_moved_away().await;
        self.leave_if_done().await;
    }

    /// After a ring change has settled everywhere and stayed so for the
    /// quiet period ([`PurgeGate`]), deletes this node's copies of every
    /// partition it does not replicate under the committed ring (see the
    /// module documentation): those that moved away in this change, and any
    /// left by earlier changes committed in quick succession. Once per
    /// ring; stops if the ring changes meanwhile.
    async fn purge_moved_away(&self) {
        let local = self.membership.cluster().local().clone();
        let view = self.membership.cluster().view();
        let state = view.state();
        let Some(transition) = state.transition() else { return };
        let digest = ring_digest(state.ring());
        let settled = state.pending_pulls().is_empty().then_some(digest);
        let open = lock(&self.purge_gate).open(settled, Instant::now(), self.config.purge_quiet);
        if !open || *lock(&self.purged_ring) == Some(digest) {
            return;
        }
        // The widest n in use, now or at the commit: a node that is among
        // the first n of a partition for any bucket keeps it.
        let in_use = match self.services.buckets.largest_n() {
            Ok(n) => n,
            Err(error) => {
                warn!(%error, "cannot read the bucket props; partitions that moved away are kept for now");
                return;
            }
        };
        let widest = usize::from(transition.factors().last().copied().unwrap_or(1).max(in_use));
        let moved_away: Vec<u32> = (0..state.ring().partitions())
            .filter(|partition| !state.ring().preference_list(*partition, widest).contains(&local))
            .collect();
        let replica = &self.services.replica;
        for partition in moved_away {
            loop {
                if self.membership.cluster().view().state().ring() != state.ring() {
                    return;
                }
                match replica.purge_partition(partition, PURGE_BATCH) {
                    Ok(removed) => {
                        self.purged.fetch_add(removed as u64, Ordering::Relaxed);
                        if removed < PURGE_BATCH {
                            break;
                        }
                    }
                    Err(error) => {
                        warn!(partition, %error, "cannot delete a partition this node no longer replicates; retrying");
                        return;
                    }
                }
                tokio::task::yield_now().await;
            }
        }
        *lock(&self.purged_ring) = Some(digest);
        info!(epoch = state.epoch(), "deleted the copies of the partitions that moved away from this node");
    }

    /// Copies `partition` from each of its sources, then records the pull.
    async fn pull(&self, epoch: u64, partition: u32) -> Result<(), PullError> {
        let local = self.membership.cluster().local().clone();
        let sources = self.membership.cluster().view().state().pull_sources(partition);
        let started = Instant::now();
        self.set_progress(partition, |progress| progress.state = "copying");
        for (copied, source) in sources.iter().filter(|source| **source != local).enumerate() {
            self.copy_from(epoch, partition, source, started).await?;
            self.set_progress(partition, |progress| progress.sources_done = copied + 1);
        }
        // Everything copied is on disk before anyone learns the pull is done.
        let store = self.services.replica.store();
        store.sync().await.map_err(|error| PullError(format!("syncing the copied data: {error}")))?;
        let done = Pull { partition, node: local };
        self.membership
            .update(|state| Ok(if state.epoch() == epoch { state.with_pull_done(&done) } else { None }))
            .await
            .map_err(|error| PullError(format!("recording the completed pull: {error}")))?;
        self.forget_cursors(epoch, partition);
        self.pulls_completed.fetch_add(1, Ordering::Relaxed);
        self.set_progress(partition, |progress| {
            progress.state = "done";
            progress.last_error = None;
        });
        info!(partition, epoch, sources = sources.len(), "partition transfer complete");
        Ok(())
    }

    /// Copies every page of `partition` from `source`, from its saved
    /// cursor on.
    async fn copy_from(&self, epoch: u64, partition: u32, source: &NodeId, started: Instant) -> Result<(), PullError> {
        let cursor_key = cursor_key(epoch, partition, source);
        let store = self.services.replica.store().clone();
        // An unreadable cursor starts the copy over: merges are idempotent.
        let mut after = match store.get(Namespace::Meta, &cursor_key) {
            Ok(None) => None,
            Ok(Some(bytes)) if bytes.is_empty() => return Ok(()),
            Ok(Some(bytes)) => match ObjectKey::from_storage_key(&bytes) {
                Ok((_, key)) => Some(key),
                Err(error) => {
                    warn!(partition, %source, %error, "transfer cursor unreadable; copying from the start");
                    None
                }
            },
            Err(error @ StorageError::Corruption { .. }) => {
                warn!(partition, %source, %error, "transfer cursor unreadable; copying from the start");
                None
            }
            Err(error) => return Err(PullError(format!("reading the transfer cursor: {error}"))),
        };
        let partitions = self.services.cluster.ring().partitions();
        loop {
            let request = Request::TransferPage { partition, epoch, after: after.clone() };
            let answer = self.services.peers.call(source, request, self.config.call_timeout).await;
            let (entries, more) = match answer {
                Ok(Response::TransferPage { entries, more }) => (entries, more),
                Ok(Response::Failed { reason }) | Err(reason) => {
                    return Err(PullError(format!("page from {source}: {reason}")));
                }
                Ok(other) => return Err(PullError(format!("page from {source}: unexpected answer {other:?}"))),
            };
            if more && entries.is_empty() {
                return Err(PullError(format!("{source} answered an empty page that claims more follow")));
            }
            let mut page_bytes = 0u64;
            for (key, object) in &entries {
                if key.partition(partitions) != partition {
                    return Err(PullError(format!("{source} sent a key of another partition")));
                }
                page_bytes += (key.key().len() + key.bucket().len() + encode_object(object).len()) as u64;
                self.merge(key, object).await?;
            }
            after = entries.last().map(|(key, _)| key.clone()).or(after);
            // An empty cursor marks a source as completely copied.
            let saved = match (&after, more) {
                (Some(key), true) => key.storage_key(partitions),
                _ => Vec::new(),
            };
            store
                .put_buffered(Namespace::Meta, &cursor_key, &saved)
                .map_err(|error| PullError(format!("saving the transfer cursor: {error}")))?;
            self.keys.fetch_add(entries.len() as u64, Ordering::Relaxed);
            self.bytes.fetch_add(page_bytes, Ordering::Relaxed);
            self.set_progress(partition, |progress| {
                progress.keys += entries.len() as u64;
                progress.bytes += page_bytes;
                progress.seconds = started.elapsed().as_secs_f64();
                progress.bytes_per_sec = progress.bytes as f64 / progress.seconds.max(0.001);
            });
            self.throttle(page_bytes).await;
            if !more {
                return Ok(());
            }
        }
    }

    /// Merges one copied object, if its bucket's replicas include this node.
    async fn merge(&self, key: &ObjectKey, object: &VersionedObject) -> Result<(), PullError> {
        let props = self
            .services
            .buckets
            .get(key.bucket())
            .map_err(|error| PullError(format!("bucket props of {}: {error}", key.bucket())))?;
        let replicas = self.services.cluster.preference_list(key, props.n);
        if !replicas.contains(self.services.cluster.local()) {
            return Ok(());
        }
        self.services
            .replica
            .merge_write(key, object, props.conflict, Durability::Buffered)
            .await
            .map(|_| ())
            .map_err(|error| PullError(format!("storing {}/{}: {error}", key.bucket(), key_text(key))))
    }

    /// Sleeps as long as copying `bytes` takes at the configured rate.
    async fn throttle(&self, bytes: u64) {
        let rate = self.config.max_bytes_per_sec.max(1);
        // Admission control (`crate::admission`) stretches the pause when
        // the foreground is slow.
        let wait = self.services.background.stretch(Duration::from_secs_f64(bytes as f64 / rate as f64));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Removes the cursors of a completed pull.
    fn forget_cursors(&self, epoch: u64, partition: u32) {
        let store = self.services.replica.store();
        let mut prefix = CURSOR_PREFIX.to_vec();
        prefix.extend_from_slice(&epoch.to_be_bytes());
        prefix.extend_from_slice(&partition.to_be_bytes());
        match store.scan_records(Namespace::Meta, &prefix, &prefix, 1024) {
            Ok(rows) => {
                for (key, _) in rows {
                    let _ = store.remove(Namespace::Meta, &key);
                }
            }
            Err(error) => warn!(partition, %error, "cannot clear the cursors of a finished transfer"),
        }
    }

    /// A leaving node that owns nothing and is no longer a source of any
    /// pending pull marks itself removed and stops.
    async fn leave_if_done(&self) {
        let local = self.membership.cluster().local().clone();
        let view = self.membership.cluster().view();
        let state = view.state();
        let leaving = state.member(&local).is_some_and(|member| member.status == MemberStatus::Leaving);
        if !leaving || state.ring().node(&local).is_some() {
            return;
        }
        let still_a_source =
            state.pending_pulls().iter().any(|pull| state.pull_sources(pull.partition).contains(&local));
        if still_a_source {
            return;
        }
        match self.membership.update(|state| Ok(state.with_status(&local, MemberStatus::Removed))).await {
            Ok((view, _)) => {
                self.membership.push_to_members(&view).await;
                info!("left the cluster: every partition of this node has moved to its new owners; stopping");
                let _ = self.left.send(true);
            }
            Err(error) => warn!(%error, "cannot record that this node has left"),
        }
    }

    /// Starts tracking this node's pulls of `epoch` (a new epoch replaces
    /// the old ones).
    fn track(&self, epoch: u64, mine: &[Pull], sources: impl Fn(u32) -> Vec<NodeId>) {
        let mut progress = self.lock_progress();
        if progress.0 != epoch {
            *progress = (epoch, BTreeMap::new());
        }
        for pull in mine {
            progress.1.entry(pull.partition).or_insert_with(|| PullProgress {
                partition: pull.partition,
                state: "waiting",
                sources: sources(pull.partition).iter().map(ToString::to_string).collect(),
                sources_done: 0,
                keys: 0,
                bytes: 0,
                seconds: 0.0,
                bytes_per_sec: 0.0,
                last_error: None,
            });
        }
    }

    fn set_progress(&self, partition: u32, change: impl FnOnce(&mut PullProgress)) {
        if let Some(progress) = self.lock_progress().1.get_mut(&partition) {
            change(progress);
        }
    }

    /// Counters since start.
    pub fn totals(&self) -> TransferTotals {
        TransferTotals {
            pulls_completed: self.pulls_completed.load(Ordering::Relaxed),
            keys: self.keys.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
        }
    }

    /// The report of `GET /admin/transfers`.
    pub fn report(&self) -> TransfersReport {
        let local = self.membership.cluster().local().clone();
        let view = self.membership.cluster().view();
        let state = view.state();
        let (total, moving_from_epoch) = match state.transition() {
            Some(transition) => (transition.pulls(state.ring()).len(), Some(transition.from_ring().version())),
            None => (0, None),
        };
        let pending = state.pending_pulls();
        let mut pending_by_node: BTreeMap<String, usize> = BTreeMap::new();
        for pull in &pending {
            *pending_by_node.entry(pull.node.to_string()).or_default() += 1;
        }
        let progress = self.lock_progress();
        let local_pulls: Vec<PullProgress> = if progress.0 == state.epoch() {
            progress.1.values().take(MAX_REPORTED_PULLS).cloned().collect()
        } else {
            Vec::new()
        };
        TransfersReport {
            node: local.to_string(),
            epoch: state.epoch(),
            moving_from_epoch: moving_from_epoch.filter(|_| !pending.is_empty()),
            total,
            pending: pending.len(),
            pending_by_node,
            unsettled_partitions: pending.iter().map(|pull| pull.partition).collect::<BTreeSet<u32>>().len(),
            local: local_pulls,
            totals: self.totals(),
            leaving: state.member(&local).is_some_and(|member| member.status == MemberStatus::Leaving),
        }
    }

    fn lock_progress(&self) -> MutexGuard<'_, (u64, BTreeMap<u32, PullProgress>)> {
        lock(&self.progress)
    }
}

/// `transfer/ | epoch | partition | source`.
fn cursor_key(epoch: u64, partition: u32, source: &NodeId) -> Vec<u8> {
    let mut key = CURSOR_PREFIX.to_vec();
    key.extend_from_slice(&epoch.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(source.as_str().as_bytes());
    key
}

fn key_text(key: &ObjectKey) -> String {
    String::from_utf8_lossy(key.key()).into_owned()
}

#[cfg(test)]
mod purge_gate_tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(10);

    #[test]
    fn the_gate_opens_once_the_same_ring_stayed_settled_for_the_quiet_period() {
        let (mut gate, start) = (PurgeGate::default(), Instant::now());
        let ring = Some([1; 32]);
        assert!(!gate.open(ring, start, QUIET), "just settled");
        assert!(!gate.open(ring, start + QUIET / 2, QUIET));
        assert!(gate.open(ring, start + QUIET, QUIET));
    }

    #[test]
    fn a_competing_ring_of_the_same_epoch_restarts_the_wait() {
        let (mut gate, start) = (PurgeGate::default(), Instant::now());
        assert!(!gate.open(Some([1; 32]), start, QUIET));
        assert!(!gate.open(Some([2; 32]), start + QUIET, QUIET), "the winner arrived: wait again");
        assert!(gate.open(Some([2; 32]), start + 2 * QUIET, QUIET));
    }

    #[test]
    fn pending_pulls_restart_the_wait() {
        let (mut gate, start) = (PurgeGate::default(), Instant::now());
        let ring = Some([1; 32]);
        assert!(!gate.open(ring, start, QUIET));
        assert!(!gate.open(None, start + QUIET, QUIET), "a pull appeared (a merged transition)");
        assert!(!gate.open(ring, start + QUIET, QUIET));
        assert!(gate.open(ring, start + 2 * QUIET, QUIET));
    }

    #[test]
    fn no_quiet_period_opens_at_once() {
        assert!(PurgeGate::default().open(Some([1; 32]), Instant::now(), Duration::ZERO));
    }
}
