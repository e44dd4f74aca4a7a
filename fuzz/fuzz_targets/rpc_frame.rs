//! Fuzzes `dynamo_rpc::frame::decode` and `dynamo_rpc::frame::Reassembler`:
//! the first code that touches the bytes of any peer, before it has
//! authenticated (the handshake reads its frames through the same decoder).
//!
//! Checks, beyond "never panics":
//! - Round trip: every decoded frame re-encodes to exactly the bytes it was
//!   decoded from, and its payload respects the limit in force.
//! - The header is judged from its 16 bytes alone, against a reference
//!   reading of the documented layout: the same fields, or the same refusal
//!   (too short, too large, unknown kind, unknown flags, MORE on a
//!   single-frame kind). A refusal leaves the buffer untouched and allocates
//!   nothing; a partial frame is left in the buffer, and for a valid header
//!   room for the whole frame is reserved.
//! - Feeding the same bytes in chunks gives the same frames and the same
//!   refusal as decoding them at once (what the connection reader does).
//! - Reassembly: a message is the concatenated payloads of its frames, all
//!   with its kind, id and method, MORE on all but the last, within the
//!   message limit; a refusal names the interleaved frame or the size
//!   reached. A reassembled message split again by `frames_of` reassembles
//!   to itself.
//!
//! Input: byte 0 picks the frame payload limit, byte 1 the message limit
//! (each from a small table of real and boundary values), byte 2 the chunk
//! size (1 to 256) for the incremental decode; the rest is the byte stream
//! a peer sent.

#![no_main]

use bytes::{Bytes, BytesMut};
use dynamo_rpc::auth::MAX_HANDSHAKE_PAYLOAD_BYTES;
use dynamo_rpc::frame::{
    FLAG_MORE, Frame, FrameError, HEADER_BYTES, Kind, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, Message, Reassembler, decode,
    frames_of,
};
use libfuzzer_sys::fuzz_target;

/// Frame payload limits: the ones the node uses, and boundaries around
/// small sizes the fuzzer can reach (inputs are a few KiB).
const PAYLOAD_LIMITS: [usize; 8] = [MAX_FRAME_BYTES, MAX_HANDSHAKE_PAYLOAD_BYTES, 0, 1, 15, 16, 64, usize::MAX];
/// Message limits for the reassembler.
const MESSAGE_LIMITS: [usize; 8] = [MAX_MESSAGE_BYTES, 0, 1, 16, 100, 1024, MAX_FRAME_BYTES, usize::MAX];

fuzz_target!(|data: &[u8]| {
    let [payload_pick, message_pick, chunk_pick, stream @ ..] = data else {
        return;
    };
    let limit = PAYLOAD_LIMITS[usize::from(payload_pick % 8)];
    let message_limit = MESSAGE_LIMITS[usize::from(message_pick % 8)];
    let chunk_bytes = usize::from(*chunk_pick) + 1;

    let (frames, refusal) = decode_all(stream, limit);
    let (chunked, chunked_refusal) = decode_in_chunks(stream, limit, chunk_bytes);
    assert_eq!(chunked, frames, "chunked decoding gives the same frames");
    assert_eq!(chunked_refusal, refusal, "chunked decoding gives the same refusal");
    reassemble(frames, message_limit);
});

/// The header as the documented layout reads it: the frame's fields and
/// payload length, or the refusal the decoder must give.
fn reference_header(h: &[u8], limit: usize) -> Result<(Kind, bool, u64, u16, usize), FrameError> {
    let length = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if length < 12 {
        return Err(FrameError::TooShort { length });
    }
    let payload_bytes = length as usize - 12;
    let max_bytes = limit.min(MAX_FRAME_BYTES);
    if payload_bytes > max_bytes {
        return Err(FrameError::FrameTooLarge { payload_bytes, max_bytes });
    }
    let kind = match h[4] {
        1 => Kind::Request,
        2 => Kind::Response,
        3 => Kind::Error,
        16 => Kind::Hello,
        17 => Kind::Challenge,
        18 => Kind::Proof,
        19 => Kind::Welcome,
        other => return Err(FrameError::UnknownKind(other)),
    };
    if h[5] & !FLAG_MORE != 0 {
        return Err(FrameError::UnknownFlags(h[5]));
    }
    let more = h[5] == FLAG_MORE;
    if more && !matches!(kind, Kind::Request | Kind::Response) {
        return Err(FrameError::MoreNotAllowed(kind));
    }
    let request_id = u64::from_be_bytes(h[6..14].try_into().expect("8 bytes"));
    let method = u16::from_be_bytes([h[14], h[15]]);
    Ok((kind, more, request_id, method, payload_bytes))
}

