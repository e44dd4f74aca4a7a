//! [`DataValue`]: one stored data-type value of any kind, and
//! [`DataOp`]: an operation a client asks for. This is the seam between the
//! types (which know nothing of storage) and the versioned object that
//! stores them ([`crate::object::Payload::Datatype`]).

use bytes::Bytes;

use crate::codec::{CodecError, Reader, encode_u32_prefixed};
use crate::crdt::Crdt;
use crate::crdt::context::CausalContext;
use crate::crdt::counter::{Counter, CounterError, OperationId};
use crate::crdt::map::{Condition, FieldKey, FieldKind, FieldOp, MAX_DEPTH, MAX_OPS, Map, MapError, MapOp};
use crate::crdt::set::{OrSet, SetError, SetUpdate};
use crate::hlc::Hlc;
use crate::props::DataType;
use crate::version::ActorId;

/// Most element updates one set operation may carry (an `add_all` or
/// `remove_all` of more is refused before it reaches a replica).
pub const MAX_OP_UPDATES: usize = 1000;

/// Tag byte of an increment operation.
const OP_INCREMENT: u8 = 1;
/// Tag byte of a set operation.
const OP_SET: u8 = 2;
/// Tag byte of an increment operation with an operation id.
const OP_INCREMENT_ONCE: u8 = 3;
/// Tag byte of a map operation.
const OP_MAP: u8 = 4;

/// Tag byte of a counter inside an object.
const TAG_COUNTER: u8 = 1;
/// Tag byte of a set inside an object.
const TAG_SET: u8 = 2;
/// Tag byte of a map inside an object.
const TAG_MAP: u8 = 3;

/// Tag bytes of a field operation inside a map operation.
const FIELD_ASSIGN: u8 = 1;
const FIELD_ENABLE: u8 = 2;
const FIELD_DISABLE: u8 = 3;
const FIELD_INCREMENT: u8 = 4;
const FIELD_SET: u8 = 5;
const FIELD_MAP: u8 = 6;
/// Tag byte of a field remove inside a map operation.
const FIELD_REMOVE: u8 = 7;
/// Tag byte of a clear of a map level.
const LEVEL_CLEAR: u8 = 8;
/// Tag byte of a condition on a map level.
const LEVEL_REQUIRE: u8 = 9;
/// Condition bytes after [`LEVEL_REQUIRE`].
const CONDITION_EMPTY: u8 = 1;
const CONDITION_NOT_EMPTY: u8 = 2;
const CONDITION_ABSENT: u8 = 3;
const CONDITION_INTEGER: u8 = 4;

/// A data-type value of one of the kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataValue {
    /// A PN-counter.
    Counter(Counter),
    /// An add-wins set.
    Set(OrSet),
    /// A map of named fields.
    Map(Map),
}

/// An operation on a data-type value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataOp {
    /// Add `amount` (negative to decrement) to a counter; with an `id`,
    /// only if no increment with that id is remembered (see
    /// [`crate::crdt::counter`]: a retry counts once).
    Increment {
        /// The amount.
        amount: i64,
        /// The operation id, if the client (or the forwarding node) gave
        /// one.
        id: Option<OperationId>,
    },
    /// Adds and removes on a set, applied in order, all or none. Removes
    /// act on what `context` (from a read) observed; without one, on what
    /// the acting replica holds.
    Set {
        /// The updates.
        updates: Vec<SetUpdate>,
        /// The context of the client's read, if it sent one.
        context: Option<CausalContext>,
    },
    /// Field updates and removes on a map, applied in order, all or none.
    /// Removes act on what `context` observed (else on what the acting
    /// replica holds). A register write's timestamp is the acting
    /// replica's, whatever the operation carries.
    Map {
        /// The operations.
        ops: Vec<MapOp>,
        /// The context of the client's read, if it sent one.
        context: Option<CausalContext>,
    },
}

impl DataOp {
    /// The kind of value this operation applies to.
    pub fn kind(&self) -> DataType {
        match self {
            DataOp::Increment { .. } => DataType::Counter,
            DataOp::Set { .. } => DataType::Set,
            DataOp::Map { .. } => DataType::Map,
        }
    }
}

impl DataOp {
    /// An increment without an operation id.
    pub fn increment(amount: i64) -> DataOp {
        DataOp::Increment { amount, id: None }
    }

