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
//!
//! The files: `options.rs` (what a request may override, and the resolved
//! settings), `errors.rs` (why a request failed, with the diagnostics of a
//! quorum not reached), `read.rs` (get and read repair), `write.rs` (put
//! and delete, on a replica or forwarded to one, with sloppy quorum and
//! the hints of its tail), `listing.rs` (bucket listing, and paged key
//! listing by a coverage plan); this file holds the coordinator's state and what
//! both paths share.

mod errors;
pub mod listing;
mod options;
mod read;
mod write;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{Request, Response};
use dynamo_core::props::{BucketProps, DataType, parse_quorum};
use dynamo_core::quorum::QuorumReport;
use dynamo_core::ring::NodeId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::buckets::{PropsPatch, PropsStoreError};
use crate::peers::Peers;
use crate::replica::Replica;
use crate::services::NodeServices;

pub use errors::{CoordinatorError, QuorumFailure, ReplicaOutcome};
use errors::{failed, unexpected};
use options::parse_timeout;
pub use options::{Effective, RequestOptions};

/// Keys whose fastest reader is remembered (for choosing write
/// coordinators). Bounded: the map is cleared when full.
const FASTEST_READER_MEMORY: usize = 16 * 1024;

/// Coordinates client requests on this node.
pub struct Coordinator {
    services: NodeServices,
    default_timeout: Duration,
    fastest_reader: Mutex<HashMap<ObjectKey, NodeId>>,
    listing_pacer: crate::pacer::Pacer,
    staleness: Arc<crate::staleness::Staleness>,
    /// Requests this node sent to another node to coordinate (a write or
    /// data-type update reaching a node outside the key's preference
    /// list): `dynamo_forwarded_requests_total`, which a partition-aware
    /// client keeps at 0.
    forwarded: Arc<AtomicU64>,
}

impl Coordinator {
    /// A coordinator over the node's `services`; requests that set no
    /// timeout get `default_timeout`.
    pub fn new(services: NodeServices, default_timeout: Duration) -> Self {
        let listing_pacer =
            crate::pacer::Pacer::new(crate::config::DEFAULT_LISTING_MAX_KEYS_PER_SEC, services.background.clone());
        Self {
            services,
            default_timeout,
            fastest_reader: Mutex::new(HashMap::new()),
            listing_pacer,
            staleness: Arc::default(),
            forwarded: Arc::default(),
        }
    }

    /// The count of requests this coordinator forwarded to another node
    /// to coordinate (one per attempt), shared with the metrics.
    pub fn forwarded_counter(&self) -> Arc<AtomicU64> {
        self.forwarded.clone()
    }

    /// The staleness this coordinator has measured: write visibility and
    /// stale reads (see [`crate::staleness`]).
    pub fn staleness(&self) -> Arc<crate::staleness::Staleness> {
        self.staleness.clone()
    }

    /// This coordinator with its listings capped at `keys_per_sec`, shared
    /// by every listing it serves.
    pub fn with_listing_rate(mut self, keys_per_sec: u32) -> Self {
        self.listing_pacer = crate::pacer::Pacer::new(keys_per_sec, self.services.background.clone());
        self
    }

    /// The bucket's props as this node knows them (its own, or the
    /// defaults).
    pub fn props(&self, bucket: &str) -> Result<BucketProps, PropsStoreError> {
        self.services.buckets.get(bucket)
    }

    /// This node's wall clock (unix ms): what expiries are set from and
    /// judged by on this node.
    pub fn wall_ms(&self) -> u64 {
        self.services.replica.wall_ms()
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

    /// Changes a bucket's props on this node and on every other member.
    /// Succeeds only when every member stored the change; otherwise the
    /// error names the members that did not (the change stays applied
    /// where it landed, and repeating the request reaches the others).
    pub async fn set_props(&self, bucket: &str, patch: &PropsPatch) -> Result<BucketProps, CoordinatorError> {
        if let Some(wanted) = patch.datatype {
            let current = self.props(bucket)?.datatype;
            if current != DataType::None && wanted != current {
                return Err(CoordinatorError::Conflict(format!(
                    "bucket {bucket} holds {current} values and its datatype is fixed once set; use another bucket \
                     for {wanted} values"
                )));
            }
            if current == DataType::None && wanted != DataType::None {
                self.refuse_if_bucket_holds_keys(bucket, wanted).await?;
            }
        }
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
        every_member_answered(
            outcomes,
            "set props",
            "the change is stored on the members that answered ok; repeat the request when the others are up",
        )?;
        Ok(props)
    }

    /// Refuses (`409`) giving `bucket` the datatype `wanted` when any
    /// member stores a live key of it: those values are not of the type,
    /// and would become unreadable through either API. Every member must
    /// answer (`503` otherwise), since any of them may hold keys. A write
    /// that lands between this check and the change is not caught.
    async fn refuse_if_bucket_holds_keys(&self, bucket: &str, wanted: DataType) -> Result<(), CoordinatorError> {
        let mut members = self.services.cluster.others();
        members.push(self.services.cluster.local().clone());
        let request = Request::BucketHasKeys { bucket: bucket.to_string() };
        let mut answers = self.send_to_all(&members, &request, Instant::now() + self.default_timeout);
        let (mut holders, mut outcomes) = (Vec::new(), Vec::new());
        while let Some((node, outcome)) = answers.recv().await {
            outcomes.push(match outcome {
                Ok(Response::BucketKeys { any }) => {
                    if any {
                        holders.push(node.to_string());
                    }
                    ReplicaOutcome { node: node.to_string(), status: "ok", reason: None, hint_for: None }
                }
                Ok(Response::Failed { reason }) => failed(&node, reason),
                Ok(other) => failed(&node, unexpected(&other)),
                Err(reason) => failed(&node, reason),
            });
        }
        if !holders.is_empty() {
            holders.sort();
            return Err(CoordinatorError::Conflict(format!(
                "bucket {bucket} already holds keys (on {}) and its datatype is fixed once it holds data; \
                 use a new bucket for {wanted} values, or delete its keys first",
                holders.join(", ")
            )));
        }
        every_member_answered(
            outcomes,
            "check that the bucket holds no keys",
            "a bucket takes a datatype only when every member says it holds none of its keys; repeat the request \
             when the others are up",
        )
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

/// Ok when every member's outcome is ok; otherwise the `503` of an
/// `operation` that needs them all, with `hint` for the client.
fn every_member_answered(
    outcomes: Vec<ReplicaOutcome>,
    operation: &'static str,
    hint: &str,
) -> Result<(), CoordinatorError> {
    let answered = outcomes.iter().filter(|outcome| outcome.status == "ok").count();
    if answered == outcomes.len() {
        return Ok(());
    }
    Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
        operation,
        n: outcomes.len() as u8,
        needed: outcomes.len() as u8,
        needed_durable: 0,
        answered: answered as u8,
        replicas: outcomes,
        hint: hint.to_string(),
    })))
}
