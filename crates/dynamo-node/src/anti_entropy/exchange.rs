//! One exchange, from the side that starts it: compare this node's tree of
//! one partition with one peer's, top-down, then repair the keys that
//! differ. The peer only answers questions ([`MerkleIndex::serve`]); every
//! decision and every repair is made here, so an exchange is symmetric in
//! effect (both replicas end with the merge) while only one side works.
//!
//! 1. **Trees.** Root, then the children of the inner nodes that differ,
//!    then the leaves ([`TreeWalk`]): three round trips at most, and only
//!    the hashes under differing nodes travel.
//! 2. **Listings.** For the differing leaves, the peer's `(key, digest)`
//!    list, in pages of at most
//!    [`MAX_LISTED_KEYS`](dynamo_core::messages::MAX_LISTED_KEYS) entries; each page is
//!    compared with this node's entries of the same key range
//!    ([`MerkleIndex::compare`]). At most [`MAX_DIFFERENCES_PER_EXCHANGE`]
//!    differing keys are collected; the rest wait for the next exchange.
//! 3. **Repairs**, one key at a time and paced to the configured rate: if
//!    the peer has the key, read its state and *merge* it into the local
//!    replica ([`crate::replica::Replica::merge_write`]); then, unless the
//!    merge equals the peer's state, send the merged state to the peer as an
//!    ordinary replica `Write`, which the peer merges too. Never an
//!    overwrite: a repair can only add what one side had not seen.
//!
//! Keys whose bucket has a smaller n than the partition's exchanges use
//! (see [`super`]) are skipped when the peer is not one of *their* replicas,
//! so anti-entropy never places data on a node that should not hold it.

use std::time::Duration;

use dynamo_core::keys::ObjectKey;
use dynamo_core::merkle::{Difference, ObjectDigest, TreeWalk};
use dynamo_core::messages::{Request, Response};
use dynamo_core::object::VersionedObject;
use dynamo_core::props::ConflictMode;
use dynamo_core::ring::NodeId;
use dynamo_storage::Durability;
use tokio::time::Instant;

use serde::Serialize;

use crate::merkle_index::MerkleIndex;
use crate::services::NodeServices;

/// What one exchange did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeReport {
    /// The partition.
    pub partition: u32,
    /// The other replica.
    pub peer: String,
    /// When it started (wall clock, ms since the Unix epoch).
    pub started_ms: u64,
    /// When it ended.
    pub finished_ms: u64,
    /// Leaves whose hashes differed.
    pub segments_differing: u64,
    /// Keys listed on either side under those leaves and compared.
    pub keys_compared: u64,
    /// Keys whose digests differed (or that one side lacked).
    pub keys_differing: u64,
    /// Differing keys merged on both sides.
    pub keys_repaired: u64,
    /// Differing keys left alone: the peer or this node is not one of their
    /// replicas (a bucket with a smaller n, see the module docs).
    pub keys_skipped: u64,
    /// Bytes of requests sent to the peer (encoded messages).
    pub bytes_sent: u64,
    /// Bytes of responses received from the peer.
    pub bytes_received: u64,
    /// Errors: a failed call ends the exchange, a key that could not be
    /// repaired does not.
    pub errors: u64,
    /// The first few errors, for the operator.
    pub error_messages: Vec<String>,
    /// False when the exchange stopped early (an error, or the cap on
    /// differences per exchange): the next exchange goes on.
    pub complete: bool,
}

/// Most differing keys one exchange collects and repairs. Bounds its memory
/// and, with the repair rate, its length (10,000 keys at the default 1,000
/// keys/s: 10 s); later exchanges of the partition take the rest.
pub const MAX_DIFFERENCES_PER_EXCHANGE: usize = 10_000;
/// Most errors a report keeps (the count is exact).
const MAX_ERRORS_KEPT: usize = 8;

/// Why an exchange step failed.
#[derive(Debug)]
enum StepError {
    /// The peer could not be reached or did not answer in time, or answered
    /// something that is not an answer to the question: the exchange stops.
    Fatal(String),
    /// One key could not be repaired (the peer or this node refused it):
    /// the exchange goes on with the next key.
    Key(String),
}

