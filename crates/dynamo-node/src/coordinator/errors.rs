//! Why a coordinated request failed, in words a client and an operator can
//! act on: how many replicas answered, what became of each of the others,
//! and the status and JSON body every front end answers with.

use dynamo_core::crdt::map::MapError;
use dynamo_core::crdt::set::SetError;
use dynamo_core::crdt::value::OpError;
use dynamo_core::messages::{ForwardedError, Response};
use dynamo_core::ring::NodeId;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;

use crate::buckets::PropsStoreError;

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
    /// The request conflicts with the state of the bucket (`409`).
    #[error("{0}")]
    Conflict(String),
    /// The data-type value refused the operation (issue 12); nothing was
    /// stored.
    #[error(transparent)]
    Refused(#[from] OpError),
}

impl CoordinatorError {
    /// The answer to a forwarded data-type update that arrived after the
    /// forwarding node's deadline: not applied (`503`), since that node
    /// may already have retried it at another replica.
    pub fn late_forward(deadline_ms: u64, now_ms: u64) -> ForwardedError {
        let message = format!(
            "the forwarded update arrived {} ms after the forwarding node gave up on it; not applied (its retry at \
             another replica may have been)",
            now_ms.saturating_sub(deadline_ms)
        );
        ForwardedError { status: 503, body: json!({ "error": message }).to_string() }
    }

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
            CoordinatorError::Conflict(message) => (409, json!({ "error": message }).to_string()),
            CoordinatorError::Refused(OpError::Map(MapError::Unmet(condition))) => {
                (412, json!({ "error": self.to_string(), "unmet": condition.describe() }).to_string())
            }
            CoordinatorError::Refused(refusal) => {
                (refusal_status(refusal), json!({ "error": refusal.to_string() }).to_string())
            }
        }
    }

    /// The condition of a map update ([`dynamo_core::crdt::map::MapOp::Require`])
    /// that did not hold, as [`dynamo_core::crdt::map::Condition::describe`]
    /// names it, whether the update was applied here or at a replica it
    /// was forwarded to (whose answer names it in `unmet`).
    pub fn unmet_condition(&self) -> Option<String> {
        match self {
            CoordinatorError::Refused(OpError::Map(MapError::Unmet(condition))) => Some(condition.describe()),
            CoordinatorError::Forwarded { status: 412, body } => serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|body| body["unmet"].as_str().map(str::to_string)),
            _ => None,
        }
    }

    /// This error as a coordinating replica relays it to the forwarder.
    pub fn to_forwarded(&self) -> ForwardedError {
        let (status, body) = self.status_and_body();
        ForwardedError { status, body }
    }
}

/// The status of a refused data-type operation: `409` for a value of
/// another type, `412` for a remove of what the client's context never saw
/// (its precondition), `413` for an element, name, value or map over its
/// limit, `400` for a map operation nested too deep or too large, `503` for
/// limits that clear on their own (pending removes, actors).
fn refusal_status(refusal: &OpError) -> u16 {
    match refusal {
        OpError::WrongType { .. } => 409,
        OpError::Set(SetError::NotObserved(_)) => 412,
        OpError::Set(SetError::ElementTooLong(_)) => 413,
        OpError::Set(SetError::TooManyDeferred) | OpError::Counter(_) => 503,
        OpError::Map(MapError::NotObserved(_) | MapError::ElementNotObserved { .. }) => 412,
        OpError::Map(
            MapError::NameTooLong(_)
            | MapError::RegisterTooLong(_)
            | MapError::ElementTooLong(_)
            | MapError::TooManyFields(_),
        ) => 413,
        OpError::Map(MapError::TooDeep | MapError::TooManyOps) => 400,
        OpError::TooLarge { .. } => 413,
        OpError::Map(MapError::TooManyActors(_) | MapError::TooManyDeferred | MapError::ClearNotJudged) => 503,
        OpError::Map(MapError::Unmet(_)) => 412,
    }
}

impl ReplicaOutcome {
    pub(super) fn from_status(status: &dynamo_core::quorum::ReplicaStatus) -> ReplicaOutcome {
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

pub(super) fn failed(node: &NodeId, reason: String) -> ReplicaOutcome {
    ReplicaOutcome { node: node.to_string(), status: "failed", reason: Some(reason), hint_for: None }
}

pub(super) fn unexpected(response: &Response) -> String {
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
        Response::Updated(_) => "Updated",
        Response::Pong => "Pong",
        Response::PropsSet => "PropsSet",
        Response::BucketKeys { .. } => "BucketKeys",
        Response::ListedKeys { .. } => "ListedKeys",
        Response::Buckets { .. } => "Buckets",
        Response::MerkleHashes { .. } => "MerkleHashes",
        Response::MerkleKeys { .. } => "MerkleKeys",
        Response::TransferPage { .. } => "TransferPage",
        Response::ClusterSame => "ClusterSame",
        Response::ClusterState { .. } => "ClusterState",
        Response::Failed { .. } => "Failed",
        Response::Unreadable { .. } => "Unreadable",
    }
}
