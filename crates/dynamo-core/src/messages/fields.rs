//! The message-level fields that more than one message family carries:
//! keys, embedded objects, conflict modes, partitions and resume keys. Built
//! on the primitives of [`crate::codec`]; each is validated on decode as it
//! would be from a client, because the bytes come from the network.
//!
//! Layouts (integers big-endian):
//! - key: `bucket length u8 | bucket | key length u16 | key`, validated by
//!   [`ObjectKey::new`];
//! - object: `length u32 | object` in the [`crate::codec`] object format;
//! - conflict mode: one byte, 0 = siblings, 1 = lww;
//! - partition: `u32`, below [`MAX_PARTITIONS`] (the node checks its own Q);
//! - resume: `present u8 | key`, the key a listing continues after.

use super::MessageError;
use crate::codec::{self, Reader, clamped_u8, clamped_u16, encode_u32_prefixed};
use crate::keys::{KeyError, MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_PARTITIONS, ObjectKey};
use crate::object::VersionedObject;
use crate::props::ConflictMode;

/// Appends a key.
pub(super) fn encode_key(key: &ObjectKey, out: &mut Vec<u8>) {
    // Validation keeps both lengths within their fields.
    out.push(clamped_u8(key.bucket().len()));
    out.extend_from_slice(key.bucket().as_bytes());
    out.extend_from_slice(&clamped_u16(key.key().len()).to_be_bytes());
    out.extend_from_slice(key.key());
}

/// Reads a key, refusing an overlong one before reading it.
pub(super) fn decode_key(reader: &mut Reader<'_>) -> Result<ObjectKey, MessageError> {
    // A u8 length cannot exceed MAX_BUCKET_LEN (255).
    let bucket_len = usize::from(reader.u8("bucket length")?);
    debug_assert!(bucket_len <= MAX_BUCKET_LEN);
    let bucket = reader.take(bucket_len, "bucket")?;
    let bucket = std::str::from_utf8(bucket).map_err(|_| MessageError::Invalid("bucket is not UTF-8"))?;
    let key_len = usize::from(reader.u16("key length")?);
    if key_len > MAX_KEY_LEN {
        return Err(KeyError::KeyTooLong(key_len).into());
    }
    let key = reader.take(key_len, "key")?;
    Ok(ObjectKey::new(bucket, key)?)
}

/// Appends an object with its length.
pub(super) fn encode_object(object: &VersionedObject, out: &mut Vec<u8>) {
    // Clamping makes an object beyond 4 GiB fail to decode (a strict prefix
    // of an object encoding never decodes) instead of decoding as another.
    encode_u32_prefixed(&codec::encode_object(object), out);
}

/// Reads an object with its length; its errors are [`MessageError::Object`].
pub(super) fn decode_object(reader: &mut Reader<'_>) -> Result<VersionedObject, MessageError> {
    // No allocation before the object decoder, which bounds its own: the
    // length is only checked against the bytes present.
    let bytes = reader.u32_prefixed("object length", "object")?;
    codec::decode_object(bytes).map_err(MessageError::Object)
}

/// The byte of a conflict mode.
pub(super) fn mode_byte(mode: ConflictMode) -> u8 {
    match mode {
        ConflictMode::Siblings => 0,
        ConflictMode::Lww => 1,
    }
}

/// Reads a conflict mode byte.
pub(super) fn decode_mode(reader: &mut Reader<'_>) -> Result<ConflictMode, MessageError> {
    match reader.u8("conflict mode")? {
        0 => Ok(ConflictMode::Siblings),
        1 => Ok(ConflictMode::Lww),
        _ => Err(MessageError::Invalid("unknown conflict mode")),
    }
}

/// Reads a partition number, below the largest ring.
pub(super) fn decode_partition(reader: &mut Reader<'_>) -> Result<u32, MessageError> {
    let partition = reader.u32("partition")?;
    if partition >= MAX_PARTITIONS {
        return Err(MessageError::Invalid("partition above the largest ring"));
    }
    Ok(partition)
}

/// Appends the key a listing resumes after, if any.
pub(super) fn encode_resume(after: Option<&ObjectKey>, out: &mut Vec<u8>) {
    match after {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            encode_key(key, out);
        }
    }
}

/// Reads the key a listing resumes after, if any.
pub(super) fn decode_resume(reader: &mut Reader<'_>) -> Result<Option<ObjectKey>, MessageError> {
    if reader.flag("resume flag")? { Ok(Some(decode_key(reader)?)) } else { Ok(None) }
}
