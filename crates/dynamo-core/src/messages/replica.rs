//! Replica reads and writes: what a coordinator asks of each replica in a
//! key's preference list (paper sections 4.5 and 4.6), and what the replica
//! answers. Replication, read repair and anti-entropy all write through
//! [`Request::Write`]; tombstone collection removes through
//! [`Request::Reap`].
//!
//! Layouts (after the format byte; fields as in [`super::fields`]):
//! - [`Request::Read`] (method 1): `key`
//! - [`Request::Write`] (method 2): `key | object | mode | durable flag`
//! - [`Request::Reap`] (method 9): `key | object`
//! - [`Response::Read`] (kind 0): `object`
//! - [`Response::Written`] (kind 1): `durable flag`
//! - [`Response::Failed`] (kind 4) and [`Response::Unreadable`] (kind 11):
//!   `reason length u16 | reason`, at most [`MAX_REASON_LEN`] bytes, cut at
//!   a character boundary when longer (it is advisory text).

use super::fields::{decode_key, decode_mode, decode_object, encode_key, encode_object, mode_byte};
use super::{MessageError, Request};
use crate::codec::{Reader, clamped_u16, truncate_at_char};
use crate::keys::ObjectKey;
use crate::object::VersionedObject;
use crate::props::ConflictMode;
use crate::quorum::MAX_REASON_LEN;

/// Appends the fields of [`Request::Write`].
pub(super) fn encode_write(
    key: &ObjectKey,
    object: &VersionedObject,
    mode: ConflictMode,
    durable: bool,
    out: &mut Vec<u8>,
) {
    encode_key(key, out);
    encode_object(object, out);
    out.push(mode_byte(mode));
    out.push(u8::from(durable));
}

/// Reads the fields of [`Request::Write`].
pub(super) fn decode_write(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::Write {
        key: decode_key(reader)?,
        object: decode_object(reader)?,
        mode: decode_mode(reader)?,
        durable: reader.flag("durable flag")?,
    })
}

/// Appends the fields of [`Request::Reap`].
pub(super) fn encode_reap(key: &ObjectKey, tombstone: &VersionedObject, out: &mut Vec<u8>) {
    encode_key(key, out);
    encode_object(tombstone, out);
}

/// Reads the fields of [`Request::Reap`].
pub(super) fn decode_reap(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::Reap { key: decode_key(reader)?, tombstone: decode_object(reader)? })
}

/// Appends a failure reason: `reason length u16 | reason`, cut at
/// [`MAX_REASON_LEN`] bytes.
pub(super) fn encode_reason(reason: &str, out: &mut Vec<u8>) {
    let reason = truncate_at_char(reason, MAX_REASON_LEN);
    // MAX_REASON_LEN fits in u16.
    out.extend_from_slice(&clamped_u16(reason.len()).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Reads a failure reason.
pub(super) fn decode_reason(reader: &mut Reader<'_>) -> Result<String, MessageError> {
    let len = usize::from(reader.u16("reason length")?);
    Ok(reader.text(len, MAX_REASON_LEN, "reason")?)
}

#[cfg(test)]
mod tests {
    use super::super::testing::key;
    use super::super::{METHOD_READ, METHOD_WRITE, Response};
    use super::*;
    use crate::codec::CodecError;
    use crate::keys::KeyError;

    #[test]
    fn read_request_layout_matches_the_documented_format() {
        let request = Request::Read { key: key("b1", b"k") };
        assert_eq!(request.method(), METHOD_READ);
        assert_eq!(request.encode(), [1, 2, b'b', b'1', 0, 1, b'k']);
    }

    #[test]
    fn write_request_layout_embeds_the_object_codec_with_a_length() {
        let request = Request::Write {
            key: key("b", b"k"),
            object: VersionedObject::new(),
            mode: ConflictMode::Lww,
            durable: true,
        };
        assert_eq!(request.encode(), [1, 1, b'b', 0, 1, b'k', 0, 0, 0, 5, 1, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn invalid_keys_are_refused_with_the_key_error() {
        assert_eq!(Request::decode(METHOD_READ, &[1, 1, b'b', 0, 0]), Err(MessageError::Key(KeyError::EmptyKey)));
        assert_eq!(
            Request::decode(METHOD_READ, &[1, 1, b'/', 0, 1, b'k']),
            Err(MessageError::Key(KeyError::BucketCharacter('/')))
        );
        let error = Request::decode(METHOD_READ, &[1, 1, b'b', 0xff, 0xff]).unwrap_err();
        assert_eq!(error, MessageError::Key(KeyError::KeyTooLong(65535)), "refused before reading the key");
        assert_eq!(error.to_string(), "message carries an invalid key: key is 65535 bytes; the limit is 1024");
        assert_eq!(
            Request::decode(METHOD_READ, &[1, 1, 0xff, 0, 1, b'k']),
            Err(MessageError::Invalid("bucket is not UTF-8"))
        );
    }

    #[test]
    fn broken_embedded_objects_are_refused_as_objects() {
        let mut bytes = Response::Read { object: VersionedObject::new() }.encode();
        bytes[6] = 7; // the object's own format byte
        let error = Response::decode(&bytes).unwrap_err();
        assert_eq!(error, MessageError::Object(CodecError::UnknownFormat(7)));
        assert_eq!(error.to_string(), "message carries an invalid object: unknown object format version 7");
    }

    #[test]
    fn flags_and_modes_other_than_the_defined_bytes_are_refused() {
        assert_eq!(Response::decode(&[1, 1, 2]), Err(MessageError::Invalid("a flag is neither 0 nor 1")));
        let mut write = Request::Write {
            key: key("b", b"k"),
            object: VersionedObject::new(),
            mode: ConflictMode::Siblings,
            durable: false,
        }
        .encode();
        let mode_at = write.len() - 2;
        write[mode_at] = 2;
        assert_eq!(Request::decode(METHOD_WRITE, &write), Err(MessageError::Invalid("unknown conflict mode")));
    }

    #[test]
    fn overlong_failure_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let Ok(Response::Failed { reason: kept }) = Response::decode(&Response::Failed { reason }.encode()) else {
            panic!("expected a failure response");
        };
        assert_eq!(kept.len(), MAX_REASON_LEN);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn non_utf8_text_is_refused() {
        assert_eq!(Response::decode(&[1, 4, 0, 1, 0xff]), Err(MessageError::Invalid("text is not UTF-8")));
    }
}