    /// Appends the encoding (in a forwarded update): `tag u8`, then for an
    /// increment `amount i64 [| id 16 bytes]` (tag 1 without an id, 3 with
    /// one), for a set `has context u8 [| context] |
    /// updates u32 | (add 0 / remove 1 u8 | length u32 | element)*`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DataOp::Increment { amount, id } => {
                out.push(if id.is_some() { OP_INCREMENT_ONCE } else { OP_INCREMENT });
                out.extend_from_slice(&amount.to_be_bytes());
                if let Some(id) = id {
                    out.extend_from_slice(&id.0);
                }
            }
            DataOp::Set { updates, context } => {
                out.push(OP_SET);
                out.push(u8::from(context.is_some()));
                if let Some(context) = context {
                    context.encode(out);
                }
                encode_set_updates(updates, out);
            }
            DataOp::Map { ops, context } => {
                out.push(OP_MAP);
                out.push(u8::from(context.is_some()));
                if let Some(context) = context {
                    context.encode(out);
                }
                encode_map_ops(ops, out);
            }
        }
    }

    /// Reads [`DataOp::encode`]'s bytes, with the limits a client's
    /// operation has.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<DataOp, CodecError> {
        match reader.u8("operation tag")? {
            OP_INCREMENT => Ok(DataOp::increment(i64::from_be_bytes(reader.array("increment")?))),
            OP_INCREMENT_ONCE => {
                let amount = i64::from_be_bytes(reader.array("increment")?);
                let id = OperationId(reader.array("increment operation id")?);
                Ok(DataOp::Increment { amount, id: Some(id) })
            }
            OP_SET => {
                let context = match reader.flag("operation context flag")? {
                    true => Some(CausalContext::decode(reader)?),
                    false => None,
                };
                let updates = decode_set_updates(reader)?;
                Ok(DataOp::Set { updates, context })
            }
            OP_MAP => {
                let context = match reader.flag("operation context flag")? {
                    true => Some(CausalContext::decode(reader)?),
                    false => None,
                };
                let mut budget = MAX_OPS;
                let ops = decode_map_ops(reader, 1, &mut budget)?;
                Ok(DataOp::Map { ops, context })
            }
            _ => Err(CodecError::Invalid("unknown operation tag")),
        }
    }
}

