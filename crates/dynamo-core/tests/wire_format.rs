//! Golden bytes of every format this node writes to the wire or to disk:
//! one representative instance of every [`Request`] and [`Response`]
//! variant, a [`ClusterState`] with a ring in transition, a stored object
//! and a client context.
//!
//! Why: nodes of two builds talk to each other during a rolling upgrade,
//! and a node reads back what an older build persisted. A change to any of
//! these encodings, however small, breaks that, so a refactoring of the
//! codecs must leave every byte below as it is. A deliberate format change
//! adds a new format version (and new golden bytes beside these), it does
//! not edit these.
//!
//! Each case also decodes its golden bytes back to the instance, so the
//! decoders keep reading what older builds wrote.
//!
//! When a case fails, the panic lists every mismatch with the bytes the
//! code produced, as a hex literal.

use bytes::Bytes;
use dynamo_core::codec::{decode_object, encode_object};
use dynamo_core::context::{decode_client_context, encode_client_context};
use dynamo_core::crdt::set::SetUpdate;
use dynamo_core::crdt::value::{DataOp, DataValue};
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::membership::{Announcement, ClusterId, ClusterState, Member, MemberStatus, Plan, StateDigest};
use dynamo_core::merkle::{NodeHash, ObjectDigest};
use dynamo_core::messages::{ForwardOptions, ForwardedError, Request, Response};
use dynamo_core::object::{Payload, Sibling, VersionedObject};
use dynamo_core::props::{BucketProps, ConflictMode, DataType};
use dynamo_core::ring::{NodeId, NodeSpec, Ring};
use dynamo_core::version::{ActorId, Dot, VersionVector};

fn key(bucket: &str, key: &[u8]) -> ObjectKey {
    ObjectKey::new(bucket, key).expect("a valid key")
}

/// Two concurrent siblings (a value with a content type, a tombstone) and
/// a third actor in the clock whose version was superseded.
fn object() -> VersionedObject {
    let clock: VersionVector =
        [(ActorId(1), 2), (ActorId(2), 1), (ActorId(0x0102_0304_0506_0708), 3)].into_iter().collect();
    let siblings = vec![
        Sibling {
            dot: Dot { actor: ActorId(1), counter: 2 },
            timestamp: Hlc::from_parts(1_700_000_000_000, 3),
            payload: Payload::Value {
                data: Bytes::from_static(b"hello"),
                content_type: Some("text/plain".to_string()),
                expires_ms: None,
            },
        },
        Sibling { dot: Dot { actor: ActorId(2), counter: 1 }, timestamp: Hlc(42), payload: Payload::Tombstone },
    ];
    VersionedObject::from_parts(clock, siblings).expect("a valid object")
}

/// One value without a content type.
fn small_object() -> VersionedObject {
    let clock: VersionVector = [(ActorId(9), 1)].into_iter().collect();
    let sibling = Sibling {
        dot: Dot { actor: ActorId(9), counter: 1 },
        timestamp: Hlc(7),
        payload: Payload::Value { data: Bytes::from_static(&[0, 0xff]), content_type: None, expires_ms: None },
    };
    VersionedObject::from_parts(clock, vec![sibling]).expect("a valid object")
}

/// A set after two adds by two actors and a remove, and a counter: the
/// data-type payload (sibling kind 2, issue 12).
fn datatype_objects() -> [VersionedObject; 2] {
    let mut set = VersionedObject::new();
    let add = |element: &'static [u8]| DataOp::Set {
        updates: vec![SetUpdate::Add(Bytes::from_static(element))],
        context: None,
    };
    set.apply_datatype(&add(b"apple"), DataType::Set, ActorId(1), 0, Hlc(10)).expect("an add");
    set.apply_datatype(&add(b"pear"), DataType::Set, ActorId(2), 0, Hlc(11)).expect("an add");
    let remove = DataOp::Set { updates: vec![SetUpdate::Remove(Bytes::from_static(b"apple"))], context: None };
    set.apply_datatype(&remove, DataType::Set, ActorId(2), 0, Hlc(12)).expect("a remove");
    let mut counter = VersionedObject::new();
    counter.apply_datatype(&DataOp::increment(5), DataType::Counter, ActorId(3), 0, Hlc(20)).expect("an increment");
    counter.apply_datatype(&DataOp::increment(-2), DataType::Counter, ActorId(4), 0, Hlc(21)).expect("a decrement");
    [set, counter]
}

