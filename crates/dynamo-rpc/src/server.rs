//! Answering other nodes. [`serve`] accepts connections, authenticates each
//! one (see [`crate::auth`]) before reading anything else, then runs the
//! requests of each connection concurrently through the node's [`Handler`].
//!
//! Bounds: at most `max_connections` connections; per connection at most
//! `max_concurrent_requests` handlers at once (when all are busy the server
//! stops reading that connection, which pushes back on the client through
//! TCP); answers go to the connection's writer through a bounded queue.
//!
//! Every `select!` here is `biased` (fixed polling order): tokio otherwise
//! picks a random branch first, which would make simulation runs depend on
//! more than their seed.
//!
//! Shutdown: stop accepting, stop reading requests, let the handlers already
//! running answer (up to `shutdown_grace`), then close. Handlers still
//! running after the grace period are not cancelled (cancelling one half-way
//! through a local write could leave its state half-updated); their answers
//! are dropped.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::auth::{self, HandshakeError};
use crate::config::RpcConfig;
use crate::conn::{FrameReader, ReadError, write_loop};
use crate::frame::{Kind, MAX_FRAME_BYTES, Message, Reassembler};
use crate::transport::Listener;

/// Longest pause after a failed accept (e.g. out of file descriptors);
/// pauses double from 10 ms up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// First pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// What a node does with the requests of its peers.
pub trait Handler: Send + Sync + 'static {
    /// Runs `method` with `body` for the authenticated node named `peer`;
    /// `Ok` is sent back as the response, `Err` as an error message (the
    /// caller gets `RpcError::Remote`). A panic is answered as an error too.
    fn handle(&self, peer: &str, method: u16, body: Bytes) -> impl Future<Output = Result<Bytes, String>> + Send;
}

/// Serves `listener` with `handler` until `shutdown` completes, then drains
/// (see the module docs) and returns.
///
/// Takes a bound listener rather than an address so that the caller learns
/// the port (e.g. after binding port 0) and sees bind errors itself.
pub async fn serve<L, H>(mut listener: L, config: RpcConfig, handler: Arc<H>, shutdown: impl Future<Output = ()>)
where
    L: Listener,
    H: Handler,
{
    let grace = config.limits().shutdown_grace;
    let server = Arc::new(Server {
        connection_slots: Arc::new(Semaphore::new(config.limits().max_connections)),
        config,
        handler,
    });
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    server.admit(&mut connections, stream, peer, stopping.clone());
                }
                Err(e) => {
                    warn!(error = %e, "rpc: accept failed; retrying in {} ms", backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
        }
    }
    drop(listener);
    drain(stop, connections, grace).await;
}

/// Tells every connection to stop reading, waits up to `grace` for them to
/// finish answering, then aborts the rest.
async fn drain(stop: watch::Sender<bool>, mut connections: JoinSet<()>, grace: Duration) {
    stop.send_replace(true);
    let finished = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        warn!(connections = connections.len(), "rpc: shutdown grace period over; closing remaining connections");
    }
    connections.shutdown().await;
}

struct Server<H> {
    config: RpcConfig,
    handler: Arc<H>,
    /// One permit per open connection (`max_connections`).
    connection_slots: Arc<Semaphore>,
}

impl<H: Handler> Server<H> {
    fn admit<S>(
        self: &Arc<Self>,
        connections: &mut JoinSet<()>,
        stream: S,
        peer: String,
        stopping: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(slot) = Arc::clone(&self.connection_slots).try_acquire_owned() else {
            warn!(
                peer,
                limit = self.config.limits().max_connections,
                "rpc: refused connection from {peer}: too many open connections"
            );
            return;
        };
        let server = Arc::clone(self);
        connections.spawn(async move {
            server.connection(stream, &peer, stopping).await;
            drop(slot);
        });
    }

    /// Authenticates one connection, then serves its requests.
    async fn connection<S>(&self, stream: S, peer_addr: &str, stopping: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(stream);
        let Some(peer_name) = self.authenticate(&mut reader, peer_addr).await else { return };
        debug!(peer_addr, peer_name, "rpc: peer authenticated");
        let (stream, buffered) = reader.into_parts();
        let (read_half, write_half) = tokio::io::split(stream);
        let (answers, queued) = mpsc::channel(self.config.limits().write_queue_messages);
        let requests = self.read_requests(FrameReader::from_parts(read_half, buffered), answers, peer_name, stopping);
        let writer = write_loop(queued, write_half);
        tokio::pin!(writer);
        tokio::select! {
            biased;
            () = requests => {
                // No more requests; the writer ends once every running
                // handler has answered and dropped its queue handle.
                let grace = self.config.limits().shutdown_grace;
                if tokio::time::timeout(grace, &mut writer).await.is_err() {
                    warn!(peer_addr, "rpc: handlers still running after {} ms; closing", grace.as_millis());
                }
            }
            _ = &mut writer => {}
        }
    }