/// Why an operation was refused; the value is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpError {
    /// The operation is for another kind of value than the one stored.
    #[error("a {op} operation cannot apply to a {stored} value")]
    WrongType {
        /// The kind the operation is for.
        op: DataType,
        /// The kind stored (or the bucket's datatype).
        stored: DataType,
    },
    /// The counter refused it.
    #[error(transparent)]
    Counter(#[from] CounterError),
    /// The set refused it.
    #[error(transparent)]
    Set(#[from] SetError),
    /// The map refused it.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The value would grow past the node's `max_value_bytes`.
    #[error("the value would be {size} bytes stored; the limit is {limit} bytes (max_value_bytes); nothing was stored")]
    TooLarge {
        /// Bytes the updated value would take.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl DataValue {
    /// The empty value of `kind` (`None` for a bucket without a
    /// datatype).
    pub fn empty(kind: DataType) -> Option<DataValue> {
        match kind {
            DataType::Counter => Some(DataValue::Counter(Counter::new())),
            DataType::Set => Some(DataValue::Set(OrSet::new())),
            DataType::Map => Some(DataValue::Map(Map::new())),
            DataType::None => None,
        }
    }

    /// The kind of this value.
    pub fn kind(&self) -> DataType {
        match self {
            DataValue::Counter(_) => DataType::Counter,
            DataValue::Set(_) => DataType::Set,
            DataValue::Map(_) => DataType::Map,
        }
    }

    /// Applies `op` as `actor` at `timestamp` (the acting replica's clock,
    /// which stamps a map's register writes); returns the delta to ship to
    /// the other replicas.
    pub fn apply(&mut self, op: &DataOp, actor: ActorId, timestamp: Hlc) -> Result<DataValue, OpError> {
        match (self, op) {
            (DataValue::Counter(counter), DataOp::Increment { amount, id: None }) => {
                Ok(DataValue::Counter(counter.increment(actor, *amount)?))
            }
            (DataValue::Counter(counter), DataOp::Increment { amount, id: Some(id) }) => {
                Ok(DataValue::Counter(counter.increment_once(actor, *amount, *id)?.delta))
            }
            (DataValue::Set(set), DataOp::Set { updates, context }) => {
                let observed = context.clone().unwrap_or_else(|| set.context().clone());
                Ok(DataValue::Set(set.apply_all(updates, actor, &observed)?))
            }
            (DataValue::Map(map), DataOp::Map { ops, context }) => {
                let stamped = stamp_registers(ops, timestamp);
                // An expired map is judged by the acting replica's clock
                // (the timestamp follows it): an update starts it afresh.
                match map.is_expired_at(timestamp.wall_ms()) {
                    true => Ok(DataValue::Map(map.apply_after_expiry(&stamped, actor, context.as_ref())?)),
                    false => Ok(DataValue::Map(map.apply(&stamped, actor, context.as_ref())?)),
                }
            }
            (value, op) => Err(OpError::WrongType { op: op.kind(), stored: value.kind() }),
        }
    }

    /// When the value expires (unix ms), if it can and does: only maps
    /// carry an expiry (see [`crate::crdt::map::expiry_key`]).
    pub fn expires_ms(&self) -> Option<u64> {
        match self {
            DataValue::Map(map) => map.expires_ms(),
            DataValue::Counter(_) | DataValue::Set(_) => None,
        }
    }

    /// Whether the value holds nothing a client reads: a set without
    /// elements, a map without fields (its expiry is not one). What a
    /// Redis `DEL` or the removal of the last element leaves; listing
    /// skips it as it skips a tombstone.
    pub fn holds_nothing(&self) -> bool {
        match self {
            DataValue::Counter(_) => false,
            DataValue::Set(set) => set.is_empty(),
            DataValue::Map(map) => map.is_empty() || (map.len() == 1 && map.contains(&crate::crdt::map::expiry_key())),
        }
    }

    /// Merges `other` (a state or a delta) into this value. Returns false,
    /// changing nothing, when `other` is of another kind.
    pub fn merge(&mut self, other: &DataValue) -> bool {
        match (self, other) {
            (DataValue::Counter(ours), DataValue::Counter(theirs)) => ours.merge(theirs),
            (DataValue::Set(ours), DataValue::Set(theirs)) => ours.merge(theirs),
            (DataValue::Map(ours), DataValue::Map(theirs)) => ours.merge(theirs),
            _ => return false,
        }
        true
    }

    /// Appends the encoding inside an object: `tag u8 | length u32 | the
    /// kind's own encoding`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let (tag, bytes) = match self {
            DataValue::Counter(counter) => (TAG_COUNTER, counter.encode()),
            DataValue::Set(set) => (TAG_SET, set.encode()),
            DataValue::Map(map) => (TAG_MAP, map.encode()),
        };
        out.push(tag);
        encode_u32_prefixed(&bytes, out);
    }

    /// Bytes [`DataValue::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        1 + 4
            + match self {
                DataValue::Counter(counter) => counter.encode().len(),
                DataValue::Set(set) => set.encode().len(),
                DataValue::Map(map) => map.encode().len(),
            }
    }

    /// Reads [`DataValue::encode`]'s bytes.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<DataValue, CodecError> {
        let tag = reader.u8("data type tag")?;
        let bytes = reader.u32_prefixed("data type length", "data type value")?;
        match tag {
            TAG_COUNTER => Ok(DataValue::Counter(Counter::decode(bytes)?)),
            TAG_SET => Ok(DataValue::Set(OrSet::decode(bytes)?)),
            TAG_MAP => Ok(DataValue::Map(Map::decode(bytes)?)),
            _ => Err(CodecError::Invalid("unknown data type tag")),
        }
    }
}

/// `ops` with every register write stamped `timestamp`.
fn stamp_registers(ops: &[MapOp], timestamp: Hlc) -> Vec<MapOp> {
    ops.iter()
        .map(|op| match op {
            MapOp::Update { name, op: FieldOp::Assign { value, .. } } => {
                MapOp::Update { name: name.clone(), op: FieldOp::Assign { value: value.clone(), timestamp } }
            }
            MapOp::Update { name, op: FieldOp::Map(nested) } => {
                MapOp::Update { name: name.clone(), op: FieldOp::Map(stamp_registers(nested, timestamp)) }
            }
            other => other.clone(),
        })
        .collect()
}

