//! [`DataValue`]: one stored data-type value of any kind, and
//! [`DataOp`]: an operation a client asks for. This is the seam between the
//! types (which know nothing of storage) and the versioned object that
//! stores them ([`crate::object::Payload::Datatype`]).

use bytes::Bytes;

use crate::codec::{CodecError, Reader, encode_u32_prefixed};
use crate::crdt::Crdt;
use crate::crdt::context::CausalContext;
use crate::crdt::counter::{Counter, CounterError, OperationId};
use crate::crdt::set::{OrSet, SetError, SetUpdate};
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

/// Tag byte of a counter inside an object.
const TAG_COUNTER: u8 = 1;
/// Tag byte of a set inside an object.
const TAG_SET: u8 = 2;

/// A data-type value of one of the kinds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DataValue {
    /// A PN-counter.
    Counter(Counter),
    /// An add-wins set.
    Set(OrSet),
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
}

impl DataOp {
    /// The kind of value this operation applies to.
    pub fn kind(&self) -> DataType {
        match self {
            DataOp::Increment { .. } => DataType::Counter,
            DataOp::Set { .. } => DataType::Set,
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
                Ok(DataOp::Set { updates, context })
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
}

impl DataValue {
    /// The empty value of `kind` (`None` for a bucket without a datatype,
    /// and for kinds not built yet).
    pub fn empty(kind: DataType) -> Option<DataValue> {
        match kind {
            DataType::Counter => Some(DataValue::Counter(Counter::new())),
            DataType::Set => Some(DataValue::Set(OrSet::new())),
            DataType::None | DataType::Map => None,
        }
    }

    /// The kind of this value.
    pub fn kind(&self) -> DataType {
        match self {
            DataValue::Counter(_) => DataType::Counter,
            DataValue::Set(_) => DataType::Set,
        }
    }

    /// Applies `op` as `actor`; returns the delta to ship to the other
    /// replicas.
    pub fn apply(&mut self, op: &DataOp, actor: ActorId) -> Result<DataValue, OpError> {
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
            (value, op) => Err(OpError::WrongType { op: op.kind(), stored: value.kind() }),
        }
    }

    /// Merges `other` (a state or a delta) into this value. Returns false,
    /// changing nothing, when `other` is of another kind.
    pub fn merge(&mut self, other: &DataValue) -> bool {
        match (self, other) {
            (DataValue::Counter(ours), DataValue::Counter(theirs)) => ours.merge(theirs),
            (DataValue::Set(ours), DataValue::Set(theirs)) => ours.merge(theirs),
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
            }
    }

    /// Reads [`DataValue::encode`]'s bytes.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<DataValue, CodecError> {
        let tag = reader.u8("data type tag")?;
        let bytes = reader.u32_prefixed("data type length", "data type value")?;
        match tag {
            TAG_COUNTER => Ok(DataValue::Counter(Counter::decode(bytes)?)),
            TAG_SET => Ok(DataValue::Set(OrSet::decode(bytes)?)),
            _ => Err(CodecError::Invalid("unknown data type tag")),
        }
    }
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
        let error = counter.apply(&op, ActorId(1)).unwrap_err();
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
        set.apply(&op, ActorId(1)).unwrap();
        let mut counter = DataValue::empty(DataType::Counter).unwrap();
        counter.apply(&DataOp::increment(-3), ActorId(2)).unwrap();
        for value in [set, counter] {
            let mut out = Vec::new();
            value.encode(&mut out);
            assert_eq!(out.len(), value.encoded_len());
            assert_eq!(DataValue::decode(&mut Reader::new(&out)), Ok(value));
        }
        assert!(matches!(DataValue::decode(&mut Reader::new(&[9, 0, 0, 0, 0])), Err(CodecError::Invalid(_))));
    }
}
