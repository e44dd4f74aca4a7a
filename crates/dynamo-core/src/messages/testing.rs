//! Generators of valid messages for the property tests of the message
//! families, and the small constructors their layout tests share.

use bytes::Bytes;
use proptest::prelude::*;

use super::{ForwardOptions, ForwardedError, Request, Response};
use crate::crdt::context::CausalContext;
use crate::crdt::map::{Condition, FieldKey, FieldKind, FieldOp, MapOp};
use crate::crdt::set::SetUpdate;
use crate::crdt::value::{DataOp, DataValue};
use crate::hlc::Hlc;
use crate::keys::{MAX_PARTITIONS, ObjectKey};
use crate::membership::{Announcement, ClusterId, ClusterState, StateDigest};
use crate::merkle::{LEAF_LEVEL, NodeHash, ObjectDigest, SEGMENTS, level_width};
use crate::object::Payload;
use crate::props::{BucketProps, ConflictMode, DataType};
use crate::ring::{NodeId, NodeSpec};
use crate::testing::reachable_object;

/// Any valid key.
fn object_key() -> impl Strategy<Value = ObjectKey> {
    ("[A-Za-z0-9_.-]{1,40}", prop::collection::vec(any::<u8>(), 1..80))
        .prop_map(|(bucket, key)| ObjectKey::new(&bucket, &key).expect("generated keys are valid"))
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Tombstone),
        (
            prop::collection::vec(any::<u8>(), 0..64),
            prop::option::of("[a-z]{1,10}/[a-z0-9.+-]{1,20}"),
            prop::option::of(any::<u64>())
        )
            .prop_map(|(data, content_type, expires_ms)| Payload::Value {
                data: Bytes::from(data),
                content_type,
                expires_ms
            }),
    ]
}

/// Up to 16 characters of up to 4 bytes: within MAX_OPTION_LEN.
fn option() -> impl Strategy<Value = Option<String>> {
    prop::option::of("\\PC{0,16}")
}

/// Any valid request.
pub(super) fn request() -> impl Strategy<Value = Request> {
    let mode = prop_oneof![Just(ConflictMode::Siblings), Just(ConflictMode::Lww)];
    prop_oneof![
        object_key().prop_map(|key| Request::Read { key }),
        (object_key(), reachable_object(), mode, any::<bool>())
            .prop_map(|(key, object, mode, durable)| Request::Write { key, object, mode, durable }),
        (object_key(), reachable_object()).prop_map(|(key, tombstone)| Request::Reap { key, tombstone }),
        ("[a-z0-9-]{1,40}", object_key(), reachable_object(), any::<bool>()).prop_map(
            |(owner, key, object, durable)| Request::HintedWrite {
                owner: NodeId::new(owner),
                key,
                object,
                mode: ConflictMode::Siblings,
                durable
            }
        ),
        (
            object_key(),
            reachable_object(),
            payload(),
            (option(), option(), option(), option()),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(key, object, payload, (w, dw, n, timeout_ms), seen_timestamp, stamp)| {
                Request::Coordinate {
                    key,
                    context: object.context().clone(),
                    payload,
                    options: ForwardOptions { w, dw, n, timeout_ms, seen_timestamp, stamp, deadline_ms: 0 },
                }
            }),
        (object_key(), data_op(), option(), any::<u64>()).prop_map(|(key, op, w, deadline_ms)| {
            Request::CoordinateUpdate {
                key,
                op,
                options: ForwardOptions { w, deadline_ms, ..ForwardOptions::default() },
            }
        }),
        Just(Request::Ping),
        (1u8..=5, any::<bool>(), any::<u64>(), 0u8..3).prop_map(|(n, lww, version, datatype)| Request::SetProps {
            bucket: "b".to_string(),
            props: BucketProps {
                n,
                r: 1,
                w: n,
                dw: 0,
                conflict: if lww { ConflictMode::Lww } else { ConflictMode::Siblings },
                datatype: DataType::from_byte(datatype).expect("a known datatype byte"),
                // Datatype byte 0 is none: opaque values may have a default TTL.
                ttl_s: if datatype == 0 { version % crate::props::MAX_TTL_S } else { 0 },
            },
            version,
        }),
        "[a-z]{1,20}".prop_map(|bucket| Request::BucketHasKeys { bucket }),
        (
            0..MAX_PARTITIONS,
            "[A-Za-z0-9_.-]{1,40}",
            prop::option::of(prop::collection::vec(any::<u8>(), 1..80)),
            1..=crate::listing::MAX_PAGE_KEYS as u16,
            1..=crate::listing::PAGE_KEY_BYTES as u32
        )
            .prop_map(|(partition, bucket, after, max_keys, max_bytes)| Request::ListKeys {
                partition,
                bucket,
                after,
                max_keys,
                max_bytes
            }),
        Just(Request::ListBuckets),
        merkle_request(),
        membership_request(),
    ]
}

