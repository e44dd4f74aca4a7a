//! The client HTTP API (SPEC section 4, modelled on Riak's): routing, request
//! parsing and response encoding. A thin layer: every decision about data
//! lives in the [`Coordinator`]; this module only translates HTTP to calls
//! and results (or errors) back to status codes with bodies that say what
//! went wrong and what to do.

pub mod body;
pub mod multipart;
pub mod params;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dynamo_core::context::{decode_client_context, encode_client_context, encode_context};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{MAX_CONTENT_TYPE_LEN, Payload, VersionedObject};
use dynamo_core::version::VersionVector;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use md5::{Digest, Md5};
use serde_json::json;

use crate::anti_entropy::{AntiEntropy, AntiEntropyTotals, TriggerError};
use crate::buckets::{PropsPatch, PropsStoreError};
use crate::coordinator::{Coordinator, CoordinatorError, RequestOptions, latest_timestamp, serve_locally};
use crate::gossip::Gossip;
use crate::membership::{ChangeError, CommitError, JoinError, shares};
use crate::metrics::{Metrics, Operation, render_failure_handling, render_membership};
use crate::transfers::Transfers;
use body::TrackedBody;
use dynamo_core::messages::{Request as ReplicaRequest, Response as ReplicaResponse};
use dynamo_core::ring::NodeId;

/// Header carrying the opaque causal context.
pub const CONTEXT_HEADER: &str = "X-Dynamo-Context";
/// How long `/admin/replicas` waits for each replica.
const ADMIN_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Largest bucket-props body accepted.
const MAX_PROPS_BODY: usize = 64 * 1024;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// The request type of every handler.
type ApiRequest = Request<TrackedBody>;

/// The node services the HTTP layer serves.
pub struct ApiParts {
    /// Client requests.
    pub coordinator: Arc<Coordinator>,
    /// `/admin/anti-entropy`.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Membership (through gossip): `/admin/cluster`, join, plan, commit.
    pub gossip: Arc<Gossip>,
    /// `/admin/transfers`.
    pub transfers: Arc<Transfers>,
}

/// Everything the HTTP layer needs, shared by all connections.
pub struct Api {
    coordinator: Arc<Coordinator>,
    anti_entropy: Arc<AntiEntropy>,
    gossip: Arc<Gossip>,
    transfers: Arc<Transfers>,
    metrics: Arc<Metrics>,
    node_id: String,
    max_value_bytes: usize,
    partitions: u32,
    boundary_seed: AtomicU64,
}

impl Api {
    /// Builds the API over the node's services (`parts`), with this
    /// node's metrics, id and limits.
    pub fn new(
        parts: ApiParts,
        metrics: Arc<Metrics>,
        node_id: String,
        max_value_bytes: usize,
        partitions: u32,
    ) -> Self {
        let ApiParts { coordinator, anti_entropy, gossip, transfers } = parts;
        Self {
            coordinator,
            anti_entropy,
            gossip,
            transfers,
            metrics,
            node_id,
            max_value_bytes,
            partitions,
            boundary_seed: AtomicU64::new(1),
        }
    }

