//! Tombstones and their collection (paper section 4.4 leaves deletes to
//! the versioning; SPEC section 2 says when they may go).
//!
//! A delete is a version like any other: a tombstone that supersedes what
//! the deleter saw. A replica that missed the delete and comes back still
//! holds the old value, but the tombstone descends from it, so every merge
//! (read repair, hinted handoff, anti-entropy) keeps the tombstone and drops
//! the value: nothing is resurrected, as long as the tombstone exists.
//!
//! Tombstones cannot live forever, so one is collected when two things
//! hold:
//! 1. every replica in the key's preference list holds exactly the same
//!    deleted state (so no replica can bring the value back), and
//! 2. its grace period (`tombstone_grace_ms`) is over, so that copies
//!    outside the preference list have had time to drain: hints older than
//!    the grace period are dropped instead of delivered (see
//!    [`crate::hints`]), so a stale pre-delete hint cannot arrive after
//!    the tombstone is gone.
//!
//! The replica that finds both true sends `Reap` to every replica at once;
//! each removes its record only if it is still exactly that tombstone (a
//! write that landed meanwhile keeps it). Removing all copies together
//! avoids the ping-pong of replicas re-sending a tombstone to one that
//! already dropped it. A replica that misses the reap keeps its tombstone;
//! anti-entropy then copies it back to the others and a later round reaps
//! it everywhere.
//!
//! Expired values (issue 14) are collected by the same rule: a key whose
//! every version is a tombstone or a value past its expiry reads as absent,
//! and once every replica holds exactly that state and the grace period
//! has run from the latest expiry, it is reaped everywhere. A replica that
//! was away while the key expired still holds a version the expiring write
//! superseded, so merges keep the expiring version and the key stays gone.
//!
//! Finding tombstones without scanning all data: the collector walks
//! only the [`crate::tombstone_index`], which the replica keeps.

use std::sync::Arc;
use std::time::Duration;

use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{Request, Response};
use tracing::{debug, info, warn};

use crate::clock::WallClock;
use crate::services::NodeServices;
use crate::tombstone_index::{self, Cursor};

/// Index entries read at a time.
const INDEX_BATCH: usize = 256;
/// Index entries looked at per round, at most.
const MAX_CHECKED_PER_ROUND: usize = 10_000;
/// Timeout of each remote call of a collection.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What one collection round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollectionRound {
    /// Index entries looked at.
    pub checked: u64,
    /// Tombstones reaped (on every replica that answered).
    pub reaped: u64,
    /// Tombstones kept for now: some replica differs or did not answer.
    pub kept: u64,
}

/// Collects tombstones, every `interval`.
pub struct TombstoneCollector {
    services: NodeServices,
    wall: Arc<dyn WallClock>,
    grace: Duration,
}

impl TombstoneCollector {
    /// A collector for the node's replica, reaping tombstones older than
    /// `grace`.
    pub fn new(services: NodeServices, wall: Arc<dyn WallClock>, grace: Duration) -> Self {
        Self { services, wall, grace }
    }

    /// Runs a round every `interval`, forever (dropped with the node).
    pub async fn run(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            let round = self.round().await;
            if round.reaped > 0 {
                info!(reaped = round.reaped, kept = round.kept, "tombstones collected");
            }
        }
    }

    /// One pass over the tombstone index.
    pub async fn round(&self) -> CollectionRound {
        let mut round = CollectionRound::default();
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = self.wall.now_ms().saturating_sub(grace_ms);
        let store = self.services.replica.store();
        let mut cursor = Cursor::start();
        while (round.checked as usize) < MAX_CHECKED_PER_ROUND {
            let entries = match tombstone_index::page(store, &mut cursor, INDEX_BATCH) {
                Ok(entries) => entries,
                Err(error) => {
                    warn!(%error, "cannot read the tombstone index");
                    return round;
                }
            };
            let full = entries.len() == INDEX_BATCH;
            for entry in entries {
                round.checked += 1;
                let deleted_ms = match entry.deleted_ms {
                    Ok(deleted_ms) => deleted_ms,
                    Err(error) => {
                        warn!(%error, "rewriting an unreadable tombstone index entry");
                        if let Err(error) = self.services.replica.reindex_tombstone(&entry.storage_key) {
                            warn!(%error, "cannot rewrite a tombstone index entry");
                        }
                        continue;
                    }
                };
                if deleted_ms > cutoff_ms {
                    continue;
                }
                match self.collect(&entry.storage_key, cutoff_ms).await {
                    Some(true) => round.reaped += 1,
                    Some(false) => round.kept += 1,
                    None => {}
                }
            }
            if !full {
                return round;
            }
        }
        round
    }

    /// Tries to collect the tombstone (or expired value) at `storage_key`,
    /// dead since before `cutoff_ms`: `Some(true)` when reaped, `Some(false)`
    /// when kept for a later round, `None` when it is not due (any more).
    async fn collect(&self, storage_key: &[u8], cutoff_ms: u64) -> Option<bool> {
        let store = self.services.replica.store();
        let Ok((_, key)) = ObjectKey::from_storage_key(storage_key) else {
            let _ = tombstone_index::forget(store, storage_key);
            return None;
        };
        let local = match self.services.replica.read(&key) {
            Ok(object) => object,
            Err(error) => {
                warn!(%error, bucket = key.bucket(), "cannot read a tombstone");
                return Some(false);
            }
        };
        let Some(dead_from_ms) = local.dead_from_ms() else {
            // Written again since: not a tombstone any more.
            let _ = tombstone_index::forget(store, storage_key);
            return None;
        };
        if dead_from_ms > cutoff_ms {
            // Written again with a later expiry: its own entry says when.
            return None;
        }
        if self.services.cluster.is_moving(&key) {
            // A partition moving between rings may still have an old copy
            // on a replica of the previous ring that a transfer would bring
            // back after the reap: wait until it has settled.
            return Some(false);
        }
        let props = self.services.buckets.get(key.bucket()).ok()?;
        let cluster = &self.services.cluster;
        let replicas = cluster.preference_list(&key, props.n);
        let mut everywhere = true;
        for node in replicas.iter().filter(|node| *node != cluster.local()) {
            let read = self.services.peers.call(node, Request::Read { key: key.clone() }, CALL_TIMEOUT).await;
            match read {
                Ok(Response::Read { object }) if object == local => {}
                Ok(Response::Read { .. } | Response::Unreadable { .. }) => {
                    // Behind (or ahead, or its record is corrupt): give it
                    // this replica's state, and look again next round.
                    everywhere = false;
                    let write = Request::Write {
                        key: key.clone(),
                        object: local.clone(),
                        mode: props.conflict,
                        durable: false,
                    };
                    let _ = self.services.peers.call(node, write, CALL_TIMEOUT).await;
                }
                _ => everywhere = false,
            }
        }
        if !everywhere {
            return Some(false);
        }
        for node in &replicas {
            let reap = Request::Reap { key: key.clone(), tombstone: local.clone() };
            let outcome = if node == cluster.local() {
                self.services.replica.serve(reap).await
            } else {
                self.services.peers.call(node, reap, CALL_TIMEOUT).await
            };
            if let Err(reason) = outcome {
                debug!(%node, %reason, "reap not acknowledged; the tombstone comes back through anti-entropy and is reaped later");
            }
        }
        Some(true)
    }
}