/// A small cluster state: `members` static nodes, the first `joining`
/// of the others joined, and a committed plan when `commit`.
pub(super) fn cluster_state(members: usize, joining: usize, commit: bool) -> ClusterState {
    let specs: Vec<(NodeSpec, String)> =
        (0..members).map(|i| (NodeSpec::new(format!("n{i}"), 1), format!("h{i}:9000"))).collect();
    let mut state = ClusterState::from_static(16, &specs).expect("valid");
    for i in members..members + joining {
        let node = announcement(i);
        state = state.with_joining(&node, 16).expect("join");
    }
    if commit
        && let Ok(plan) = state.plan()
        && let Ok(next) = state.commit(&plan, &[3])
    {
        state = next;
    }
    state
}

fn announcement(i: usize) -> Announcement {
    Announcement {
        id: NodeId::new(format!("n{i}")),
        rpc_addr: format!("h{i}:9000"),
        http_addr: i.is_multiple_of(2).then(|| format!("h{i}:8000")),
        capacity: 1 + i as u32 % 3,
        zone: i.is_multiple_of(3).then(|| format!("z{i}")),
    }
}

fn membership_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(cluster, digest)| Request::Gossip { cluster: ClusterId(cluster), digest: StateDigest(digest) }),
        (1..4usize, 0..3usize, any::<bool>()).prop_map(|(members, joining, commit)| Request::GossipPush {
            state: Box::new(cluster_state(members, joining, commit))
        }),
        (0..10usize, 1..=MAX_PARTITIONS)
            .prop_map(|(i, partitions)| Request::Join { node: announcement(i), partitions }),
    ]
}

fn index_list(width: usize) -> impl Strategy<Value = Vec<u16>> {
    prop::collection::btree_set(0..width as u16, 1..=width.min(64)).prop_map(|set| set.into_iter().collect())
}

fn merkle_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (0..MAX_PARTITIONS, 0..=LEAF_LEVEL).prop_flat_map(|(partition, level)| {
            index_list(level_width(level).expect("level exists")).prop_map(move |indices| Request::MerkleHashes {
                partition,
                level,
                indices,
            })
        }),
        (0..MAX_PARTITIONS, index_list(SEGMENTS), prop::option::of(object_key()))
            .prop_map(|(partition, segments, after)| Request::MerkleKeys { partition, segments, after }),
        (0..MAX_PARTITIONS, prop::option::of(object_key())).prop_map(|(partition, after)| Request::TransferPage {
            partition,
            epoch: u64::from(partition) * 7,
            after
        }),
    ]
}

fn merkle_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        prop::collection::vec(any::<[u8; 16]>(), 0..40)
            .prop_map(|hashes| Response::MerkleHashes { hashes: hashes.into_iter().map(NodeHash).collect() }),
        (prop::collection::vec((object_key(), any::<[u8; 16]>()), 0..20), any::<bool>()).prop_map(|(entries, more)| {
            Response::MerkleKeys {
                entries: entries.into_iter().map(|(key, digest)| (key, ObjectDigest(digest))).collect(),
                more,
            }
        }),
        (prop::collection::vec((object_key(), reachable_object()), 0..6), any::<bool>())
            .prop_map(|(entries, more)| Response::TransferPage { entries, more }),
    ]
}

