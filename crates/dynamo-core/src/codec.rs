//! Binary encoding of [`VersionedObject`] for storage and for the wire.
//! Every encoding starts with a format version so the on-disk format can
//! evolve: a decoder knows each version it ever wrote. Storage adds its own
//! framing checksum; this layer still checks every length and bound, because
//! the same bytes arrive from the network.
//!
//! Format 1: `format (u8 = 1) | clock entry count (u16 BE) | (actor u64, counter u64)* |
//! sibling count (u16 BE) | siblings*` where a sibling is
//! `actor u64 | counter u64 | timestamp u64 | kind u8 (0 value, 1 tombstone) |`
//! and for values `content type length u8 | content type | data length u32 BE | data`.
//! All integers big-endian.

use thiserror::Error;

use crate::object::VersionedObject;

/// Most siblings a decoded object may have. A bound against hostile input;
/// a healthy key has a handful.
pub const MAX_SIBLINGS: usize = 4096;
/// Most clock entries a decoded object may have.
pub const MAX_CLOCK_ENTRIES: usize = 4096;
/// Largest value a decoded sibling may carry (the configurable client limit
/// is enforced at the API; this is the hard ceiling of the format).
pub const MAX_DATA_LEN: usize = 64 * 1024 * 1024;

/// Why bytes could not be decoded into an object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The first byte names a format this build does not know.
    #[error("unknown object format version {0}")]
    UnknownFormat(u8),
    /// Input ended before a field was complete.
    #[error("object encoding truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes left after the object.
    #[error("object encoding has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A count or length above its bound, or an invariant broken.
    #[error("object encoding invalid: {0}")]
    Invalid(&'static str),
}

/// Encodes an object (format 1).
pub fn encode_object(object: &VersionedObject) -> Vec<u8> {
    todo!()
}

/// Decodes an object, checking every bound and the object invariants.
pub fn decode_object(bytes: &[u8]) -> Result<VersionedObject, CodecError> {
    todo!()
}
