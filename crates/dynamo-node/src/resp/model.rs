//! How a Redis key is stored: one convergent map per key (the map data
//! type of issue 12), whatever the key's Redis type, so that every command
//! is an operation of one CRDT with laws already proved (merge
//! commutative, associative, idempotent; reset-remove), and a key can
//! change type (`SET` over a hash, `DEL` of a set) without leaving a
//! value of one type beside another's.
//!
//! The map's top-level fields say the type:
//!
//! - `string_map`: a string, a *cell*: the register `value` (the last
//!   `SET`, last write wins by the acting replica's hybrid logical clock)
//!   and the counter `value` (the `INCR`s since). The string reads as the
//!   register, or as the register's integer plus the counter when there is
//!   a counter (absent register: 0). `INCR` is then a convergent counter:
//!   increments through different nodes all count, and `SET` resets it.
//! - `set_set`: a set, the add-wins set.
//! - `hash_map`: a hash, one cell per hash field (`HSET` writes the
//!   field's register, `HINCRBY` its counter).
//!
//! A command that writes one type requires, where it is applied (the
//! acting replica, [`MapOp::Require`]), that the others are absent:
//! `WRONGTYPE` otherwise. `SET` and `DEL` clear the whole map first
//! ([`MapOp::Clear`]: what the acting replica has seen goes, an update
//! concurrent with it survives). Two replicas can still take two types
//! concurrently (a `SET` here while a partitioned node takes an `SADD`);
//! after they merge the key holds both, and reads show one by a fixed
//! precedence, string, then hash, then set, the same on every node,
//! until the next `SET` or `DEL` clears the other.

use std::collections::BTreeMap;

use bytes::Bytes;
use dynamo_core::crdt::map::{Condition, FieldKey, FieldKind, FieldOp, FieldValue, Map, MapOp, parse_integer};
use dynamo_core::crdt::set::SetUpdate;
use dynamo_core::hlc::Hlc;

/// The string cell's field name.
const STRING: &[u8] = b"string";
/// The set's field name.
const SET: &[u8] = b"set";
/// The hash's field name.
const HASH: &[u8] = b"hash";
/// The name of a cell's register and counter.
const VALUE: &[u8] = b"value";

/// A key's value as Redis shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisValue {
    /// No such key.
    Absent,
    /// A string (an integer after `INCR`).
    String(Bytes),
    /// A set's members, in byte order.
    Set(Vec<Bytes>),
    /// A hash's fields and values, in field order.
    Hash(BTreeMap<Bytes, Bytes>),
}

impl RedisValue {
    /// What `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            RedisValue::Absent => "none",
            RedisValue::String(_) => "string",
            RedisValue::Set(_) => "set",
            RedisValue::Hash(_) => "hash",
        }
    }

    /// The kind of a key's value, for the checks of a write.
    pub fn kind(&self) -> Option<Kind> {
        match self {
            RedisValue::Absent => None,
            RedisValue::String(_) => Some(Kind::String),
            RedisValue::Set(_) => Some(Kind::Set),
            RedisValue::Hash(_) => Some(Kind::Hash),
        }
    }
}

/// The Redis types a key can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string (or an integer).
    String,
    /// A set.
    Set,
    /// A hash.
    Hash,
}

impl Kind {
    /// The top-level field holding this kind.
    fn field(self) -> FieldKey {
        match self {
            Kind::String => FieldKey::new(STRING, FieldKind::Map),
            Kind::Set => FieldKey::new(SET, FieldKind::Set),
            Kind::Hash => FieldKey::new(HASH, FieldKind::Map),
        }
    }

    /// The conditions that the key holds no other kind.
    fn only(self) -> impl Iterator<Item = MapOp> {
        [Kind::String, Kind::Hash, Kind::Set]
            .into_iter()
            .filter(move |other| *other != self)
            .map(|other| MapOp::Require(Condition::Absent(other.field())))
    }

    /// Whether a refusal for `condition` (as [`Condition::describe`] names
    /// it) is this module's type check: the key holds another kind.
    pub fn is_type_check(description: &str) -> bool {
        [Kind::String, Kind::Hash, Kind::Set]
            .into_iter()
            .any(|kind| Condition::Absent(kind.field()).describe() == description)
    }
}

/// The key's value, by the precedence of the module doc.
pub fn redis_value(map: &Map) -> RedisValue {
    let fields = map.value();
    if let Some(FieldValue::Map(cell)) = fields.get(&Kind::String.field()) {
        return RedisValue::String(cell_value(cell));
    }
    if let Some(FieldValue::Map(hash)) = fields.get(&Kind::Hash.field()) {
        let mut entries = BTreeMap::new();
        for (key, value) in hash {
            if let (FieldKind::Map, FieldValue::Map(cell)) = (key.kind, value) {
                entries.insert(key.name.clone(), cell_value(cell));
            }
        }
        return RedisValue::Hash(entries);
    }
    match fields.get(&Kind::Set.field()) {
        Some(FieldValue::Set(members)) => RedisValue::Set(members.clone()),
        _ => RedisValue::Absent,
    }
}