/// Any valid response.
pub(super) fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        reachable_object().prop_map(|object| Response::Read { object }),
        any::<bool>().prop_map(|durable| Response::Written { durable }),
        (reachable_object(), any::<u64>())
            .prop_map(|(object, at)| Response::Coordinated(Ok((object.context().clone(), Hlc(at))))),
        (100..=599u16, "\\PC{0,200}")
            .prop_map(|(status, body)| Response::Coordinated(Err(ForwardedError { status, body }))),
        data_op().prop_map(|op| {
            let mut value = DataValue::empty(op.kind()).expect("a built kind");
            value.apply(&op, crate::version::ActorId(3), crate::hlc::Hlc(1)).ok();
            Response::Updated(Ok(value))
        }),
        (100..=599u16, "\\PC{0,50}").prop_map(|(status, body)| Response::Updated(Err(ForwardedError { status, body }))),
        Just(Response::Pong),
        Just(Response::PropsSet),
        any::<bool>().prop_map(|any| Response::BucketKeys { any }),
        (
            prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..20), 0..12),
            prop::option::of(prop::collection::vec(any::<u8>(), 1..20))
        )
            .prop_map(|(keys, covered)| {
                let keys: Vec<Vec<u8>> = keys.into_iter().collect();
                // The covered key is at least the last listed one.
                let covered =
                    covered.map(|covered| keys.last().filter(|last| **last > covered).cloned().unwrap_or(covered));
                Response::ListedKeys { keys, covered }
            }),
        (prop::collection::btree_set("[A-Za-z0-9_.-]{1,30}", 0..12), any::<bool>())
            .prop_map(|(buckets, complete)| Response::Buckets { buckets: buckets.into_iter().collect(), complete }),
        "\\PC{0,100}".prop_map(|reason| Response::Failed { reason }),
        "\\PC{0,100}".prop_map(|reason| Response::Unreadable { reason }),
        merkle_response(),
        Just(Response::ClusterSame),
        (1..4usize, 0..3usize, any::<bool>()).prop_map(|(members, joining, commit)| Response::ClusterState {
            state: Box::new(cluster_state(members, joining, commit))
        }),
    ]
}

/// A key that must be valid.
pub(super) fn key(bucket: &str, key: &[u8]) -> ObjectKey {
    ObjectKey::new(bucket, key).unwrap()
}

/// Any data-type operation: an increment, or adds and removes on a set with
/// or without a context.
pub(super) fn data_op() -> impl Strategy<Value = DataOp> {
    let element = prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from);
    let update = (any::<bool>(), element).prop_map(|(add, element)| match add {
        true => SetUpdate::Add(element),
        false => SetUpdate::Remove(element),
    });
    let context = prop::option::of(prop::collection::vec((0u64..3, 1u64..6), 0..5).prop_map(|dots| {
        let mut context = CausalContext::new();
        for (actor, counter) in dots {
            context.insert(crate::version::Dot { actor: crate::version::ActorId(actor), counter });
        }
        context
    }));
    prop_oneof![
        (any::<i64>(), prop::option::of(any::<[u8; 16]>()))
            .prop_map(|(amount, id)| DataOp::Increment { amount, id: id.map(crate::crdt::counter::OperationId) }),
        (prop::collection::vec(update.clone(), 0..4), context.clone())
            .prop_map(|(updates, context)| DataOp::Set { updates, context }),
        (prop::collection::vec(map_op(update), 0..4), context).prop_map(|(ops, context)| DataOp::Map { ops, context }),
    ]
}

/// Any map operation, nested up to three levels.
fn map_op(update: impl Strategy<Value = SetUpdate> + Clone + 'static) -> impl Strategy<Value = MapOp> {
    let name = prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from);
    let kind = prop::sample::select(FieldKind::ALL.to_vec());
    let leaf = prop_oneof![
        (name.clone(), any::<Vec<u8>>(), any::<u64>()).prop_map(|(name, value, at)| MapOp::update(
            name,
            FieldOp::Assign { value: Bytes::from(value), timestamp: Hlc(at) }
        )),
        name.clone().prop_map(|name| MapOp::update(name, FieldOp::Enable)),
        name.clone().prop_map(|name| MapOp::update(name, FieldOp::Disable)),
        (name.clone(), any::<i64>()).prop_map(|(name, amount)| MapOp::update(name, FieldOp::Increment(amount))),
        (name.clone(), prop::collection::vec(update, 0..3))
            .prop_map(|(name, updates)| MapOp::update(name, FieldOp::Set(updates))),
        (name.clone(), kind.clone()).prop_map(|(name, kind)| MapOp::remove(name, kind)),
        Just(MapOp::Clear),
        Just(MapOp::Require(Condition::Empty)),
        Just(MapOp::Require(Condition::NotEmpty)),
        (name.clone(), kind).prop_map(|(name, kind)| MapOp::Require(Condition::Absent(FieldKey::new(name, kind)))),
        name.clone().prop_map(|name| MapOp::Require(Condition::Integer(name))),
    ];
    leaf.prop_recursive(2, 12, 3, move |inner| {
        (name.clone(), prop::collection::vec(inner, 0..3))
            .prop_map(|(name, ops)| MapOp::update(name, FieldOp::Map(ops)))
    })
}
