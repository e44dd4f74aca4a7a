//! Binary encoding of [`VersionedObject`] for storage and for the wire, and
//! (in `fields`) the primitive fields every hand codec of the crate shares.
//!
//! Every encoding starts with a format version so the on-disk format can
//! evolve: a decoder knows each version it ever wrote. Storage adds its own
//! framing checksum; this layer still checks every length and bound, because
//! the same bytes arrive from the network.
//!
//! Format 1: `format (u8 = 1) | clock entry count (u16 BE) | (actor u64, counter u64)* |
//! sibling count (u16 BE) | siblings*` where a sibling is
//! `actor u64 | counter u64 | timestamp u64 | kind u8 (0 value, 1 tombstone) |`
//! and for values `content type length u8 | content type | data length u32 BE | data`;
//! kind 2 is a data-type value ([`crate::crdt::value`]), kind 3 a value with
//! an expiry: `expires ms u64` then the value's fields.
//! All integers big-endian. A value without a content type is written with
//! content type length 0, so an empty content type decodes as none.
//!
//! Why the primitives live here: the messages ([`crate::messages`]) and the
//! cluster state ([`crate::membership`]) embed objects, clocks and payloads
//! in this format and read them with the same `Reader`, so one module owns
//! what a field is, and each format only says which fields it has.

mod fields;

use bytes::Bytes;
use thiserror::Error;

use crate::crdt::value::DataValue;
use crate::hlc::Hlc;
use crate::object::{MAX_CONTENT_TYPE_LEN, Payload, Sibling, VersionedObject};
use crate::version::{ActorId, Dot, VersionVector};

pub(crate) use fields::{
    Reader, clamped_u8, clamped_u16, clamped_u32, encode_field, encode_optional_field, encode_u32_prefixed,
    first_128_bits, truncate_at_char,
};

/// Most siblings a decoded object may have. A bound against hostile input;
/// a healthy key has a handful.
pub const MAX_SIBLINGS: usize = 4096;
/// Most clock entries a decoded object may have.
pub const MAX_CLOCK_ENTRIES: usize = 4096;
/// Largest value a decoded sibling may carry (the configurable client limit
/// is enforced at the API; this is the hard ceiling of the format).
pub const MAX_DATA_LEN: usize = 64 * 1024 * 1024;

/// Format marker of the only layout so far.
const FORMAT: u8 = 1;
/// Sibling kind byte of a value (also the payload kind byte of
/// [`crate::messages`]).
pub(crate) const KIND_VALUE: u8 = 0;
/// Sibling kind byte of a tombstone.
pub(crate) const KIND_TOMBSTONE: u8 = 1;
/// Sibling kind byte of a data-type value (issue 12; objects without one
/// encode as before).
pub(crate) const KIND_DATATYPE: u8 = 2;
/// Sibling kind byte of a value with an expiry (issue 14; values without
/// one encode as before): `expires ms u64` then a value's fields.
pub(crate) const KIND_EXPIRING_VALUE: u8 = 3;
/// Smallest encoded sibling (a tombstone: dot, timestamp, kind), used to
/// bound the allocation a sibling count may ask for.
const MIN_SIBLING_LEN: usize = 8 + 8 + 8 + 1;

/// Why bytes could not be decoded into an object. Also the error of the
/// shared `Reader` fields, which the other formats map into their own.
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
///
/// Infallible, so storage code can always write; objects outside the format's
/// bounds (see [`check_encodable`]) produce bytes that [`decode_object`]
/// rejects, never bytes that decode to something else. The exception is a
/// content type longer than [`MAX_CONTENT_TYPE_LEN`], which is cut at a
/// character boundary (it is advisory metadata, and the API refuses it).
pub fn encode_object(object: &VersionedObject) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len_hint(object));
    out.push(FORMAT);
    encode_clock(object.context(), &mut out);
    out.extend_from_slice(&clamped_u16(object.siblings().len()).to_be_bytes());
    for sibling in object.siblings() {
        encode_sibling(sibling, &mut out);
    }
    out
}

/// Checks that `object` is within the bounds [`decode_object`] accepts, so
/// its encoding will decode back to it.
pub fn check_encodable(object: &VersionedObject) -> Result<(), CodecError> {
    if object.context().len() > MAX_CLOCK_ENTRIES {
        return Err(CodecError::Invalid("too many clock entries"));
    }
    if object.siblings().len() > MAX_SIBLINGS {
        return Err(CodecError::Invalid("too many siblings"));
    }
    for sibling in object.siblings() {
        if let Payload::Datatype(value) = &sibling.payload
            && value.encoded_len() > MAX_DATA_LEN
        {
            return Err(CodecError::Invalid("data type value larger than the format allows"));
        }
        if let Payload::Value { data, content_type, .. } = &sibling.payload {
            if data.len() > MAX_DATA_LEN {
                return Err(CodecError::Invalid("value larger than the format allows"));
            }
            if content_type.as_ref().is_some_and(|ct| ct.len() > MAX_CONTENT_TYPE_LEN) {
                return Err(CodecError::Invalid("content type too long"));
            }
        }
    }
    Ok(())
}

