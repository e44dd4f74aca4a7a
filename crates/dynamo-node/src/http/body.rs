//! The request body, noting whether it was read to its end.
//!
//! Why: hyper reuses a kept-alive connection after an answer only if the
//! request's body was read to its end or is already buffered in full; a
//! request refused before its body arrived (a bad key, a value over the
//! size limit) gets its connection closed after the answer, silently, and
//! a client that does not expect that sends its next request into a
//! closed connection. [`super::Api::handle`] therefore says
//! `Connection: close` on every answer that left the body unread. That
//! also closes the few whose small body hyper could have drained: a
//! reconnect, on error answers only.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body that records when it has been read to its end.
pub struct TrackedBody {
    inner: Incoming,
    finished: Arc<AtomicBool>,
}

impl TrackedBody {
    /// Wraps `inner`; the returned flag turns true once the body has been
    /// read to its end (at once for a request without a body).
    pub fn new(inner: Incoming) -> (TrackedBody, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (TrackedBody { inner, finished: finished.clone() }, finished)
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