/// Appends map operations: `count u32 | op*`, each op `tag u8 | name
/// (u32-prefixed) | the field operation's fields`: assign `timestamp u64 |
/// value (u32-prefixed)`, increment `amount i64`, set `updates u32 | (add
/// 0 / remove 1 u8 | element (u32-prefixed))*`, nested map the same as
/// this, enable/disable nothing; a remove `tag 7 | name | kind u8`; a
/// clear `tag 8`; a condition `tag 9 | condition u8` (1 empty, 2 not
/// empty, then for 3 absent `name | kind u8`, for 4 integer `name`).
fn encode_map_ops(ops: &[MapOp], out: &mut Vec<u8>) {
    out.extend_from_slice(&crate::codec::clamped_u32(ops.len()).to_be_bytes());
    for op in ops {
        match op {
            MapOp::Clear => out.push(LEVEL_CLEAR),
            MapOp::Require(condition) => {
                out.push(LEVEL_REQUIRE);
                match condition {
                    Condition::Empty => out.push(CONDITION_EMPTY),
                    Condition::NotEmpty => out.push(CONDITION_NOT_EMPTY),
                    Condition::Absent(key) => {
                        out.push(CONDITION_ABSENT);
                        encode_u32_prefixed(&key.name, out);
                        out.push(kind_byte(key.kind));
                    }
                    Condition::Integer(name) => {
                        out.push(CONDITION_INTEGER);
                        encode_u32_prefixed(name, out);
                    }
                }
            }
            MapOp::Remove(key) => {
                out.push(FIELD_REMOVE);
                encode_u32_prefixed(&key.name, out);
                out.push(kind_byte(key.kind));
            }
            MapOp::Update { name, op } => {
                let tag = match op {
                    FieldOp::Assign { .. } => FIELD_ASSIGN,
                    FieldOp::Enable => FIELD_ENABLE,
                    FieldOp::Disable => FIELD_DISABLE,
                    FieldOp::Increment(_) => FIELD_INCREMENT,
                    FieldOp::Set(_) => FIELD_SET,
                    FieldOp::Map(_) => FIELD_MAP,
                };
                out.push(tag);
                encode_u32_prefixed(name, out);
                match op {
                    FieldOp::Assign { value, timestamp } => {
                        out.extend_from_slice(&timestamp.0.to_be_bytes());
                        encode_u32_prefixed(value, out);
                    }
                    FieldOp::Enable | FieldOp::Disable => {}
                    FieldOp::Increment(amount) => out.extend_from_slice(&amount.to_be_bytes()),
                    FieldOp::Set(updates) => encode_set_updates(updates, out),
                    FieldOp::Map(nested) => encode_map_ops(nested, out),
                }
            }
        }
    }
}

fn kind_byte(kind: FieldKind) -> u8 {
    FieldKind::ALL.iter().position(|each| *each == kind).map_or(0, |index| index as u8 + 1)
}

/// Reads [`encode_map_ops`]'s bytes at nesting `depth`, with at most
/// `budget` operations in all (nested ones and set elements included), as
/// a client's operation is limited.
fn decode_map_ops(reader: &mut Reader<'_>, depth: usize, budget: &mut usize) -> Result<Vec<MapOp>, CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::Invalid("a map operation nested deeper than allowed"));
    }
    let count = usize::try_from(reader.u32("map operation count")?).unwrap_or(usize::MAX);
    spend(budget, count)?;
    let mut ops = Vec::with_capacity(count.min(reader.remaining() / 5));
    for _ in 0..count {
        let tag = reader.u8("map operation tag")?;
        match tag {
            LEVEL_CLEAR => {
                ops.push(MapOp::Clear);
                continue;
            }
            LEVEL_REQUIRE => {
                ops.push(MapOp::Require(decode_condition(reader)?));
                continue;
            }
            _ => {}
        }
        let name = decode_field_name(reader)?;
        let op = match tag {
            FIELD_REMOVE => {
                ops.push(MapOp::Remove(FieldKey::new(name, decode_field_kind(reader)?)));
                continue;
            }
            FIELD_ASSIGN => {
                let timestamp = Hlc(reader.u64("register timestamp")?);
                let value = reader.u32_prefixed("register length", "register value")?;
                if value.len() > crate::crdt::map::MAX_REGISTER_LEN {
                    return Err(CodecError::Invalid("a register value longer than allowed"));
                }
                FieldOp::Assign { value: Bytes::copy_from_slice(value), timestamp }
            }
            FIELD_ENABLE => FieldOp::Enable,
            FIELD_DISABLE => FieldOp::Disable,
            FIELD_INCREMENT => FieldOp::Increment(i64::from_be_bytes(reader.array("field increment")?)),
            FIELD_SET => {
                let updates = decode_set_updates(reader)?;
                spend(budget, updates.len())?;
                FieldOp::Set(updates)
            }
            FIELD_MAP => FieldOp::Map(decode_map_ops(reader, depth + 1, budget)?),
            _ => return Err(CodecError::Invalid("unknown map operation tag")),
        };
        ops.push(MapOp::Update { name, op });
    }
    Ok(ops)
}

fn decode_field_name(reader: &mut Reader<'_>) -> Result<Bytes, CodecError> {
    let name = Bytes::copy_from_slice(reader.u32_prefixed("field name length", "field name")?);
    if name.len() > crate::crdt::map::MAX_NAME_LEN {
        return Err(CodecError::Invalid("a field name longer than allowed"));
    }
    Ok(name)
}

