//! The coordinator: turns a client request into replica operations and
//! decides, by counting answers, whether the request succeeded (paper
//! section 4.5). It resolves the per-request N/R/W/DW against the bucket's
//! props, builds the preference list of replicas, sends the operation to
//! them, and answers after R replies (reads) or W acknowledgements of which
//! DW are durable (writes). A quorum that cannot be met is an error that
//! says how many replicas answered and why the others did not.
//!
//! A single node is a cluster of one: its preference list holds only itself,
//! so a bucket with `n = 3, w = 2` is unavailable on it, and says so.

use std::sync::Arc;
use std::time::Duration;

use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{BucketProps, parse_quorum};
use dynamo_core::version::VersionVector;
use dynamo_storage::Durability;
use serde::Serialize;
use thiserror::Error;

use crate::buckets::{BucketRegistry, PropsStoreError};
use crate::config::MAX_REQUEST_TIMEOUT_MS;
use crate::replica::{Replica, ReplicaError};

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
}

/// What one replica said, for the diagnostics of a failed quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaOutcome {
    /// The replica's node id.
    pub node: String,
    /// `ok`, `failed`, `unreachable` or `timeout`.
    pub status: &'static str,
    /// Why, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// Every replica asked or skipped, and what became of it.
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
    /// The bucket's props could not be read.
    #[error("bucket props unavailable: {0}")]
    Props(#[from] PropsStoreError),
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
    node_id: String,
    replica: Arc<Replica>,
    buckets: Arc<BucketRegistry>,
    default_timeout: Duration,
}

impl Coordinator {
    /// A coordinator for a cluster of one.
    pub fn new(
        node_id: String,
        replica: Arc<Replica>,
        buckets: Arc<BucketRegistry>,
        default_timeout: Duration,
    ) -> Self {
        Self { node_id, replica, buckets, default_timeout }
    }

    /// The bucket registry.
    pub fn buckets(&self) -> &BucketRegistry {
        &self.buckets
    }

    /// The local replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Resolves the request's options against the bucket's props.
    pub fn resolve(&self, bucket: &str, options: &RequestOptions) -> Result<Effective, CoordinatorError> {
        let mut props = self.buckets.get(bucket)?;
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
        Ok(Effective { props, timeout })
    }

    /// Reads `key`: waits for R replies and returns their reconciled state.
    pub async fn get(&self, key: &ObjectKey, options: &RequestOptions) -> Result<VersionedObject, CoordinatorError> {
        let effective = self.resolve(key.bucket(), options)?;
        let props = effective.props;
        let replicas = self.preference_list(props.n);
        self.check_reachable("get", props, props.r, 0, replicas.len())?;
        match self.replica.read(key) {
            Ok(object) => Ok(object),
            Err(error) => Err(self.replica_failed("get", props, props.r, 0, &error)),
        }
    }

    /// Writes `payload` over what `context` has seen.
    pub async fn put(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
    ) -> Result<VersionedObject, CoordinatorError> {
        let operation = if matches!(payload, Payload::Tombstone) { "delete" } else { "put" };
        let effective = self.resolve(key.bucket(), options)?;
        let props = effective.props;
        let replicas = self.preference_list(props.n);
        self.check_reachable(operation, props, props.w, props.dw, replicas.len())?;
        let durability = if props.dw > 0 { Durability::Durable } else { Durability::Buffered };
        let write = self.replica.coordinate_write(key, context, payload, props.conflict, durability);
        match tokio::time::timeout(effective.timeout, write).await {
            Ok(Ok(object)) => Ok(object),
            Ok(Err(error)) => Err(self.replica_failed(operation, props, props.w, props.dw, &error)),
            Err(_elapsed) => Err(self.timed_out(operation, props, props.w, props.dw, effective.timeout)),
        }
    }

    /// The replicas of a key, in preference order. A cluster of one has
    /// only this node.
    fn preference_list(&self, n: u8) -> Vec<String> {
        let _ = n;
        vec![self.node_id.clone()]
    }

    fn check_reachable(
        &self,
        operation: &'static str,
        props: BucketProps,
        needed: u8,
        needed_durable: u8,
        available: usize,
    ) -> Result<(), CoordinatorError> {
        if usize::from(needed) <= available && usize::from(needed_durable) <= available {
            return Ok(());
        }
        let mut replicas = vec![ReplicaOutcome { node: self.node_id.clone(), status: "ok", reason: None }];
        for missing in available..usize::from(props.n) {
            replicas.push(ReplicaOutcome {
                node: format!("(replica {})", missing + 1),
                status: "unreachable",
                reason: Some("the cluster has fewer nodes than n".to_string()),
            });
        }
        Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation,
            n: props.n,
            needed,
            needed_durable,
            answered: available as u8,
            replicas,
            hint: format!(
                "this cluster has {available} node(s) but the request needs {needed}; lower r/w/dw for the request, \
                 lower the bucket's n (PUT /buckets/{{bucket}}/props), or add nodes"
            ),
        })))
    }

    fn replica_failed(
        &self,
        operation: &'static str,
        props: BucketProps,
        needed: u8,
        needed_durable: u8,
        error: &ReplicaError,
    ) -> CoordinatorError {
        let kind = if error.is_corruption() { "corruption" } else { "storage error" };
        CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation,
            n: props.n,
            needed,
            needed_durable,
            answered: 0,
            replicas: vec![ReplicaOutcome {
                node: self.node_id.clone(),
                status: "failed",
                reason: Some(error.to_string()),
            }],
            hint: format!("the replica reported {kind}; see the node's log"),
        }))
    }

    fn timed_out(
        &self,
        operation: &'static str,
        props: BucketProps,
        needed: u8,
        needed_durable: u8,
        timeout: Duration,
    ) -> CoordinatorError {
        CoordinatorError::Unavailable(Box::new(QuorumFailure {
            operation,
            n: props.n,
            needed,
            needed_durable,
            answered: 0,
            replicas: vec![ReplicaOutcome {
                node: self.node_id.clone(),
                status: "timeout",
                reason: Some(format!("no answer within {} ms", timeout.as_millis())),
            }],
            hint: "retry, or raise timeout_ms; the write may still have been applied".to_string(),
        }))
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
