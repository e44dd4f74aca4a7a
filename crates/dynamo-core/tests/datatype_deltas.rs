//! What replication ships for one update of a large data type (issue 12):
//! the `Write` message carrying the delta of one add to a set of 100,000
//! elements must stay under 1 KiB, where the whole state is megabytes.
//! Sizes, not times: deterministic, so a plain test (the figures are in
//! `docs/benchmarks.md`; run with `--nocapture` to print them).

use bytes::Bytes;
use dynamo_core::codec::encode_object;
use dynamo_core::crdt::set::SetUpdate;
use dynamo_core::crdt::value::DataOp;
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::Request;
use dynamo_core::object::VersionedObject;
use dynamo_core::props::{ConflictMode, DataType};
use dynamo_core::version::ActorId;

fn add(element: String) -> DataOp {
    DataOp::Set { updates: vec![SetUpdate::Add(Bytes::from(element))], context: None }
}

#[test]
fn one_add_to_a_set_of_100000_ships_under_a_kibibyte() {
    let key = ObjectKey::new("carts", b"big").expect("a valid key");
    let mut state = VersionedObject::new();
    // Three nodes took turns acting, as a cluster's replicas do.
    for index in 0..100_000u64 {
        let actor = ActorId(1 + index % 3);
        state.apply_datatype(&add(format!("item-{index:06}")), DataType::Set, actor, 0, Hlc(index)).expect("an add");
    }
    let delta = state.apply_datatype(&add("one-more".to_string()), DataType::Set, ActorId(2), 0, Hlc(1 << 40)).unwrap();
    let write = |object: VersionedObject| {
        Request::Write { key: key.clone(), object, mode: ConflictMode::Siblings, durable: false }.encode().len()
    };
    let (delta_bytes, state_bytes) = (write(delta), write(state.clone()));
    println!("one add to a set of 100,000: delta Write {delta_bytes} bytes, whole-state Write {state_bytes} bytes");
    assert!(delta_bytes <= 1024, "the delta of one add ships {delta_bytes} bytes");
    assert!(state_bytes > 1_000_000, "the whole state is {state_bytes} bytes");
    assert!(state_bytes > encode_object(&state).len(), "the Write message carries the whole object");
}
