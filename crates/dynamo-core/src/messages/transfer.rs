//! Partition transfer (paper section 4.9): a node that becomes a replica of
//! a partition copies it, page by page in storage-key order, from a node
//! that already holds it, before the new ring alone is trusted.
//!
//! Layouts (after the format byte; fields as in [`super::fields`]):
//! - [`Request::TransferPage`] (method 13): `partition u32 | epoch u64 |
//!   resume`;
//! - [`Response::TransferPage`] (kind 10): `more flag | count u16 | (key |
//!   object) *`, at most [`MAX_TRANSFER_KEYS`] entries.

use super::fields::{
    decode_key, decode_object, decode_partition, decode_resume, encode_key, encode_object, encode_resume,
};
use super::{MessageError, Request, Response};
use crate::codec::{Reader, clamped_u16};
use crate::keys::ObjectKey;
use crate::object::VersionedObject;

/// Most objects in one [`Response::TransferPage`]. The replica also stops
/// a page once it passes [`TRANSFER_PAGE_BYTES`], so a page of large
/// objects is a few of them.
pub const MAX_TRANSFER_KEYS: usize = 512;
/// A transfer page is closed once its objects reach this many bytes (the
/// last object may take it over, up to one object's size).
pub const TRANSFER_PAGE_BYTES: usize = 1 << 20;

/// Appends the fields of [`Request::TransferPage`].
pub(super) fn encode_transfer_request(partition: u32, epoch: u64, after: Option<&ObjectKey>, out: &mut Vec<u8>) {
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    encode_resume(after, out);
}

/// Reads the fields of [`Request::TransferPage`].
pub(super) fn decode_transfer_request(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::TransferPage {
        partition: decode_partition(reader)?,
        epoch: reader.u64("epoch")?,
        after: decode_resume(reader)?,
    })
}

/// Appends the body of [`Response::TransferPage`] (after its kind byte).
pub(super) fn encode_transfer_response(entries: &[(ObjectKey, VersionedObject)], more: bool, out: &mut Vec<u8>) {
    out.push(u8::from(more));
    out.extend_from_slice(&clamped_u16(entries.len()).to_be_bytes());
    for (key, object) in entries {
        encode_key(key, out);
        encode_object(object, out);
    }
}

/// Reads the body of [`Response::TransferPage`].
pub(super) fn decode_transfer_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let more = reader.flag("more flag")?;
    let count = usize::from(reader.u16("object count")?);
    if count > MAX_TRANSFER_KEYS {
        return Err(MessageError::Invalid("more objects than a transfer page holds"));
    }
    // The smallest entry: one-byte bucket and key with their lengths, and
    // an object's length field.
    let mut entries = Vec::with_capacity(count.min(reader.remaining() / (1 + 1 + 2 + 1 + 4)));
    for _ in 0..count {
        let key = decode_key(reader)?;
        entries.push((key, decode_object(reader)?));
    }
    Ok(Response::TransferPage { entries, more })
}