/// Appends a clock: `entry count (u16 BE) | (actor u64, counter u64)*`, in
/// actor order (the only order [`decode_clock`] accepts). Shared with
/// [`crate::messages`], which carries clocks outside objects.
pub(crate) fn encode_clock(clock: &VersionVector, out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u16(clock.len()).to_be_bytes());
    for (actor, counter) in clock.iter() {
        out.extend_from_slice(&actor.0.to_be_bytes());
        out.extend_from_slice(&counter.to_be_bytes());
    }
}

fn encode_sibling(sibling: &Sibling, out: &mut Vec<u8>) {
    out.extend_from_slice(&sibling.dot.actor.0.to_be_bytes());
    out.extend_from_slice(&sibling.dot.counter.to_be_bytes());
    out.extend_from_slice(&sibling.timestamp.0.to_be_bytes());
    encode_payload(&sibling.payload, out);
}

/// Appends a payload: `kind u8` and, for values, `content type length u8 |
/// content type | data length u32 BE | data`. Shared with
/// [`crate::messages`], which carries payloads outside objects.
pub(crate) fn encode_payload(payload: &Payload, out: &mut Vec<u8>) {
    match payload {
        Payload::Tombstone => out.push(KIND_TOMBSTONE),
        Payload::Datatype(value) => {
            out.push(KIND_DATATYPE);
            value.encode(out);
        }
        Payload::Value { data, content_type, expires_ms } => {
            match expires_ms {
                None => out.push(KIND_VALUE),
                Some(expires_ms) => {
                    out.push(KIND_EXPIRING_VALUE);
                    out.extend_from_slice(&expires_ms.to_be_bytes());
                }
            }
            let content_type = truncate_at_char(content_type.as_deref().unwrap_or(""), MAX_CONTENT_TYPE_LEN);
            out.push(clamped_u8(content_type.len()));
            out.extend_from_slice(content_type.as_bytes());
            // Clamping makes an oversized value fail to decode (length above
            // MAX_DATA_LEN) instead of decoding as a different value.
            out.extend_from_slice(&clamped_u32(data.len()).to_be_bytes());
            out.extend_from_slice(data);
        }
    }
}

fn encoded_len_hint(object: &VersionedObject) -> usize {
    let siblings: usize = object.siblings().iter().map(|s| MIN_SIBLING_LEN + payload_len(&s.payload)).sum();
    1 + 2 + object.context().len() * 16 + 2 + siblings
}

fn payload_len(payload: &Payload) -> usize {
    match payload {
        Payload::Tombstone => 0,
        Payload::Datatype(value) => value.encoded_len(),
        Payload::Value { data, content_type, expires_ms } => {
            1 + content_type.as_ref().map_or(0, String::len) + 4 + data.len() + expires_ms.map_or(0, |_| 8)
        }
    }
}

/// Decodes an object, checking every bound and the object invariants.
pub fn decode_object(bytes: &[u8]) -> Result<VersionedObject, CodecError> {
    let mut reader = Reader::new(bytes);
    let format = reader.u8("format version")?;
    if format != FORMAT {
        return Err(CodecError::UnknownFormat(format));
    }
    let clock = decode_clock(&mut reader)?;
    let siblings = decode_siblings(&mut reader)?;
    if reader.remaining() > 0 {
        return Err(CodecError::TrailingBytes(reader.remaining()));
    }
    VersionedObject::from_parts(clock, siblings).map_err(CodecError::Invalid)
}

/// Clock entries must be in strictly increasing actor order with non-zero
/// counters: the only form the encoder writes, so each object has exactly
/// one encoding.
pub(crate) fn decode_clock(reader: &mut Reader<'_>) -> Result<VersionVector, CodecError> {
    let count = usize::from(reader.u16("clock entry count")?);
    if count > MAX_CLOCK_ENTRIES {
        return Err(CodecError::Invalid("too many clock entries"));
    }
    let mut clock = VersionVector::new();
    let mut previous: Option<ActorId> = None;
    for _ in 0..count {
        let actor = ActorId(reader.u64("clock actor")?);
        let counter = reader.u64("clock counter")?;
        if counter == 0 {
            return Err(CodecError::Invalid("clock entry with counter zero"));
        }
        if previous.is_some_and(|previous| actor <= previous) {
            return Err(CodecError::Invalid("clock actors not in increasing order"));
        }
        previous = Some(actor);
        clock.observe(Dot { actor, counter });
    }
    Ok(clock)
}

