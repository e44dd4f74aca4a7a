//! The write path (paper section 4.5's put, with section 4.6's sloppy
//! quorum and hinted handoff): on a replica, the local write first (only a
//! replica issues dots), then the version set to the other replicas, a
//! fallback with a hint for each one that is down, the client answered
//! after W acknowledgements (DW durable), and hints kept for the replicas
//! that missed it. On a node that replicates nothing of the key, the whole
//! request is forwarded to a replica, preferring the one that answered the
//! key's last read fastest.

use std::collections::VecDeque;

use dynamo_core::crdt::value::{DataOp, DataValue, OpError};
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{ForwardOptions, ForwardedError, Request, Response};
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{BucketProps, ConflictMode, DataType};
use dynamo_core::quorum::{Progress, WriteQuorum};
use dynamo_core::ring::NodeId;
use dynamo_core::version::VersionVector;
use dynamo_storage::Durability;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cluster::nodes_of;
use crate::replica::{ReplicaError, WriteStamp};

use super::errors::{QuorumFailure, ReplicaOutcome, failed, unexpected};
use super::{Coordinator, CoordinatorError, Effective, RequestOptions};

impl Coordinator {
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
            return Err(self.not_a_replica("write"));
        }
        let stamp = match options.stamp {
            Some(timestamp) => WriteStamp::Exactly(timestamp),
            None => WriteStamp::After(Hlc(options.context_timestamp)),
        };
        let step = LocalStep::Put { context: context.clone(), stamp, payload };
        let stored = self.coordinate_write(key, step, props, lists, deadline).await?;
        Ok((stored.context().clone(), stored.latest_timestamp()))
    }

    /// Applies a data-type operation (issue 12): at this node when it
    /// replicates the key (it acts as the operation's actor and ships the
    /// delta to the other replicas), otherwise at a replica it forwards
    /// to. Returns the new value as the acting replica holds it.
    pub async fn update(
        &self,
        key: &ObjectKey,
        op: &DataOp,
        options: &RequestOptions,
    ) -> Result<DataValue, CoordinatorError> {
        self.update_here_or_forward(key, op, options, true).await
    }

    /// [`Coordinator::update`] forwarded by a node outside the key's
    /// preference list: never forwarded again (see
    /// [`Coordinator::put_forwarded`]).
    pub async fn update_forwarded(
        &self,
        key: &ObjectKey,
        op: &DataOp,
        options: &RequestOptions,
    ) -> Result<DataValue, CoordinatorError> {
        self.update_here_or_forward(key, op, options, false).await
    }

    async fn update_here_or_forward(
        &self,
        key: &ObjectKey,
        op: &DataOp,
        options: &RequestOptions,
        may_forward: bool,
    ) -> Result<DataValue, CoordinatorError> {
        let Effective { props, timeout } = self.resolve(key.bucket(), options)?;
        if props.datatype != op.kind() {
            return Err(CoordinatorError::Refused(OpError::WrongType { op: op.kind(), stored: props.datatype }));
        }
        let lists = self.services.cluster.write_lists(key, props.n);
        let replicas = nodes_of(&lists);
        let deadline = Instant::now() + timeout;
        if !replicas.contains(self.services.cluster.local()) {
            if may_forward {
                return self.forward_update(key, op, options, &replicas, deadline).await;
            }
            return Err(self.not_a_replica("data-type update"));
        }
        let step = LocalStep::Update { op: op.clone(), kind: props.datatype };
        let stored = self.coordinate_write(key, step, props, lists, deadline).await?;
        match stored.datatype_value() {
            Ok(Some(value)) => Ok(value.clone()),
            Ok(None) => unreachable!("an applied operation leaves a value"),
            Err(problem) => Err(CoordinatorError::BadRequest(format!(
                "{}/{}: {problem}; delete the key and write it again through the datatypes endpoint",
                key.bucket(),
                String::from_utf8_lossy(key.key())
            ))),
        }
    }

    fn not_a_replica(&self, what: &str) -> CoordinatorError {
        CoordinatorError::NotAReplica(format!(
            "{} received a forwarded {what} for a key it does not replicate at ring epoch {}; the nodes' views of \
             the ring differ (a membership change is spreading)",
            self.services.cluster.local(),
            self.services.cluster.view().state().epoch()
        ))
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
    ///
    /// Returns the state the local replica stored.
    async fn coordinate_write(
        &self,
        key: &ObjectKey,
        step: LocalStep,
        props: BucketProps,
        lists: Vec<Vec<NodeId>>,
        deadline: Instant,
    ) -> Result<VersionedObject, CoordinatorError> {
        let started = Instant::now();
        let operation = step.operation();
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
        let local = self.apply_locally(key, step, props, durability);
        let (stored, shipped) = match tokio::time::timeout_at(deadline, local).await {
            Ok(Ok(states)) => states,
            Ok(Err(ReplicaError::Refused(refusal))) => return Err(CoordinatorError::Refused(refusal)),
            Ok(Err(error)) => {
                quorum.fail(self.services.cluster.local().clone(), error.to_string());
                return Err(self.unavailable(operation, props, props.w, props.dw, quorum.report()));
            }
            Err(_) => {
                quorum.timed_out();
                return Err(self.unavailable(operation, props, props.w, props.dw, quorum.report()));
            }
        };
        let mut progress = quorum.ack(self.services.cluster.local().clone(), durable);
        let write = ReplicaWrite { key: key.clone(), object: shipped, mode: props.conflict, durable };
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
        self.spawn_write_tail(write, quorum, acks, deadline, started);
        match progress {
            Progress::Succeeded => Ok(stored),
            _ => Err(self.unavailable(operation, props, props.w, props.dw, report)),
        }
    }

    /// The local step of a write: returns the state stored here and the
    /// object to ship to the other replicas (the same state for a put; for
    /// a data-type operation, only its delta).
    async fn apply_locally(
        &self,
        key: &ObjectKey,
        step: LocalStep,
        props: BucketProps,
        durability: Durability,
    ) -> Result<(VersionedObject, VersionedObject), ReplicaError> {
        let replica = &self.services.replica;
        match step {
            LocalStep::Put { context, stamp, payload } => {
                let stored =
                    replica.coordinate_write(key, &context, stamp, payload, props.conflict, durability).await?;
                Ok((stored.clone(), stored))
            }
            LocalStep::Update { op, kind } => replica.coordinate_update(key, &op, kind, durability).await,
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
    /// for the replicas still out, records how long the write took to be on
    /// every replica (t-visibility, [`crate::staleness`]; `started` is when
    /// this coordinator took it), then keeps a hint here for every replica
    /// whose copy neither it nor a fallback acknowledged, so the write
    /// reaches it when it is back (hinted handoff when no fallback node was
    /// left, and for replicas that failed after the quorum was reached).
    fn spawn_write_tail(
        &self,
        write: ReplicaWrite,
        mut quorum: WriteQuorum,
        mut acks: mpsc::Receiver<(NodeId, Result<Response, String>)>,
        deadline: Instant,
        started: Instant,
    ) {
        let staleness = self.staleness.clone();
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
            match quorum.every_replica_acknowledged() {
                true => staleness.record_visible(started.elapsed()),
                false => staleness.record_not_visible(),
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

    /// Sends the write to a replica to coordinate it (see
    /// [`Coordinator::forward_to_replica`]).
    async fn forward(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
        replicas: &[NodeId],
        deadline: Instant,
    ) -> Result<(VersionVector, Hlc), CoordinatorError> {
        // Stamped once here, not by each replica tried: if a replica that
        // timed out applies the write after all, its copy carries the same
        // timestamp as the one acknowledged, so it cannot order after a
        // causally later write in a last-write-wins bucket.
        let stamp = self.services.replica.stamp_after(Hlc(options.context_timestamp));
        let request = |mut forwarded: ForwardOptions| {
            forwarded.seen_timestamp = options.context_timestamp;
            forwarded.stamp = stamp.0;
            Request::Coordinate {
                key: key.clone(),
                context: context.clone(),
                payload: payload.clone(),
                options: forwarded,
            }
        };
        let outcome = |response| match response {
            Response::Coordinated(outcome) => Ok(outcome),
            other => Err(other),
        };
        self.forward_to_replica(key, options, replicas, deadline, request, outcome).await
    }

    /// Sends a data-type operation to a replica to apply (see
    /// [`Coordinator::forward_to_replica`]). Without an operation id, a
    /// replica that timed out may still apply it, and the next one tried
    /// applies it too: an increment retried this way can count twice.
    async fn forward_update(
        &self,
        key: &ObjectKey,
        op: &DataOp,
        options: &RequestOptions,
        replicas: &[NodeId],
        deadline: Instant,
    ) -> Result<DataValue, CoordinatorError> {
        // An increment without an id gets one here, before the first
        // attempt: a replica that times out may still have applied it, and
        // the retry through the next replica must then count once.
        let op = match op {
            DataOp::Increment { amount, id: None } => {
                DataOp::Increment { amount: *amount, id: Some(self.services.replica.mint_operation_id()) }
            }
            other => other.clone(),
        };
        let request = |forwarded| Request::CoordinateUpdate { key: key.clone(), op: op.clone(), options: forwarded };
        let outcome = |response| match response {
            Response::Updated(outcome) => Ok(outcome),
            other => Err(other),
        };
        self.forward_to_replica(key, options, replicas, deadline, request, outcome).await
    }

    /// Sends a request built by `request` to a replica of `key` to
    /// coordinate, trying the key's fastest recent reader first, then the
    /// preference list in order, until one answers with an outcome
    /// (`outcome` picks it out of the response, or hands back a response
    /// of another kind).
    async fn forward_to_replica<T>(
        &self,
        key: &ObjectKey,
        options: &RequestOptions,
        replicas: &[NodeId],
        deadline: Instant,
        request: impl Fn(ForwardOptions) -> Request,
        outcome: impl Fn(Response) -> Result<Result<T, ForwardedError>, Response>,
    ) -> Result<T, CoordinatorError> {
        let mut candidates: Vec<NodeId> = replicas.to_vec();
        if let Some(fastest) = self.fastest_reader(key)
            && let Some(position) = candidates.iter().position(|node| *node == fastest)
        {
            candidates[..=position].rotate_right(1);
        }
        // Replicas the failure detector marks down go last (still tried:
        // the detector may be behind).
        candidates.sort_by_key(|node| !self.services.detector.is_up(node));
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
            let forwarded = ForwardOptions {
                w: options.w.clone(),
                dw: options.dw.clone(),
                n: options.n.clone(),
                timeout_ms: Some(remote_ms.to_string()),
                // Past the share this node moves on to the next replica:
                // the attempt must not be applied after that.
                deadline_ms: self.services.replica.wall_ms().saturating_add(share.as_millis() as u64),
                ..ForwardOptions::default()
            };
            self.forwarded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.services.peers.call(&node, request(forwarded), share).await.map(&outcome) {
                Ok(Ok(Ok(answer))) => return Ok(answer),
                Ok(Ok(Err(error))) => {
                    return Err(CoordinatorError::Forwarded { status: error.status, body: error.body });
                }
                Ok(Err(other)) => failures.push(failed(&node, unexpected(&other))),
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

/// What the coordinating replica does to its own copy first.
enum LocalStep {
    /// A client put or delete over what `context` has seen.
    Put {
        /// The client's context.
        context: VersionVector,
        /// How the new version is stamped.
        stamp: WriteStamp,
        /// The value or tombstone.
        payload: Payload,
    },
    /// A data-type operation on a bucket of `kind`.
    Update {
        /// The operation.
        op: DataOp,
        /// The bucket's datatype.
        kind: DataType,
    },
}

impl LocalStep {
    /// The operation's name in errors and metrics.
    fn operation(&self) -> &'static str {
        match self {
            LocalStep::Put { payload: Payload::Tombstone, .. } => "delete",
            LocalStep::Put { .. } => "put",
            LocalStep::Update { .. } => "update",
        }
    }
}
