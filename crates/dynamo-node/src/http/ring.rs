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