/// Spaces repairs to at most `max_keys_per_sec`, across exchanges (the
/// scheduler keeps one pacer for the node).
pub(super) struct RepairPacer {
    spacing: Duration,
    next: Option<Instant>,
    budget: std::sync::Arc<crate::pacer::BackgroundBudget>,
}

impl RepairPacer {
    /// A pacer allowing `max_keys_per_sec` repairs per second (at least 1)
    /// at the full `budget` (admission control scales it).
    pub(super) fn new(max_keys_per_sec: u32, budget: std::sync::Arc<crate::pacer::BackgroundBudget>) -> Self {
        Self { spacing: Duration::from_secs(1) / max_keys_per_sec.max(1), next: None, budget }
    }

    /// Waits until the next repair may start.
    async fn wait_turn(&mut self) {
        let now = Instant::now();
        let turn = self.next.map_or(now, |next| next.max(now));
        if turn > now {
            tokio::time::sleep_until(turn).await;
        }
        self.next = Some(turn + self.budget.stretch(self.spacing));
    }
}

/// One exchange in progress.
pub(super) struct Exchange<'a> {
    pub(super) services: &'a NodeServices,
    pub(super) partition: u32,
    pub(super) peer: NodeId,
    /// Deadline of each call to the peer.
    pub(super) timeout: Duration,
    pub(super) report: &'a mut ExchangeReport,
}

