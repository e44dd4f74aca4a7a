//! The coordinator: turns a client request into replica operations and
//! decides, by counting answers, whether it succeeded (paper section 4.5).
//!
//! - It resolves the per-request N/R/W/DW against the bucket's props.
//! - It takes the key's preference list from the ring: the first N
//!   distinct nodes clockwise from the key's partition.
//! - **Reads** go to all N replicas at once; the client is answered once R
//!   have replied, with the merge of their versions. The coordinator then
//!   keeps listening (bounded) for the others and sends the merged version
//!   to every replica that was stale or missing it: *read repair* (paper
//!   section 5).
//! - **Writes** are coordinated by a replica: it applies the write to its own
//!   copy first (issuing the new version's dot with its own actor id, which
//!   only a replica may do, so dots stay unique), then sends the resulting
//!   version set to the other N-1 replicas and answers after W
//!   acknowledgements of which DW are durable. A node outside the key's
//!   preference list forwards the write to a replica, preferring the one
//!   that answered the last read of the key fastest (paper section 5,
//!   read-your-writes).
//! - A quorum that cannot be met is an error saying how many replicas
//!   answered and why the others did not.
//!
//! The counting itself is pure ([`dynamo_core::quorum`]); this module only
//! sends, waits and times out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{ForwardOptions, ForwardedError, Request, Response};
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{BucketProps, ConflictMode, parse_quorum};
use dynamo_core::quorum::{Progress, QuorumReport, ReadQuorum, WriteQuorum};
use dynamo_core::ring::NodeId;
use dynamo_core::version::VersionVector;
use dynamo_storage::Durability;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::buckets::{PropsPatch, PropsStoreError};
use crate::cluster::nodes_of;
use crate::config::MAX_REQUEST_TIMEOUT_MS;
use crate::peers::Peers;
use crate::replica::{Replica, WriteStamp};
use crate::services::NodeServices;

/// How long after answering a read the coordinator keeps waiting for the
/// remaining replicas, to repair them.
const READ_REPAIR_WAIT: Duration = Duration::from_secs(2);
/// Keys whose fastest reader is remembered (for choosing write
/// coordinators). Bounded: the map is cleared when full.
const FASTEST_READER_MEMORY: usize = 16 * 1024;

/// Per-request overrides, as the client sent them (unparsed text).
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    /// `r`: a number or one|quorum|all|default.
    pub r: Option<String>,
    /// `w`.
    pub w: Option<String>,
    /// `dw`.
    pub dw: Option<String>,
    /// `n`: a number not above the bucket's n.
    pub n: Option<String>,
    /// `timeout_ms`.
    pub timeout_ms: Option<String>,
    /// The greatest version timestamp the client's read saw (carried in its
    /// context; 0 without one). Writes are stamped above it.
    pub context_timestamp: u64,
    /// The exact timestamp for the new version, when a forwarding node
    /// chose it (see [`ForwardOptions::stamp`]).
    pub stamp: Option<Hlc>,
}

impl From<ForwardOptions> for RequestOptions {
    /// The options a forwarding node relayed (forwarded requests are
    /// writes, so there is no `r`).
    fn from(options: ForwardOptions) -> Self {
        RequestOptions {
            r: None,
            w: options.w,
            dw: options.dw,
            n: options.n,
            timeout_ms: options.timeout_ms,
            context_timestamp: options.seen_timestamp,
            stamp: (options.stamp != 0).then_some(Hlc(options.stamp)),
        }
    }
}

/// What one replica said, for the diagnostics of a failed quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaOutcome {
    /// The replica's node id.
    pub node: String,
    /// `ok`, `failed`, `missing` or `pending`.
    pub status: &'static str,
    /// Why, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a fallback node (sloppy quorum): the replica whose write it was
    /// asked to hold as a hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint_for: Option<String>,
}