    /// Runs the handshake within its timeout; logs refusals with the peer
    /// address.
    async fn authenticate<S>(&self, reader: &mut FrameReader<S>, peer_addr: &str) -> Option<String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limit = self.config.limits().handshake_timeout;
        match tokio::time::timeout(limit, auth::server_handshake(reader, &self.config)).await {
            Ok(Ok(peer_name)) => Some(peer_name),
            Ok(Err(e)) => {
                log_refusal(peer_addr, &e);
                None
            }
            Err(_) => {
                warn!("rpc: refused connection from {peer_addr}: no handshake within {} ms", limit.as_millis());
                None
            }
        }
    }

    /// Reads requests and spawns a handler for each, until the peer closes,
    /// breaks the protocol, or the server stops.
    async fn read_requests<R>(
        &self,
        mut reader: FrameReader<R>,
        answers: mpsc::Sender<Message>,
        peer_name: String,
        mut stopping: watch::Receiver<bool>,
    ) where
        R: AsyncRead + Unpin,
    {
        let peer: Arc<str> = peer_name.into();
        let mut reassembler = Reassembler::new(self.config.limits().max_message_bytes);
        let handler_slots = Arc::new(Semaphore::new(self.config.limits().max_concurrent_requests));
        while let Some(request) = next_request(&mut reader, &mut reassembler, &mut stopping, &peer).await {
            let slot = tokio::select! {
                biased;
                _ = stopping.wait_for(|stop| *stop) => return,
                slot = Arc::clone(&handler_slots).acquire_owned() => slot,
            };
            let Ok(slot) = slot else { return };
            self.spawn_handler(Arc::clone(&peer), request, answers.clone(), slot);
        }
    }

    /// Runs one request in its own task; queues its answer.
    fn spawn_handler(
        &self,
        peer: Arc<str>,
        request: Message,
        answers: mpsc::Sender<Message>,
        slot: OwnedSemaphorePermit,
    ) {
        let handler = Arc::clone(&self.handler);
        let max_message_bytes = self.config.limits().max_message_bytes;
        tokio::spawn(async move {
            let Message { request_id, method, body, .. } = request;
            let outcome = CatchUnwind(Box::pin(handler.handle(&peer, method, body))).await;
            let answer = answer_for(request_id, method, outcome, max_message_bytes, &peer);
            // Fails only when the connection is gone: nobody to answer.
            let _ = answers.send(answer).await;
            drop(slot);
        });
    }
}

/// The next complete request of a connection, or `None` when reading should
/// stop (peer closed, protocol broken, server stopping).
async fn next_request<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    reassembler: &mut Reassembler,
    stopping: &mut watch::Receiver<bool>,
    peer: &str,
) -> Option<Message> {
    loop {
        let read = tokio::select! {
            biased;
            _ = stopping.wait_for(|stop| *stop) => return None,
            read = reader.read_frame(MAX_FRAME_BYTES) => read,
        };
        let frame = match read {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(e) => {
                log_broken(peer, &e);
                return None;
            }
        };
        match reassembler.push(frame) {
            Ok(Some(message)) if message.kind == Kind::Request => return Some(message),
            Ok(Some(message)) => {
                warn!(peer, "rpc: closing connection: the peer sent a {:?} message", message.kind);
                return None;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(peer, "rpc: closing connection: {e}");
                return None;
            }
        }
    }
}

/// The message answering request `request_id`. Errors and oversize
/// answers become `Error` messages, which are always one frame.
fn answer_for(
    request_id: u64,
    method: u16,
    outcome: Result<Result<Bytes, String>, Box<dyn Any + Send>>,
    max_message_bytes: usize,
    peer: &str,
) -> Message {
    let body = match outcome {
        Ok(Ok(body)) if body.len() <= max_message_bytes => {
            return Message { kind: Kind::Response, request_id, method, body };
        }
        Ok(Ok(body)) => {
            format!("the answer of {} bytes exceeds the limit of {max_message_bytes} bytes", body.len())
        }
        Ok(Err(message)) => message,
        Err(panic) => {
            let message = panic_message(&panic);
            error!(peer, method, "rpc: handler panicked: {message}");
            format!("the handler panicked: {message}")
        }
    };
    Message { kind: Kind::Error, request_id, method, body: truncated(body, MAX_FRAME_BYTES) }
}

/// `text` cut to at most `max_bytes`, at a character boundary.
fn truncated(mut text: String, max_bytes: usize) -> Bytes {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Bytes::from(text)
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        return (*s).to_owned();
    }
    panic.downcast_ref::<String>().cloned().unwrap_or_else(|| "non-string panic payload".to_owned())
}

fn log_refusal(peer_addr: &str, e: &HandshakeError) {
    if e.is_auth_failure() {
        warn!("rpc: refused connection from {peer_addr}: authentication failed (wrong cluster secret?): {e}");
    } else {
        warn!("rpc: refused connection from {peer_addr}: {e}");
    }
}

fn log_broken(peer: &str, e: &ReadError) {
    match e {
        ReadError::Frame(e) => warn!(peer, "rpc: closing connection: {e}"),
        other => debug!(peer, "rpc: connection ended: {other}"),
    }
}

/// Turns a panic while polling the handler's future into an `Err`, so the
/// caller gets an error answer instead of waiting for its timeout.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_errors_become_single_frame_error_answers() {
        let long = "é".repeat(MAX_FRAME_BYTES);
        let answer = answer_for(9, 4, Ok(Err(long)), 100, "peer");
        assert_eq!((answer.kind, answer.request_id, answer.method), (Kind::Error, 9, 4));
        assert!(answer.body.len() <= MAX_FRAME_BYTES);
        assert!(std::str::from_utf8(&answer.body).is_ok(), "cut at a character boundary");
    }

    #[test]
    fn oversize_answer_becomes_an_error() {
        let answer = answer_for(1, 1, Ok(Ok(Bytes::from(vec![0u8; 11]))), 10, "peer");
        assert_eq!(answer.kind, Kind::Error);
        assert!(String::from_utf8_lossy(&answer.body).contains("exceeds the limit of 10 bytes"));
    }

    #[test]
    fn panic_is_answered_with_its_message() {
        let answer = answer_for(1, 1, Err(Box::new("boom")), 10, "peer");
        assert_eq!(answer.kind, Kind::Error);
        assert_eq!(&answer.body[..], b"the handler panicked: boom");
    }
}
