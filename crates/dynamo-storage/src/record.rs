//! Framing of every stored record: `format (u8 = 1) | crc32 (u32 BE) of payload | payload`.
//! Checked on every read; a mismatch is reported as corruption with the key,
//! never returned as data.
//!
//! The format byte is the hook for migrations: a future layout gets a new
//! number and `unframe` learns to read both. The CRC-32 covers the payload
//! only, so a flipped bit, a torn write that lost the tail, or a record from a
//! different format all fail here, at the storage boundary, instead of
//! surfacing as a decoding error (or worse, wrong data) further up.

use crate::engine::{Engine, Namespace, StorageError};

/// Current record format.
pub const RECORD_FORMAT: u8 = 1;
/// Bytes of framing before the payload.
pub const HEADER_LEN: usize = 5;

/// Frames a payload for storage.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.push(RECORD_FORMAT);
    record.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    record.extend_from_slice(payload);
    debug_assert_eq!(record.len(), HEADER_LEN + payload.len());
    record
}

/// Checks and strips the framing. `key` is only used in the error.
pub fn unframe(ns: Namespace, key: &[u8], record: &[u8]) -> Result<Vec<u8>, StorageError> {
    let corruption =
        |detail: String| StorageError::Corruption { namespace: ns.name(), key: printable_key(key), detail };
    let Some((header, payload)) = record.split_first_chunk::<HEADER_LEN>() else {
        return Err(corruption(format!("record is {} bytes, shorter than the {HEADER_LEN}-byte header", record.len())));
    };
    let [format, crc @ ..] = *header;
    if format != RECORD_FORMAT {
        return Err(corruption(format!("unknown record format {format} (expected {RECORD_FORMAT})")));
    }
    let crc_stored = u32::from_be_bytes(crc);
    let crc_computed = crc32fast::hash(payload);
    if crc_stored != crc_computed {
        return Err(corruption(format!(
            "checksum mismatch: stored {crc_stored:08x}, computed {crc_computed:08x} over {} payload bytes",
            payload.len()
        )));
    }
    Ok(payload.to_vec())
}

/// Flips one bit of the stored record at `key` (the last byte of its
/// payload), as bit rot would, so that its checksum fails on the next read:
/// for tests and repair drills, on an engine nothing else is writing to
/// that key (a stopped node's directory, or a test's own store).
pub fn damage(engine: &dyn Engine, ns: Namespace, key: &[u8]) -> Result<(), StorageError> {
    let Some(mut record) = engine.get(ns, key)? else {
        return Err(StorageError::Engine {
            engine: engine.name(),
            operation: "damage",
            detail: format!("no {} record {} to damage", ns.name(), printable_key(key)),
        });
    };
    let last = record.len() - 1;
    record[last] ^= 0x01;
    engine.put(ns, key, &record)
}

/// Renders a key for an error message: as text when it is valid UTF-8 with no
/// control characters, otherwise as `0x`-prefixed hex (storage keys often
/// carry binary length prefixes, which would garble a log line).
pub fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => {
            let mut hex = String::with_capacity(2 + 2 * key.len());
            hex.push_str("0x");
            for byte in key {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corruption_detail(result: Result<Vec<u8>, StorageError>) -> (String, String) {
        match result {
            Err(StorageError::Corruption { key, detail, .. }) => (key, detail),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn framed_payload_round_trips() {
        for payload in [&b""[..], b"x", b"hello world", &[0u8, 255, 7, 0][..]] {
            let record = frame(payload);
            assert_eq!(record.len(), HEADER_LEN + payload.len());
            assert_eq!(record[0], RECORD_FORMAT);
            let back = unframe(Namespace::Objects, b"k", &record).expect("valid record");
            assert_eq!(back, payload);
        }
    }

    #[test]
    fn flipped_payload_bit_is_reported_as_checksum_mismatch() {
        let mut record = frame(b"some payload");
        record[HEADER_LEN + 3] ^= 0x01;
        let (key, detail) = corruption_detail(unframe(Namespace::Objects, b"bucket/key", &record));
        assert_eq!(key, "bucket/key");
        assert!(detail.contains("checksum mismatch"), "{detail}");
    }

    #[test]
    fn flipped_checksum_bit_is_reported() {
        let mut record = frame(b"some payload");
        record[2] ^= 0x80;
        let (_, detail) = corruption_detail(unframe(Namespace::Meta, b"k", &record));
        assert!(detail.contains("checksum mismatch"), "{detail}");
    }

    #[test]
    fn truncated_record_is_reported() {
        let record = frame(b"some payload");
        let (_, detail) = corruption_detail(unframe(Namespace::Objects, b"k", &record[..record.len() - 1]));
        assert!(detail.contains("checksum mismatch"), "{detail}");
        let (_, detail) = corruption_detail(unframe(Namespace::Objects, b"k", &record[..3]));
        assert!(detail.contains("shorter than the 5-byte header"), "{detail}");
        let (_, detail) = corruption_detail(unframe(Namespace::Objects, b"k", &[]));
        assert!(detail.contains("0 bytes"), "{detail}");
    }

    #[test]
    fn unknown_format_byte_is_reported() {
        let mut record = frame(b"payload");
        record[0] = 2;
        let (_, detail) = corruption_detail(unframe(Namespace::Hints, b"k", &record));
        assert!(detail.contains("unknown record format 2"), "{detail}");
    }

    #[test]
    fn binary_keys_are_shown_as_hex_and_text_keys_as_text() {
        assert_eq!(printable_key(b"users/alice"), "users/alice");
        assert_eq!(printable_key(&[0, 1, 0xab]), "0x0001ab");
        assert_eq!(printable_key(b"tab\tkey"), "0x746162096b6579");
        assert_eq!(printable_key(&[0xff, 0xfe]), "0xfffe");
    }

    #[test]
    fn corruption_error_names_namespace_and_key() {
        let err = unframe(Namespace::Objects, b"b/k1", &[9, 0, 0, 0, 0]).expect_err("bad format");
        let message = err.to_string();
        assert!(message.contains("objects"), "{message}");
        assert!(message.contains("b/k1"), "{message}");
    }
}
