//! The admin API: what an operator asks a node about the cluster and tells
//! it to do. Membership (`/admin/cluster`, `ring`, `plan`, `join`,
//! `commit`, `leave`, `remove`, `transfers`), each replica's own copy of a
//! key (`/admin/replicas`), this node's failure detector and hints,
//! anti-entropy status and triggers, and the Prometheus `/metrics`.
//!
//! Unlike the object API, the admin routes look at the node's parts
//! directly ([`NodeServices`], gossip, anti-entropy, transfers): they
//! report what one node holds and sees, which is what an operator needs to
//! diagnose a disagreement, rather than a reconciled answer.

use std::sync::Arc;

use bytes::Bytes;
use dynamo_core::context::encode_context;
use dynamo_core::crdt::value::DataValue;
use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{Request as ReplicaRequest, Response as ReplicaResponse};
use dynamo_core::object::Payload;
use dynamo_core::ring::NodeId;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use md5::{Digest, Md5};
use serde_json::json;

use crate::anti_entropy::{AntiEntropy, AntiEntropyTotals, TriggerError};
use crate::gossip::Gossip;
use crate::http::responses::{ApiRequest, HttpResponse, error, json_response, props_error, set_header};
use crate::http::{multipart, params, ring};
use crate::membership::{ChangeError, CommitError, JoinError, shares};
use crate::metrics::{Metrics, render_failure_handling, render_membership};
use crate::services::NodeServices;
use crate::staleness::Staleness;
use crate::transfers::Transfers;

/// How long `/admin/replicas` waits for each replica.
const ADMIN_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The parts of the node the admin routes look at.
pub struct AdminParts {
    /// Replica, cluster view, peers, failure detector, props, hints.
    pub services: NodeServices,
    /// `/admin/anti-entropy`.
    pub anti_entropy: Arc<AntiEntropy>,
    /// Membership (through gossip): `/admin/cluster`, join, plan, commit.
    pub gossip: Arc<Gossip>,
    /// `/admin/transfers`.
    pub transfers: Arc<Transfers>,
    /// `/admin/staleness`, and its metrics.
    pub staleness: Arc<Staleness>,
    /// `/admin/series`.
    pub series: Arc<crate::series::Series>,
    /// Requests the coordinator forwarded to another node, for the metrics.
    pub forwarded: Arc<std::sync::atomic::AtomicU64>,
}

/// The admin routes, over the node's parts.
pub(crate) struct AdminApi {
    services: NodeServices,
    anti_entropy: Arc<AntiEntropy>,
    gossip: Arc<Gossip>,
    transfers: Arc<Transfers>,
    staleness: Arc<Staleness>,
    series: Arc<crate::series::Series>,
    forwarded: Arc<std::sync::atomic::AtomicU64>,
    metrics: Arc<Metrics>,
    node_id: String,
    partitions: u32,
}

impl AdminApi {
    /// The routes over these parts of node `node_id`, whose ring has
    /// `partitions` partitions.
    pub(crate) fn new(parts: AdminParts, metrics: Arc<Metrics>, node_id: String, partitions: u32) -> Self {
        let AdminParts { services, anti_entropy, gossip, transfers, staleness, series, forwarded } = parts;
        Self { services, anti_entropy, gossip, transfers, staleness, series, forwarded, metrics, node_id, partitions }
    }

