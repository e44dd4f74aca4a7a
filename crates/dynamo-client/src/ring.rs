//! The ring as a partition-aware client sees it (paper section 6.4): a
//! node's `GET /ring` parsed into a [`RingView`], which answers which nodes
//! replicate a key and where each node's HTTP API is, with no I/O.
//!
//! **Same answers as the nodes.** A [`RingView`] is built on the very types
//! the nodes route by: the committed [`Ring`] (rebuilt with
//! [`Ring::from_parts`], which checks it) and, while partitions move after
//! a ring change, a [`Routing`] that also knows the ring being left. So
//! [`RingView::preference_list`], [`RingView::read_list`] and
//! [`RingView::write_lists`] are, by construction, what the node that
//! served the document computes for the same key and `n`. `n` is the
//! bucket's (its props); the view does not know buckets.
//!
//! **Staleness.** Every answer of a node carries its ring epoch in
//! [`RING_EPOCH_HEADER`] (see [`ring_epoch`]); a client whose view has a
//! lower [`RingView::epoch`] should fetch `GET /ring` again. A move that
//! settles does not change the epoch: a replica the view still reads from
//! after that answers `421 Misdirected Request`, which is the other cue to
//! refresh.
//!
//! The document (see the README's HTTP API):
//! `{"epoch":E,"partitions":Q,"owners":[...],"nodes":[{"id","capacity","zone"}],
//! "members":[{"id","status","http_addr"}],"moving":null | {"from":{ring},"partitions":[...]}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dynamo_core::keys::{KeyError, ObjectKey};
use dynamo_core::ring::{NodeId, NodeSpec, Ring, RingError};
use dynamo_core::routing::Routing;
use serde::Deserialize;
use thiserror::Error;

use crate::connection::RawResponse;

/// Header (lowercase, as [`RawResponse::header`] looks it up) carrying the
/// answering node's ring epoch on every HTTP answer.
pub const RING_EPOCH_HEADER: &str = "x-dynamo-ring-epoch";

/// The ring epoch an answer carries, if it carries one.
pub fn ring_epoch(response: &RawResponse) -> Option<u64> {
    response.header(RING_EPOCH_HEADER).and_then(|value| value.trim().parse().ok())
}

/// Why a `GET /ring` document or a key could not be used.
#[derive(Debug, Error)]
pub enum RingViewError {
    /// The document is not the JSON `GET /ring` answers.
    #[error("the ring document is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The ring it describes is not a valid ring (owners, members, Q).
    #[error("the ring document describes an invalid ring: {0}")]
    Ring(#[from] RingError),
    /// The parts disagree with one another.
    #[error("the ring document is inconsistent: {0}")]
    Inconsistent(String),
    /// The bucket or key is not one the store accepts.
    #[error("bad bucket or key: {0}")]
    Key(#[from] KeyError),
}

/// One member as `GET /ring` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// `joining`, `member`, `leaving` or `removed`.
    pub status: String,
    /// Where its HTTP API is reached, once it has announced it.
    pub http_addr: Option<String>,
}

/// A ring in the document: the parts of [`Ring::from_parts`].
#[derive(Deserialize)]
struct RingParts {
    epoch: u64,
    partitions: u32,
    owners: Vec<NodeId>,
    nodes: Vec<NodeSpec>,
}

impl RingParts {
    fn into_ring(self) -> Result<Ring, RingError> {
        Ring::from_parts(self.partitions, self.owners, self.nodes, self.epoch)
    }
}

/// The ring change in progress.
#[derive(Deserialize)]
struct Moving {
    from: RingParts,
    partitions: BTreeSet<u32>,
}

/// The whole document.
#[derive(Deserialize)]
struct Document {
    #[serde(flatten)]
    ring: RingParts,
    members: Vec<Member>,
    moving: Option<Moving>,
}

/// A node's ring, learned from its `GET /ring` (see the module
/// documentation). Immutable: a newer ring is a new view.
#[derive(Clone, Debug)]
pub struct RingView {
    routing: Routing,
    members: BTreeMap<NodeId, Member>,
}

impl RingView {
    /// Parses the body of a `GET /ring` answer, checking the ring(s) it
    /// describes.
    pub fn from_json(body: &[u8]) -> Result<RingView, RingViewError> {
        let document: Document = serde_json::from_slice(body)?;
        let ring = Arc::new(document.ring.into_ring()?);
        let routing = match document.moving {
            None => Routing::settled(ring),
            Some(moving) => {
                let from = moving.from.into_ring()?;
                if from.partitions() != ring.partitions() {
                    return Err(RingViewError::Inconsistent(format!(
                        "the ring being left has {} partitions, the committed ring {}",
                        from.partitions(),
                        ring.partitions()
                    )));
                }
                if let Some(partition) = moving.partitions.iter().find(|partition| **partition >= ring.partitions()) {
                    return Err(RingViewError::Inconsistent(format!(
                        "moving partition {partition} is out of range; the ring has {}",
                        ring.partitions()
                    )));
                }
                Routing::in_transition(ring, from, moving.partitions)
            }
        };
        let members = document.members.into_iter().map(|member| (member.id.clone(), member)).collect();
        Ok(RingView { routing, members })
    }

