//! The HTTP front end: the client API of SPEC section 4 (modelled on
//! Riak's) and the admin API, over the coordinator. One front end of
//! several (the Redis protocol is [`crate::resp`]), each a folder beside
//! this one that turns its requests into coordinator calls
//! and never reaches past the coordinator into replicas or storage (the
//! admin routes, which report one node's own state, are the exception).
//!
//! - [`objects`]: get, put and delete of a key, bucket props;
//! - [`datatypes`]: reads and operations of counters and sets (issue 12).
//! - [`listing`]: the buckets, and a bucket's keys page by page (issue 14).
//! - [`ring`]: `GET /ring`, the ring a partition-aware client routes by,
//!   and the ring epoch header on every answer (issue 15).
//! - [`replicas`]: this node's own copy of a key, read and merged, for a
//!   client that coordinates by itself (issue 15).
//! - [`admin`]: membership, replicas of a key, peers, hints,
//!   anti-entropy, metrics.
//! - [`params`]: the query string and percent-encoding.
//! - [`multipart`]: siblings as `multipart/mixed`.
//! - [`body`]: the request body, and draining one that was refused.
//! - [`responses`]: response types, JSON errors and status codes.
//!
//! This module routes a request to its handler, records its metrics and
//! stamps every answer with the node's ring epoch
//! ([`ring::RING_EPOCH_HEADER`]).

pub mod admin;
pub mod body;
pub mod datatypes;
pub mod listing;
pub mod map_json;
pub mod multipart;
pub mod objects;
pub mod op_json;
pub mod params;
pub mod replicas;
pub mod responses;
pub mod ring;
mod ui;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, EXPECT, HeaderValue};
use hyper::{Method, Request, StatusCode};

use crate::anti_entropy::AntiEntropy;
use crate::coordinator::Coordinator;
use crate::gossip::Gossip;
use crate::metrics::{Metrics, Operation};
use crate::services::NodeServices;
use crate::transfers::Transfers;
use admin::{AdminApi, AdminParts};
use body::TrackedBody;
pub use objects::CONTEXT_HEADER;
use objects::ObjectApi;
use replicas::ReplicaApi;
pub use responses::HttpResponse;
use responses::{ApiRequest, error, method_not_allowed, set_header, text};
pub use ring::RING_EPOCH_HEADER;

/// The node parts the HTTP front end serves.
pub struct ApiParts {
    /// Client requests (the object API).
    pub coordinator: Arc<Coordinator>,
    /// The node's replica, cluster view, peers, props and hints (admin).
    pub services: NodeServices,
    /// `/admin/anti-entropy`.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Membership (through gossip): `/admin/cluster`, join, plan, commit.
    pub gossip: Arc<Gossip>,
    /// `/admin/transfers`.
    pub transfers: Arc<Transfers>,
    /// `/admin/series`: the last 15 minutes, for the dashboard.
    pub series: Arc<crate::series::Series>,
}