    /// Serves one request, recording its metrics.
    pub async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let expects_continue = parts
            .headers
            .get(EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (body, body_finished) = TrackedBody::new(body, expects_continue);
        let (operation, mut response) = self.route(Request::from_parts(parts, body)).await;
        self.metrics.record_request(operation, response.status().as_u16(), started.elapsed());
        if !body_finished.load(Ordering::Acquire) {
            // See `body`: hyper closes this connection after the answer.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    async fn route(&self, request: ApiRequest) -> (Operation, HttpResponse) {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method().clone();
        match (method, segments.as_slice()) {
            (Method::GET, ["ping"]) => (Operation::Other, text(StatusCode::OK, "OK")),
            (Method::GET, ["metrics"]) => (Operation::Other, self.metrics_response()),
            (method, ["buckets", bucket, "keys", key]) => {
                let operation = match method {
                    Method::GET => Operation::Get,
                    Method::PUT | Method::POST => Operation::Put,
                    Method::DELETE => Operation::Delete,
                    _ => return (Operation::Other, method_not_allowed("GET, PUT, DELETE")),
                };
                if let Some(reason) = self.gossip.membership().not_serving_reason() {
                    return (operation, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                let response = match object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) => match operation {
                        Operation::Get => self.get_object(&key, request).await,
                        Operation::Put => self.put_object(&key, request).await,
                        _ => self.delete_object(&key, request).await,
                    },
                };
                (operation, response)
            }
            (method, ["buckets", bucket, "props"]) => {
                let response = match method {
                    Method::GET => self.get_props(bucket),
                    Method::PUT => self.put_props(bucket, request).await,
                    _ => method_not_allowed("GET, PUT"),
                };
                (Operation::Props, response)
            }
            (Method::GET, ["admin", "peers"]) => (Operation::Other, self.admin_peers()),
            (Method::GET, ["admin", "hints"]) => (Operation::Other, self.admin_hints()),
            (Method::GET, ["admin", "replicas", bucket, key]) => {
                let response = match object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) => self.admin_replicas(&key).await,
                };
                (Operation::Other, response)
            }
            (method, ["admin", "anti-entropy"]) => {
                let response = match method {
                    Method::GET => self.anti_entropy_status(&request),
                    Method::POST => self.anti_entropy_trigger(&request).await,
                    _ => method_not_allowed("GET, POST"),
                };
                (Operation::Other, response)
            }
            (Method::GET, ["admin", "cluster"]) => (Operation::Other, self.admin_cluster(&request)),
            (Method::GET, ["admin", "ring"]) => (Operation::Other, self.admin_ring(&request)),
            (Method::GET, ["admin", "plan"]) => (Operation::Other, self.admin_plan(&request)),
            (method, ["admin", "join"]) => {
                let response = match method {
                    Method::POST => self.admin_join(&request).await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", "commit"]) => {
                let response = match method {
                    Method::POST => self.admin_commit(&request).await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", action @ ("leave" | "remove")]) => {
                let response = match method {
                    Method::POST => self.admin_leave_or_remove(&request, action == &"leave").await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", "transfers"]) => {
                let response = match method {
                    Method::GET => self.admin_transfers(&request),
                    _ => method_not_allowed("GET"),
                };
                (Operation::Other, response)
            }
            _ => (Operation::Other, error(StatusCode::NOT_FOUND, format!("no such resource: {path}"))),
        }
    }

    /// The cluster as this node sees it: members, their status, addresses,
    /// ring shares and reachability, the committed epoch, join and gossip.
    fn admin_cluster(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        let membership = self.gossip.membership();
        let cluster = membership.cluster();
        let view = cluster.view();
        let ring = view.ring();
        let shares = shares(ring);
        let peers = self.coordinator.detector().report();
        let members: Vec<serde_json::Value> = view
            .state()
            .members()
            .map(|member| {
                let share = shares.iter().find(|share| share.node == member.id.as_str());
                let reachable = if member.id == *cluster.local() {
                    "self"
                } else {
                    peers.iter().find(|peer| peer.node == member.id.as_str()).map_or("unknown", |peer| peer.state)
                };
                json!({
                    "id": member.id.to_string(),
                    "status": member.status,
                    "rpc_addr": member.rpc_addr,
                    "http_addr": member.http_addr,
                    "capacity": member.capacity,
                    "zone": member.zone,
                    "version": member.version,
                    "in_ring": ring.node(&member.id).is_some(),
                    "partitions": share.map_or(0, |share| share.partitions),
                    "share": share.map_or(0.0, |share| share.fraction),
                    "ideal": share.map_or(0.0, |share| share.ideal),
                    "reachable": reachable,
                })
            })
            .collect();
        let gossip = self.gossip.stats();
        json_response(
            StatusCode::OK,
            &json!({
                "node": self.node_id,
                "cluster_id": view.state().cluster_id().to_string(),
                "state_digest": view.digest().to_string(),
                "view_version": view.version(),
                "epoch": view.state().epoch(),
                "partitions": ring.partitions(),
                "max_imbalance": ring.max_imbalance(),
                "members": members,
                "join": membership.join_status(),
                "gossip": {
                    "interval_ms": u64::try_from(self.gossip.interval().as_millis()).unwrap_or(u64::MAX),
                    "seeds": self.gossip.seeds(),
                    "stats": gossip,
                },
            }),
        )
    }

    /// The committed ring: each partition's owner and each node's share.
    fn admin_ring(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        let view = self.gossip.membership().cluster().view();
        let ring = view.ring();
        json_response(
            StatusCode::OK,
            &json!({
                "node": self.node_id,
                "epoch": ring.version(),
                "partitions": ring.partitions(),
                "owners": ring.owners().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "shares": shares(ring),
                "max_imbalance": ring.max_imbalance(),
            }),
        )
    }

    /// The plan: the ring the current members would have, its moves,
    /// shares, and what `commit` would do with it.
    fn admin_plan(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        match self.gossip.membership().plan_report() {
            Ok(report) => json_response(StatusCode::OK, &json!(report)),
            Err(problem) => commit_error(&problem),
        }
    }

    /// Joins the cluster of `?seed=RPC_ADDR` (this node must be alone and
    /// empty); answers once joined, or why not.
    async fn admin_join(&self, request: &ApiRequest) -> HttpResponse {
        let seed = match params::parse_query(request.uri().query(), &["seed"]) {
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
            Ok(pairs) => match pairs.into_iter().next() {
                Some((_, seed)) if seed.contains(':') => seed,
                _ => return error(StatusCode::BAD_REQUEST, "give the seed's RPC address: ?seed=HOST:PORT".to_string()),
            },
        };
        match self.gossip.membership().join(&seed).await {
            Ok(view) => json_response(
                StatusCode::OK,
                &json!({
                    "node": self.node_id,
                    "joined": true,
                    "seed": seed,
                    "cluster_id": view.state().cluster_id().to_string(),
                    "epoch": view.state().epoch(),
                    "members": view.state().members().count(),
                    "note": "this node is a joining member: it owns no partitions until a plan is committed",
                }),
            ),
            Err(problem) => {
                let status = match &problem {
                    JoinError::AlreadyMember { .. } | JoinError::HasData { .. } => StatusCode::CONFLICT,
                    JoinError::Change(ChangeError::Storage(_)) => StatusCode::INTERNAL_SERVER_ERROR,
                    JoinError::Change(_) => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                error(status, problem.to_string())
            }
        }
    }

    /// `POST /admin/leave[?node=ID]` (this node by default): the node
    /// leaves gracefully. `POST /admin/remove?node=ID`: a dead node is
    /// removed and its partitions re-replicated from the survivors.
    async fn admin_leave_or_remove(&self, request: &ApiRequest, leave: bool) -> HttpResponse {
        let node = match params::parse_query(request.uri().query(), &["node"]) {
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
            Ok(pairs) => pairs.into_iter().next().map(|(_, value)| value),
        };
        let membership = self.gossip.membership();
        let outcome = match (leave, node) {
            (true, node) => {
                let node = node.map_or_else(|| membership.cluster().local().clone(), NodeId::new);
                membership.leave(&node).await
            }
            (false, Some(node)) => membership.remove(&NodeId::new(node)).await,
            (false, None) => {
                return error(StatusCode::BAD_REQUEST, "remove needs ?node=ID: the node to remove".to_string());
            }
        };
        match outcome {
            Ok(report) => json_response(StatusCode::OK, &json!(report)),
            Err(problem) => commit_error(&problem),
        }
    }

    /// The partition transfers: the cluster-wide pending pulls from the
    /// gossiped state, and this node's own pulls with their progress.
    fn admin_transfers(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        json_response(StatusCode::OK, &json!(self.transfers.report()))
    }

    /// Commits the plan (`?force=true` is accepted and changes nothing;
    /// earlier versions needed it to re-lay empty partitions).
    async fn admin_commit(&self, request: &ApiRequest) -> HttpResponse {
        // `force` is still parsed so that a bad value is reported, and a
        // script written for earlier versions keeps working.
        match params::parse_query(request.uri().query(), &["force"]) {
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
            Ok(pairs) => match pairs.first().map(|(_, value)| value.as_str()) {
                None | Some("false" | "true") => {}
                Some(other) => return error(StatusCode::BAD_REQUEST, format!("force={other:?}: use true or false")),
            },
        }
        match self.gossip.membership().commit().await {
            Ok(report) => json_response(StatusCode::OK, &json!(report)),
            Err(problem) => commit_error(&problem),
        }
    }

    async fn get_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let options = match request_options(&request, &["r", "n", "timeout_ms"]) {
            Ok(options) => options,
            Err(problem) => return problem.into_response(),
        };
        match self.coordinator.get(key, &options).await {
            Ok(object) => self.object_response(&object),
            Err(error) => coordinator_error(error),
        }
    }

    fn object_response(&self, object: &VersionedObject) -> HttpResponse {
        let context = encode_client_context(object.context(), latest_timestamp(object));
        if object.is_empty() {
            return error(StatusCode::NOT_FOUND, "not found".to_string());
        }
        self.metrics.record_siblings(object.siblings().len());
        if object.is_deleted() {
            let mut response = error(StatusCode::NOT_FOUND, "not found (deleted)".to_string());
            set_header(&mut response, CONTEXT_HEADER, &context);
            return response;
        }
        if let [only] = object.siblings()
            && let Payload::Value { data, content_type } = &only.payload
        {
            let mut response = Response::new(Full::new(data.clone()));
            let content_type = content_type.as_deref().unwrap_or(multipart::DEFAULT_CONTENT_TYPE);
            set_header(&mut response, CONTENT_TYPE.as_str(), content_type);
            set_header(&mut response, CONTEXT_HEADER, &context);
            set_header(&mut response, multipart::VTAG_HEADER, &multipart::vtag(only));
            set_header(&mut response, multipart::TIMESTAMP_HEADER, &only.timestamp.wall_ms().to_string());
            return response;
        }
        let seed = self.boundary_seed.fetch_add(1, Ordering::Relaxed);
        let (boundary, body) = multipart::encode(object.siblings(), seed);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::MULTIPLE_CHOICES;
        set_header(&mut response, CONTENT_TYPE.as_str(), &format!("multipart/mixed; boundary={boundary}"));
        set_header(&mut response, CONTEXT_HEADER, &context);
        response
    }

    async fn put_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let (options, context) = match write_preamble(&request) {
            Ok(parts) => parts,
            Err(problem) => return problem.into_response(),
        };
        let content_type = match request_content_type(&request) {
            Ok(content_type) => content_type,
            Err(problem) => return problem.into_response(),
        };
        let data = match self.read_value(request).await {
            Ok(data) => data,
            Err(problem) => return problem.into_response(),
        };
        let payload = Payload::Value { data, content_type };
        self.write(key, &context, payload, &options).await
    }

    async fn delete_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        match write_preamble(&request) {
            Ok((options, context)) => self.write(key, &context, Payload::Tombstone, &options).await,
            Err(problem) => problem.into_response(),
        }
    }