impl Exchange<'_> {
    /// Runs the three steps, recording everything in the report.
    pub(super) async fn run(mut self, pacer: &mut RepairPacer) {
        let differences = match self.find_differences().await {
            Ok(differences) => differences,
            Err(StepError::Fatal(reason) | StepError::Key(reason)) => {
                self.report.complete = false;
                self.error(reason);
                return;
            }
        };
        for difference in differences {
            pacer.wait_turn().await;
            match self.repair(difference).await {
                Ok(true) => self.report.keys_repaired += 1,
                Ok(false) => self.report.keys_skipped += 1,
                Err(StepError::Key(reason)) => self.error(reason),
                Err(StepError::Fatal(reason)) => {
                    self.report.complete = false;
                    self.error(reason);
                    return;
                }
            }
        }
    }

    fn index(&self) -> &MerkleIndex {
        self.services.replica.index()
    }

    /// Steps 1 and 2: the keys on which the two replicas differ.
    async fn find_differences(&mut self) -> Result<Vec<Difference<ObjectKey, ObjectDigest>>, StepError> {
        let segments = self.differing_segments().await?;
        self.report.segments_differing = segments.len() as u64;
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let differences = self.differing_keys(&segments).await?;
        self.report.keys_differing = differences.len() as u64;
        Ok(differences)
    }

    /// Step 1: the top-down walk of the two trees.
    async fn differing_segments(&mut self) -> Result<Vec<u16>, StepError> {
        let mut walk = TreeWalk::new();
        while let Some((level, indices)) = walk.request() {
            let indices = indices.to_vec();
            let request = Request::MerkleHashes { partition: self.partition, level, indices: indices.clone() };
            let Response::MerkleHashes { hashes: remote } = self.call(request).await? else {
                return Err(StepError::Fatal("the peer answered a hash request with something else".into()));
            };
            let local = self.index().hashes(self.partition, level, &indices).map_err(fatal)?;
            walk.receive(&local, &remote).map_err(fatal)?;
        }
        Ok(walk.into_differing_segments())
    }

    /// Step 2: page through the peer's listing of `segments`, comparing each
    /// page with the same range here.
    async fn differing_keys(
        &mut self,
        segments: &[u16],
    ) -> Result<Vec<Difference<ObjectKey, ObjectDigest>>, StepError> {
        let mut differences = Vec::new();
        let mut after: Option<ObjectKey> = None;
        loop {
            let request =
                Request::MerkleKeys { partition: self.partition, segments: segments.to_vec(), after: after.clone() };
            let Response::MerkleKeys { entries, more } = self.call(request).await? else {
                return Err(StepError::Fatal("the peer answered a listing request with something else".into()));
            };
            if more && entries.is_empty() {
                return Err(StepError::Fatal("the peer sent an empty page that promised more".into()));
            }
            let through = if more { entries.last().map(|(key, _)| key.clone()) } else { None };
            let limit = MAX_DIFFERENCES_PER_EXCHANGE - differences.len();
            let page = self
                .index()
                .compare(self.partition, segments, after.as_ref(), through.as_ref(), entries, limit)
                .map_err(fatal)?;
            self.report.keys_compared += page.compared as u64;
            differences.extend(page.differences);
            if page.truncated {
                self.report.complete = false;
                return Ok(differences);
            }
            if !more {
                return Ok(differences);
            }
            after = through;
        }
    }

    /// Step 3 for one key. Returns whether it was repaired (`false`: skipped
    /// because the peer or this node is not one of the key's replicas).
    async fn repair(&mut self, difference: Difference<ObjectKey, ObjectDigest>) -> Result<bool, StepError> {
        let key = difference.key;
        let props = self.services.buckets.get(key.bucket()).map_err(|error| StepError::Key(error.to_string()))?;
        let replicas = self.services.cluster.preference_list(&key, props.n);
        if !replicas.contains(self.services.cluster.local()) || !replicas.contains(&self.peer) {
            return Ok(false);
        }
        let remote = match difference.remote {
            Some(_) => self.read_remote(&key).await?,
            None => None,
        };
        let replica = &self.services.replica;
        let merged = match &remote {
            Some(object) => replica.merge_write(&key, object, props.conflict, Durability::Buffered).await,
            None => replica.read(&key),
        }
        .map_err(|error| StepError::Key(format!("{}: {error}", describe(&key))))?;
        if remote.as_ref() != Some(&merged) && ObjectDigest::of(&merged).is_some() {
            self.write_remote(&key, merged, props.conflict).await?;
        }
        Ok(true)
    }

    /// The peer's state of `key`; `None` when its stored record is
    /// unreadable (corrupt), which the repair then overwrites like a
    /// missing one.
    async fn read_remote(&mut self, key: &ObjectKey) -> Result<Option<VersionedObject>, StepError> {
        match self.call_for_key(key, Request::Read { key: key.clone() }).await? {
            Response::Read { object } => Ok(Some(object)),
            Response::Unreadable { .. } => Ok(None),
            _ => Err(StepError::Fatal("the peer answered a read with something else".into())),
        }
    }

    async fn write_remote(
        &mut self,
        key: &ObjectKey,
        object: VersionedObject,
        mode: ConflictMode,
    ) -> Result<(), StepError> {
        let request = Request::Write { key: key.clone(), object, mode, durable: false };
        match self.call_for_key(key, request).await? {
            Response::Written { .. } => Ok(()),
            _ => Err(StepError::Fatal("the peer answered a write with something else".into())),
        }
    }

    /// A call about one key: the peer refusing it is that key's problem.
    async fn call_for_key(&mut self, key: &ObjectKey, request: Request) -> Result<Response, StepError> {
        self.call(request).await.map_err(|error| match error {
            StepError::Key(reason) => StepError::Key(format!("{}: {reason}", describe(key))),
            fatal => fatal,
        })
    }

    /// Sends one request to the peer, counting the bytes both ways (as
    /// encoded on the wire, without the RPC framing).
    async fn call(&mut self, request: Request) -> Result<Response, StepError> {
        self.report.bytes_sent += request.encode().len() as u64;
        let outcome = self.services.peers.call(&self.peer, request, self.timeout).await;
        let response = outcome.map_err(|reason| StepError::Fatal(format!("{}: {reason}", self.peer)))?;
        self.report.bytes_received += response.encode().len() as u64;
        match response {
            Response::Failed { reason } => Err(StepError::Key(format!("{} refused: {reason}", self.peer))),
            other => Ok(other),
        }
    }

    fn error(&mut self, reason: String) {
        self.report.errors += 1;
        if self.report.error_messages.len() < MAX_ERRORS_KEPT {
            self.report.error_messages.push(reason);
        }
    }
}

fn fatal(error: impl std::fmt::Display) -> StepError {
    StepError::Fatal(error.to_string())
}

fn describe(key: &ObjectKey) -> String {
    format!("{}/{}", key.bucket(), String::from_utf8_lossy(key.key()))
}