/// Everything the HTTP layer needs, shared by all connections.
pub struct Api {
    objects: ObjectApi,
    datatypes: datatypes::DatatypeApi,
    listing: listing::ListingApi,
    replicas: ReplicaApi,
    admin: AdminApi,
    /// Whether this node serves data yet (not during a start-up join).
    gossip: Arc<Gossip>,
    metrics: Arc<Metrics>,
    /// This node's id, named in `GET /ring`.
    node_id: String,
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
        let ApiParts { coordinator, services, anti_entropy, gossip, transfers, series } = parts;
        let datatypes = datatypes::DatatypeApi::new(coordinator.clone());
        let listing = listing::ListingApi::new(coordinator.clone());
        let staleness = coordinator.staleness();
        let forwarded = coordinator.forwarded_counter();
        let objects = ObjectApi::new(coordinator, metrics.clone(), max_value_bytes);
        let replicas = ReplicaApi::new(services.clone(), max_value_bytes);
        let admin_parts =
            AdminParts { services, anti_entropy, gossip: gossip.clone(), transfers, staleness, series, forwarded };
        let admin = AdminApi::new(admin_parts, metrics.clone(), node_id.clone(), partitions);
        Self { objects, datatypes, listing, replicas, admin, gossip, metrics, node_id }
    }

    /// Serves one request, recording its metrics; the answer carries this
    /// node's ring epoch, whatever it is.
    pub async fn handle(&self, request: Request<Incoming>) -> HttpResponse {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let expects_continue =
            parts.headers.get(EXPECT).is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let (body, body_finished) = TrackedBody::new(body, expects_continue);
        let (operation, mut response) = self.route(Request::from_parts(parts, body)).await;
        self.metrics.record_request(operation, response.status().as_u16(), started.elapsed());
        if !body_finished.load(Ordering::Acquire) {
            // See `body`: hyper closes this connection after the answer.
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let epoch = self.gossip.membership().cluster().ring().version();
        set_header(&mut response, RING_EPOCH_HEADER, &epoch.to_string());
        response
    }

    async fn route(&self, request: ApiRequest) -> (Operation, HttpResponse) {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method().clone();
        match (method, segments.as_slice()) {
            (Method::GET, ["ping"]) => (Operation::Other, text(StatusCode::OK, "OK")),
            (Method::GET, ["metrics"]) => (Operation::Other, self.admin.metrics_response()),
            (method, ["ring"]) => {
                if method != Method::GET {
                    return (Operation::Other, method_not_allowed("GET"));
                }
                let membership = self.gossip.membership();
                if let Some(reason) = membership.not_serving_reason() {
                    return (Operation::Other, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                (Operation::Other, ring::ring_response(&membership.cluster().view(), &self.node_id, &request))
            }
            (method, ["replica", bucket, key]) => {
                if method != Method::GET && method != Method::PUT {
                    return (Operation::Other, method_not_allowed("GET, PUT"));
                }
                if let Some(reason) = self.gossip.membership().not_serving_reason() {
                    return (Operation::Other, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                let response = match objects::object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) if method == Method::GET => self.replicas.get_replica(&key, request).await,
                    Ok(key) => self.replicas.put_replica(&key, request).await,
                };
                (Operation::Other, response)
            }
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
                let response = match objects::object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) => match operation {
                        Operation::Get => self.objects.get_object(&key, request).await,
                        Operation::Put => self.objects.put_object(&key, request).await,
                        _ => self.objects.delete_object(&key, request).await,
                    },
                };
                (operation, response)
            }
            (method, ["buckets", bucket, "datatypes", key]) => {
                let operation = match method {
                    Method::GET => Operation::Get,
                    Method::POST => Operation::Put,
                    _ => return (Operation::Other, method_not_allowed("GET, POST")),
                };
                if let Some(reason) = self.gossip.membership().not_serving_reason() {
                    return (operation, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                let response = match objects::object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) if operation == Operation::Get => self.datatypes.get_value(&key, request).await,
                    Ok(key) => self.datatypes.post_update(&key, request).await,
                };
                (operation, response)
            }
            (method, ["buckets"]) => {
                if method != Method::GET {
                    return (Operation::Other, method_not_allowed("GET"));
                }
                if let Some(reason) = self.gossip.membership().not_serving_reason() {
                    return (Operation::Other, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                (Operation::Other, self.listing.list_buckets(&request).await)
            }
            (method, ["buckets", bucket, "keys"]) => {
                if method != Method::GET {
                    return (Operation::Other, method_not_allowed("GET"));
                }
                if let Some(reason) = self.gossip.membership().not_serving_reason() {
                    return (Operation::Other, error(StatusCode::SERVICE_UNAVAILABLE, reason));
                }
                (Operation::Other, self.listing.list_keys(bucket, &request).await)
            }
            (method, ["buckets", bucket, "props"]) => {
                let response = match method {
                    Method::GET => self.objects.get_props(bucket),
                    Method::PUT => self.objects.put_props(bucket, request).await,
                    _ => method_not_allowed("GET, PUT"),
                };
                (Operation::Props, response)
            }
            (Method::GET, ["admin", "peers"]) => (Operation::Other, self.admin.admin_peers()),
            (Method::GET, ["admin", "staleness"]) => (Operation::Other, self.admin.admin_staleness()),
            (Method::GET, ["admin", "series"]) => (Operation::Other, self.admin.admin_series()),
            (Method::GET, ["ui"]) => (Operation::Other, ui::page()),
            (Method::GET, ["admin", "hints"]) => (Operation::Other, self.admin.admin_hints()),
            (Method::GET, ["admin", "replicas", bucket, key]) => {
                let response = match objects::object_key(bucket, key) {
                    Err(problem) => problem.into_response(),
                    Ok(key) => self.admin.admin_replicas(&key).await,
                };
                (Operation::Other, response)
            }
            (method, ["admin", "anti-entropy"]) => {
                let response = match method {
                    Method::GET => self.admin.anti_entropy_status(&request),
                    Method::POST => self.admin.anti_entropy_trigger(&request).await,
                    _ => method_not_allowed("GET, POST"),
                };
                (Operation::Other, response)
            }
            (Method::GET, ["admin", "cluster"]) => (Operation::Other, self.admin.admin_cluster(&request)),
            (Method::GET, ["admin", "ring"]) => (Operation::Other, self.admin.admin_ring(&request)),
            (Method::GET, ["admin", "plan"]) => (Operation::Other, self.admin.admin_plan(&request)),
            (method, ["admin", "join"]) => {
                let response = match method {
                    Method::POST => self.admin.admin_join(&request).await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", "commit"]) => {
                let response = match method {
                    Method::POST => self.admin.admin_commit(&request).await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", action @ ("leave" | "remove")]) => {
                let response = match method {
                    Method::POST => self.admin.admin_leave_or_remove(&request, action == &"leave").await,
                    _ => method_not_allowed("POST"),
                };
                (Operation::Other, response)
            }
            (method, ["admin", "transfers"]) => {
                let response = match method {
                    Method::GET => self.admin.admin_transfers(&request),
                    _ => method_not_allowed("GET"),
                };
                (Operation::Other, response)
            }
            _ => (Operation::Other, error(StatusCode::NOT_FOUND, format!("no such resource: {path}"))),
        }
    }
}
