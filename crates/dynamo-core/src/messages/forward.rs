//! Forwarded coordination (paper section 4.5): a node outside a key's
//! preference list hands a client write to one of its replicas, which
//! coordinates it, and relays the outcome (the new context, or the HTTP
//! error the coordinator would have answered) back to the client unchanged.
//!
//! Layouts (after the format byte; fields as in [`super::fields`]):
//! - [`Request::Coordinate`] (method 3): `key | clock | payload | w | dw |
//!   n | timeout_ms | seen timestamp u64 | stamp u64`, clock and payload as
//!   inside a [`crate::codec`] object, each option `present u8 | length u8
//!   | UTF-8` (at most [`MAX_OPTION_LEN`] bytes);
//! - [`Response::Coordinated`] (kind 2): `outcome u8`, then for 0 the new
//!   context as a clock and its greatest timestamp u64, for 1 `status u16 |
//!   body length u32 | body` (at most [`MAX_FORWARDED_BODY_LEN`] bytes).

use super::fields::{decode_key, encode_key};
use super::{MessageError, Request, Response};
use crate::codec::{self, KIND_EXPIRING_VALUE, KIND_TOMBSTONE, KIND_VALUE, Reader, clamped_u8, encode_u32_prefixed};
use crate::crdt::value::{DataOp, DataValue};
use crate::hlc::Hlc;
use crate::keys::ObjectKey;
use crate::object::Payload;
use crate::version::VersionVector;

/// Longest forwarded quorum option (`w`, `dw`, `n`, `timeout_ms`), in bytes:
/// a number or a word like `quorum`; anything longer is not worth relaying.
pub const MAX_OPTION_LEN: usize = 64;
/// Longest relayed HTTP error body, in bytes: a `503` names at most
/// [`crate::props::MAX_N`] replicas, each with a reason of at most
/// [`crate::quorum::MAX_REASON_LEN`] bytes, which fits with room to spare.
pub const MAX_FORWARDED_BODY_LEN: usize = 64 * 1024;

/// Outcome byte of a `Coordinated` response that carries a new context.
const OUTCOME_OK: u8 = 0;
/// Outcome byte of a `Coordinated` response that carries an HTTP error.
const OUTCOME_ERROR: u8 = 1;

/// A client's per-request options, relayed as text so that the coordinator
/// parses and validates them against its own view of the bucket props, and
/// the client gets the same `400` whichever node it called. Each is at most
/// [`MAX_OPTION_LEN`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// `w` query parameter.
    pub w: Option<String>,
    /// `dw` query parameter.
    pub dw: Option<String>,
    /// `n` query parameter.
    pub n: Option<String>,
    /// `timeout_ms` query parameter.
    pub timeout_ms: Option<String>,
    /// The greatest version timestamp the client's read saw (from its
    /// context; 0 when none): a last-write-wins write is stamped above it.
    pub seen_timestamp: u64,
    /// The timestamp the new version must carry, chosen by the forwarding
    /// node (0: the coordinating replica stamps it). The forwarding node
    /// stamps the write once, so that when it retries at another replica
    /// after a timeout, a copy that the first replica applies late carries
    /// the same timestamp as the acknowledged one and can never order after
    /// a causally later write (which is stamped above it).
    pub stamp: u64,
    /// For a data-type update: the wall-clock time (ms since the epoch, by
    /// the forwarding node's clock) after which the forwarding node has
    /// given up on this attempt and may retry it at another replica (0:
    /// none). A replica refuses the update past it, so an attempt that
    /// reaches it late (held in a partition, or by a paused process) is
    /// not applied after its retry was (the chaos test found such late
    /// attempts counting twice once the retry's id had been forgotten).
    pub deadline_ms: u64,
}

/// An HTTP-level error of a coordinator, relayed unchanged to the client by
/// the node that forwarded the request (for example a `503` with its JSON
/// body, or a `400` for a bad quorum option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedError {
    /// HTTP status, 100 to 599.
    pub status: u16,
    /// Response body, at most [`MAX_FORWARDED_BODY_LEN`] bytes.
    pub body: String,
}

/// Appends the fields of [`Request::Coordinate`].
pub(super) fn encode_coordinate(
    key: &ObjectKey,
    context: &VersionVector,
    payload: &Payload,
    options: &ForwardOptions,
    out: &mut Vec<u8>,
) {
    encode_key(key, out);
    codec::encode_clock(context, out);
    codec::encode_payload(payload, out);
    for option in [&options.w, &options.dw, &options.n, &options.timeout_ms] {
        encode_option(option.as_deref(), out);
    }
    out.extend_from_slice(&options.seen_timestamp.to_be_bytes());
    out.extend_from_slice(&options.stamp.to_be_bytes());
}