fn announcement(id: &str, http: Option<&str>, capacity: u32, zone: Option<&str>) -> Announcement {
    Announcement {
        id: NodeId::new(id),
        rpc_addr: format!("{id}.local:9000"),
        http_addr: http.map(str::to_string),
        capacity,
        zone: zone.map(str::to_string),
    }
}

/// A ring of 8 partitions over `nodes`, owned as listed (explicit, so that
/// a change of the placement algorithm does not show up as a format change).
fn ring(owners: [&str; 8], nodes: &[NodeSpec], epoch: u64) -> Ring {
    let owners = owners.into_iter().map(NodeId::new).collect();
    Ring::from_parts(8, owners, nodes.iter().cloned(), epoch).expect("a valid ring")
}

/// Three static nodes (one zoned), a fourth joined and committed at epoch
/// 2 with one of its pulls done (so the transition is encoded), a fifth
/// joining and leaving, a sixth removed, and a re-announced first node.
fn cluster_state() -> ClusterState {
    let mut nodes = vec![NodeSpec::new("n0", 1), NodeSpec::new("n1", 2).in_zone("z1"), NodeSpec::new("n2", 1)];
    let first = ring(["n2", "n0", "n1", "n1", "n0", "n2", "n1", "n1"], &nodes, 1);
    let members = nodes.iter().map(|spec| Member {
        id: spec.id.clone(),
        rpc_addr: format!("{}.local:9000", spec.id),
        http_addr: None,
        capacity: spec.capacity,
        zone: spec.zone.clone(),
        status: MemberStatus::Member,
        version: 1,
    });
    let state = ClusterState::genesis(first, members).expect("a valid first state");
    let state = state.with_joining(&announcement("n3", Some("n3.local:8000"), 1, Some("z3")), 8).expect("join n3");
    nodes.push(NodeSpec::new("n3", 1).in_zone("z3"));
    let plan = Plan { ring: ring(["n2", "n0", "n3", "n1", "n0", "n2", "n1", "n1"], &nodes, 2), moves: Vec::new() };
    let state = state.commit(&plan, &[2, 3]).expect("commit");
    let pending = state.pending_pulls();
    assert!(pending.len() > 1, "the golden state needs a transition with pulls done and pending");
    let state = state.with_pull_done(&pending[0]).expect("a pending pull");
    let state = state.with_joining(&announcement("n4", None, 3, None), 8).expect("join n4");
    let state = state.with_status(&NodeId::new("n4"), MemberStatus::Leaving).expect("n4 leaves");
    let state = state.with_joining(&announcement("n5", Some("n5.local:8000"), 1, None), 8).expect("join n5");
    let state = state.with_status(&NodeId::new("n5"), MemberStatus::Removed).expect("n5 removed");
    let renamed = Announcement { http_addr: Some("n0.local:8080".to_string()), ..announcement("n0", None, 1, None) };
    state.with_announcement(&renamed).expect("n0 re-announces")
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        ("read", Request::Read { key: key("photos", b"cat.jpg") }),
        (
            "write",
            Request::Write { key: key("b", b"k"), object: object(), mode: ConflictMode::Siblings, durable: true },
        ),
        (
            "coordinate",
            Request::Coordinate {
                key: key("b", &[0, 1, 0xfe]),
                context: object().context().clone(),
                payload: Payload::Value {
                    data: Bytes::from_static(b"v"),
                    content_type: Some("a/b".to_string()),
                    expires_ms: None,
                },
                options: ForwardOptions {
                    w: Some("quorum".to_string()),
                    dw: None,
                    n: Some("3".to_string()),
                    timeout_ms: Some("250".to_string()),
                    seen_timestamp: 0x1122_3344_5566_7788,
                    stamp: 99,
                    deadline_ms: 0,
                },
            },
        ),
        ("ping", Request::Ping),
        (
            "set_props",
            Request::SetProps {
                bucket: "logs".to_string(),
                props: BucketProps { n: 3, r: 2, w: 2, dw: 1, conflict: ConflictMode::Lww, ..BucketProps::default() },
                version: 0x0a0b_0c0d,
            },
        ),
        (
            "set_props_ttl",
            Request::SetProps {
                bucket: "sessions".to_string(),
                props: BucketProps { ttl_s: 1800, ..BucketProps::default() },
                version: 9,
            },
        ),
        (
            "set_props_datatype",
            Request::SetProps {
                bucket: "carts".to_string(),
                props: BucketProps { datatype: DataType::Set, ..BucketProps::default() },
                version: 7,
            },
        ),
        ("merkle_hashes", Request::MerkleHashes { partition: 513, level: 2, indices: vec![0, 7, 1023] }),
        ("merkle_keys", Request::MerkleKeys { partition: 4, segments: vec![3, 900], after: Some(key("b", b"after")) }),
        (
            "hinted_write",
            Request::HintedWrite {
                owner: NodeId::new("n2"),
                key: key("b", b"k"),
                object: small_object(),
                mode: ConflictMode::Lww,
                durable: false,
            },
        ),
        ("reap", Request::Reap { key: key("b", b"gone"), tombstone: tombstone() }),
        ("gossip", Request::Gossip { cluster: ClusterId(counting(0x10)), digest: StateDigest(counting(0x80)) }),
        ("gossip_push", Request::GossipPush { state: Box::new(cluster_state()) }),
        (
            "join",
            Request::Join { node: announcement("n7", Some("n7.local:8000"), 4, Some("rack-2")), partitions: 1024 },
        ),
        ("transfer_page", Request::TransferPage { partition: 17, epoch: 3, after: None }),
        ("bucket_has_keys", Request::BucketHasKeys { bucket: "carts".to_string() }),
        (
            "list_keys",
            Request::ListKeys {
                partition: 5,
                bucket: "carts".to_string(),
                after: Some(b"k1".to_vec()),
                max_keys: 500,
                max_bytes: 1 << 20,
            },
        ),
        ("list_buckets", Request::ListBuckets),
    ]
}

