//! Serves requests from other nodes (the RPC side of a replica): reads and
//! merges of this node's copies, hints held for unreachable replicas,
//! writes forwarded here to coordinate, and the questions of another
//! replica's anti-entropy exchange (tree hashes, key listings:
//! [`crate::merkle_index::MerkleIndex::serve`]), and membership: gossip exchanges
//! ([`crate::gossip`]) and joins ([`crate::membership`]).
//! Every request is decoded with the checked codec of
//! [`dynamo_core::messages`]; a malformed one is refused, never guessed at.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dynamo_core::messages::{Request, Response};
use dynamo_storage::Durability;
use tracing::warn;

use crate::coordinator::{Coordinator, CoordinatorError, RequestOptions};
use crate::gossip::Gossip;
use crate::services::NodeServices;

/// How far past a forwarded update's deadline (by this node's clock) it is
/// still applied: room for the clocks of two nodes to disagree a little,
/// so that a modest skew does not make every forwarded update fail. A late
/// attempt inside it may be applied beside its retry; its operation id
/// then makes the two count once.
const FORWARD_DEADLINE_SLACK_MS: u64 = 1_000;

/// The node's RPC request handler.
pub struct NodeHandler {
    services: NodeServices,
    coordinator: Arc<Coordinator>,
    gossip: Option<Arc<Gossip>>,
}

impl NodeHandler {
    /// A handler serving the node's replica and hints (`services`) and
    /// forwarded writes (`coordinator`), and no membership requests: see
    /// [`NodeHandler::with_gossip`].
    pub fn new(services: NodeServices, coordinator: Arc<Coordinator>) -> Self {
        Self { services, coordinator, gossip: None }
    }

    /// The same handler also serving gossip and joins.
    pub fn with_gossip(self, gossip: Arc<Gossip>) -> Self {
        Self { gossip: Some(gossip), ..self }
    }

    async fn serve(&self, peer: &str, request: Request) -> Response {
        match request {
            Request::Gossip { cluster, digest } => match &self.gossip {
                Some(gossip) => gossip.serve_digest(peer, cluster, digest),
                None => not_served(),
            },
            Request::GossipPush { state } => match &self.gossip {
                Some(gossip) => gossip.serve_push(peer, &state).await,
                None => not_served(),
            },
            Request::Join { node, partitions } => match &self.gossip {
                Some(gossip) => gossip.membership().admit(peer, &node, partitions).await,
                None => not_served(),
            },
            Request::Coordinate { key, context, payload, options } => {
                let options = RequestOptions::from(options);
                match self.coordinator.put_forwarded(&key, &context, payload, &options).await {
                    // Not an answer for the client: the forwarder tries
                    // another replica.
                    Err(CoordinatorError::NotAReplica(reason)) => Response::Failed { reason },
                    outcome => Response::Coordinated(outcome.map_err(|error| error.to_forwarded())),
                }
            }
            Request::CoordinateUpdate { key, op, mut options } => {
                if options.deadline_ms != 0 {
                    let now = self.services.replica.wall_ms();
                    let last = options.deadline_ms.saturating_add(FORWARD_DEADLINE_SLACK_MS);
                    let Some(left) = last.checked_sub(now).filter(|left| *left > 0) else {
                        return Response::Updated(Err(CoordinatorError::late_forward(options.deadline_ms, now)));
                    };
                    // The attempt must also finish (or give up) by then.
                    let asked = options.timeout_ms.as_deref().and_then(|text| text.parse::<u64>().ok());
                    options.timeout_ms = Some(asked.map_or(left, |asked| asked.min(left)).to_string());
                }
                let options = RequestOptions::from(options);
                match self.coordinator.update_forwarded(&key, &op, &options).await {
                    Err(CoordinatorError::NotAReplica(reason)) => Response::Failed { reason },
                    outcome => Response::Updated(outcome.map_err(|error| error.to_forwarded())),
                }
            }
            Request::SetProps { bucket, props, version } => {
                match self.services.buckets.apply(&bucket, props, version).await {
                    Ok(()) => Response::PropsSet,
                    Err(error) => Response::Failed { reason: error.to_string() },
                }
            }
            Request::HintedWrite { owner, key, object, mode, durable } => {
                let durability = if durable { Durability::Durable } else { Durability::Buffered };
                // A hint for this very node (the sender's view of the ring
                // differs) is simply a write to it.
                let stored = if owner == *self.services.cluster.local() {
                    self.services
                        .replica
                        .merge_write(&key, &object, mode, durability)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                } else {
                    self.services
                        .hints
                        .store_hint(&owner, &key, &object, mode, durability, self.services.replica.wall_ms())
                        .await
                        .map_err(|e| e.to_string())
                };
                match stored {
                    Ok(()) => Response::Written { durable },
                    Err(reason) => Response::Failed { reason },
                }
            }
            Request::TransferPage { epoch, .. } if epoch > self.services.cluster.view().state().epoch() => {
                // Serving a copy before knowing the new ring would let this
                // node go on coordinating writes by the old ring alone after
                // its copy was taken: they could miss the new replicas.
                Response::Failed {
                    reason: format!(
                        "{} is at ring epoch {}, behind the transfer's epoch {epoch}; it serves the copy once gossip \
                         brings it the new ring",
                        self.services.cluster.local(),
                        self.services.cluster.view().state().epoch()
                    ),
                }
            }
            other => match self.services.replica.serve(other).await {
                Ok(response) => response,
                Err(reason) => Response::Failed { reason },
            },
        }
    }
}

impl dynamo_rpc::Handler for NodeHandler {
    fn handle(&self, peer: &str, method: u16, body: Bytes) -> impl Future<Output = Result<Bytes, String>> + Send {
        let decoded = Request::decode(method, &body);
        let peer = peer.to_string();
        async move {
            match decoded {
                Ok(request) => Ok(Bytes::from(self.serve(&peer, request).await.encode())),
                Err(error) => {
                    warn!(%peer, %error, "refused a malformed request");
                    Err(format!("malformed request: {error}"))
                }
            }
        }
    }
}

fn not_served() -> Response {
    Response::Failed { reason: "this node does not serve membership requests".to_string() }
}