/// Reads the fields of [`Request::Coordinate`].
pub(super) fn decode_coordinate(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::Coordinate {
        key: decode_key(reader)?,
        context: codec::decode_clock(reader)?,
        payload: decode_payload(reader)?,
        options: ForwardOptions {
            w: decode_option(reader, "w option")?,
            dw: decode_option(reader, "dw option")?,
            n: decode_option(reader, "n option")?,
            timeout_ms: decode_option(reader, "timeout_ms option")?,
            seen_timestamp: reader.u64("seen timestamp")?,
            stamp: reader.u64("stamp")?,
            deadline_ms: 0,
        },
    })
}

/// Appends the body of [`Response::Coordinated`] (after its kind byte).
pub(super) fn encode_coordinated(outcome: &Result<(VersionVector, Hlc), ForwardedError>, out: &mut Vec<u8>) {
    match outcome {
        Ok((context, timestamp)) => {
            out.push(OUTCOME_OK);
            codec::encode_clock(context, out);
            out.extend_from_slice(&timestamp.0.to_be_bytes());
        }
        Err(error) => encode_forwarded_error(error, out),
    }
}

/// Reads the body of [`Response::Coordinated`].
pub(super) fn decode_coordinated(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    match reader.u8("coordination outcome")? {
        OUTCOME_OK => {
            let clock = codec::decode_clock(reader)?;
            Ok(Response::Coordinated(Ok((clock, Hlc(reader.u64("timestamp")?)))))
        }
        OUTCOME_ERROR => Ok(Response::Coordinated(Err(decode_forwarded_error(reader)?))),
        _ => Err(MessageError::Invalid("unknown coordination outcome")),
    }
}

/// Appends the fields of [`Request::CoordinateUpdate`]: `key | operation |
/// w | dw | n | timeout_ms | deadline u64`, the operation as [`DataOp`]
/// encodes it.
pub(super) fn encode_coordinate_update(key: &ObjectKey, op: &DataOp, options: &ForwardOptions, out: &mut Vec<u8>) {
    encode_key(key, out);
    op.encode(out);
    for option in [&options.w, &options.dw, &options.n, &options.timeout_ms] {
        encode_option(option.as_deref(), out);
    }
    out.extend_from_slice(&options.deadline_ms.to_be_bytes());
}

/// Reads the fields of [`Request::CoordinateUpdate`].
pub(super) fn decode_coordinate_update(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    Ok(Request::CoordinateUpdate {
        key: decode_key(reader)?,
        op: DataOp::decode(reader)?,
        options: ForwardOptions {
            w: decode_option(reader, "w option")?,
            dw: decode_option(reader, "dw option")?,
            n: decode_option(reader, "n option")?,
            timeout_ms: decode_option(reader, "timeout_ms option")?,
            seen_timestamp: 0,
            stamp: 0,
            deadline_ms: reader.u64("deadline")?,
        },
    })
}

/// Appends the body of [`Response::Updated`]: `outcome u8`, then for 0 the
/// value as inside an object, for 1 the error as in `Coordinated`.
pub(super) fn encode_updated(outcome: &Result<DataValue, ForwardedError>, out: &mut Vec<u8>) {
    match outcome {
        Ok(value) => {
            out.push(OUTCOME_OK);
            value.encode(out);
        }
        Err(error) => encode_forwarded_error(error, out),
    }
}

/// Reads the body of [`Response::Updated`].
pub(super) fn decode_updated(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    match reader.u8("update outcome")? {
        OUTCOME_OK => Ok(Response::Updated(Ok(DataValue::decode(reader)?))),
        OUTCOME_ERROR => Ok(Response::Updated(Err(decode_forwarded_error(reader)?))),
        _ => Err(MessageError::Invalid("unknown update outcome")),
    }
}

fn decode_payload(reader: &mut Reader<'_>) -> Result<Payload, MessageError> {
    match reader.u8("payload kind")? {
        KIND_VALUE => Ok(codec::decode_value(reader, None)?),
        KIND_EXPIRING_VALUE => Ok(codec::decode_expiring_value(reader)?),
        KIND_TOMBSTONE => Ok(Payload::Tombstone),
        _ => Err(MessageError::Invalid("unknown payload kind")),
    }
}