fn responses() -> Vec<(&'static str, Response)> {
    vec![
        ("read", Response::Read { object: object() }),
        ("written", Response::Written { durable: true }),
        ("coordinated_ok", Response::Coordinated(Ok((object().context().clone(), Hlc(0x0102_0304))))),
        (
            "coordinated_err",
            Response::Coordinated(Err(ForwardedError { status: 503, body: "{\"error\":\"x\"}".to_string() })),
        ),
        ("pong", Response::Pong),
        ("props_set", Response::PropsSet),
        ("bucket_keys", Response::BucketKeys { any: true }),
        (
            "listed_keys",
            Response::ListedKeys { keys: vec![b"a".to_vec(), b"bc".to_vec()], covered: Some(b"bd".to_vec()) },
        ),
        ("listed_keys_end", Response::ListedKeys { keys: vec![], covered: None }),
        ("buckets", Response::Buckets { buckets: vec!["carts".to_string(), "logs".to_string()], complete: true }),
        ("merkle_hashes", Response::MerkleHashes { hashes: vec![NodeHash(counting(0)), NodeHash([0xee; 16])] }),
        (
            "merkle_keys",
            Response::MerkleKeys {
                entries: vec![(key("b", b"a"), ObjectDigest(counting(0x20))), (key("c", b"z"), ObjectDigest([1; 16]))],
                more: true,
            },
        ),
        (
            "transfer_page",
            Response::TransferPage {
                entries: vec![(key("b", b"a"), small_object()), (key("b", b"b"), tombstone())],
                more: false,
            },
        ),
        ("cluster_same", Response::ClusterSame),
        ("cluster_state", Response::ClusterState { state: Box::new(cluster_state()) }),
        ("failed", Response::Failed { reason: "disk full: é".to_string() }),
        ("unreadable", Response::Unreadable { reason: "checksum mismatch".to_string() }),
    ]
}