fn decode_siblings(reader: &mut Reader<'_>) -> Result<Vec<Sibling>, CodecError> {
    let count = usize::from(reader.u16("sibling count")?);
    if count > MAX_SIBLINGS {
        return Err(CodecError::Invalid("too many siblings"));
    }
    // Allocate only what the remaining bytes could possibly hold.
    let mut siblings = Vec::with_capacity(count.min(reader.remaining() / MIN_SIBLING_LEN));
    for _ in 0..count {
        siblings.push(decode_sibling(reader)?);
    }
    Ok(siblings)
}

fn decode_sibling(reader: &mut Reader<'_>) -> Result<Sibling, CodecError> {
    let actor = ActorId(reader.u64("sibling actor")?);
    let counter = reader.u64("sibling counter")?;
    let timestamp = Hlc(reader.u64("sibling timestamp")?);
    let payload = match reader.u8("sibling kind")? {
        KIND_VALUE => decode_value(reader, None)?,
        KIND_EXPIRING_VALUE => decode_expiring_value(reader)?,
        KIND_TOMBSTONE => Payload::Tombstone,
        KIND_DATATYPE => Payload::Datatype(DataValue::decode(reader)?),
        _ => return Err(CodecError::Invalid("unknown sibling kind")),
    };
    Ok(Sibling { dot: Dot { actor, counter }, timestamp, payload })
}

/// Reads the rest of a value payload with an expiry, after its kind byte.
pub(crate) fn decode_expiring_value(reader: &mut Reader<'_>) -> Result<Payload, CodecError> {
    let expires_ms = reader.u64("expiry")?;
    decode_value(reader, Some(expires_ms))
}

