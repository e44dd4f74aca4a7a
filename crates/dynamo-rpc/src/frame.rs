//! The wire format: frames, and messages made of frames. Pure encoding and
//! decoding with no I/O, so that every refusal is unit-tested and the decoder
//! can be fuzzed with arbitrary bytes.
//!
//! One frame on the wire (all integers big-endian):
//!
//! ```text
//! +-------------+---------+---------+----------------+------------+---------------+
//! | length u32  | kind u8 | flags u8| request_id u64 | method u16 | payload ...   |
//! +-------------+---------+---------+----------------+------------+---------------+
//!   `length` counts every byte after itself: 12 + payload length.
//! ```
//!
//! The 16-byte header never changes between protocol versions (the version is
//! negotiated in the handshake, see [`crate::auth`]), so a node can always
//! read the first frame of a peer and refuse it with a clear message.
//!
//! A **message** (one request, one response or one error) is one frame, or
//! several frames with the same kind, request id and method where every frame
//! but the last carries [`FLAG_MORE`]. That is how bodies larger than
//! [`MAX_FRAME_BYTES`] travel. Senders never interleave the frames of two
//! messages on one connection (see [`Reassembler`] for why), so a receiver
//! reassembles at most one message at a time.
//!
//! Limits, checked from the header alone, before any payload is buffered:
//! a frame payload is at most [`MAX_FRAME_BYTES`], a reassembled message at
//! most [`MAX_MESSAGE_BYTES`] (or the lower configured limit).

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Bytes of the fixed frame header: length (4), kind (1), flags (1),
/// request id (8), method (2).
pub const HEADER_BYTES: usize = 16;
/// Bytes of the header counted by the length field (everything after it).
const LENGTH_COVERED_HEADER_BYTES: usize = HEADER_BYTES - 4;
/// Largest payload of one frame. Bounds the memory a peer can make us buffer
/// before we know whether its frame is valid, and how long one frame can hold
/// the connection.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Largest reassembled message. Objects are at most a few MiB; the bulk
/// operations (hint delivery, partition transfer) batch below this. Anything
/// larger is refused rather than buffered.
pub const MAX_MESSAGE_BYTES: usize = 80 << 20;
/// Flag: the message continues in the next frame (same kind, id and method).
pub const FLAG_MORE: u8 = 0x01;
/// Every flag this version understands; any other bit set is refused.
const KNOWN_FLAGS: u8 = FLAG_MORE;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A call: `method` says what to do, the payload is the argument.
    Request = 1,
    /// A successful answer to the request with the same id.
    Response = 2,
    /// A failed answer (payload: UTF-8 message). In the handshake, a refusal
    /// whose `method` field is the refusal code.
    Error = 3,
    /// Handshake, client to server: version, node name, client nonce.
    Hello = 16,
    /// Handshake, server to client: server name, server nonce, server proof.
    Challenge = 17,
    /// Handshake, client to server: client proof.
    Proof = 18,
    /// Handshake, server to client: the client is authenticated.
    Welcome = 19,
}

impl Kind {
    /// The kind with this wire value, if any.
    pub fn from_u8(value: u8) -> Option<Kind> {
        match value {
            1 => Some(Kind::Request),
            2 => Some(Kind::Response),
            3 => Some(Kind::Error),
            16 => Some(Kind::Hello),
            17 => Some(Kind::Challenge),
            18 => Some(Kind::Proof),
            19 => Some(Kind::Welcome),
            _ => None,
        }
    }

    /// Whether a message of this kind may span several frames. Errors and
    /// handshake messages are small by construction and always one frame.
    pub fn may_continue(self) -> bool {
        matches!(self, Kind::Request | Kind::Response)
    }
}

