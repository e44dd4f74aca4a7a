//! The request body: noting whether it was read to its end, and draining
//! what a refused request still sends.
//!
//! Why: hyper reuses a kept-alive connection after an answer only if the
//! request's body was read to its end or is already buffered in full; a
//! request refused before its body arrived (a bad key, a value over the
//! size limit) gets its connection closed after the answer.
//! [`super::Api::handle`] therefore says `Connection: close` on every
//! answer that left the body unread.
//!
//! Closing alone is not enough. Many clients (Python's `http.client` and
//! `requests`, Java's `HttpURLConnection`) write their whole body before
//! they read a byte of the answer. If the server closes its socket while
//! unread body bytes sit in its receive buffer, the kernel answers with a
//! TCP reset, and the reset destroys the answer the client has not read
//! yet: the client sees "connection reset" or "broken pipe" instead of its
//! `413`. So, as nginx's lingering close and Go's `net/http` do, a body
//! dropped unread is drained and discarded in the background, after the
//! answer, up to [`DRAIN_BYTES_MAX`] bytes and for at most
//! [`DRAIN_TIME_MAX`]; only then does hyper close the connection, cleanly.
//! Past either bound the connection is closed as before: a client sending
//! more than that after being refused is not worth a connection slot.
//!
//! A request sent with `Expect: 100-continue` is never drained: its client
//! waits for our go-ahead before sending the body, and a refusal without
//! one means the body never comes. Reading it would make hyper send the
//! `100 Continue` after the refusal, inviting the body we refused.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tracing::debug;

/// Most bytes of a refused request body read and discarded before the
/// connection is closed anyway. 64 MiB covers any honest value a client
/// may try against the 1 MiB default limit (or a raised one) many times
/// over; the bound stops a client from streaming into the node forever.
pub const DRAIN_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Longest time spent draining one refused request body. Enough for 64 MiB
/// at about 55 Mbit/s; a slower sender loses its answer to a reset, as it
/// would against most production servers.
pub const DRAIN_TIME_MAX: Duration = Duration::from_secs(10);

/// A request body that records when it has been read to its end and, when
/// dropped before that, drains the rest (see the module doc).
pub struct TrackedBody {
    /// `None` only after `drop` took it to drain.
    inner: Option<Incoming>,
    finished: Arc<AtomicBool>,
    /// False when the client waits for `100 Continue`: nothing to drain.
    drain_when_dropped: bool,
}

impl TrackedBody {
    /// Wraps `inner`; the returned flag turns true once the body has been
    /// read to its end (at once for a request without a body).
    /// `expects_continue` is whether the request carried
    /// `Expect: 100-continue`, which turns draining off.
    pub fn new(inner: Incoming, expects_continue: bool) -> (TrackedBody, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let body =
            TrackedBody { inner: Some(inner), finished: finished.clone(), drain_when_dropped: !expects_continue };
        (body, finished)
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Incoming::size_hint).unwrap_or_default()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if self.is_finished() || !self.drain_when_dropped {
            return;
        }
        let Some(inner) = self.inner.take() else { return };
        // Dropped outside a runtime (never, in the server): nothing can
        // drain, and hyper closes as before.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(drain(inner));
    }
}

/// Reads and discards `body` within the bounds; dropping it at the end (or
/// past a bound) lets hyper finish the connection.
async fn drain(mut body: Incoming) {
    let mut drained_bytes: u64 = 0;
    let outcome = tokio::time::timeout(DRAIN_TIME_MAX, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return "the client's connection failed" };
            if let Some(data) = frame.data_ref() {
                drained_bytes += data.len() as u64;
            }
            if drained_bytes > DRAIN_BYTES_MAX {
                return "over the drain limit";
            }
        }
        "drained"
    })
    .await
    .unwrap_or("out of drain time");
    debug!(drained_bytes, outcome, "discarded the body of a refused request");
}