fn tombstone() -> VersionedObject {
    let clock: VersionVector = [(ActorId(3), 5)].into_iter().collect();
    let sibling =
        Sibling { dot: Dot { actor: ActorId(3), counter: 5 }, timestamp: Hlc(11), payload: Payload::Tombstone };
    VersionedObject::from_parts(clock, vec![sibling]).expect("a valid tombstone")
}

/// `start, start + 1, ...`: 16 bytes that show their own order.
fn counting(start: u8) -> [u8; 16] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Collects mismatches, so one run shows every case that changed.
#[derive(Default)]
struct Golden {
    mismatches: Vec<String>,
}

impl Golden {
    fn check(&mut self, name: &str, actual: &[u8], expected_hex: &str) {
        if hex(actual) != expected_hex {
            self.mismatches.push(format!("{name}: expected\n    {expected_hex}\n  got\n    \"{}\"", hex(actual)));
        }
    }

    fn check_text(&mut self, name: &str, actual: &str, expected: &str) {
        if actual != expected {
            self.mismatches.push(format!("{name}: expected\n    {expected}\n  got\n    \"{actual}\""));
        }
    }

    fn finish(self) {
        assert!(self.mismatches.is_empty(), "the encoding changed:\n{}", self.mismatches.join("\n"));
    }
}

