//! The client context (`X-Dynamo-Context`): a version vector made opaque.
//! Clients must hand it back unchanged, and a context is untrusted input, so
//! the encoding is versioned and checksummed and the decoder checks every
//! bound: a malformed context is rejected, never half-used.
//!
//! Layout before base64 (URL-safe alphabet, no padding):
//! `format (u8 = 1) | entry count (u16 BE) | entries (actor u64 BE, counter u64 BE)* | crc32 (u32 BE) of everything before`.
//!
//! Format 2 (what reads hand out now) adds, before the checksum, the
//! greatest timestamp among the versions the read returned (`u64 BE`). A
//! write in a last-write-wins bucket is stamped above it, so a write that
//! saw a version always replaces it, even when the coordinator's clock lags
//! and the coordinator never held that version. Format 1 contexts are still
//! accepted (their timestamp reads as 0).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

use crate::crdt::context::CausalContext;
use crate::hlc::Hlc;
use crate::version::{ActorId, Dot, VersionVector};

/// Most actors a context may name. Bounds header size and decode work.
pub const MAX_CONTEXT_ENTRIES: usize = 1024;
/// Longest accepted header value, in characters.
pub const MAX_CONTEXT_LEN: usize = 32 * 1024;
/// Largest counter a context may carry. Far above any real counter, far
/// below `u64::MAX`, so a crafted context cannot push a key's counters to
/// the point where the next dot would overflow (and be issued twice).
pub const MAX_CONTEXT_COUNTER: u64 = 1 << 62;

/// Format marker of the only layout so far.
const FORMAT: u8 = 1;
/// Format 2: format 1 plus the greatest timestamp the read saw.
const FORMAT_WITH_TIMESTAMP: u8 = 2;
/// Bytes of the timestamp field of format 2.
const TIMESTAMP_LEN: usize = 8;
/// Format byte plus entry count.
const HEADER_LEN: usize = 3;
/// Actor and counter, both u64.
const ENTRY_LEN: usize = 16;
/// The trailing crc32.
const CHECKSUM_LEN: usize = 4;

/// Why a context was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContextError {
    /// Longer than [`MAX_CONTEXT_LEN`].
    #[error("context is {0} characters; the limit is {MAX_CONTEXT_LEN}")]
    TooLong(usize),
    /// Not valid base64.
    #[error("context is not valid base64; pass the X-Dynamo-Context value from a read unchanged")]
    NotBase64,
    /// Unknown format marker.
    #[error("context has unknown format version {0}; it was not issued by this version of dynamo")]
    UnknownFormat(u8),
    /// Shorter or longer than its entry count says.
    #[error("context is truncated or has trailing bytes")]
    BadLength,
    /// Checksum mismatch.
    #[error("context checksum does not match; it was modified or truncated")]
    BadChecksum,
    /// Too many entries, a zero counter, or actors out of order.
    #[error("context content is invalid: {0}")]
    Invalid(&'static str),
}

/// Encodes a context for a client.
///
/// A vector with more than [`MAX_CONTEXT_ENTRIES`] actors still encodes, but
/// [`decode_context`] will reject it: a context is never silently cut short.
pub fn encode_context(clock: &VersionVector) -> String {
    URL_SAFE_NO_PAD.encode(encode_raw(clock))
}

