//! The node's failure detector (paper section 4.8.3): the pure rules of
//! [`dynamo_core::failure_detector`] fed with the outcome of every call this node
//! makes ([`FailureDetector`]), plus the probe loop that brings down peers
//! back ([`probes`], which calls peers through [`crate::peers`], itself a
//! user of the detector). Routing asks it
//! which peers are up; a call to a peer marked down fails at once instead of
//! waiting out a timeout, which is what keeps writes fast while a replica is
//! gone (they go to a fallback with a hint instead).
//!
//! It never changes membership: a down peer is still a member and still
//! owns its partitions.

use std::sync::{Mutex, MutexGuard};

use dynamo_core::failure_detector::{CallOutcome, Liveness, LivenessPolicy, PeerState, Transition};
use dynamo_core::messages::Request;
use dynamo_core::ring::NodeId;
use dynamo_rpc::RpcError;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{info, warn};

pub mod probes;

/// One peer as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerReport {
    /// The peer's node id.
    pub node: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// Milliseconds since the state last changed (`None` if it never did).
    pub for_ms: Option<u64>,
    /// Milliseconds since the peer last answered (`None` if never).
    pub last_answer_ms_ago: Option<u64>,
    /// Consecutive timeouts since its last answer.
    pub consecutive_timeouts: u32,
    /// The last failure since its last answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// This node's view of its peers' reachability.
pub struct FailureDetector {
    liveness: Mutex<Liveness>,
    started: Instant,
    /// The peers reported, in id order: the other members, replaced when
    /// membership changes ([`FailureDetector::set_peers`]).
    peers: Mutex<Vec<NodeId>>,
}

impl FailureDetector {
    /// A detector for `peers` (the other members), all up until a call says
    /// otherwise.
    pub fn new(policy: LivenessPolicy, peers: Vec<NodeId>) -> Self {
        Self { liveness: Mutex::new(Liveness::new(policy)), started: Instant::now(), peers: Mutex::new(peers) }
    }

    /// Replaces the peers reported (membership changed). What was learned
    /// about a peer is kept; a peer never called is up.
    pub fn set_peers(&self, peers: Vec<NodeId>) {
        *self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = peers;
    }

    fn peers(&self) -> Vec<NodeId> {
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records the outcome of a call to `node`, logging a change of state.
    pub fn record(&self, node: &NodeId, outcome: CallOutcome) {
        let now_ms = self.now_ms();
        if let Some(transition) = self.lock().record(node, outcome, now_ms) {
            log_transition(&transition);
        }
    }

    /// Records the outcome of an RPC call to `node`.
    pub fn record_rpc<T>(&self, node: &NodeId, result: &Result<T, RpcError>) {
        if let Some(outcome) = classify(result) {
            self.record(node, outcome);
        }
    }

    /// Whether `node` gets traffic.
    pub fn is_up(&self, node: &NodeId) -> bool {
        self.lock().is_up(node)
    }

    /// Why `node` is routed around, for the error of a call refused
    /// without trying.
    pub fn down_reason(&self, node: &NodeId) -> String {
        let liveness = self.lock();
        let last = liveness.view(node).and_then(|view| view.last_failure.clone()).unwrap_or_default();
        format!(
            "{node} is marked down by this node's failure detector (last failure: {last}); it is probed until it answers"
        )
    }

    /// Whether any peer is down.
    pub fn any_down(&self) -> bool {
        let peers = self.peers();
        let liveness = self.lock();
        peers.iter().any(|node| !liveness.is_up(node))
    }

    /// Every peer, in id order, as the admin API shows it.
    pub fn report(&self) -> Vec<PeerReport> {
        let now_ms = self.now_ms();
        let peers = self.peers();
        let liveness = self.lock();
        peers
            .iter()
            .map(|node| match liveness.view(node) {
                None => PeerReport {
                    node: node.to_string(),
                    state: "up",
                    for_ms: None,
                    last_answer_ms_ago: None,
                    consecutive_timeouts: 0,
                    last_failure: None,
                },
                Some(view) => PeerReport {
                    node: node.to_string(),
                    state: if view.state == PeerState::Up { "up" } else { "down" },
                    for_ms: (view.since_ms > 0).then(|| now_ms.saturating_sub(view.since_ms)),
                    last_answer_ms_ago: view.last_answer_ms.map(|at| now_ms.saturating_sub(at)),
                    consecutive_timeouts: view.consecutive_timeouts,
                    last_failure: view.last_failure.clone(),
                },
            })
            .collect()
    }

    /// The down peers due for a probe now (each is then not due again
    /// until its next probe interval).
    pub fn due_probes(&self) -> Vec<NodeId> {
        self.lock().due_probes(self.now_ms())
    }

    fn now_ms(&self) -> u64 {
        // 1 ms past the start, so that 0 can mean "never" in the views.
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn lock(&self) -> MutexGuard<'_, Liveness> {
        self.liveness.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What an RPC result says about the peer's reachability. `None` when it
/// says nothing about the peer (our own queue was full, or the message was
/// too large to send).
fn classify<T>(result: &Result<T, RpcError>) -> Option<CallOutcome> {
    match result {
        Ok(_) | Err(RpcError::Remote { .. }) => Some(CallOutcome::Answered),
        Err(error @ RpcError::Timeout { .. }) => Some(CallOutcome::TimedOut(error.to_string())),
        Err(
            error @ (RpcError::Connect { .. }
            | RpcError::Auth { .. }
            | RpcError::Protocol { .. }
            | RpcError::Closed { .. }),
        ) => Some(CallOutcome::Unreachable(error.to_string())),
        Err(RpcError::Overloaded { .. } | RpcError::TooLarge { .. }) => None,
    }
}

fn log_transition(transition: &Transition) {
    match transition.state {
        PeerState::Down => warn!(node = %transition.node, reason = %transition.reason,
                                 "peer marked down; routing around it and probing it"),
        PeerState::Up => info!(node = %transition.node, "peer answered; marked up"),
    }
}

/// Whether `request` may be sent to a peer marked down (only probes).
pub fn bypasses_down_check(request: &Request) -> bool {
    matches!(request, Request::Ping)
}