/// Details of a quorum that was not reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuorumFailure {
    /// `get`, `put` or `delete`.
    pub operation: &'static str,
    /// Replicas the key has (n in effect).
    pub n: u8,
    /// Answers needed (R, or W).
    pub needed: u8,
    /// Durable answers needed (DW; writes only).
    pub needed_durable: u8,
    /// Replicas that answered successfully.
    pub answered: u8,
    /// Every replica asked or missing, and what became of it.
    pub replicas: Vec<ReplicaOutcome>,
    /// What an operator or client can do about it.
    pub hint: String,
}

/// Why a request failed.
#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// The request is malformed (client error).
    #[error("{0}")]
    BadRequest(String),
    /// Not enough replicas answered.
    #[error("quorum not reached for {}: {} of {} needed replicas answered", .0.operation, .0.answered, .0.needed)]
    Unavailable(Box<QuorumFailure>),
    /// A forwarded request failed at the coordinating replica; its HTTP
    /// status and body are relayed as they are.
    #[error("forwarded request failed with status {status}: {body}")]
    Forwarded {
        /// HTTP status from the coordinating replica.
        status: u16,
        /// Its body.
        body: String,
    },
    /// The bucket's props could not be read.
    #[error("bucket props unavailable: {0}")]
    Props(#[from] PropsStoreError),
    /// A forwarded write reached a node that does not replicate the key in
    /// its own view of the ring (the two nodes' views differ for a moment
    /// during a membership change): the forwarder tries another replica.
    #[error("{0}")]
    NotAReplica(String),
}

impl CoordinatorError {
    /// The status (numbered as in HTTP) and JSON body that answer a client
    /// for this error. It is also the wire form of an error relayed by a
    /// replica that coordinated a forwarded write ([`ForwardedError`]), so
    /// the client of the forwarding node reads exactly what the
    /// coordinating node's client would have read.
    pub fn status_and_body(&self) -> (u16, String) {
        match self {
            CoordinatorError::BadRequest(message) => (400, json!({ "error": message }).to_string()),
            CoordinatorError::Unavailable(failure) => {
                let mut body = json!(failure.as_ref());
                body["error"] = json!(format!(
                    "quorum not reached: {} of {} required replicas answered",
                    failure.answered, failure.needed
                ));
                (503, body.to_string())
            }
            CoordinatorError::Forwarded { status, body } => (*status, body.clone()),
            CoordinatorError::Props(PropsStoreError::Invalid(message)) => {
                (400, json!({ "error": message }).to_string())
            }
            CoordinatorError::Props(other) => (500, json!({ "error": other.to_string() }).to_string()),
            CoordinatorError::NotAReplica(message) => (
                503,
                json!({ "error": message, "hint": "retry: the new ring reaches every node within seconds" })
                    .to_string(),
            ),
        }
    }

    /// This error as a coordinating replica relays it to the forwarder.
    pub fn to_forwarded(&self) -> ForwardedError {
        let (status, body) = self.status_and_body();
        ForwardedError { status, body }
    }
}

/// Resolved settings of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Bucket props with the request's overrides applied.
    pub props: BucketProps,
    /// Deadline for the request.
    pub timeout: Duration,
}

/// Coordinates client requests on this node.
pub struct Coordinator {
    services: NodeServices,
    default_timeout: Duration,
    fastest_reader: Mutex<HashMap<ObjectKey, NodeId>>,
}

impl Coordinator {
    /// A coordinator over the node's `services`; requests that set no
    /// timeout get `default_timeout`.
    pub fn new(services: NodeServices, default_timeout: Duration) -> Self {
        Self { services, default_timeout, fastest_reader: Mutex::new(HashMap::new()) }
    }

    /// The bucket's props as this node knows them (its own, or the
    /// defaults).
    pub fn props(&self, bucket: &str) -> Result<BucketProps, PropsStoreError> {
        self.services.buckets.get(bucket)
    }