/// Encodes a context for a client together with the greatest timestamp
/// among the versions it describes (format 2).
pub fn encode_client_context(clock: &VersionVector, seen: Hlc) -> String {
    let mut raw = encode_raw(clock);
    raw.truncate(raw.len() - CHECKSUM_LEN);
    raw[0] = FORMAT_WITH_TIMESTAMP;
    raw.extend_from_slice(&seen.0.to_be_bytes());
    let checksum = crc32fast::hash(&raw);
    raw.extend_from_slice(&checksum.to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes and fully validates a context from a client.
pub fn decode_context(text: &str) -> Result<VersionVector, ContextError> {
    decode_client_context(text).map(|(clock, _)| clock)
}

/// Decodes a context and the greatest timestamp its read saw (0 for
/// format 1).
pub fn decode_client_context(text: &str) -> Result<(VersionVector, Hlc), ContextError> {
    // Bound the work before decoding anything.
    if text.len() > MAX_CONTEXT_LEN {
        return Err(ContextError::TooLong(text.len()));
    }
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| ContextError::NotBase64)?;
    decode_raw(&raw)
}

/// Longest accepted data-type context, in characters: it names every
/// actor that ever updated the value (see [`crate::crdt::context`]), so it
/// may be longer than a version set's.
pub const MAX_DATATYPE_CONTEXT_LEN: usize = 256 * 1024;
/// Format marker of a data-type context.
const FORMAT_DATATYPE: u8 = 3;

/// Encodes a data-type value's causal context for a client (the
/// `"context"` of a read of `/buckets/{b}/datatypes/{k}`): `format (u8 =
/// 3) | the causal context | crc32 (u32 BE)`, base64 as the others.
pub fn encode_datatype_context(context: &CausalContext) -> String {
    let mut raw = vec![FORMAT_DATATYPE];
    raw.extend_from_slice(&context.to_bytes());
    let checksum = crc32fast::hash(&raw);
    raw.extend_from_slice(&checksum.to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes and fully validates a data-type context from a client.
pub fn decode_datatype_context(text: &str) -> Result<CausalContext, ContextError> {
    if text.len() > MAX_DATATYPE_CONTEXT_LEN {
        return Err(ContextError::TooLong(text.len()));
    }
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| ContextError::NotBase64)?;
    let Some((&format, rest)) = raw.split_first() else { return Err(ContextError::BadLength) };
    if format != FORMAT_DATATYPE {
        return Err(ContextError::UnknownFormat(format));
    }
    let Some(body_len) = rest.len().checked_sub(CHECKSUM_LEN) else { return Err(ContextError::BadLength) };
    let (body, checksum) = rest.split_at(body_len);
    if crc32fast::hash(&raw[..1 + body_len]).to_be_bytes() != checksum {
        return Err(ContextError::BadChecksum);
    }
    CausalContext::from_bytes(body).map_err(|_| ContextError::Invalid("not a data-type context"))
}

/// The layout before base64.
fn encode_raw(clock: &VersionVector) -> Vec<u8> {
    // The count field is 16 bits; more actors than that cannot be described
    // (and are far above what decode accepts anyway).
    let count = u16::try_from(clock.len()).unwrap_or(u16::MAX);
    let mut raw = Vec::with_capacity(HEADER_LEN + usize::from(count) * ENTRY_LEN + CHECKSUM_LEN);
    raw.push(FORMAT);
    raw.extend_from_slice(&count.to_be_bytes());
    for (actor, counter) in clock.iter().take(usize::from(count)) {
        raw.extend_from_slice(&actor.0.to_be_bytes());
        raw.extend_from_slice(&counter.to_be_bytes());
    }
    let checksum = crc32fast::hash(&raw);
    raw.extend_from_slice(&checksum.to_be_bytes());
    raw
}

/// Checks and parses the layout before base64.
fn decode_raw(raw: &[u8]) -> Result<(VersionVector, Hlc), ContextError> {
    let [format, count_high, count_low, ..] = *raw else {
        return Err(ContextError::BadLength);
    };
    let timestamp_len = match format {
        FORMAT => 0,
        FORMAT_WITH_TIMESTAMP => TIMESTAMP_LEN,
        other => return Err(ContextError::UnknownFormat(other)),
    };
    let count = usize::from(u16::from_be_bytes([count_high, count_low]));
    if count > MAX_CONTEXT_ENTRIES {
        return Err(ContextError::Invalid("too many entries"));
    }
    let entries_end = HEADER_LEN + count * ENTRY_LEN;
    if raw.len() != entries_end + timestamp_len + CHECKSUM_LEN {
        return Err(ContextError::BadLength);
    }
    let (body, checksum) = raw.split_at(raw.len() - CHECKSUM_LEN);
    if crc32fast::hash(body).to_be_bytes() != checksum {
        return Err(ContextError::BadChecksum);
    }
    let clock = parse_entries(&body[HEADER_LEN..entries_end])?;
    let mut seen = [0u8; TIMESTAMP_LEN];
    if timestamp_len == TIMESTAMP_LEN {
        seen.copy_from_slice(&body[entries_end..]);
    }
    Ok((clock, Hlc(u64::from_be_bytes(seen))))
}

/// Entries in strictly increasing actor order with counters in
/// `1..=MAX_CONTEXT_COUNTER`: the only form `encode_raw` writes, so one
/// vector has exactly one encoding.
fn parse_entries(entries: &[u8]) -> Result<VersionVector, ContextError> {
    let mut clock = VersionVector::new();
    let mut previous: Option<ActorId> = None;
    for entry in entries.chunks_exact(ENTRY_LEN) {
        let (actor, counter) = entry.split_at(ENTRY_LEN / 2);
        let actor = ActorId(u64::from_be_bytes(actor.try_into().map_err(|_| ContextError::BadLength)?));
        let counter = u64::from_be_bytes(counter.try_into().map_err(|_| ContextError::BadLength)?);
        if counter == 0 {
            return Err(ContextError::Invalid("an entry has counter zero"));
        }
        if counter > MAX_CONTEXT_COUNTER {
            return Err(ContextError::Invalid("an entry's counter is out of range"));
        }
        if previous.is_some_and(|previous| actor <= previous) {
            return Err(ContextError::Invalid("actors are not in increasing order"));
        }
        previous = Some(actor);
        clock.observe(Dot { actor, counter });
    }
    Ok(clock)
}

#[cfg(test)]
mod timestamp_tests {
    use super::*;

    #[test]
    fn format_2_carries_the_seen_timestamp_and_format_1_reads_as_zero() {
        let clock: VersionVector = [(ActorId(7), 3)].into_iter().collect();
        let text = encode_client_context(&clock, Hlc(12345));
        assert_eq!(decode_client_context(&text), Ok((clock.clone(), Hlc(12345))));
        assert_eq!(decode_context(&text), Ok(clock.clone()));
        assert_eq!(decode_client_context(&encode_context(&clock)), Ok((clock, Hlc(0))));
    }

    #[test]
    fn a_flipped_byte_in_a_format_2_context_is_refused() {
        let clock: VersionVector = [(ActorId(7), 3)].into_iter().collect();
        let raw = URL_SAFE_NO_PAD.decode(encode_client_context(&clock, Hlc(99))).expect("base64");
        for index in 0..raw.len() {
            let mut flipped = raw.clone();
            flipped[index] ^= 0x10;
            assert!(decode_client_context(&URL_SAFE_NO_PAD.encode(&flipped)).is_err(), "byte {index}");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const BASE64_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn vector() -> impl Strategy<Value = VersionVector> {
        prop::collection::btree_map(any::<u64>(), 1..=MAX_CONTEXT_COUNTER, 0..40)
            .prop_map(|entries| entries.into_iter().map(|(actor, counter)| (ActorId(actor), counter)).collect())
    }

    /// A raw (pre-base64) context with the given entries and a right checksum.
    fn raw_with(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut raw = vec![FORMAT];
        raw.extend_from_slice(&(entries.len() as u16).to_be_bytes());
        for (actor, counter) in entries {
            raw.extend_from_slice(&actor.to_be_bytes());
            raw.extend_from_slice(&counter.to_be_bytes());
        }
        raw.extend_from_slice(&crc32fast::hash(&raw).to_be_bytes());
        raw
    }

    #[test]
    fn empty_vector_encodes_and_decodes() {
        let text = encode_context(&VersionVector::new());
        assert_eq!(decode_context(&text), Ok(VersionVector::new()));
    }

    #[test]
    fn overlong_context_is_refused_before_decoding() {
        let text = "A".repeat(MAX_CONTEXT_LEN + 1);
        assert_eq!(decode_context(&text), Err(ContextError::TooLong(MAX_CONTEXT_LEN + 1)));
    }

    #[test]
    fn non_base64_and_padded_contexts_are_refused() {
        assert_eq!(decode_context("not base64!"), Err(ContextError::NotBase64));
        let padded = format!("{}=", encode_context(&VersionVector::new()));
        assert_eq!(decode_context(&padded), Err(ContextError::NotBase64));
    }

    #[test]
    fn unknown_format_is_named_in_the_error() {
        let mut raw = raw_with(&[]);
        raw[0] = 3;
        let error = decode_raw(&raw).unwrap_err();
        assert_eq!(error, ContextError::UnknownFormat(3));
        assert!(error.to_string().contains("unknown format version 3"));
    }

    #[test]
    fn zero_counters_unordered_actors_and_huge_counters_are_refused() {
        let invalid = |entries: &[(u64, u64)]| decode_raw(&raw_with(entries)).map(|(clock, _)| clock);
        assert_eq!(invalid(&[(1, 0)]), Err(ContextError::Invalid("an entry has counter zero")));
        assert_eq!(invalid(&[(2, 1), (1, 1)]), Err(ContextError::Invalid("actors are not in increasing order")));
        assert_eq!(invalid(&[(1, 1), (1, 2)]), Err(ContextError::Invalid("actors are not in increasing order")));
        assert_eq!(
            invalid(&[(1, MAX_CONTEXT_COUNTER + 1)]),
            Err(ContextError::Invalid("an entry's counter is out of range"))
        );
        assert_eq!(invalid(&[(1, 5), (2, 6)]), Ok([(ActorId(1), 5), (ActorId(2), 6)].into_iter().collect()));
    }

    #[test]
    fn entry_count_above_the_limit_is_refused() {
        let entries: Vec<(u64, u64)> = (1..=MAX_CONTEXT_ENTRIES as u64 + 1).map(|actor| (actor, 1)).collect();
        assert_eq!(decode_raw(&raw_with(&entries)), Err(ContextError::Invalid("too many entries")));
        let at_limit = &entries[..MAX_CONTEXT_ENTRIES];
        let text = URL_SAFE_NO_PAD.encode(raw_with(at_limit));
        assert!(text.len() <= MAX_CONTEXT_LEN, "a full context fits the length limit");
        assert_eq!(decode_context(&text).map(|v| v.len()), Ok(MAX_CONTEXT_ENTRIES));
    }

    #[test]
    fn truncated_or_extended_contexts_are_refused() {
        let raw = raw_with(&[(1, 1)]);
        assert_eq!(decode_raw(&raw[..raw.len() - 1]), Err(ContextError::BadLength));
        assert_eq!(decode_raw(&[raw.as_slice(), &[0]].concat()), Err(ContextError::BadLength));
        assert_eq!(decode_raw(&[]), Err(ContextError::BadLength));
    }

    proptest! {
        #[test]
        fn context_roundtrips(vector in vector()) {
            let text = encode_context(&vector);
            prop_assert!(text.len() <= MAX_CONTEXT_LEN);
            prop_assert_eq!(decode_context(&text), Ok(vector));
        }

        #[test]
        fn any_single_flipped_byte_is_rejected(vector in vector(), at in any::<prop::sample::Index>(), mask in 1..=255u8) {
            let mut raw = encode_raw(&vector);
            let at = at.index(raw.len());
            raw[at] ^= mask;
            prop_assert!(decode_raw(&raw).is_err());
            prop_assert!(decode_context(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
        }

        #[test]
        fn any_single_changed_character_is_rejected_or_harmless(
            vector in vector(),
            at in any::<prop::sample::Index>(),
            replacement in prop_oneof![
                3 => prop::sample::select(BASE64_ALPHABET.chars().collect::<Vec<_>>()),
                1 => any::<char>(),
            ],
        ) {
            let text = encode_context(&vector);
            let mut chars: Vec<char> = text.chars().collect();
            let at = at.index(chars.len());
            prop_assume!(chars[at] != replacement);
            chars[at] = replacement;
            let changed: String = chars.into_iter().collect();
            match decode_context(&changed) {
                Err(_) => {}
                Ok(decoded) => prop_assert_eq!(decoded, vector),
            }
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,300}") {
            let _ = decode_context(&text);
        }

        #[test]
        fn decoding_arbitrary_base64_never_panics(text in "[A-Za-z0-9_-]{0,400}") {
            let _ = decode_context(&text);
        }

        #[test]
        fn decoding_arbitrary_raw_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_raw(&raw);
        }
    }
}

#[cfg(test)]
mod datatype_context_tests {
    use super::*;

    #[test]
    fn a_datatype_context_round_trips_and_a_tampered_one_is_refused() {
        let mut context = CausalContext::new();
        context.insert(Dot { actor: ActorId(7), counter: 1 });
        context.insert(Dot { actor: ActorId(7), counter: 3 });
        let text = encode_datatype_context(&context);
        assert_eq!(decode_datatype_context(&text), Ok(context));
        let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        raw[5] ^= 1;
        assert_eq!(decode_datatype_context(&URL_SAFE_NO_PAD.encode(&raw)), Err(ContextError::BadChecksum));
        let version_context = encode_context(&VersionVector::new());
        assert_eq!(decode_datatype_context(&version_context), Err(ContextError::UnknownFormat(1)));
        assert_eq!(decode_datatype_context(""), Err(ContextError::BadLength));
        assert_eq!(decode_datatype_context("!!"), Err(ContextError::NotBase64));
    }
}