    /// The committed ring's epoch: higher is newer.
    pub fn epoch(&self) -> u64 {
        self.routing.ring().version()
    }

    /// The committed ring.
    pub fn ring(&self) -> &Ring {
        self.routing.ring()
    }

    /// The committed ring and the ring change in progress.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Whether some partition is still moving after a ring change.
    pub fn is_moving(&self) -> bool {
        self.routing.moving().is_some()
    }

    /// The partition that holds `key` of `bucket`.
    pub fn partition(&self, bucket: &str, key: &[u8]) -> Result<u32, RingViewError> {
        Ok(ObjectKey::new(bucket, key)?.partition(self.ring().partitions()))
    }

    /// The key's first `n` replicas under the committed ring (what the
    /// nodes' `/admin/replicas` calls its preference list).
    pub fn preference_list(&self, bucket: &str, key: &[u8], n: u8) -> Result<Vec<NodeId>, RingViewError> {
        Ok(self.routing.preference_list(self.partition(bucket, key)?, n))
    }

    /// The nodes reads of the key go to: its replicas under the ring being
    /// left while its partition moves, else the preference list.
    pub fn read_list(&self, bucket: &str, key: &[u8], n: u8) -> Result<Vec<NodeId>, RingViewError> {
        Ok(self.routing.read_list(self.partition(bucket, key)?, n))
    }

    /// The replica lists a write of the key must each reach W in: two
    /// while its partition moves to different replicas, else one.
    pub fn write_lists(&self, bucket: &str, key: &[u8], n: u8) -> Result<Vec<Vec<NodeId>>, RingViewError> {
        Ok(self.routing.write_lists(self.partition(bucket, key)?, n))
    }

    /// Where `node`'s HTTP API is reached, if it announced it.
    pub fn http_addr(&self, node: &NodeId) -> Option<&str> {
        self.members.get(node).and_then(|member| member.http_addr.as_deref())
    }

    /// One member's record.
    pub fn member(&self, node: &NodeId) -> Option<&Member> {
        self.members.get(node)
    }

    /// Every member, removed ones included, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn specs(count: usize) -> Vec<NodeSpec> {
        (0..count).map(|index| NodeSpec::new(format!("node{index}"), 1)).collect()
    }

    /// A ring in the shape `GET /ring` renders it.
    fn ring_json(ring: &Ring) -> Value {
        json!({
            "epoch": ring.version(),
            "partitions": ring.partitions(),
            "owners": ring.owners(),
            "nodes": ring.nodes().collect::<Vec<_>>(),
        })
    }

    fn document(ring: &Ring, moving: Option<(&Ring, &BTreeSet<u32>)>) -> Vec<u8> {
        let mut body = ring_json(ring);
        body["node"] = json!("node0");
        body["members"] = ring
            .nodes()
            .map(|spec| json!({"id": spec.id, "status": "member", "http_addr": format!("127.0.0.1:80{}", spec.id)}))
            .collect();
        body["moving"] = match moving {
            Some((from, partitions)) => json!({"from": ring_json(from), "partitions": partitions}),
            None => Value::Null,
        };
        body.to_string().into_bytes()
    }