    async fn write(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
    ) -> HttpResponse {
        match self.coordinator.put(key, context, payload, options).await {
            Ok((context, timestamp)) => {
                let mut response = empty(StatusCode::NO_CONTENT);
                set_header(&mut response, CONTEXT_HEADER, &encode_client_context(&context, timestamp));
                response
            }
            Err(error) => coordinator_error(error),
        }
    }

    /// Reads a value body, refusing it (413) as soon as it is known to be
    /// larger than the limit: from Content-Length before reading, or while
    /// streaming a chunked body.
    async fn read_value(&self, request: ApiRequest) -> Result<Bytes, ApiError> {
        let limit = self.max_value_bytes;
        let too_large = |size: String| {
            self.metrics.record_value_too_large();
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("value is {size} bytes; the limit is {limit} bytes (max_value_bytes); nothing was stored"),
            )
        };
        if let Some(length) = declared_length(&request)?
            && length > limit as u64
        {
            return Err(too_large(length.to_string()));
        }
        match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(too_large(format!("more than {limit}")))
            }
            Err(error) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("could not read the request body: {error}")))
            }
        }
    }

    fn get_props(&self, bucket: &str) -> HttpResponse {
        if let Err(message) = dynamo_core::keys::validate_bucket(bucket) {
            return error(StatusCode::BAD_REQUEST, message.to_string());
        }
        match self.coordinator.buckets().get(bucket) {
            Ok(props) => json_response(StatusCode::OK, &json!(props)),
            Err(error) => props_error(error),
        }
    }

    async fn put_props(&self, bucket: &str, request: ApiRequest) -> HttpResponse {
        if let Err(message) = dynamo_core::keys::validate_bucket(bucket) {
            return error(StatusCode::BAD_REQUEST, message.to_string());
        }
        let body = match Limited::new(request.into_body(), MAX_PROPS_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error(StatusCode::BAD_REQUEST, format!("props body unreadable or over {MAX_PROPS_BODY} bytes"));
            }
        };
        let patch: PropsPatch = match serde_json::from_slice(&body) {
            Ok(patch) => patch,
            Err(parse) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("props must be a JSON object with any of n, r, w, dw, conflict (siblings|lww): {parse}"),
                );
            }
        };
        match self.coordinator.set_props(bucket, &patch).await {
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(error) => coordinator_error(error),
        }
    }

    /// Each replica's own state of the key, read from each replica
    /// directly and not reconciled: what an operator needs to see whether
    /// replicas agree.
    async fn admin_replicas(&self, key: &ObjectKey) -> HttpResponse {
        let props = match self.coordinator.buckets().get(key.bucket()) {
            Ok(props) => props,
            Err(error) => return props_error(error),
        };
        let replicas = self.coordinator.cluster().preference_list(key, props.n);
        let mut states = Vec::with_capacity(replicas.len());
        for node in &replicas {
            let outcome = if node == self.coordinator.cluster().local() {
                serve_locally(self.coordinator.replica(), ReplicaRequest::Read { key: key.clone() }).await
            } else {
                self.coordinator.peers().call(node, ReplicaRequest::Read { key: key.clone() }, ADMIN_READ_TIMEOUT).await
            };
            states.push(match outcome {
                Ok(ReplicaResponse::Read { object }) => json!({
                    "node": node.to_string(),
                    "status": "ok",
                    "context": encode_context(object.context()),
                    "versions": object.siblings().iter().map(version_summary).collect::<Vec<_>>(),
                }),
                Ok(ReplicaResponse::Unreadable { reason }) => {
                    json!({ "node": node.to_string(), "status": "unreadable", "reason": reason })
                }
                Ok(ReplicaResponse::Failed { reason }) | Err(reason) => {
                    json!({ "node": node.to_string(), "status": "failed", "reason": reason })
                }
                Ok(_) => json!({ "node": node.to_string(), "status": "failed", "reason": "unexpected reply" }),
            });
        }
        json_response(
            StatusCode::OK,
            &json!({
                "bucket": key.bucket(),
                "key": String::from_utf8_lossy(key.key()),
                "partition": key.partition(self.partitions),
                "n": props.n,
                "preference_list": replicas.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "moving": self.coordinator.cluster().is_moving(key),
                "read_from": self.coordinator.cluster().read_list(key, props.n).iter().map(ToString::to_string).collect::<Vec<_>>(),
                "replicas": states,
            }),
        )
    }

    /// This node's failure detector: which peers it routes to and which it
    /// routes around (paper section 4.8.3). Local to this node by design.
    fn admin_peers(&self) -> HttpResponse {
        json_response(StatusCode::OK, &json!({ "node": self.node_id, "peers": self.coordinator.detector().report() }))
    }

    /// The hints this node holds for unreachable replicas.
    fn admin_hints(&self) -> HttpResponse {
        json_response(StatusCode::OK, &json!({ "node": self.node_id, "hints": self.coordinator.hints().stats() }))
    }

    /// Anti-entropy status: the scheduler's settings, the trees, totals and
    /// the last exchange of every partition.
    fn anti_entropy_status(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        json_response(StatusCode::OK, &json!(self.anti_entropy.status()))
    }

    /// Runs an exchange of every partition this node replicates, or of the
    /// one named by `?partition=P`, and answers when they are done.
    async fn anti_entropy_trigger(&self, request: &ApiRequest) -> HttpResponse {
        let partition = match params::parse_query(request.uri().query(), &["partition"]) {
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
            Ok(pairs) => match pairs.first().map(|(_, value)| value.parse::<u32>()) {
                None => None,
                Some(Ok(partition)) => Some(partition),
                Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "partition must be a number".to_string()),
            },
        };
        match self.anti_entropy.trigger(partition).await {
            Ok(reports) => {
                let totals = AntiEntropyTotals::of(&reports);
                json_response(StatusCode::OK, &json!({ "exchanges": reports, "totals": totals }))
            }
            Err(TriggerError::Props(problem)) => props_error(problem),
            Err(problem) => error(StatusCode::BAD_REQUEST, problem.to_string()),
        }
    }

    fn metrics_response(&self) -> HttpResponse {
        let mut body = self.metrics.render(&self.node_id, self.coordinator.replica().store().stats());
        body.push_str(&render_failure_handling(
            &self.node_id,
            &self.coordinator.detector().report(),
            self.coordinator.hints().stats(),
        ));
        crate::metrics::render_anti_entropy(&mut body, &self.node_id, &self.anti_entropy.totals());
        render_membership(
            &mut body,
            &self.node_id,
            self.gossip.membership().cluster().view().state(),
            &self.gossip.stats(),
        );
        crate::metrics::render_transfers(&mut body, &self.node_id, &self.transfers.report());
        let mut response = Response::new(Full::new(Bytes::from(body)));
        set_header(&mut response, CONTENT_TYPE.as_str(), "text/plain; version=0.0.4");
        response
    }
}

