//! Hinted handoff (paper section 4.6): a write held by a node outside a
//! key's preference list for a replica that could not take it, stored
//! apart from the holder's own data and delivered to the owner when it is
//! reachable again.
//!
//! Layout (after the format byte; fields as in [`super::fields`]):
//! - [`Request::HintedWrite`] (method 8): `owner length u8 | owner | key |
//!   object | mode | durable flag`; answered like a replica write
//!   ([`super::Response::Written`]).

use super::fields::{decode_key, decode_mode, decode_object, encode_key, encode_object, mode_byte};
use super::{MessageError, Request};
use crate::codec::{Reader, clamped_u8};
use crate::keys::ObjectKey;
use crate::object::VersionedObject;
use crate::props::ConflictMode;
use crate::ring::NodeId;

/// Appends the fields of [`Request::HintedWrite`].
pub(super) fn encode_hinted_write(
    owner: &NodeId,
    key: &ObjectKey,
    object: &VersionedObject,
    mode: ConflictMode,
    durable: bool,
    out: &mut Vec<u8>,
) {
    let owner = owner.as_str().as_bytes();
    out.push(clamped_u8(owner.len()));
    out.extend_from_slice(&owner[..owner.len().min(usize::from(u8::MAX))]);
    encode_key(key, out);
    encode_object(object, out);
    out.push(mode_byte(mode));
    out.push(u8::from(durable));
}

/// Reads the fields of [`Request::HintedWrite`].
pub(super) fn decode_hinted_write(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::HintedWrite {
        owner: decode_owner(reader)?,
        key: decode_key(reader)?,
        object: decode_object(reader)?,
        mode: decode_mode(reader)?,
        durable: reader.flag("durable flag")?,
    })
}

fn decode_owner(reader: &mut Reader<'_>) -> Result<NodeId, MessageError> {
    let len = usize::from(reader.u8("hint owner")?);
    if len == 0 {
        return Err(MessageError::Invalid("empty node id"));
    }
    Ok(NodeId::new(reader.text(len, usize::from(u8::MAX), "hint owner")?))
}