    #[test]
    fn a_parsed_ring_gives_every_key_the_preference_list_the_node_computes() {
        let ring = Ring::new(64, specs(5).into_iter().map(|spec| spec.in_zone("z"))).expect("ring");
        let view = RingView::from_json(&document(&ring, None)).expect("view");
        assert_eq!((view.epoch(), view.ring()), (1, &ring));
        for index in 0..500 {
            let key = format!("key-{index}");
            let object = ObjectKey::new("b", key.as_bytes()).expect("key");
            for n in [1, 3, 5] {
                let expected = ring.key_preference_list(&object, usize::from(n));
                assert_eq!(view.preference_list("b", key.as_bytes(), n).expect("list"), expected);
                assert_eq!(view.read_list("b", key.as_bytes(), n).expect("list"), expected);
                assert_eq!(view.write_lists("b", key.as_bytes(), n).expect("lists"), vec![expected]);
            }
        }
        assert_eq!(view.http_addr(&NodeId::new("node2")), Some("127.0.0.1:80node2"));
        assert_eq!(view.http_addr(&NodeId::new("node9")), None);
    }

    #[test]
    fn while_partitions_move_reads_follow_the_ring_being_left_as_on_the_node() {
        let old = Ring::new(64, specs(3)).expect("old ring");
        let new = Arc::new(old.rebalance(specs(4)).expect("new ring"));
        // Half of the moved partitions still moving.
        let moved: Vec<u32> = old.diff(&new).expect("diff").iter().map(|step| step.partition).collect();
        let unsettled: BTreeSet<u32> = moved.iter().copied().step_by(2).collect();
        let node_routing = Routing::in_transition(new.clone(), old.clone(), unsettled.clone());
        let view = RingView::from_json(&document(&new, Some((&old, &unsettled)))).expect("view");
        assert_eq!(view.epoch(), 2);
        assert!(view.is_moving());
        assert_eq!(view.routing(), &node_routing);
        let mut moving_reads = 0;
        for index in 0..500 {
            let key = format!("key-{index}");
            let partition = view.partition("b", key.as_bytes()).expect("partition");
            let reads = view.read_list("b", key.as_bytes(), 3).expect("reads");
            assert_eq!(reads, node_routing.read_list(partition, 3));
            assert_eq!(
                view.write_lists("b", key.as_bytes(), 3).expect("writes"),
                node_routing.write_lists(partition, 3)
            );
            assert_eq!(view.preference_list("b", key.as_bytes(), 3).expect("list"), new.preference_list(partition, 3));
            if unsettled.contains(&partition) {
                assert_eq!(reads, old.preference_list(partition, 3));
                moving_reads += 1;
            }
        }
        assert!(moving_reads > 0, "some key falls in a moving partition");
    }

    #[test]
    fn a_document_with_a_broken_ring_is_refused_with_the_reason() {
        let ring = Ring::new(8, specs(2)).expect("ring");
        let mut body: Value = serde_json::from_slice(&document(&ring, None)).expect("json");
        body["owners"][3] = json!("stranger");
        let problem = RingView::from_json(body.to_string().as_bytes()).expect_err("unknown owner");
        assert!(problem.to_string().contains("stranger"), "{problem}");

        let moved = BTreeSet::from([99]);
        let problem = RingView::from_json(&document(&ring, Some((&ring, &moved)))).expect_err("out of range");
        assert!(problem.to_string().contains("out of range"), "{problem}");
        assert!(RingView::from_json(b"{}").is_err());
    }

    #[test]
    fn the_epoch_header_is_read_from_any_answer() {
        let answer = |value: &str| RawResponse {
            status: 200,
            headers: vec![(RING_EPOCH_HEADER.to_string(), value.to_string())],
            body: bytes::Bytes::new(),
        };
        assert_eq!(ring_epoch(&answer("7")), Some(7));
        assert_eq!(ring_epoch(&answer("seven")), None);
    }
}