/// A cell's string: the register, or its integer (0 when absent) plus the
/// counter. A register that is not an integer beside a counter (an `INCR`
/// concurrent with a `SET` of text) reads as the register.
fn cell_value(cell: &BTreeMap<FieldKey, FieldValue>) -> Bytes {
    let register = match cell.get(&FieldKey::new(VALUE, FieldKind::Register)) {
        Some(FieldValue::Register(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    let Some(FieldValue::Counter(increments)) = cell.get(&FieldKey::new(VALUE, FieldKind::Counter)) else {
        return register.unwrap_or_default();
    };
    let base = match &register {
        None => 0,
        Some(bytes) => match parse_integer(bytes) {
            Some(base) => base,
            None => return bytes.clone(),
        },
    };
    Bytes::from(base.saturating_add(*increments).to_string())
}

/// `SET`: the key becomes the string `value`, whatever it held.
pub fn set_string(value: Bytes) -> Vec<MapOp> {
    vec![MapOp::Clear, MapOp::update(STRING, FieldOp::Map(vec![assign(value)]))]
}

/// `INCRBY`: adds `amount` to the string, which must be an integer (or
/// absent: 0).
pub fn increment(amount: i64) -> Vec<MapOp> {
    let cell = vec![
        MapOp::Require(Condition::Integer(Bytes::from_static(VALUE))),
        MapOp::update(VALUE, FieldOp::Increment(amount)),
    ];
    Kind::String.only().chain([MapOp::update(STRING, FieldOp::Map(cell))]).collect()
}

/// `DEL`: refused (so the caller counts 0) when the key is absent here.
pub fn delete() -> Vec<MapOp> {
    vec![MapOp::Require(Condition::NotEmpty), MapOp::Clear]
}

/// The condition `SET NX` adds.
pub fn require_absent() -> MapOp {
    MapOp::Require(Condition::Empty)
}

/// The condition `SET XX` adds.
pub fn require_present() -> MapOp {
    MapOp::Require(Condition::NotEmpty)
}

/// `SADD`/`SREM`: `updates` on the set.
pub fn set_update(updates: Vec<SetUpdate>) -> Vec<MapOp> {
    Kind::Set.only().chain([MapOp::update(SET, FieldOp::Set(updates))]).collect()
}

/// `HSET`: each field gets its value (its counter, if any, reset).
pub fn hash_set(pairs: &[(Bytes, Bytes)]) -> Vec<MapOp> {
    let cells = pairs
        .iter()
        .map(|(field, value)| MapOp::update(field.clone(), FieldOp::Map(vec![MapOp::Clear, assign(value.clone())])))
        .collect();
    hash_ops(cells)
}

/// `HDEL`: the fields are cleared (never refused for an absent one).
pub fn hash_delete(fields: &[Bytes]) -> Vec<MapOp> {
    hash_ops(fields.iter().map(|field| MapOp::update(field.clone(), FieldOp::Map(vec![MapOp::Clear]))).collect())
}

/// `HINCRBY`: adds `amount` to the field, which must hold an integer (or
/// be absent: 0).
pub fn hash_increment(field: Bytes, amount: i64) -> Vec<MapOp> {
    let cell = vec![
        MapOp::Require(Condition::Integer(Bytes::from_static(VALUE))),
        MapOp::update(VALUE, FieldOp::Increment(amount)),
    ];
    hash_ops(vec![MapOp::update(field, FieldOp::Map(cell))])
}

fn hash_ops(cells: Vec<MapOp>) -> Vec<MapOp> {
    Kind::Hash.only().chain([MapOp::update(HASH, FieldOp::Map(cells))]).collect()
}

/// A register write; the acting replica stamps it with its own clock.
fn assign(value: Bytes) -> MapOp {
    MapOp::update(VALUE, FieldOp::Assign { value, timestamp: Hlc(0) })
}

#[cfg(test)]
mod tests {
    use dynamo_core::crdt::Crdt;
    use dynamo_core::crdt::map::MapError;
    use dynamo_core::version::ActorId;

    use super::*;

    const A: ActorId = ActorId(1);
    const B: ActorId = ActorId(2);

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// Applies `ops` as `actor`, stamping registers as the acting replica
    /// would (each write later than the last).
    fn apply(map: &mut Map, ops: Vec<MapOp>, actor: ActorId) -> Result<Map, MapError> {
        static CLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let at = Hlc(CLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let stamped: Vec<MapOp> = ops.into_iter().map(|op| stamp(op, at)).collect();
        map.apply(&stamped, actor, None)
    }

    fn stamp(op: MapOp, at: Hlc) -> MapOp {
        match op {
            MapOp::Update { name, op: FieldOp::Assign { value, .. } } => {
                MapOp::Update { name, op: FieldOp::Assign { value, timestamp: at } }
            }
            MapOp::Update { name, op: FieldOp::Map(ops) } => {
                MapOp::Update { name, op: FieldOp::Map(ops.into_iter().map(|op| stamp(op, at)).collect()) }
            }
            other => other,
        }
    }

    fn type_check(error: MapError) -> bool {
        matches!(error, MapError::Unmet(condition) if Kind::is_type_check(&condition.describe()))
    }

    #[test]
    fn a_string_is_set_incremented_and_reset_by_set() {
        let mut map = Map::new();
        assert_eq!(redis_value(&map), RedisValue::Absent);
        apply(&mut map, set_string(bytes("10")), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::String(bytes("10")));
        apply(&mut map, increment(5), A).unwrap();
        apply(&mut map, increment(-1), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::String(bytes("14")));
        apply(&mut map, set_string(bytes("hello")), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::String(bytes("hello")));
        let refused = apply(&mut map, increment(1), A).unwrap_err();
        assert_eq!(refused, MapError::Unmet(Condition::Integer(bytes("value"))));
        assert!(!type_check(refused));
        // INCR of an absent key counts from 0.
        let mut fresh = Map::new();
        apply(&mut fresh, increment(3), A).unwrap();
        assert_eq!(redis_value(&fresh), RedisValue::String(bytes("3")));
    }

    #[test]
    fn increments_through_two_replicas_both_count() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, set_string(bytes("1")), A).unwrap();
        b.merge(&a);
        apply(&mut a, increment(2), A).unwrap();
        apply(&mut b, increment(3), B).unwrap();
        a.merge(&b);
        b.merge(&a);
        assert_eq!(a, b);
        assert_eq!(redis_value(&a), RedisValue::String(bytes("6")));
    }

    #[test]
    fn a_key_has_one_type_and_set_or_del_replace_any() {
        let mut map = Map::new();
        apply(&mut map, set_update(vec![SetUpdate::Add(bytes("m"))]), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::Set(vec![bytes("m")]));
        assert!(type_check(apply(&mut map, increment(1), A).unwrap_err()));
        assert!(type_check(apply(&mut map, hash_set(&[(bytes("f"), bytes("v"))]), A).unwrap_err()));
        apply(&mut map, set_string(bytes("s")), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::String(bytes("s")));
        assert!(type_check(apply(&mut map, set_update(vec![SetUpdate::Add(bytes("m"))]), A).unwrap_err()));
        apply(&mut map, delete(), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::Absent);
        assert_eq!(apply(&mut map, delete(), A), Err(MapError::Unmet(Condition::NotEmpty)));
        apply(&mut map, hash_set(&[(bytes("f"), bytes("v"))]), A).unwrap();
        assert_eq!(redis_value(&map).type_name(), "hash");
    }

    #[test]
    fn hash_fields_are_cells() {
        let mut map = Map::new();
        apply(&mut map, hash_set(&[(bytes("a"), bytes("1")), (bytes("b"), bytes("x"))]), A).unwrap();
        apply(&mut map, hash_increment(bytes("a"), 4), A).unwrap();
        apply(&mut map, hash_increment(bytes("c"), -2), A).unwrap();
        let refused = apply(&mut map, hash_increment(bytes("b"), 1), A).unwrap_err();
        assert!(!type_check(refused));
        let expected = BTreeMap::from([(bytes("a"), bytes("5")), (bytes("b"), bytes("x")), (bytes("c"), bytes("-2"))]);
        assert_eq!(redis_value(&map), RedisValue::Hash(expected));
        // HSET resets the field's counter; HDEL of a field that is not
        // there is not refused; the last field deleted deletes the key.
        apply(&mut map, hash_set(&[(bytes("a"), bytes("7"))]), A).unwrap();
        apply(&mut map, hash_delete(&[bytes("b"), bytes("c"), bytes("zz")]), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::Hash(BTreeMap::from([(bytes("a"), bytes("7"))])));
        apply(&mut map, hash_delete(&[bytes("a")]), A).unwrap();
        assert_eq!(redis_value(&map), RedisValue::Absent);
        assert!(map.is_empty());
    }

    #[test]
    fn concurrent_types_read_by_precedence_the_same_everywhere() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, set_update(vec![SetUpdate::Add(bytes("m"))]), A).unwrap();
        apply(&mut b, set_string(bytes("s")), B).unwrap();
        let (mut left, mut right) = (a.clone(), b.clone());
        left.merge(&b);
        right.merge(&a);
        assert_eq!(left, right);
        assert_eq!(redis_value(&left), RedisValue::String(bytes("s")));
        // A SET that saw both clears the set.
        apply(&mut left, set_string(bytes("t")), A).unwrap();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_del_concurrent_with_an_incr_keeps_only_the_increment() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, set_string(bytes("10")), A).unwrap();
        b.merge(&a);
        apply(&mut a, delete(), A).unwrap();
        apply(&mut b, increment(1), B).unwrap();
        a.merge(&b);
        assert_eq!(redis_value(&a), RedisValue::String(bytes("1")));
    }
}