    /// The cluster as this node sees it: members, their status, addresses,
    /// ring shares and reachability, the committed epoch, join and gossip.
    pub(crate) fn admin_cluster(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        let membership = self.gossip.membership();
        let cluster = membership.cluster();
        let view = cluster.view();
        let ring = view.ring();
        let shares = shares(ring);
        let peers = self.services.detector.report();
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
                // What `GET /ring` says of the member, and what an operator
                // wants beside it.
                let mut entry = ring::member_json(member);
                entry["rpc_addr"] = json!(member.rpc_addr);
                entry["capacity"] = json!(member.capacity);
                let more = json!({
                    "zone": member.zone,
                    "version": member.version,
                    "in_ring": ring.node(&member.id).is_some(),
                    "partitions": share.map_or(0, |share| share.partitions),
                    "share": share.map_or(0.0, |share| share.fraction),
                    "ideal": share.map_or(0.0, |share| share.ideal),
                    "reachable": reachable,
                });
                if let (Some(fields), serde_json::Value::Object(more)) = (entry.as_object_mut(), more) {
                    fields.extend(more);
                }
                entry
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

    /// The committed ring (as `GET /ring` renders it): each partition's
    /// owner, each node's spec, and each node's share.
    pub(crate) fn admin_ring(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        let view = self.gossip.membership().cluster().view();
        let ring = view.ring();
        let mut body = ring::ring_json(ring);
        body["node"] = json!(self.node_id);
        body["shares"] = json!(shares(ring));
        body["max_imbalance"] = json!(ring.max_imbalance());
        json_response(StatusCode::OK, &body)
    }

    /// The plan: the ring the current members would have, its moves,
    /// shares, and what `commit` would do with it.
    pub(crate) fn admin_plan(&self, request: &ApiRequest) -> HttpResponse {
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
    pub(crate) async fn admin_join(&self, request: &ApiRequest) -> HttpResponse {
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
    pub(crate) async fn admin_leave_or_remove(&self, request: &ApiRequest, leave: bool) -> HttpResponse {
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
    pub(crate) fn admin_transfers(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        json_response(StatusCode::OK, &json!(self.transfers.report()))
    }

    /// Commits the plan (`?force=true` is accepted and changes nothing;
    /// earlier versions needed it to re-lay empty partitions).
    pub(crate) async fn admin_commit(&self, request: &ApiRequest) -> HttpResponse {
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

    /// Each replica's own state of the key, read from each replica
    /// directly and not reconciled: what an operator needs to see whether
    /// replicas agree.
    pub(crate) async fn admin_replicas(&self, key: &ObjectKey) -> HttpResponse {
        let props = match self.services.buckets.get(key.bucket()) {
            Ok(props) => props,
            Err(error) => return props_error(error),
        };
        let replicas = self.services.cluster.preference_list(key, props.n);
        let mut states = Vec::with_capacity(replicas.len());
        for node in &replicas {
            let outcome = if node == self.services.cluster.local() {
                self.services.replica.serve(ReplicaRequest::Read { key: key.clone() }).await
            } else {
                self.services.peers.call(node, ReplicaRequest::Read { key: key.clone() }, ADMIN_READ_TIMEOUT).await
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
                "moving": self.services.cluster.is_moving(key),
                "read_from": self.services.cluster.read_list(key, props.n).iter().map(ToString::to_string).collect::<Vec<_>>(),
                "replicas": states,
            }),
        )
    }

    /// This node's failure detector: which peers it routes to and which it
    /// routes around (paper section 4.8.3). Local to this node by design.
    pub(crate) fn admin_peers(&self) -> HttpResponse {
        json_response(StatusCode::OK, &json!({ "node": self.node_id, "peers": self.services.detector.report() }))
    }

    /// The hints this node holds for unreachable replicas.
    pub(crate) fn admin_hints(&self) -> HttpResponse {
        json_response(StatusCode::OK, &json!({ "node": self.node_id, "hints": self.services.hints.stats() }))
    }

    /// Anti-entropy status: the scheduler's settings, the trees, totals and
    /// the last exchange of every partition.
    pub(crate) fn anti_entropy_status(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        json_response(StatusCode::OK, &json!(self.anti_entropy.status()))
    }

    /// Runs an exchange of every partition this node replicates, or of the
    /// one named by `?partition=P`, and answers when they are done.
    pub(crate) async fn anti_entropy_trigger(&self, request: &ApiRequest) -> HttpResponse {
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

    /// The staleness this node's coordinator measured (PBS t-visibility
    /// and stale reads; see [`crate::staleness`]).
    pub(crate) fn admin_staleness(&self) -> HttpResponse {
        json_response(StatusCode::OK, &self.staleness.report())
    }

    /// The last 15 minutes of this node, one sample a second (see
    /// [`crate::series`]): what the dashboard's charts draw.
    pub(crate) fn admin_series(&self) -> HttpResponse {
        let body = json!({
            "node": self.node_id,
            "interval_ms": crate::series::INTERVAL.as_millis() as u64,
            "samples": self.series.samples(),
        });
        json_response(StatusCode::OK, &body)
    }

    pub(crate) fn metrics_response(&self) -> HttpResponse {
        let mut body = self.metrics.render(&self.node_id, self.services.replica.store().stats());
        body.push_str(&render_failure_handling(
            &self.node_id,
            &self.services.detector.report(),
            self.services.hints.stats(),
        ));
        crate::metrics::render_anti_entropy(&mut body, &self.node_id, &self.anti_entropy.totals());
        render_membership(
            &mut body,
            &self.node_id,
            self.gossip.membership().cluster().view().state(),
            &self.gossip.stats(),
        );
        crate::metrics::render_transfers(&mut body, &self.node_id, &self.transfers.report());
        self.staleness.render(&mut body, &crate::metrics::escape_label(&self.node_id));
        crate::metrics::render_background_budget(&mut body, &self.node_id, self.services.background.get());
        crate::metrics::render_forwarded(
            &mut body,
            &self.node_id,
            self.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        );
        let mut response = Response::new(Full::new(Bytes::from(body)));
        set_header(&mut response, CONTENT_TYPE.as_str(), "text/plain; version=0.0.4");
        response
    }
}

fn version_summary(sibling: &dynamo_core::object::Sibling) -> serde_json::Value {
    let (deleted, size, digest) = match &sibling.payload {
        Payload::Value { data, .. } => (false, data.len(), hex(&Md5::digest(data))),
        Payload::Tombstone => (true, 0, String::new()),
        Payload::Datatype(value) => (false, value.encoded_len(), String::new()),
    };
    let mut summary = json!({
        "vtag": multipart::vtag(sibling),
        "timestamp_ms": sibling.timestamp.wall_ms(),
        "deleted": deleted,
        "size": size,
        "digest_md5": digest,
    });
    if let Some(expires_ms) = sibling.expires_ms() {
        summary["expires_ms"] = json!(expires_ms);
    }
    // What a data-type replica holds, to compare replicas by eye.
    match &sibling.payload {
        Payload::Datatype(DataValue::Counter(counter)) => {
            summary["datatype"] = json!("counter");
            summary["value"] = json!(counter.value());
        }
        Payload::Datatype(DataValue::Set(set)) => {
            summary["datatype"] = json!("set");
            summary["elements"] = json!(set.len());
        }
        Payload::Datatype(DataValue::Map(map)) => {
            summary["datatype"] = json!("map");
            summary["fields"] = json!(map.len());
        }
        Payload::Value { .. } | Payload::Tombstone => {}
    }
    summary
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn commit_error(problem: &CommitError) -> HttpResponse {
    let status = match problem {
        CommitError::UnknownNode(_) => StatusCode::NOT_FOUND,
        CommitError::Props(_) | CommitError::Change(ChangeError::Storage(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    };
    error(status, problem.to_string())
}
