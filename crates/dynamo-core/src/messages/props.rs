//! Bucket props replication: a node that took a change of a bucket's
//! replication settings sends it to every other node, which keeps the newer
//! change (last writer wins by the hybrid logical clock of the node that
//! took it, so concurrent changes converge everywhere).
//!
//! Layouts (after the format byte):
//! - [`Request::SetProps`] (method 5): `bucket length u8 | bucket | n u8 | r
//!   u8 | w u8 | dw u8 | mode | props version u64`, the bucket validated as
//!   a client's and the props by [`BucketProps::validate`], then `ttl_s
//!   u64` only when the bucket has a default TTL (issue 14), which bit 3
//!   of the mode byte flags (an older node refuses the mode rather than
//!   drop the TTL). The datatype
//!   (issue 12) rides in the high four bits of the mode byte, which were
//!   zero before: a bucket without one encodes as in the first layout, and
//!   an older node refuses (rather than misreads) one with a datatype;
//! - [`super::Response::PropsSet`] (kind 5): no fields;
//! - [`Request::BucketHasKeys`] (method 15): `bucket length u8 | bucket`;
//! - [`super::Response::BucketKeys`] (kind 13): `any u8` (0 or 1).

use super::fields::{decode_mode, mode_byte};
use super::{MessageError, Request};
use crate::codec::{Reader, clamped_u8};
use crate::keys::{MAX_BUCKET_LEN, validate_bucket};
use crate::props::{BucketProps, DataType};

/// Where the datatype starts in the mode byte.
const DATATYPE_SHIFT: u8 = 4;
/// The conflict mode's bits of the mode byte.
const MODE_MASK: u8 = 0x07;
/// The mode byte's flag that a default TTL follows the version (issue 14).
const TTL_FLAG: u8 = 0x08;

/// Appends the fields of [`Request::SetProps`].
pub(super) fn encode_set_props(bucket: &str, props: &BucketProps, version: u64, out: &mut Vec<u8>) {
    // Validation keeps the bucket within its length byte.
    encode_bucket(bucket, out);
    let ttl_flag = if props.ttl_s > 0 { TTL_FLAG } else { 0 };
    let mode = mode_byte(props.conflict) | ttl_flag | (props.datatype.byte() << DATATYPE_SHIFT);
    out.extend_from_slice(&[props.n, props.r, props.w, props.dw, mode]);
    out.extend_from_slice(&version.to_be_bytes());
    if props.ttl_s > 0 {
        out.extend_from_slice(&props.ttl_s.to_be_bytes());
    }
}

/// Appends a bucket name: `length u8 | bucket`.
pub(super) fn encode_bucket(bucket: &str, out: &mut Vec<u8>) {
    out.push(clamped_u8(bucket.len()));
    out.extend_from_slice(bucket.as_bytes());
}

/// Reads [`encode_bucket`]'s bytes, validating the bucket as a client's.
pub(super) fn decode_bucket(reader: &mut Reader<'_>) -> Result<String, MessageError> {
    let len = usize::from(reader.u8("bucket length")?);
    let bucket = reader.text(len, MAX_BUCKET_LEN, "bucket")?;
    validate_bucket(&bucket).map_err(MessageError::Key)?;
    Ok(bucket)
}

/// Reads the fields of [`Request::SetProps`].
pub(super) fn decode_set_props(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let bucket = decode_bucket(reader)?;
    let n = reader.u8("n")?;
    let r = reader.u8("r")?;
    let w = reader.u8("w")?;
    let dw = reader.u8("dw")?;
    let mode = reader.u8("conflict mode and datatype")?;
    let conflict = decode_mode(&mut Reader::new(&[mode & MODE_MASK]))?;
    let datatype = DataType::from_byte(mode >> DATATYPE_SHIFT).ok_or(MessageError::Invalid("unknown datatype"))?;
    let version = reader.u64("props version")?;
    // The default TTL (issue 14) follows the version when the mode byte
    // says so: props without one encode as before, and a message cut
    // before it is refused, never read as "no TTL".
    let ttl_s = match mode & TTL_FLAG {
        0 => 0,
        _ => match reader.u64("default ttl_s")? {
            0 => return Err(MessageError::Invalid("a default TTL flagged but zero")),
            ttl_s => ttl_s,
        },
    };
    let props = BucketProps { n, r, w, dw, conflict, datatype, ttl_s };
    props.validate().map_err(|_| MessageError::Invalid("bucket props out of range"))?;
    Ok(Request::SetProps { bucket, props, version })
}