/// Reads the rest of a value payload (after its kind byte, and its expiry
/// if it has one).
pub(crate) fn decode_value(reader: &mut Reader<'_>, expires_ms: Option<u64>) -> Result<Payload, CodecError> {
    // A u8 length cannot exceed MAX_CONTENT_TYPE_LEN (255).
    let content_type_len = usize::from(reader.u8("content type length")?);
    let content_type = reader.take(content_type_len, "content type")?;
    let content_type =
        std::str::from_utf8(content_type).map_err(|_| CodecError::Invalid("content type is not UTF-8"))?;
    let content_type = (!content_type.is_empty()).then(|| content_type.to_string());
    let data_len = usize::try_from(reader.u32("data length")?).unwrap_or(usize::MAX);
    if data_len > MAX_DATA_LEN {
        return Err(CodecError::Invalid("value larger than the format allows"));
    }
    let data = Bytes::copy_from_slice(reader.take(data_len, "data")?);
    Ok(Payload::Value { data, content_type, expires_ms })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::testing::reachable_object;

    fn value(data: &[u8], content_type: Option<&str>) -> Payload {
        Payload::Value {
            data: Bytes::copy_from_slice(data),
            content_type: content_type.map(str::to_string),
            expires_ms: None,
        }
    }

    /// One value sibling (1, 1) under clock {1: 1}.
    fn single(payload: Payload) -> VersionedObject {
        let dot = Dot { actor: ActorId(1), counter: 1 };
        let clock: VersionVector = [(ActorId(1), 1)].into_iter().collect();
        VersionedObject::from_parts(clock, vec![Sibling { dot, timestamp: Hlc(9), payload }]).unwrap()
    }

    #[test]
    fn empty_object_encodes_to_format_and_two_zero_counts() {
        let bytes = encode_object(&VersionedObject::new());
        assert_eq!(bytes, [1, 0, 0, 0, 0]);
        assert_eq!(decode_object(&bytes), Ok(VersionedObject::new()));
    }

    #[test]
    fn layout_matches_the_documented_format() {
        let bytes = encode_object(&single(value(b"hi", Some("t/p"))));
        let mut expected = vec![1, 0, 1];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
        expected.extend_from_slice(&[0, 3, b't', b'/', b'p', 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn tombstones_and_values_without_content_type_roundtrip() {
        for payload in [Payload::Tombstone, value(b"", None), value(&[0xff; 300], Some("application/json"))] {
            let object = single(payload);
            assert_eq!(decode_object(&encode_object(&object)), Ok(object));
        }
    }

    #[test]
    fn an_expiring_value_is_kind_three_with_its_expiry_before_the_value() {
        let payload = Payload::Value { data: Bytes::from_static(b"hi"), content_type: None, expires_ms: Some(0x0102) };
        let object = single(payload);
        let bytes = encode_object(&object);
        let sibling_start = 3 + 16 + 2;
        let kind_at = sibling_start + 24;
        assert_eq!(bytes[kind_at], KIND_EXPIRING_VALUE);
        assert_eq!(bytes[kind_at + 1..kind_at + 9], [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(bytes[kind_at + 9..], [0, 0, 0, 0, 2, b'h', b'i']);
        assert_eq!(decode_object(&bytes), Ok(object));
        // Truncated inside the expiry.
        assert_eq!(decode_object(&bytes[..kind_at + 5]), Err(CodecError::Truncated("expiry")));
    }

    #[test]
    fn unknown_format_and_trailing_bytes_are_refused() {
        assert_eq!(decode_object(&[2, 0, 0, 0, 0]), Err(CodecError::UnknownFormat(2)));
        assert_eq!(decode_object(&[1, 0, 0, 0, 0, 7, 7]), Err(CodecError::TrailingBytes(2)));
        assert_eq!(decode_object(&[]), Err(CodecError::Truncated("format version")));
        assert_eq!(
            decode_object(&[]).unwrap_err().to_string(),
            "object encoding truncated while reading format version"
        );
    }

    #[test]
    fn counts_above_the_limits_are_refused_before_allocating() {
        assert_eq!(decode_object(&[1, 0xff, 0xff]), Err(CodecError::Invalid("too many clock entries")));
        assert_eq!(decode_object(&[1, 0, 0, 0xff, 0xff]), Err(CodecError::Invalid("too many siblings")));
        // A count within the limit but with no bytes behind it.
        assert_eq!(decode_object(&[1, 0, 0, 0x10, 0x00]), Err(CodecError::Truncated("sibling actor")));
    }

    #[test]
    fn oversized_data_length_is_refused_without_reading_it() {
        let mut bytes = encode_object(&single(value(b"", None)));
        let len_at = bytes.len() - 4;
        bytes[len_at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_object(&bytes), Err(CodecError::Invalid("value larger than the format allows")));
    }

    #[test]
    fn non_utf8_content_type_is_refused() {
        let mut bytes = encode_object(&single(value(b"", Some("ab"))));
        let content_type_at = bytes.len() - 4 - 2;
        bytes[content_type_at] = 0xff;
        assert_eq!(decode_object(&bytes), Err(CodecError::Invalid("content type is not UTF-8")));
    }

    #[test]
    fn broken_object_invariants_are_refused() {
        // Sibling (1, 2) under clock {1: 1}: not covered.
        let mut bytes = encode_object(&single(Payload::Tombstone));
        bytes[3 + 16 + 2 + 15] = 2;
        assert_eq!(decode_object(&bytes), Err(CodecError::Invalid("a sibling's dot is not covered by the clock")));
    }

    #[test]
    fn unordered_or_zero_clock_entries_are_refused() {
        let clock = |entries: &[(u64, u64)]| {
            let mut bytes = vec![1];
            bytes.extend_from_slice(&(entries.len() as u16).to_be_bytes());
            for (actor, counter) in entries {
                bytes.extend_from_slice(&actor.to_be_bytes());
                bytes.extend_from_slice(&counter.to_be_bytes());
            }
            bytes.extend_from_slice(&[0, 0]);
            decode_object(&bytes)
        };
        assert_eq!(clock(&[(2, 1), (1, 1)]), Err(CodecError::Invalid("clock actors not in increasing order")));
        assert_eq!(clock(&[(1, 0)]), Err(CodecError::Invalid("clock entry with counter zero")));
        assert!(clock(&[(1, 1), (2, 1)]).is_ok());
    }

    #[test]
    fn overlong_content_type_is_cut_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let object = single(value(b"x", Some(&long)));
        assert!(check_encodable(&object).is_err());
        let decoded = decode_object(&encode_object(&object)).unwrap();
        let Payload::Value { content_type: Some(kept), .. } = &decoded.siblings()[0].payload else {
            panic!("expected a value with a content type");
        };
        assert_eq!(kept.len(), 254);
        assert!(long.starts_with(kept.as_str()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn reachable_objects_roundtrip(object in reachable_object()) {
            prop_assert_eq!(check_encodable(&object), Ok(()));
            prop_assert_eq!(decode_object(&encode_object(&object)), Ok(object));
        }

        #[test]
        fn every_strict_prefix_of_an_encoding_is_refused(object in reachable_object(), cut in any::<Index>()) {
            let bytes = encode_object(&object);
            let cut = cut.index(bytes.len());
            prop_assert!(decode_object(&bytes[..cut]).is_err());
        }

        #[test]
        fn corrupted_encodings_never_panic_and_decode_only_to_valid_objects(
            object in reachable_object(),
            at in any::<Index>(),
            mask in 1..=255u8,
        ) {
            let mut bytes = encode_object(&object);
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
            if let Ok(decoded) = decode_object(&bytes) {
                // Whatever decodes satisfies the invariants and re-encodes to itself.
                prop_assert_eq!(decode_object(&encode_object(&decoded)), Ok(decoded));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_object(&bytes);
        }
    }
}