    /// Resolves the request's options against the bucket's props.
    pub fn resolve(&self, bucket: &str, options: &RequestOptions) -> Result<Effective, CoordinatorError> {
        let mut props = self.services.buckets.get(bucket)?;
        if let Some(text) = &options.n {
            let n: u8 =
                text.parse().map_err(|_| CoordinatorError::BadRequest(format!("n={text:?} is not a number")))?;
            if n == 0 || n > props.n {
                return Err(CoordinatorError::BadRequest(format!(
                    "n={n} is out of range; it must be between 1 and the bucket's n={}",
                    props.n
                )));
            }
            props.n = n;
            props.r = props.r.min(n);
            props.w = props.w.min(n);
            props.dw = props.dw.min(props.w);
        }
        let bad = |error: dynamo_core::props::PropsError| CoordinatorError::BadRequest(error.to_string());
        if let Some(text) = &options.r {
            props.r = parse_quorum("r", text, props.n, props.r).map_err(bad)?;
        }
        if let Some(text) = &options.w {
            props.w = parse_quorum("w", text, props.n, props.w).map_err(bad)?;
        }
        if let Some(text) = &options.dw {
            props.dw = parse_quorum("dw", text, props.n, props.dw).map_err(bad)?;
        }
        props.validate().map_err(bad)?;
        let timeout = match &options.timeout_ms {
            None => self.default_timeout,
            Some(text) => parse_timeout(text)?,
        };
        // Paired with the validation above and in BucketProps: the
        // counting below relies on it.
        assert!(
            props.r <= props.n && props.w <= props.n && props.dw <= props.w,
            "resolved quorums exceed n: {props:?}"
        );
        Ok(Effective { props, timeout })
    }