/// One frame: the unit of the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame carries.
    pub kind: Kind,
    /// [`FLAG_MORE`]: the message continues in the next frame.
    pub more: bool,
    /// Matches a response to its request; 0 in the handshake.
    pub request_id: u64,
    /// Which operation a request invokes (the caller's numbering); echoed in
    /// responses. In a handshake refusal, the refusal code.
    pub method: u16,
    /// At most [`MAX_FRAME_BYTES`].
    pub payload: Bytes,
}

/// One complete message: a frame, or several reassembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What the message is.
    pub kind: Kind,
    /// Matches a response to its request.
    pub request_id: u64,
    /// The operation (echoed in responses).
    pub method: u16,
    /// The whole body, at most the message limit.
    pub body: Bytes,
}

/// Why bytes or frames were refused. Every variant ends the connection: a
/// peer that breaks the format cannot be trusted to be in sync any more.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The length field is smaller than the header it must cover.
    #[error("frame length {length} is shorter than the {LENGTH_COVERED_HEADER_BYTES}-byte header")]
    TooShort {
        /// The length field.
        length: u32,
    },
    /// A frame payload above the limit (checked before buffering it).
    #[error("frame payload of {payload_bytes} bytes exceeds the limit of {max_bytes} bytes (not a dynamo RPC peer?)")]
    FrameTooLarge {
        /// Declared payload size.
        payload_bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
    /// A kind this version does not know.
    #[error("unknown frame kind {0} (not a dynamo RPC peer, or a newer protocol?)")]
    UnknownKind(u8),
    /// Flag bits this version does not know.
    #[error("unknown frame flags {0:#04x}")]
    UnknownFlags(u8),
    /// MORE on a kind that is always a single frame.
    #[error("a {0:?} frame cannot be continued (MORE flag)")]
    MoreNotAllowed(Kind),
    /// A frame that does not continue the message being reassembled.
    #[error("frame {got_kind:?} for request {got_id} interleaved into the {kind:?} message of request {request_id}")]
    Interleaved {
        /// Kind of the message being reassembled.
        kind: Kind,
        /// Its request id.
        request_id: u64,
        /// Kind of the offending frame.
        got_kind: Kind,
        /// Request id of the offending frame.
        got_id: u64,
    },
    /// A reassembled message above the limit.
    #[error("message of at least {bytes} bytes exceeds the limit of {max_bytes} bytes")]
    MessageTooLarge {
        /// Bytes received so far.
        bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
}

impl Frame {
    /// The 16 header bytes of this frame.
    ///
    /// # Panics
    /// If the payload exceeds [`MAX_FRAME_BYTES`]: senders split bodies with
    /// [`frames_of`], so this is a bug in the caller.
    pub fn header(&self) -> [u8; HEADER_BYTES] {
        assert!(self.payload.len() <= MAX_FRAME_BYTES, "frame payload of {} bytes", self.payload.len());
        let length = (LENGTH_COVERED_HEADER_BYTES + self.payload.len()) as u32;
        let flags = if self.more { FLAG_MORE } else { 0 };
        let mut header = [0u8; HEADER_BYTES];
        header[0..4].copy_from_slice(&length.to_be_bytes());
        header[4] = self.kind as u8;
        header[5] = flags;
        header[6..14].copy_from_slice(&self.request_id.to_be_bytes());
        header[14..16].copy_from_slice(&self.method.to_be_bytes());
        header
    }

    /// Appends the encoded frame (header and payload) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.extend_from_slice(&self.header());
        dst.extend_from_slice(&self.payload);
    }
}

/// A validated header, before its payload has arrived.
struct Header {
    kind: Kind,
    more: bool,
    request_id: u64,
    method: u16,
    payload_bytes: usize,
}

