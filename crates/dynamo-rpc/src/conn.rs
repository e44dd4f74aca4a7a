//! Framed I/O on one connection, shared by the client and the server:
//! reading frames into a buffer, and the writer loop that drains a bounded
//! queue of messages onto the stream.
//!
//! Each connection is driven by one task that polls its read loop and its
//! write loop together (`select!`): reads and writes proceed concurrently,
//! and whichever side fails first ends both, so there is exactly one place
//! where a connection's end is handled.

use std::io;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::frame::{self, Frame, FrameError, Message};

/// Free buffer space requested before each read: large enough to take many
/// small frames per system call.
const READ_RESERVE_BYTES: usize = 16 * 1024;
/// Write buffer: small frames queued together go out in one system call.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Messages written between flushes when the queue stays non-empty, so a
/// busy queue still flushes regularly.
const WRITE_BATCH_MESSAGES: usize = 64;

/// Why reading a frame failed.
#[derive(Debug, Error)]
pub(crate) enum ReadError {
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not valid frames.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The peer closed the stream with part of a frame sent.
    #[error("the peer closed the connection in the middle of a frame")]
    EofMidFrame,
}

/// Reads frames from a stream, keeping partial input between calls.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R> FrameReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        FrameReader { inner, buf: BytesMut::new() }
    }

    /// The stream, e.g. to write handshake replies.
    pub(crate) fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The stream and any bytes read but not yet decoded, to continue with
    /// the stream split into halves after the handshake.
    pub(crate) fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// Continues reading `inner` after bytes already buffered.
    pub(crate) fn from_parts(inner: R, buf: BytesMut) -> Self {
        FrameReader { inner, buf }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// The next frame, or `None` when the peer closed the stream cleanly
    /// between frames.
    ///
    /// Cancel safe: all state lives in `self`, so dropping the future (in a
    /// `select!`) loses no bytes.
    pub(crate) async fn read_frame(&mut self, max_payload_bytes: usize) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = frame::decode(&mut self.buf, max_payload_bytes)? {
                return Ok(Some(frame));
            }
            self.buf.reserve(READ_RESERVE_BYTES);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(ReadError::EofMidFrame) };
            }
        }
    }
}

/// Writes one frame (not flushed).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> io::Result<()> {
    w.write_all(&frame.header()).await?;
    w.write_all(&frame.payload).await
}

/// Writes all frames of one message back to back (not flushed).
async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, message: &Message) -> io::Result<()> {
    for frame in frame::frames_of(message) {
        write_frame(w, &frame).await?;
    }
    Ok(())
}

/// Writes queued messages until every sender is gone, then shuts the
/// stream down (the peer sees a clean end). Flushes whenever the queue runs
/// empty, so a lone message goes out at once and a burst shares system
/// calls.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(mut queue: mpsc::Receiver<Message>, w: W) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, w);
    while let Some(message) = queue.recv().await {
        write_message(&mut w, &message).await?;
        for _ in 1..WRITE_BATCH_MESSAGES {
            let Ok(message) = queue.try_recv() else { break };
            write_message(&mut w, &message).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}