fn version_summary(sibling: &dynamo_core::object::Sibling) -> serde_json::Value {
    let (deleted, size, digest) = match &sibling.payload {
        Payload::Value { data, .. } => (false, data.len(), hex(&Md5::digest(data))),
        Payload::Tombstone => (true, 0, String::new()),
    };
    json!({
        "vtag": multipart::vtag(sibling),
        "timestamp_ms": sibling.timestamp.wall_ms(),
        "deleted": deleted,
        "size": size,
        "digest_md5": digest,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn object_key(bucket: &str, key: &str) -> Result<ObjectKey, ApiError> {
    let bucket =
        params::percent_decode(bucket).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("bucket {bucket:?} is not valid percent-encoded UTF-8"))
        })?;
    let key = params::percent_decode(key)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, format!("bad key: {message}")))?;
    ObjectKey::new(&bucket, &key).map_err(|problem| ApiError::new(StatusCode::BAD_REQUEST, problem.to_string()))
}

fn request_options(request: &ApiRequest, allowed: &[&str]) -> Result<RequestOptions, ApiError> {
    let pairs = params::parse_query(request.uri().query(), allowed)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let mut options = RequestOptions::default();
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "r" => &mut options.r,
            "w" => &mut options.w,
            "dw" => &mut options.dw,
            "n" => &mut options.n,
            _ => &mut options.timeout_ms,
        };
        *slot = Some(value);
    }
    Ok(options)
}