fn parse_header(h: &[u8; HEADER_BYTES], max_payload_bytes: usize) -> Result<Header, FrameError> {
    let length = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let payload_bytes =
        (length as usize).checked_sub(LENGTH_COVERED_HEADER_BYTES).ok_or(FrameError::TooShort { length })?;
    if payload_bytes > max_payload_bytes {
        return Err(FrameError::FrameTooLarge { payload_bytes, max_bytes: max_payload_bytes });
    }
    let kind = Kind::from_u8(h[4]).ok_or(FrameError::UnknownKind(h[4]))?;
    let flags = h[5];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let more = flags & FLAG_MORE != 0;
    if more && !kind.may_continue() {
        return Err(FrameError::MoreNotAllowed(kind));
    }
    let request_id = u64::from_be_bytes([h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13]]);
    let method = u16::from_be_bytes([h[14], h[15]]);
    Ok(Header { kind, more, request_id, method, payload_bytes })
}

/// Takes one frame off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and
/// call again; for a complete valid header, capacity for the rest is
/// reserved). The header is validated as soon as its 16 bytes are present,
/// so an oversize or unknown frame is refused before its payload is
/// buffered. `max_payload_bytes` is [`MAX_FRAME_BYTES`], or less during the
/// handshake.
pub fn decode(buf: &mut BytesMut, max_payload_bytes: usize) -> Result<Option<Frame>, FrameError> {
    let Some(header_bytes) = buf.get(..HEADER_BYTES) else {
        return Ok(None);
    };
    let mut header_array = [0u8; HEADER_BYTES];
    header_array.copy_from_slice(header_bytes);
    let header = parse_header(&header_array, max_payload_bytes.min(MAX_FRAME_BYTES))?;
    let frame_bytes = HEADER_BYTES + header.payload_bytes;
    if buf.len() < frame_bytes {
        buf.reserve(frame_bytes - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_bytes);
    let payload = frame.split_off(HEADER_BYTES).freeze();
    Ok(Some(Frame {
        kind: header.kind,
        more: header.more,
        request_id: header.request_id,
        method: header.method,
        payload,
    }))
}

/// The frames that carry `message`: one, or several of at most
/// [`MAX_FRAME_BYTES`] with [`FLAG_MORE`] on all but the last. Slices share
/// the body's memory (no copy). An empty body is one empty frame.
pub fn frames_of(message: &Message) -> impl Iterator<Item = Frame> + '_ {
    let body_bytes = message.body.len();
    let count = body_bytes.div_ceil(MAX_FRAME_BYTES).max(1);
    (0..count).map(move |i| {
        let start = i * MAX_FRAME_BYTES;
        let end = (start + MAX_FRAME_BYTES).min(body_bytes);
        Frame {
            kind: message.kind,
            more: i + 1 < count,
            request_id: message.request_id,
            method: message.method,
            payload: message.body.slice(start..end),
        }
    })
}

/// Turns frames back into messages.
///
/// Design choice: senders write all frames of one message back to back
/// (never interleaving two messages), so the receiver keeps at most **one**
/// partial message per connection and its memory is bounded by the message
/// limit, not by the number of requests in flight. The cost is head-of-line
/// blocking: a large message holds the connection while it is written, so
/// callers keep bodies small (objects are 1 MiB by default; bulk transfers
/// are batched) and the latency-sensitive small messages rarely wait.
#[derive(Debug)]
pub struct Reassembler {
    max_message_bytes: usize,
    partial: Option<Partial>,
}

/// A message whose last frame has not arrived yet.
#[derive(Debug)]
struct Partial {
    kind: Kind,
    request_id: u64,
    method: u16,
    body: BytesMut,
}