/// Decodes `stream` from one buffer, checking each step; returns the frames
/// and the refusal that ended them, if any.
fn decode_all(stream: &[u8], limit: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut buf = BytesMut::from(stream);
    let mut offset = 0;
    let mut frames = Vec::new();
    loop {
        let rest = &stream[offset..];
        let capacity_before = buf.capacity();
        match decode(&mut buf, limit) {
            Ok(Some(frame)) => {
                let consumed = rest.len() - buf.len();
                let (kind, more, request_id, method, payload_bytes) =
                    reference_header(rest, limit).expect("a decoded frame has a valid header");
                assert_eq!((frame.kind, frame.more, frame.request_id, frame.method), (kind, more, request_id, method));
                assert_eq!(frame.payload.len(), payload_bytes);
                assert_eq!(consumed, HEADER_BYTES + payload_bytes);
                assert!(frame.payload.len() <= limit.min(MAX_FRAME_BYTES), "payload within the limit");
                let mut again = BytesMut::new();
                frame.encode(&mut again);
                assert_eq!(&again[..], &rest[..consumed], "a frame re-encodes to its bytes");
                offset += consumed;
                frames.push(frame);
            }
            Ok(None) => {
                assert_eq!(&buf[..], rest, "a partial frame stays in the buffer");
                if rest.len() >= HEADER_BYTES {
                    let (.., payload_bytes) = reference_header(rest, limit).expect("a waiting header is valid");
                    assert!(rest.len() < HEADER_BYTES + payload_bytes, "a complete frame is not left waiting");
                    assert!(buf.capacity() >= HEADER_BYTES + payload_bytes, "room for the frame is reserved");
                }
                return (frames, None);
            }
            Err(refusal) => {
                assert!(rest.len() >= HEADER_BYTES, "refused before its header arrived: {refusal}");
                assert_eq!(Err(refusal.clone()), reference_header(rest, limit).map(|_| ()));
                assert_eq!(&buf[..], rest, "a refusal consumes nothing");
                assert_eq!(buf.capacity(), capacity_before, "a refusal allocates nothing");
                return (frames, Some(refusal));
            }
        }
    }
}

/// Decodes `stream` as it would arrive from the network, `chunk_bytes` at a
/// time, taking every complete frame after each chunk.
fn decode_in_chunks(stream: &[u8], limit: usize, chunk_bytes: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(chunk_bytes) {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf, limit) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(refusal) => return (frames, Some(refusal)),
            }
        }
    }
    (frames, None)
}

/// Pushes `frames` through a reassembler, checking each message against the
/// frames that made it, until the end or the first refusal.
fn reassemble(frames: Vec<Frame>, message_limit: usize) {
    let mut reassembler = Reassembler::new(message_limit);
    let mut group: Vec<Frame> = Vec::new();
    for frame in frames {
        let received: usize = group.iter().map(|f| f.payload.len()).sum::<usize>() + frame.payload.len();
        group.push(frame.clone());
        match reassembler.push(frame) {
            Ok(None) => {
                let last = group.last().expect("just pushed");
                assert!(last.more, "only a MORE frame leaves a message open");
                assert!(received <= message_limit);
            }
            Ok(Some(message)) => {
                check_message(&message, &group, message_limit);
                group.clear();
            }
            Err(FrameError::Interleaved { kind, request_id, got_kind, got_id }) => {
                let (first, last) = (&group[0], &group[group.len() - 1]);
                assert!(group.len() >= 2, "interleaving needs an open message");
                assert_eq!(
                    (kind, request_id, got_kind, got_id),
                    (first.kind, first.request_id, last.kind, last.request_id)
                );
                assert_ne!((first.kind, first.request_id, first.method), (last.kind, last.request_id, last.method));
                return;
            }
            Err(FrameError::MessageTooLarge { bytes, max_bytes }) => {
                assert_eq!((bytes, max_bytes), (received, message_limit));
                assert!(bytes > max_bytes);
                return;
            }
            Err(other) => panic!("the reassembler refused with a frame-level error: {other}"),
        }
    }
}

fn check_message(message: &Message, group: &[Frame], message_limit: usize) {
    let first = &group[0];
    assert_eq!((message.kind, message.request_id, message.method), (first.kind, first.request_id, first.method));
    for (i, frame) in group.iter().enumerate() {
        assert_eq!((frame.kind, frame.request_id, frame.method), (first.kind, first.request_id, first.method));
        assert_eq!(frame.more, i + 1 < group.len(), "MORE on all frames but the last");
    }
    let body: Vec<u8> = group.iter().flat_map(|f| f.payload.iter().copied()).collect();
    assert_eq!(message.body, Bytes::from(body), "the body is the frames' payloads in order");
    assert!(message.body.len() <= message_limit);
    if group.len() > 1 {
        assert!(message.kind.may_continue(), "only requests and responses span frames");
    }
    let mut again = Reassembler::new(message_limit);
    let mut out = None;
    for frame in frames_of(message) {
        assert!(out.is_none(), "frames_of ends a message only at its last frame");
        out = again.push(frame).expect("frames_of of a valid message reassembles");
    }
    assert_eq!(out.as_ref(), Some(message), "frames_of then reassembly gives the message back");
}
