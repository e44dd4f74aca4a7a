//! Membership (paper section 4.8): the two steps of a gossip exchange and a
//! node's request to join. The cluster state itself travels in its own
//! versioned encoding ([`ClusterState::encode`], the bytes that are also
//! persisted), embedded with its length.
//!
//! Layouts (after the format byte):
//! - [`Request::Gossip`] (method 10): `cluster id 16 bytes | state digest
//!   16 bytes`;
//! - [`Request::GossipPush`] (method 11): `state length u32 | state`;
//! - [`Request::Join`] (method 12): `id | rpc address | http address? |
//!   capacity u32 | zone? | partitions u32`, text as
//!   [`crate::codec`] fields (`length u8 | UTF-8`, 1 to [`MAX_FIELD_LEN`]
//!   bytes; optional ones after a presence flag);
//! - [`Response::ClusterSame`] (kind 8): no fields;
//! - [`Response::ClusterState`] (kind 9): `state length u32 | state`.
//!
//! [`MAX_FIELD_LEN`]: crate::membership::MAX_FIELD_LEN

use super::{MessageError, Request};
use crate::codec::{Reader, encode_field, encode_optional_field, encode_u32_prefixed};
use crate::membership::{Announcement, ClusterId, ClusterState, StateDigest};
use crate::ring::NodeId;

/// Appends the fields of [`Request::Gossip`].
pub(super) fn encode_gossip(cluster: &ClusterId, digest: &StateDigest, out: &mut Vec<u8>) {
    out.extend_from_slice(&cluster.0);
    out.extend_from_slice(&digest.0);
}

/// Reads the fields of [`Request::Gossip`].
pub(super) fn decode_gossip(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::Gossip {
        cluster: ClusterId(reader.array("cluster id")?),
        digest: StateDigest(reader.array("state digest")?),
    })
}

/// Appends a cluster state with its length (a push, or a state answer).
pub(super) fn encode_state(state: &ClusterState, out: &mut Vec<u8>) {
    // Clamping makes an impossible size fail to decode instead of decoding
    // as something else.
    encode_u32_prefixed(&state.encode(), out);
}

/// Reads a cluster state with its length; its errors are
/// [`MessageError::State`].
pub(super) fn decode_state(reader: &mut Reader<'_>) -> Result<Box<ClusterState>, MessageError> {
    // The state decoder refuses more than MAX_STATE_BYTES before reading;
    // here the length is only checked against the bytes present.
    let bytes = reader.u32_prefixed("state length", "cluster state")?;
    ClusterState::decode(bytes).map(Box::new).map_err(MessageError::State)
}

/// Appends the fields of [`Request::Join`].
pub(super) fn encode_join(node: &Announcement, partitions: u32, out: &mut Vec<u8>) {
    encode_field(node.id.as_str(), out);
    encode_field(&node.rpc_addr, out);
    encode_optional_field(node.http_addr.as_deref(), out);
    out.extend_from_slice(&node.capacity.to_be_bytes());
    encode_optional_field(node.zone.as_deref(), out);
    out.extend_from_slice(&partitions.to_be_bytes());
}

/// Reads the fields of [`Request::Join`].
pub(super) fn decode_join(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let node = Announcement {
        id: NodeId::new(reader.field("joining node id")?),
        rpc_addr: reader.field("joining node RPC address")?,
        http_addr: reader.optional_field("joining node HTTP address")?,
        capacity: reader.u32("joining node capacity")?,
        zone: reader.optional_field("joining node zone")?,
    };
    if node.capacity == 0 {
        return Err(MessageError::Invalid("joining node with capacity 0"));
    }
    let partitions = reader.u32("joining node partitions")?;
    Ok(Request::Join { node, partitions })
}

#[cfg(test)]
mod tests {
    use super::super::testing::cluster_state;
    use super::super::{METHOD_GOSSIP, METHOD_GOSSIP_PUSH, METHOD_JOIN, Response};
    use super::*;

    #[test]
    fn gossip_request_layout_is_cluster_id_then_digest() {
        let request = Request::Gossip { cluster: ClusterId([1; 16]), digest: StateDigest([2; 16]) };
        assert_eq!(request.method(), METHOD_GOSSIP);
        let mut expected = vec![1];
        expected.extend_from_slice(&[1; 16]);
        expected.extend_from_slice(&[2; 16]);
        assert_eq!(request.encode(), expected);
        assert_eq!(Response::ClusterSame.encode(), [1, 8]);
    }

    #[test]
    fn states_travel_length_prefixed_and_a_broken_one_is_refused_as_a_state() {
        let state = cluster_state(2, 1, false);
        let encoded = state.encode();
        let push = Request::GossipPush { state: Box::new(state.clone()) };
        let bytes = push.encode();
        assert_eq!(&bytes[1..5], &(encoded.len() as u32).to_be_bytes());
        assert_eq!(&bytes[5..], &encoded[..]);
        let answer = Response::ClusterState { state: Box::new(state) };
        assert_eq!(&answer.encode()[..2], &[1, 9]);
        let mut broken = bytes.clone();
        broken[5] = 9;
        assert!(matches!(Request::decode(METHOD_GOSSIP_PUSH, &broken), Err(MessageError::State(_))));
    }

    #[test]
    fn join_request_layout_carries_the_announcement_and_q() {
        let node = Announcement {
            id: NodeId::new("n4"),
            rpc_addr: "h:1".to_string(),
            http_addr: None,
            capacity: 2,
            zone: Some("a".to_string()),
        };
        let request = Request::Join { node, partitions: 256 };
        assert_eq!(request.method(), METHOD_JOIN);
        assert_eq!(request.encode(), [1, 2, b'n', b'4', 3, b'h', b':', b'1', 0, 0, 0, 0, 2, 1, 1, b'a', 0, 0, 1, 0]);
        let mut zero_capacity = request.encode();
        zero_capacity[12] = 0;
        assert!(Request::decode(METHOD_JOIN, &zero_capacity).is_err());
        let mut empty_id = request.encode();
        empty_id[1] = 0;
        assert!(Request::decode(METHOD_JOIN, &empty_id).is_err());
    }
}