    /// Reads `key`: waits for R replies and returns their merge; repairs
    /// stale replicas in the background.
    pub async fn get(&self, key: &ObjectKey, options: &RequestOptions) -> Result<VersionedObject, CoordinatorError> {
        let Effective { props, timeout } = self.resolve(key.bucket(), options)?;
        let replicas = self.services.cluster.read_list(key, props.n);
        assert!(replicas.len() <= usize::from(props.n), "a read list longer than n: {replicas:?}");
        let deadline = Instant::now() + timeout;
        let mut quorum = ReadQuorum::new(replicas.clone(), props.r, props.conflict);
        let mut replies = self.send_to_all(&replicas, &Request::Read { key: key.clone() }, deadline);
        let mut first_reader: Option<NodeId> = None;
        let mut progress = quorum.progress();
        while progress == Progress::Pending {
            let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, replies.recv()).await else {
                quorum.timed_out();
                return Err(self.unavailable("get", props, props.r, 0, quorum.report()));
            };
            progress = match outcome {
                Ok(Response::Read { object }) => {
                    first_reader.get_or_insert_with(|| node.clone());
                    quorum.reply(node, object)
                }
                Ok(Response::Unreadable { reason }) => quorum.unreadable(node, reason),
                Ok(other) => quorum.fail(node, unexpected(&other)),
                Err(reason) => quorum.fail(node, reason),
            };
        }
        if progress == Progress::Failed {
            return Err(self.unavailable("get", props, props.r, 0, quorum.report()));
        }
        if let Some(fastest) = first_reader {
            self.remember_fastest_reader(key, fastest);
        }
        let merged = quorum.merged();
        self.spawn_read_repair(key.clone(), quorum, replies, props);
        Ok(merged)
    }

    /// Writes `payload` over what `context` has seen; returns the new
    /// context.
    pub async fn put(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        self.write(key, context, payload, options, true).await
    }

    /// Coordinates a write forwarded by a node outside the key's preference
    /// list. Never forwards again: if this node is not a replica either
    /// (the two nodes disagree about the ring), the write is refused rather
    /// than bounced around.
    pub async fn put_forwarded(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        self.write(key, context, payload, options, false).await
    }

    /// Coordinates the write here when this node replicates the key;
    /// otherwise forwards it (when `may_forward`) or refuses it.
    async fn write(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
        may_forward: bool,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        let Effective { props, timeout } = self.resolve(key.bucket(), options)?;
        let lists = self.services.cluster.write_lists(key, props.n);
        assert!(
            !lists.is_empty() && lists.iter().all(|list| list.len() <= usize::from(props.n)),
            "write lists must be one or two lists of at most n nodes: {lists:?}"
        );
        let replicas = nodes_of(&lists);
        let deadline = Instant::now() + timeout;
        if !replicas.contains(self.services.cluster.local()) {
            if may_forward {
                return self.forward(key, context, payload, options, &replicas, deadline).await;
            }
            return Err(CoordinatorError::NotAReplica(format!(
                "{} received a forwarded write for a key it does not replicate at ring epoch {}; the nodes' views of \
                 the ring differ (a membership change is spreading)",
                self.services.cluster.local(),
                self.services.cluster.view().state().epoch()
            )));
        }
        let stamp = match options.stamp {
            Some(timestamp) => WriteStamp::Exactly(timestamp),
            None => WriteStamp::After(Hlc(options.context_timestamp)),
        };
        self.coordinate_write(key, context, stamp, payload, props, lists, deadline).await
    }

    /// The write path on a replica: local write first, then the others.
    ///
    /// Sloppy quorum (paper section 4.6): a replica the failure detector
    /// marks down, or one whose call fails, hands its copy to the next
    /// reachable node after the top N of the extended preference list, which
    /// holds it as a hint and counts toward W. When no such node is left
    /// (a cluster of N nodes), this node keeps the hint itself; that one
    /// does not count toward W, but it is delivered like any other.
    ///
    /// While the key's partition moves between rings, `lists` holds its
    /// replicas under both, and W (and DW) must be reached in each.
    #[allow(clippy::too_many_arguments)]
    async fn coordinate_write(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        stamp: WriteStamp,
        payload: Payload,
        props: BucketProps,
        lists: Vec<Vec<NodeId>>,
        deadline: Instant,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        let operation = if matches!(payload, Payload::Tombstone) { "delete" } else { "put" };
        let replicas = nodes_of(&lists);
        let mut quorum = WriteQuorum::spanning(lists, props.w, props.dw);
        if quorum.progress() == Progress::Failed {
            return Err(self.unavailable(operation, props, props.w, props.dw, quorum.report()));
        }
        // Computed only when a replica first needs a stand-in: most writes
        // never do.
        let mut fallbacks = Fallbacks::new(self, key, props.n);
        let mut targets = Vec::new();
        for node in replicas.iter().filter(|node| *node != self.services.cluster.local()) {
            if self.services.detector.is_up(node) {
                targets.push(WriteTarget { node: node.clone(), hint_for: None });
            } else {
                let reason = self.services.detector.down_reason(node);
                match hand_off(&mut quorum, node, &mut fallbacks, &reason) {
                    Some(target) => targets.push(target),
                    None => {
                        quorum.fail(node.clone(), reason);
                    }
                }
            }
        }
        let durable = props.dw > 0;
        let durability = if durable { Durability::Durable } else { Durability::Buffered };
        let local = self.services.replica.coordinate_write(key, context, stamp, payload, props.conflict, durability);
        let object = match tokio::time::timeout_at(deadline, local).await {
            Ok(Ok(object)) => object,
            Ok(Err(error)) => {
                quorum.fail(self.services.cluster.local().clone(), error.to_string());
                return Err(self.unavailable(operation, props, props.w, props.dw, quorum.report()));
            }
            Err(_) => {
                quorum.timed_out();
                return Err(self.unavailable(operation, props, props.w, props.dw, quorum.report()));
            }
        };
        let new_context = (object.context().clone(), object.latest_timestamp());
        let mut progress = quorum.ack(self.services.cluster.local().clone(), durable);
        let write = ReplicaWrite { key: key.clone(), object, mode: props.conflict, durable };
        let (sender, mut acks) = mpsc::channel(self.services.cluster.size().max(replicas.len()).max(1));
        for target in targets {
            self.send_write(&sender, target, &write, deadline);
        }
        while progress == Progress::Pending {
            let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, acks.recv()).await else {
                quorum.timed_out();
                break;
            };
            let reason = match outcome {
                Ok(Response::Written { durable }) => {
                    progress = quorum.ack(node, durable);
                    continue;
                }
                Ok(other) => unexpected(&other),
                Err(reason) => reason,
            };
            progress = match hand_off(&mut quorum, &node, &mut fallbacks, &reason) {
                Some(target) => {
                    debug!(failed = %node, fallback = %target.node, "write handed to a fallback");
                    self.send_write(&sender, target, &write, deadline);
                    quorum.progress()
                }
                None => quorum.fail(node, reason),
            };
        }
        let report = quorum.report();
        self.spawn_write_tail(write, quorum, acks, deadline);
        match progress {
            Progress::Succeeded => Ok(new_context),
            _ => Err(self.unavailable(operation, props, props.w, props.dw, report)),
        }
    }

    /// The nodes that may stand in for unreachable replicas of `key`: those
    /// after its top `n` in the extended preference list that the failure
    /// detector marks up, nearest first.
    fn fallback_nodes(&self, key: &ObjectKey, n: u8) -> VecDeque<NodeId> {
        let partition = key.partition(self.services.cluster.ring().partitions());
        let extended = self.services.cluster.ring().extended_preference_list(
            partition,
            usize::from(n),
            self.services.cluster.size(),
        );
        extended
            .into_iter()
            .skip(usize::from(n))
            .filter(|node| node != self.services.cluster.local() && self.services.detector.is_up(node))
            .collect()
    }

    /// Sends one replica's copy of `write` (as a hint when it goes to a
    /// fallback); the answer arrives on `sender`.
    fn send_write(
        &self,
        sender: &mpsc::Sender<(NodeId, Result<Response, String>)>,
        target: WriteTarget,
        write: &ReplicaWrite,
        deadline: Instant,
    ) {
        let ReplicaWrite { key, object, mode, durable } = write.clone();
        let request = match target.hint_for {
            None => Request::Write { key, object, mode, durable },
            Some(owner) => Request::HintedWrite { owner, key, object, mode, durable },
        };
        let sender = sender.clone();
        let peers = self.peers_handle();
        tokio::spawn(async move {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let outcome = peers.call(&target.node, request, timeout).await;
            let _ = sender.send((target.node, outcome)).await;
        });
    }

    /// After the client has its answer: waits (until the request's deadline)
    /// for the replicas still out, then keeps a hint here for every replica
    /// whose copy neither it nor a fallback acknowledged, so the write
    /// reaches it when it is back (hinted handoff when no fallback node was
    /// left, and for replicas that failed after the quorum was reached).
    fn spawn_write_tail(
        &self,
        write: ReplicaWrite,
        mut quorum: WriteQuorum,
        mut acks: mpsc::Receiver<(NodeId, Result<Response, String>)>,
        deadline: Instant,
    ) {
        let hints = self.services.hints.clone();
        let replica = self.replica_handle();
        let local = self.services.cluster.local().clone();
        tokio::spawn(async move {
            while !quorum.awaited().is_empty() {
                match tokio::time::timeout_at(deadline, acks.recv()).await {
                    Ok(Some((node, Ok(Response::Written { durable })))) => {
                        quorum.ack(node, durable);
                    }
                    Ok(Some((node, Ok(other)))) => {
                        quorum.fail(node, unexpected(&other));
                    }
                    Ok(Some((node, Err(reason)))) => {
                        quorum.fail(node, reason);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            for owner in quorum.unacknowledged_replicas().into_iter().filter(|owner| *owner != local) {
                let stored = hints
                    .store_hint(&owner, &write.key, &write.object, write.mode, Durability::Buffered, replica.wall_ms())
                    .await;
                match stored {
                    Ok(()) => {
                        debug!(%owner, bucket = write.key.bucket(), "kept a hint for a replica that missed a write")
                    }
                    Err(error) => warn!(%owner, %error, "could not keep a hint for a replica that missed a write"),
                }
            }
        });
    }

    /// Changes a bucket's props on this node and on every other member.
    /// Succeeds only when every member stored the change; otherwise the
    /// error names the members that did not (the change stays applied
    /// where it landed, and repeating the request reaches the others).
    pub async fn set_props(&self, bucket: &str, patch: &PropsPatch) -> Result<BucketProps, CoordinatorError> {
        let version = self.services.replica.timestamp();
        let props = self.services.buckets.update(bucket, patch, version).await?;
        // Every member, joining ones included: they coordinate requests too.
        let members: Vec<NodeId> = self.services.cluster.others();
        let request = Request::SetProps { bucket: bucket.to_string(), props, version };
        let mut answers = self.send_to_all(&members, &request, Instant::now() + self.default_timeout);
        let mut outcomes = vec![ReplicaOutcome {
            node: self.services.cluster.local().to_string(),
            status: "ok",
            reason: None,
            hint_for: None,
        }];
        while let Some((node, outcome)) = answers.recv().await {
            outcomes.push(match outcome {
                Ok(Response::PropsSet) => {
                    ReplicaOutcome { node: node.to_string(), status: "ok", reason: None, hint_for: None }
                }
                Ok(other) => failed(&node, unexpected(&other)),
                Err(reason) => failed(&node, reason),
            });
        }
        let stored = outcomes.iter().filter(|outcome| outcome.status == "ok").count();
        if stored == outcomes.len() {
            return Ok(props);
        }
        Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation: "set props",
            n: outcomes.len() as u8,
            needed: outcomes.len() as u8,
            needed_durable: 0,
            answered: stored as u8,
            replicas: outcomes,
            hint: "the change is stored on the members that answered ok; repeat the request when the others are up"
                .to_string(),
        })))
    }

    /// Sends the write to a replica to coordinate it, trying the key's
    /// fastest recent reader first, then the preference list in order.
    async fn forward(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
        replicas: &[NodeId],
        deadline: Instant,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        let mut candidates: Vec<NodeId> = replicas.to_vec();
        if let Some(fastest) = self.fastest_reader(key)
            && let Some(position) = candidates.iter().position(|node| *node == fastest)
        {
            candidates[..=position].rotate_right(1);
        }
        // Replicas the failure detector marks down go last (still tried:
        // the detector may be behind).
        candidates.sort_by_key(|node| !self.services.detector.is_up(node));
        // Stamped once here, not by each replica tried: if a replica that
        // timed out applies the write after all, its copy carries the same
        // timestamp as the one acknowledged, so it cannot order after a
        // causally later write in a last-write-wins bucket.
        let stamp = self.services.replica.stamp_after(Hlc(options.context_timestamp));
        let mut failures = Vec::new();
        let count = candidates.len();
        for (index, node) in candidates.into_iter().enumerate() {
            // Each remaining candidate gets an equal share of the time left,
            // so one replica unreachable from here cannot use up the whole
            // deadline while the others could have taken the write. The
            // coordinating replica is told the share as its own timeout, so
            // it answers (or gives up) within it.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let share = remaining / u32::try_from(count - index).unwrap_or(1);
            if share.is_zero() {
                failures.push(ReplicaOutcome {
                    node: node.to_string(),
                    status: "pending",
                    reason: None,
                    hint_for: None,
                });
                continue;
            }
            let remote_ms = (share.as_millis() as u64 * 9 / 10).max(1);
            let request = Request::Coordinate {
                key: key.clone(),
                context: context.clone(),
                payload: payload.clone(),
                options: ForwardOptions {
                    w: options.w.clone(),
                    dw: options.dw.clone(),
                    n: options.n.clone(),
                    timeout_ms: Some(remote_ms.to_string()),
                    seen_timestamp: options.context_timestamp,
                    stamp: stamp.0,
                },
            };
            match self.services.peers.call(&node, request, share).await {
                Ok(Response::Coordinated(Ok(context))) => return Ok(context),
                Ok(Response::Coordinated(Err(error))) => {
                    return Err(CoordinatorError::Forwarded { status: error.status, body: error.body });
                }
                Ok(other) => failures.push(failed(&node, unexpected(&other))),
                Err(reason) => {
                    debug!(%node, %reason, "forwarding failed; trying the next replica");
                    failures.push(failed(&node, reason));
                }
            }
        }
        Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation: "forward",
            n: replicas.len() as u8,
            needed: 1,
            needed_durable: 0,
            answered: 0,
            replicas: failures,
            hint: "no replica of the key could coordinate the write; check that its nodes are up".to_string(),
        })))
    }

    /// Sends `request` to every node in `nodes` concurrently; answers arrive
    /// on the returned channel as they come. Local requests are served
    /// directly, without the network.
    fn send_to_all(
        &self,
        nodes: &[NodeId],
        request: &Request,
        deadline: Instant,
    ) -> mpsc::Receiver<(NodeId, Result<Response, String>)> {
        let (sender, receiver) = mpsc::channel(nodes.len().max(1));
        for node in nodes {
            let sender = sender.clone();
            let node = node.clone();
            let request = request.clone();
            let local = (node == *self.services.cluster.local()).then(|| self.replica_handle());
            let peers = self.peers_handle();
            tokio::spawn(async move {
                let timeout = deadline.saturating_duration_since(Instant::now());
                let outcome = match local {
                    Some(replica) => replica.serve(request).await,
                    None => peers.call(&node, request, timeout).await,
                };
                let _ = sender.send((node, outcome)).await;
            });
        }
        receiver
    }

    fn spawn_read_repair(
        &self,
        key: ObjectKey,
        mut quorum: ReadQuorum,
        mut replies: mpsc::Receiver<(NodeId, Result<Response, String>)>,
        props: BucketProps,
    ) {
        let local = self.replica_handle();
        let peers = self.peers_handle();
        let local_id = self.services.cluster.local().clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + READ_REPAIR_WAIT;
            while let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, replies.recv()).await {
                match outcome {
                    Ok(Response::Read { object }) => quorum.reply(node, object),
                    Ok(Response::Unreadable { reason }) => quorum.unreadable(node, reason),
                    Ok(other) => quorum.fail(node, unexpected(&other)),
                    Err(reason) => quorum.fail(node, reason),
                };
            }
            let merged = quorum.merged();
            for node in quorum.repair_targets() {
                debug!(%node, bucket = key.bucket(), "read repair");
                let request =
                    Request::Write { key: key.clone(), object: merged.clone(), mode: props.conflict, durable: false };
                let _ = if node == local_id {
                    local.serve(request).await
                } else {
                    peers.call(&node, request, READ_REPAIR_WAIT).await
                };
            }
        });
    }

    fn replica_handle(&self) -> Arc<Replica> {
        self.services.replica.clone()
    }

    fn peers_handle(&self) -> Arc<dyn Peers> {
        self.services.peers.clone()
    }

    fn remember_fastest_reader(&self, key: &ObjectKey, node: NodeId) {
        let mut map = self.fastest_reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= FASTEST_READER_MEMORY {
            map.clear();
        }
        map.insert(key.clone(), node);
    }

    fn fastest_reader(&self, key: &ObjectKey) -> Option<NodeId> {
        self.fastest_reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    fn unavailable(
        &self,
        operation: &'static str,
        props: BucketProps,
        needed: u8,
        needed_durable: u8,
        report: QuorumReport,
    ) -> CoordinatorError {
        let mut replicas: Vec<ReplicaOutcome> = report.replicas.iter().map(ReplicaOutcome::from_status).collect();
        let members = self.services.cluster.size();
        for missing in replicas.len()..usize::from(props.n) {
            replicas.push(ReplicaOutcome {
                node: format!("(replica {})", missing + 1),
                status: "missing",
                reason: Some(format!("the cluster has only {members} node(s) but n={}", props.n)),
                hint_for: None,
            });
        }
        let hint = if usize::from(needed) > members {
            format!(
                "this cluster has {members} node(s) but the request needs {needed}; lower r/w/dw for the request, \
                 lower the bucket's n (PUT /buckets/{{bucket}}/props), or add nodes"
            )
        } else {
            "some replicas did not answer; see each replica's reason, retry, or lower r/w/dw for the request"
                .to_string()
        };
        CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation,
            n: props.n,
            needed,
            needed_durable,
            answered: report.answered_ok,
            replicas,
            hint,
        }))
    }
}