fn encode_option(option: Option<&str>, out: &mut Vec<u8>) {
    match option {
        None => out.push(0),
        Some(text) => {
            // An over-long option gets a length above MAX_OPTION_LEN (or
            // 255), which decoding refuses: a quorum value is never cut.
            out.extend_from_slice(&[1, clamped_u8(text.len())]);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn decode_option(reader: &mut Reader<'_>, what: &'static str) -> Result<Option<String>, MessageError> {
    if !reader.flag(what)? {
        return Ok(None);
    }
    let len = usize::from(reader.u8(what)?);
    Ok(Some(reader.text(len, MAX_OPTION_LEN, what)?))
}

/// Appends an error outcome: `1 | status u16 | body length u32 | body`.
fn encode_forwarded_error(ForwardedError { status, body }: &ForwardedError, out: &mut Vec<u8>) {
    out.push(OUTCOME_ERROR);
    out.extend_from_slice(&status.to_be_bytes());
    // Clamping makes an oversized body fail to decode instead of decoding
    // as a different one.
    encode_u32_prefixed(body.as_bytes(), out);
}

fn decode_forwarded_error(reader: &mut Reader<'_>) -> Result<ForwardedError, MessageError> {
    let status = reader.u16("status")?;
    if !(100..=599).contains(&status) {
        return Err(MessageError::Invalid("forwarded status is not an HTTP status"));
    }
    // The bound is checked before the bytes present, so an oversized body
    // is refused as such even when it was not sent whole.
    let len = usize::try_from(reader.u32("body length")?).unwrap_or(usize::MAX);
    let body = reader.text(len, MAX_FORWARDED_BODY_LEN, "body")?;
    Ok(ForwardedError { status, body })
}

#[cfg(test)]
mod tests {
    use super::super::METHOD_COORDINATE;
    use super::super::testing::key;
    use super::*;
    use crate::version::ActorId;

    #[test]
    fn coordinate_request_layout_carries_clock_payload_and_options() {
        let request = Request::Coordinate {
            key: key("b", b"k"),
            context: [(ActorId(7), 2)].into_iter().collect(),
            payload: Payload::Tombstone,
            options: ForwardOptions { w: Some("all".to_string()), ..ForwardOptions::default() },
        };
        let mut expected = vec![1, 1, b'b', 0, 1, b'k', 0, 1];
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&[1, 1, 3, b'a', b'l', b'l', 0, 0, 0]);
        expected.extend_from_slice(&0u64.to_be_bytes());
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(request.encode(), expected);
    }

    #[test]
    fn forwarded_error_layout_is_status_then_length_prefixed_body() {
        let response = Response::Coordinated(Err(ForwardedError { status: 503, body: "{}".to_string() }));
        assert_eq!(response.encode(), [1, 2, 1, 0x01, 0xf7, 0, 0, 0, 2, b'{', b'}']);
    }

    #[test]
    fn outcomes_other_than_the_defined_bytes_are_refused() {
        assert_eq!(Response::decode(&[1, 2, 5]), Err(MessageError::Invalid("unknown coordination outcome")));
    }

    #[test]
    fn statuses_outside_http_range_are_refused() {
        for status in [0, 99, 600, u16::MAX] {
            let bytes = Response::Coordinated(Err(ForwardedError { status, body: String::new() })).encode();
            assert_eq!(Response::decode(&bytes), Err(MessageError::Invalid("forwarded status is not an HTTP status")));
        }
    }

    #[test]
    fn overlong_options_and_bodies_encode_to_bytes_that_are_refused() {
        for long in ["1".repeat(MAX_OPTION_LEN + 1), "1".repeat(300)] {
            let options = ForwardOptions { timeout_ms: Some(long), ..ForwardOptions::default() };
            let request = Request::Coordinate {
                key: key("b", b"k"),
                context: VersionVector::new(),
                payload: Payload::Tombstone,
                options,
            };
            let refused = Request::decode(METHOD_COORDINATE, &request.encode());
            assert_eq!(refused, Err(MessageError::Invalid("text longer than its field allows")));
        }
        let options = ForwardOptions { n: Some("1".repeat(MAX_OPTION_LEN)), ..ForwardOptions::default() };
        let request = Request::Coordinate {
            key: key("b", b"k"),
            context: VersionVector::new(),
            payload: Payload::Tombstone,
            options,
        };
        assert_eq!(Request::decode(METHOD_COORDINATE, &request.encode()), Ok(request), "the limit itself is fine");
        let body = "x".repeat(MAX_FORWARDED_BODY_LEN + 1);
        let bytes = Response::Coordinated(Err(ForwardedError { status: 503, body })).encode();
        assert_eq!(Response::decode(&bytes), Err(MessageError::Invalid("text longer than its field allows")));
    }
}