impl Reassembler {
    /// A reassembler refusing messages above `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Reassembler { max_message_bytes, partial: None }
    }

    /// Adds a frame; returns the message it completes, if any.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, FrameError> {
        match self.partial.take() {
            None => self.start(frame),
            Some(partial) => self.continue_with(partial, frame),
        }
    }

    fn start(&mut self, frame: Frame) -> Result<Option<Message>, FrameError> {
        self.check_size(frame.payload.len())?;
        if !frame.more {
            let Frame { kind, request_id, method, payload, .. } = frame;
            return Ok(Some(Message { kind, request_id, method, body: payload }));
        }
        let body = BytesMut::from(&frame.payload[..]);
        self.partial = Some(Partial { kind: frame.kind, request_id: frame.request_id, method: frame.method, body });
        Ok(None)
    }

    fn continue_with(&mut self, mut partial: Partial, frame: Frame) -> Result<Option<Message>, FrameError> {
        if (frame.kind, frame.request_id, frame.method) != (partial.kind, partial.request_id, partial.method) {
            return Err(FrameError::Interleaved {
                kind: partial.kind,
                request_id: partial.request_id,
                got_kind: frame.kind,
                got_id: frame.request_id,
            });
        }
        self.check_size(partial.body.len() + frame.payload.len())?;
        partial.body.extend_from_slice(&frame.payload);
        if frame.more {
            self.partial = Some(partial);
            return Ok(None);
        }
        let Partial { kind, request_id, method, body } = partial;
        Ok(Some(Message { kind, request_id, method, body: body.freeze() }))
    }

    fn check_size(&self, bytes: usize) -> Result<(), FrameError> {
        if bytes > self.max_message_bytes {
            return Err(FrameError::MessageTooLarge { bytes, max_bytes: self.max_message_bytes });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, more: bool, request_id: u64, payload: &'static [u8]) -> Frame {
        Frame { kind, more, request_id, method: 7, payload: Bytes::from_static(payload) }
    }

    fn encoded(frame: &Frame) -> BytesMut {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        buf
    }

    /// A raw header with the given fields, for refusal tests.
    fn raw_header(length: u32, kind: u8, flags: u8) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&length.to_be_bytes());
        buf.extend_from_slice(&[kind, flags]);
        buf.extend_from_slice(&[0u8; 10]);
        buf
    }

    #[test]
    fn frame_round_trips_with_the_documented_layout() {
        let f = Frame {
            kind: Kind::Response,
            more: true,
            request_id: 0x0102_0304_0506_0708,
            method: 0xABCD,
            payload: Bytes::from_static(b"xyz"),
        };
        let mut buf = encoded(&f);
        assert_eq!(&buf[..], b"\x00\x00\x00\x0f\x02\x01\x01\x02\x03\x04\x05\x06\x07\x08\xab\xcdxyz");
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Ok(Some(f)));
        assert!(buf.is_empty());
    }

    #[test]
    fn back_to_back_frames_decode_one_at_a_time() {
        let a = frame(Kind::Request, false, 1, b"a");
        let b = frame(Kind::Request, false, 2, b"");
        let mut buf = encoded(&a);
        b.encode(&mut buf);
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Ok(Some(a)));
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Ok(Some(b)));
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Ok(None));
    }

    #[test]
    fn truncated_frame_waits_for_more_bytes() {
        let full = encoded(&frame(Kind::Request, false, 9, b"payload"));
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode(&mut part, MAX_FRAME_BYTES), Ok(None), "prefix of {cut} bytes");
            assert_eq!(part.len(), cut, "a partial frame is left in the buffer");
        }
    }

    #[test]
    fn oversize_frame_is_refused_from_its_header_alone() {
        let mut buf = raw_header((LENGTH_COVERED_HEADER_BYTES + MAX_FRAME_BYTES + 1) as u32, 1, 0);
        let err = decode(&mut buf, MAX_FRAME_BYTES);
        assert_eq!(
            err,
            Err(FrameError::FrameTooLarge { payload_bytes: MAX_FRAME_BYTES + 1, max_bytes: MAX_FRAME_BYTES })
        );
        assert!(buf.capacity() < 4096, "nothing was allocated for the payload");
    }

    #[test]
    fn a_lower_limit_applies_during_the_handshake() {
        let mut buf = encoded(&frame(Kind::Hello, false, 0, &[0u8; 100]));
        assert!(matches!(decode(&mut buf, 99), Err(FrameError::FrameTooLarge { payload_bytes: 100, max_bytes: 99 })));
    }

    #[test]
    fn http_request_is_refused_as_oversize() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        assert!(matches!(decode(&mut buf, MAX_FRAME_BYTES), Err(FrameError::FrameTooLarge { .. })));
    }

    #[test]
    fn length_shorter_than_header_is_refused() {
        let mut buf = raw_header(11, 1, 0);
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Err(FrameError::TooShort { length: 11 }));
    }

    #[test]
    fn unknown_kind_is_refused() {
        for kind in [0u8, 4, 15, 20, 255] {
            let mut buf = raw_header(12, kind, 0);
            assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Err(FrameError::UnknownKind(kind)));
        }
    }

    #[test]
    fn unknown_flags_are_refused() {
        let mut buf = raw_header(12, 1, 0x02);
        assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Err(FrameError::UnknownFlags(0x02)));
    }

    #[test]
    fn more_flag_is_refused_on_single_frame_kinds() {
        for kind in [Kind::Error, Kind::Hello, Kind::Challenge, Kind::Proof, Kind::Welcome] {
            let mut buf = raw_header(12, kind as u8, FLAG_MORE);
            assert_eq!(decode(&mut buf, MAX_FRAME_BYTES), Err(FrameError::MoreNotAllowed(kind)));
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_wire_value() {
        for value in 0..=255u8 {
            if let Some(kind) = Kind::from_u8(value) {
                assert_eq!(kind as u8, value);
            }
        }
    }

    fn message(bytes: usize) -> Message {
        let body = Bytes::from((0..bytes).map(|i| i as u8).collect::<Vec<u8>>());
        Message { kind: Kind::Request, request_id: 5, method: 3, body }
    }

    #[test]
    fn large_body_is_chunked_and_reassembled() {
        let msg = message(2 * MAX_FRAME_BYTES + 10);
        let frames: Vec<Frame> = frames_of(&msg).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames.iter().map(|f| f.more).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(frames[2].payload.len(), 10);
        let mut reassembler = Reassembler::new(MAX_MESSAGE_BYTES);
        let mut out = None;
        for f in frames {
            assert!(out.is_none());
            out = reassembler.push(f).expect("valid frames");
        }
        assert_eq!(out, Some(msg));
    }

    #[test]
    fn body_of_exactly_one_frame_is_not_chunked() {
        let msg = message(MAX_FRAME_BYTES);
        assert_eq!(frames_of(&msg).count(), 1);
        assert_eq!(frames_of(&message(0)).count(), 1);
    }

    #[test]
    fn interleaved_message_is_refused() {
        let mut reassembler = Reassembler::new(MAX_MESSAGE_BYTES);
        assert_eq!(reassembler.push(frame(Kind::Request, true, 1, b"a")), Ok(None));
        let err = reassembler.push(frame(Kind::Request, false, 2, b"b"));
        assert!(matches!(err, Err(FrameError::Interleaved { request_id: 1, got_id: 2, .. })));
    }

    #[test]
    fn continuation_of_another_kind_is_refused() {
        let mut reassembler = Reassembler::new(MAX_MESSAGE_BYTES);
        assert_eq!(reassembler.push(frame(Kind::Request, true, 1, b"a")), Ok(None));
        let err = reassembler.push(frame(Kind::Response, false, 1, b"b"));
        assert!(matches!(err, Err(FrameError::Interleaved { got_kind: Kind::Response, .. })));
    }

    #[test]
    fn message_above_the_limit_is_refused_while_reassembling() {
        let mut reassembler = Reassembler::new(5);
        assert_eq!(reassembler.push(frame(Kind::Request, true, 1, b"abc")), Ok(None));
        let err = reassembler.push(frame(Kind::Request, true, 1, b"def"));
        assert_eq!(err, Err(FrameError::MessageTooLarge { bytes: 6, max_bytes: 5 }));
        let mut single = Reassembler::new(2);
        assert!(matches!(single.push(frame(Kind::Request, false, 1, b"abc")), Err(FrameError::MessageTooLarge { .. })));
    }
}