impl ReplicaOutcome {
    fn from_status(status: &dynamo_core::quorum::ReplicaStatus) -> ReplicaOutcome {
        use dynamo_core::quorum::ReplicaState;
        let node = status.node.to_string();
        let hint_for = status.stands_in_for.as_ref().map(ToString::to_string);
        let (status, reason) = match &status.state {
            ReplicaState::Ok { .. } => ("ok", None),
            ReplicaState::Failed(reason) => ("failed", Some(reason.clone())),
            ReplicaState::Pending => ("pending", None),
        };
        ReplicaOutcome { node, status, reason, hint_for }
    }
}

/// One replica's copy of a write, as sent to the others.
#[derive(Clone)]
struct ReplicaWrite {
    key: ObjectKey,
    object: VersionedObject,
    mode: ConflictMode,
    durable: bool,
}

/// Where one copy of a write goes.
struct WriteTarget {
    /// The node it is sent to.
    node: NodeId,
    /// The replica it is held for, when `node` is a fallback.
    hint_for: Option<NodeId>,
}

/// The fallback nodes of one write, listed on first use.
struct Fallbacks<'a> {
    coordinator: &'a Coordinator,
    key: &'a ObjectKey,
    n: u8,
    nodes: Option<VecDeque<NodeId>>,
}