fn write_preamble(request: &ApiRequest) -> Result<(RequestOptions, VersionVector), ApiError> {
    let mut options = request_options(request, &["w", "dw", "n", "timeout_ms"])?;
    let context = match request.headers().get(CONTEXT_HEADER) {
        None => VersionVector::new(),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{CONTEXT_HEADER} is not ASCII")))?;
            let (context, seen) = decode_client_context(text.trim()).map_err(|problem| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("malformed {CONTEXT_HEADER}: {problem}"))
            })?;
            options.context_timestamp = seen.0;
            context
        }
    };
    Ok((options, context))
}

fn request_content_type(request: &ApiRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if text.len() <= MAX_CONTENT_TYPE_LEN => Ok(Some(text.to_string())),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Content-Type must be ASCII and at most {MAX_CONTENT_TYPE_LEN} bytes"),
        )),
    }
}

fn declared_length(request: &ApiRequest) -> Result<Option<u64>, ApiError> {
    match request.headers().get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Content-Length is not a number".to_string())),
    }
}

fn coordinator_error(problem: CoordinatorError) -> HttpResponse {
    let (status, body) = coordinator_error_parts(&problem);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut response, CONTENT_TYPE.as_str(), "application/json");
    response
}

/// The HTTP status and JSON body of a coordinator error; also what a
/// replica coordinating a forwarded write sends back to relay.
pub fn coordinator_error_parts(problem: &CoordinatorError) -> (u16, String) {
    match problem {
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
        CoordinatorError::Props(PropsStoreError::Invalid(message)) => (400, json!({ "error": message }).to_string()),
        CoordinatorError::Props(other) => (500, json!({ "error": other.to_string() }).to_string()),
        CoordinatorError::NotAReplica(message) => (
            503,
            json!({ "error": message, "hint": "retry: the new ring reaches every node within seconds" }).to_string(),
        ),
    }
}

