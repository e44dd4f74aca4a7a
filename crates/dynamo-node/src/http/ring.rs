//! `GET /ring`: what a partition-aware client needs to route and
//! coordinate by itself (paper section 6.4), and the ring epoch header
//! every answer carries.
//!
//! The answer holds exactly what [`dynamo_core::routing::Routing`] is built
//! from, so a client that parses it computes the node's own preference
//! lists, read lists and write lists:
//! - the committed ring: `epoch`, `partitions`, `owners` (index =
//!   partition) and `nodes` (each [`dynamo_core::ring::NodeSpec`]: id,
//!   capacity, zone), the parts of [`Ring::from_parts`];
//! - `members`: each member's id, status and HTTP address (where the client
//!   sends requests);
//! - `moving`: while partitions move after a ring change, the ring being
//!   left (same shape) and the partitions still moving off it; `null`
//!   otherwise.
//!
//! The admin routes (`/admin/ring`, `/admin/cluster`) render the ring and
//! the members with the same functions, adding what an operator wants.
//!
//! **The epoch header.** Every HTTP answer carries [`RING_EPOCH_HEADER`]
//! with the epoch of the node's committed ring, so a client notices a newer
//! ring on any answer and refreshes. The epoch does not change when a move
//! settles; a client still reading a settled partition from its old
//! replicas learns it from their `421` (see [`super::replicas`]).

use dynamo_core::membership::Member;
use dynamo_core::ring::Ring;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::cluster::ClusterView;
use crate::http::params;
use crate::http::responses::{ApiRequest, HttpResponse, error, json_response};

/// Header carrying the epoch of the answering node's committed ring, on
/// every HTTP answer.
pub const RING_EPOCH_HEADER: &str = "X-Dynamo-Ring-Epoch";

/// The parts of `ring` a client rebuilds it from ([`Ring::from_parts`]).
pub(crate) fn ring_json(ring: &Ring) -> Value {
    json!({
        "epoch": ring.version(),
        "partitions": ring.partitions(),
        "owners": ring.owners().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "nodes": ring.nodes().collect::<Vec<_>>(),
    })
}

/// Who `member` is and where a client reaches it.
pub(crate) fn member_json(member: &Member) -> Value {
    json!({
        "id": member.id.to_string(),
        "status": member.status,
        "http_addr": member.http_addr,
    })
}

/// The routing document of `view` (see the module documentation), as node
/// `node` answers it.
pub(crate) fn routing_json(view: &ClusterView, node: &str) -> Value {
    let mut body = ring_json(view.ring());
    body["node"] = json!(node);
    body["members"] = view.state().members().map(member_json).collect();
    body["moving"] = match view.moving() {
        Some((from, partitions)) => json!({ "from": ring_json(from), "partitions": partitions }),
        None => Value::Null,
    };
    body
}

/// `GET /ring`.
pub(crate) fn ring_response(view: &ClusterView, node: &str, request: &ApiRequest) -> HttpResponse {
    if let Err(message) = params::parse_query(request.uri().query(), &[]) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    json_response(StatusCode::OK, &routing_json(view, node))
}

#[cfg(test)]
mod tests {
    use dynamo_client::RingView;
    use dynamo_core::keys::ObjectKey;
    use dynamo_core::membership::{Announcement, ClusterState};
    use dynamo_core::ring::{NodeId, NodeSpec};

    use super::*;
    use crate::cluster::Cluster;

    fn announcement(index: usize) -> Announcement {
        Announcement {
            id: NodeId::new(format!("node{index}")),
            rpc_addr: format!("127.0.0.1:{}", 9080 + index),
            http_addr: Some(format!("127.0.0.1:{}", 8080 + index)),
            capacity: 1,
            zone: None,
        }
    }

    /// Three members with their HTTP addresses announced, then a fourth
    /// joined and the plan committed: every moved partition is unsettled.
    fn states() -> (ClusterState, ClusterState) {
        let members: Vec<(NodeSpec, String)> = (0..3)
            .map(|index| (NodeSpec::new(format!("node{index}"), 1), format!("127.0.0.1:{}", 9080 + index)))
            .collect();
        let mut state = ClusterState::from_static(64, &members).expect("static state");
        for index in 0..3 {
            state = state.with_announcement(&announcement(index)).unwrap_or(state);
        }
        let joined = state.with_joining(&announcement(3), 64).expect("join");
        let plan = joined.plan().expect("plan");
        let committed = joined.commit(&plan, &[1, 3]).expect("commit");
        (state, committed)
    }

    /// Whether the client's view of `view`'s document routes every
    /// partition as `view` does, for each n in use.
    fn assert_same_routing(view: &ClusterView) {
        let document = routing_json(view, "node0").to_string();
        let client = RingView::from_json(document.as_bytes()).expect("the client parses GET /ring");
        assert_eq!(client.epoch(), view.state().epoch());
        assert_eq!(client.routing(), view.routing());
        for index in 0..300 {
            let key = format!("key-{index}");
            let object = ObjectKey::new("b", key.as_bytes()).expect("key");
            let partition = object.partition(view.ring().partitions());
            for n in [1, 3] {
                assert_eq!(client.read_list("b", key.as_bytes(), n).expect("reads"), view.read_list(partition, n));
                assert_eq!(client.write_lists("b", key.as_bytes(), n).expect("writes"), view.write_lists(partition, n));
                assert_eq!(
                    client.preference_list("b", key.as_bytes(), n).expect("list"),
                    view.ring().key_preference_list(&object, usize::from(n))
                );
            }
        }
        for member in view.state().members() {
            assert_eq!(client.http_addr(&member.id), member.http_addr.as_deref());
        }
    }

    #[test]
    fn the_ring_document_rebuilds_the_nodes_routing_before_and_during_a_move() {
        let (settled, moving) = states();
        let before = Cluster::new(NodeId::new("node0"), settled).view();
        assert!(before.moving().is_none());
        assert_same_routing(&before);
        let during = Cluster::new(NodeId::new("node0"), moving).view();
        assert!(during.moving().is_some_and(|(_, partitions)| !partitions.is_empty()), "the commit moves partitions");
        assert_same_routing(&during);
        assert_eq!(routing_json(&during, "node0")["members"].as_array().map(Vec::len), Some(4));
    }
}