fn decode_field_kind(reader: &mut Reader<'_>) -> Result<FieldKind, CodecError> {
    let kind = reader.u8("field kind")?;
    FieldKind::ALL.get(usize::from(kind).wrapping_sub(1)).copied().ok_or(CodecError::Invalid("unknown field kind"))
}

fn decode_condition(reader: &mut Reader<'_>) -> Result<Condition, CodecError> {
    Ok(match reader.u8("map condition")? {
        CONDITION_EMPTY => Condition::Empty,
        CONDITION_NOT_EMPTY => Condition::NotEmpty,
        CONDITION_ABSENT => {
            let name = decode_field_name(reader)?;
            Condition::Absent(FieldKey::new(name, decode_field_kind(reader)?))
        }
        CONDITION_INTEGER => Condition::Integer(decode_field_name(reader)?),
        _ => return Err(CodecError::Invalid("unknown map condition")),
    })
}

/// Takes `count` from the operations left in `budget`.
fn spend(budget: &mut usize, count: usize) -> Result<(), CodecError> {
    *budget = budget.checked_sub(count).ok_or(CodecError::Invalid("a map operation with more updates than allowed"))?;
    Ok(())
}

/// Appends set updates: `count u32 | (add 0 / remove 1 u8 | length u32 |
/// element)*`.
fn encode_set_updates(updates: &[SetUpdate], out: &mut Vec<u8>) {
    out.extend_from_slice(&crate::codec::clamped_u32(updates.len()).to_be_bytes());
    for update in updates {
        let (kind, element) = match update {
            SetUpdate::Add(element) => (0, element),
            SetUpdate::Remove(element) => (1, element),
        };
        out.push(kind);
        encode_u32_prefixed(element, out);
    }
}

/// Reads [`encode_set_updates`]'s bytes, with the limits a client's
/// operation has.
fn decode_set_updates(reader: &mut Reader<'_>) -> Result<Vec<SetUpdate>, CodecError> {
    let count = usize::try_from(reader.u32("operation update count")?).unwrap_or(usize::MAX);
    if count > MAX_OP_UPDATES {
        return Err(CodecError::Invalid("a set operation with more updates than allowed"));
    }
    let mut updates = Vec::with_capacity(count.min(reader.remaining() / 5));
    for _ in 0..count {
        let kind = reader.u8("set update kind")?;
        let element = reader.u32_prefixed("set element length", "set element")?;
        if element.len() > crate::crdt::set::MAX_ELEMENT_LEN {
            return Err(CodecError::Invalid("a set element longer than allowed"));
        }
        let element = Bytes::copy_from_slice(element);
        updates.push(match kind {
            0 => SetUpdate::Add(element),
            1 => SetUpdate::Remove(element),
            _ => return Err(CodecError::Invalid("unknown set update kind")),
        });
    }
    Ok(updates)
}

/// The elements of a set operation's adds, for callers building one.
pub fn adds(elements: impl IntoIterator<Item = Bytes>) -> Vec<SetUpdate> {
    elements.into_iter().map(SetUpdate::Add).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_for_another_kind_is_refused_and_changes_nothing() {
        let mut counter = DataValue::empty(DataType::Counter).unwrap();
        let before = counter.clone();
        let op = DataOp::Set { updates: adds([Bytes::from_static(b"x")]), context: None };
        let error = counter.apply(&op, ActorId(1), Hlc(1)).unwrap_err();
        assert_eq!(error.to_string(), "a set operation cannot apply to a counter value");
        assert_eq!(counter, before);
        let set = DataValue::empty(DataType::Set).unwrap();
        assert!(!counter.merge(&set), "values of two kinds do not merge");
        assert_eq!(counter, before);
    }

    #[test]
    fn values_round_trip_through_their_tagged_encoding() {
        let mut set = DataValue::empty(DataType::Set).unwrap();
        let op = DataOp::Set { updates: adds([Bytes::from_static(b"x")]), context: None };
        set.apply(&op, ActorId(1), Hlc(1)).unwrap();
        let mut counter = DataValue::empty(DataType::Counter).unwrap();
        counter.apply(&DataOp::increment(-3), ActorId(2), Hlc(2)).unwrap();
        for value in [set, counter] {
            let mut out = Vec::new();
            value.encode(&mut out);
            assert_eq!(out.len(), value.encoded_len());
            assert_eq!(DataValue::decode(&mut Reader::new(&out)), Ok(value));
        }
        assert!(matches!(DataValue::decode(&mut Reader::new(&[9, 0, 0, 0, 0])), Err(CodecError::Invalid(_))));
    }
}