fn commit_error(problem: &CommitError) -> HttpResponse {
    let status = match problem {
        CommitError::UnknownNode(_) => StatusCode::NOT_FOUND,
        CommitError::Props(_) | CommitError::Change(ChangeError::Storage(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    };
    error(status, problem.to_string())
}

fn props_error(problem: PropsStoreError) -> HttpResponse {
    match problem {
        PropsStoreError::Invalid(message) => error(StatusCode::BAD_REQUEST, message),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// A client-facing failure: a status and a message saying what is wrong,
/// turned into a JSON body at the edge.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    fn into_response(self) -> HttpResponse {
        error(self.status, self.message)
    }
}

fn error(status: StatusCode, message: String) -> HttpResponse {
    json_response(status, &json!({ "error": message }))
}

fn method_not_allowed(allowed: &str) -> HttpResponse {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allowed}"));
    set_header(&mut response, "Allow", allowed);
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    set_header(&mut response, CONTENT_TYPE.as_str(), "application/json");
    response
}

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    set_header(&mut response, CONTENT_TYPE.as_str(), "text/plain");
    response
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn set_header(response: &mut HttpResponse, name: &str, value: &str) {
    // Every value set here is ASCII built by this module (contexts are
    // base64, content types were checked on the way in).
    if let (Ok(name), Ok(value)) =
        (hyper::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
    {
        response.headers_mut().insert(name, value);
    }
}