impl<'a> Fallbacks<'a> {
    fn new(coordinator: &'a Coordinator, key: &'a ObjectKey, n: u8) -> Self {
        Self { coordinator, key, n, nodes: None }
    }

    fn next(&mut self) -> Option<NodeId> {
        let (coordinator, key, n) = (self.coordinator, self.key, self.n);
        self.nodes.get_or_insert_with(|| coordinator.fallback_nodes(key, n)).pop_front()
    }
}

/// Hands the copy of `failed` to the next fallback, if there is one and the
/// quorum takes it.
fn hand_off(
    quorum: &mut WriteQuorum,
    failed: &NodeId,
    fallbacks: &mut Fallbacks<'_>,
    reason: &str,
) -> Option<WriteTarget> {
    // During a ring change a fallback of the new ring may already be one
    // of the write's replicas (of the old ring): take the next one.
    let fallback = loop {
        let candidate = fallbacks.next()?;
        if !quorum.includes(&candidate) {
            break candidate;
        }
    };
    let owner = quorum.hand_off(failed, fallback.clone(), reason)?;
    Some(WriteTarget { node: fallback, hint_for: Some(owner) })
}

fn failed(node: &NodeId, reason: String) -> ReplicaOutcome {
    ReplicaOutcome { node: node.to_string(), status: "failed", reason: Some(reason), hint_for: None }
}

fn unexpected(response: &Response) -> String {
    match response {
        Response::Failed { reason } | Response::Unreadable { reason } => reason.clone(),
        other => format!("unexpected reply {}", response_name(other)),
    }
}

fn response_name(response: &Response) -> &'static str {
    match response {
        Response::Read { .. } => "Read",
        Response::Written { .. } => "Written",
        Response::Coordinated(_) => "Coordinated",
        Response::Pong => "Pong",
        Response::PropsSet => "PropsSet",
        Response::MerkleHashes { .. } => "MerkleHashes",
        Response::MerkleKeys { .. } => "MerkleKeys",
        Response::TransferPage { .. } => "TransferPage",
        Response::ClusterSame => "ClusterSame",
        Response::ClusterState { .. } => "ClusterState",
        Response::Failed { .. } => "Failed",
        Response::Unreadable { .. } => "Unreadable",
    }
}

fn parse_timeout(text: &str) -> Result<Duration, CoordinatorError> {
    match text.parse::<u64>() {
        Ok(ms) if (1..=MAX_REQUEST_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(CoordinatorError::BadRequest(format!(
            "timeout_ms={text:?} must be a whole number of milliseconds between 1 and {MAX_REQUEST_TIMEOUT_MS}"
        ))),
    }
}