fn golden(table: &'static [(&'static str, &'static str)], name: &str) -> &'static str {
    table.iter().find(|(case, _)| *case == name).map_or("<missing>", |(_, bytes)| *bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("golden bytes are hex"))
        .collect()
}

#[test]
fn every_request_encodes_to_its_golden_bytes_and_decodes_back() {
    let mut golden_check = Golden::default();
    for (name, request) in requests() {
        let expected = golden(REQUESTS, name);
        golden_check.check(&format!("request {name}"), &request.encode(), expected);
        if expected != "<missing>" {
            assert_eq!(Request::decode(request.method(), &unhex(expected)), Ok(request), "request {name}");
        }
    }
    golden_check.finish();
}

#[test]
fn every_response_encodes_to_its_golden_bytes_and_decodes_back() {
    let mut golden_check = Golden::default();
    for (name, response) in responses() {
        let expected = golden(RESPONSES, name);
        golden_check.check(&format!("response {name}"), &response.encode(), expected);
        if expected != "<missing>" {
            assert_eq!(Response::decode(&unhex(expected)), Ok(response), "response {name}");
        }
    }
    golden_check.finish();
}

#[test]
fn request_methods_keep_their_numbers() {
    let methods: Vec<(&str, u16)> = requests().iter().map(|(name, request)| (*name, request.method())).collect();
    let expected = [
        ("read", 1),
        ("write", 2),
        ("coordinate", 3),
        ("ping", 4),
        ("set_props", 5),
        ("set_props_ttl", 5),
        ("set_props_datatype", 5),
        ("merkle_hashes", 6),
        ("merkle_keys", 7),
        ("hinted_write", 8),
        ("reap", 9),
        ("gossip", 10),
        ("gossip_push", 11),
        ("join", 12),
        ("transfer_page", 13),
        ("bucket_has_keys", 15),
        ("list_keys", 16),
        ("list_buckets", 17),
    ];
    assert_eq!(methods, expected);
}

#[test]
fn a_cluster_state_in_transition_encodes_to_its_golden_bytes_and_decodes_back() {
    let state = cluster_state();
    assert!(state.transition().is_some_and(|transition| !transition.done().is_empty()));
    let mut golden_check = Golden::default();
    golden_check.check("cluster state", &state.encode(), CLUSTER_STATE);
    golden_check.check("cluster state digest", &state.digest().0, CLUSTER_STATE_DIGEST);
    golden_check.check("cluster id", &state.cluster_id().0, CLUSTER_ID);
    golden_check.check("ring digest", &dynamo_core::membership::ring_digest(state.ring()), RING_DIGEST);
    golden_check.finish();
    assert_eq!(ClusterState::decode(&unhex(CLUSTER_STATE)), Ok(state));
}

#[test]
fn stored_objects_and_client_contexts_encode_to_their_golden_bytes() {
    let mut golden_check = Golden::default();
    golden_check.check("object", &encode_object(&object()), OBJECT);
    golden_check.check("small object", &encode_object(&small_object()), SMALL_OBJECT);
    let [set, counter] = datatype_objects();
    golden_check.check("set object", &encode_object(&set), SET_OBJECT);
    golden_check.check("counter object", &encode_object(&counter), COUNTER_OBJECT);
    let context = encode_client_context(object().context(), Hlc(0x55));
    golden_check.check_text("client context", &context, CLIENT_CONTEXT);
    golden_check.finish();
    assert_eq!(decode_object(&unhex(OBJECT)), Ok(object()));
    assert_eq!(decode_object(&unhex(SMALL_OBJECT)), Ok(small_object()));
    assert_eq!(decode_object(&unhex(SET_OBJECT)), Ok(set));
    assert_eq!(decode_object(&unhex(COUNTER_OBJECT)), Ok(counter.clone()));
    let totals_only = decode_object(&unhex(COUNTER_OBJECT_TOTALS_ONLY)).expect("a format-1 counter decodes");
    let value_of = |object: &VersionedObject| match object.datatype_value() {
        Ok(Some(DataValue::Counter(counter))) => counter.value(),
        other => panic!("not a counter: {other:?}"),
    };
    assert_eq!(value_of(&totals_only), value_of(&counter));
    assert_eq!(decode_client_context(&context), Ok((object().context().clone(), Hlc(0x55))));
}

/// Golden bytes of each request of [`requests`], by name.
const REQUESTS: &[(&str, &str)] = &[
    ("read", "010670686f746f7300076361742e6a7067"),
    (
        "write",
        concat!(
            "01016200016b0000007b0100030000000000000001000000000000000200000000000000020000000000000001010203",
            "04050607080000000000000003000200000000000000010000000000000002018bcfe568000003000a746578742f706c",
            "61696e0000000568656c6c6f00000000000000020000000000000001000000000000002a010001",
        ),
    ),
    (
        "coordinate",
        concat!(
            "01016200030001fe00030000000000000001000000000000000200000000000000020000000000000001010203040506",
            "070800000000000000030003612f620000000176010671756f72756d0001013301033235301122334455667788000000",
            "0000000063",
        ),
    ),
    ("ping", "01"),
    ("set_props", "01046c6f67730302020101000000000a0b0c0d"),
    ("set_props_ttl", "010873657373696f6e73030202000800000000000000090000000000000708"),
    ("set_props_datatype", "0105636172747303020200200000000000000007"),
    ("merkle_hashes", "01000002010200030000000703ff"),
    ("merkle_keys", "010000000400020003038401016200056166746572"),
    (
        "hinted_write",
        concat!(
            "01026e32016200016b000000350100010000000000000009000000000000000100010000000000000009000000000000",
            "0001000000000000000700000000000200ff0100",
        ),
    ),
    (
        "reap",
        concat!(
            "0101620004676f6e650000002e0100010000000000000003000000000000000500010000000000000003000000000000",
            "0005000000000000000b01",
        ),
    ),
    ("gossip", "01101112131415161718191a1b1c1d1e1f808182838485868788898a8b8c8d8e8f"),
    (
        "gossip_push",
        concat!(
            "010000018e02551108e1abbe2feb4958e4a0923a80a60006026e300d6e302e6c6f63616c3a39303030010d6e302e6c6f",
            "63616c3a383038300000000100010000000000000002026e310d6e312e6c6f63616c3a39303030000000000201027a31",
            "010000000000000001026e320d6e322e6c6f63616c3a39303030000000000100010000000000000001026e330d6e332e",
            "6c6f63616c3a39303030010d6e332e6c6f63616c3a383030300000000101027a33010000000000000002026e340d6e34",
            "2e6c6f63616c3a39303030000000000300020000000000000002026e350d6e352e6c6f63616c3a39303030010d6e352e",
            "6c6f63616c3a3830303000000001000300000000000000020000000800000000000000020004026e300000000100026e",
            "310000000201027a31026e320000000100026e330000000101027a330002000000030001000000020001000101000000",
            "0800000000000000010003026e300000000100026e310000000201027a31026e32000000010000020000000100010000",
            "00020001000102020300000001000000000003",
        ),
    ),
    (
        "join",
        concat!(
            "01026e370d6e372e6c6f63616c3a39303030010d6e372e6c6f63616c3a383030300000000401067261636b2d32000004",
            "00",
        ),
    ),
    ("transfer_page", "0100000011000000000000000300"),
    ("bucket_has_keys", "01056361727473"),
    ("list_keys", "01000000050563617274730100026b3101f400100000"),
    ("list_buckets", "01"),
];
/// Golden bytes of each response of [`responses`], by name.
const RESPONSES: &[(&str, &str)] = &[
    (
        "read",
        concat!(
            "01000000007b010003000000000000000100000000000000020000000000000002000000000000000101020304050607",
            "080000000000000003000200000000000000010000000000000002018bcfe568000003000a746578742f706c61696e00",
            "00000568656c6c6f00000000000000020000000000000001000000000000002a01",
        ),
    ),
    ("written", "010101"),
    (
        "coordinated_ok",
        concat!(
            "010200000300000000000000010000000000000002000000000000000200000000000000010102030405060708000000",
            "00000000030000000001020304",
        ),
    ),
    ("coordinated_err", "01020101f70000000d7b226572726f72223a2278227d"),
    ("pong", "0103"),
    ("props_set", "0105"),
    ("bucket_keys", "010d01"),
    ("listed_keys", "010e0002000161000262630100026264"),
    ("listed_keys_end", "010e000000"),
    ("buckets", "010f010002056361727473046c6f6773"),
    ("merkle_hashes", "01060002000102030405060708090a0b0c0d0e0feeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"),
    ("merkle_keys", "01070100020162000161202122232425262728292a2b2c2d2e2f016300017a01010101010101010101010101010101"),
    (
        "transfer_page",
        concat!(
            "010a00000201620001610000003501000100000000000000090000000000000001000100000000000000090000000000",
            "000001000000000000000700000000000200ff01620001620000002e0100010000000000000003000000000000000500",
            "0100000000000000030000000000000005000000000000000b01",
        ),
    ),
    ("cluster_same", "0108"),
    (
        "cluster_state",
        concat!(
            "01090000018e02551108e1abbe2feb4958e4a0923a80a60006026e300d6e302e6c6f63616c3a39303030010d6e302e6c",
            "6f63616c3a383038300000000100010000000000000002026e310d6e312e6c6f63616c3a39303030000000000201027a",
            "31010000000000000001026e320d6e322e6c6f63616c3a39303030000000000100010000000000000001026e330d6e33",
            "2e6c6f63616c3a39303030010d6e332e6c6f63616c3a383030300000000101027a33010000000000000002026e340d6e",
            "342e6c6f63616c3a39303030000000000300020000000000000002026e350d6e352e6c6f63616c3a39303030010d6e35",
            "2e6c6f63616c3a3830303000000001000300000000000000020000000800000000000000020004026e30000000010002",
            "6e310000000201027a31026e320000000100026e330000000101027a3300020000000300010000000200010001010000",
            "000800000000000000010003026e300000000100026e310000000201027a31026e320000000100000200000001000100",
            "0000020001000102020300000001000000000003",
        ),
    ),
    ("failed", "0104000d6469736b2066756c6c3a20c3a9"),
    ("unreadable", "010b0011636865636b73756d206d69736d61746368"),
];
/// [`ClusterState::encode`] of [`cluster_state`] (format 2).
const CLUSTER_STATE: &str = concat!(
    "02551108e1abbe2feb4958e4a0923a80a60006026e300d6e302e6c6f63616c3a39303030010d6e302e6c6f63616c3a38",
    "3038300000000100010000000000000002026e310d6e312e6c6f63616c3a39303030000000000201027a310100000000",
    "00000001026e320d6e322e6c6f63616c3a39303030000000000100010000000000000001026e330d6e332e6c6f63616c",
    "3a39303030010d6e332e6c6f63616c3a383030300000000101027a33010000000000000002026e340d6e342e6c6f6361",
    "6c3a39303030000000000300020000000000000002026e350d6e352e6c6f63616c3a39303030010d6e352e6c6f63616c",
    "3a3830303000000001000300000000000000020000000800000000000000020004026e300000000100026e3100000002",
    "01027a31026e320000000100026e330000000101027a3300020000000300010000000200010001010000000800000000",
    "000000010003026e300000000100026e310000000201027a31026e320000000100000200000001000100000002000100",
    "0102020300000001000000000003",
);
/// Its [`ClusterState::digest`], what gossip compares first.
const CLUSTER_STATE_DIGEST: &str = "c5d2781ff1b2d6b90fe00ffa35e45122";
/// Its cluster id, derived from the first ring: nodes of two builds must agree on it.
const CLUSTER_ID: &str = "551108e1abbe2feb4958e4a0923a80a6";
/// The digest of its committed ring, the tie-break of concurrent commits.
const RING_DIGEST: &str = "6bd22de0e60a8ddc6f92778e87125b9c9f0fb1eb0d4d4c2483017f439af6826d";
/// [`encode_object`] of [`object`]: the on-disk and embedded object format 1.
const OBJECT: &str = concat!(
    "010003000000000000000100000000000000020000000000000002000000000000000101020304050607080000000000",
    "000003000200000000000000010000000000000002018bcfe568000003000a746578742f706c61696e0000000568656c",
    "6c6f00000000000000020000000000000001000000000000002a01",
);
/// [`encode_object`] of [`small_object`].
const SMALL_OBJECT: &str = concat!(
    "010001000000000000000900000000000000010001000000000000000900000000000000010000000000000007000000",
    "00000200ff",
);
/// The `X-Dynamo-Context` of [`object`]'s clock with a seen timestamp (format 2).
const CLIENT_CONTEXT: &str = "AgADAAAAAAAAAAEAAAAAAAAAAgAAAAAAAAACAAAAAAAAAAEBAgMEBQYHCAAAAAAAAAADAAAAAAAAAFWlHLFr";

/// Golden bytes of the set of [`datatype_objects`].
const SET_OBJECT: &str = concat!(
    "0100020000000000000001000000000000000100000000000000020000000000000002000100000000000000020000000000000002000000",
    "000000000c0202000000470100020000000000000001000000000000000100000000000000020000000000000001000000000000000100",
    "000004706561720001000000000000000200000000000000010000",
);
/// Golden bytes of the counter of [`datatype_objects`].
const COUNTER_OBJECT: &str = concat!(
    "0100020000000000000003000000000000000100000000000000040000000000000001000100000000000000040000000000000001000000",
    "0000000015020100000057020002000000000000000300000000000000010000000000000005000000000000000000000000000000000000",
    "000000000000000400000000000000010000000000000000000000000000000200000000000000000000",
);

/// [`COUNTER_OBJECT`] as written before operation ids (counter format 1):
/// still read, with the same value.
const COUNTER_OBJECT_TOTALS_ONLY: &str = concat!(
    "0100020000000000000003000000000000000100000000000000040000000000000001000100000000000000040000000000000001000000",
    "0000000015020100000033010002000000000000000300000000000000050000000000000000000000000000000400000000000000000000000000000002",
);
