//! Calling other nodes. [`RpcClient`] keeps one authenticated, multiplexed
//! connection per peer address: opened lazily by the first call, shared by
//! all concurrent callers (each request carries a fresh id; responses are
//! matched by id, in any order), and replaced by the next call after it
//! fails.
//!
//! Per connection:
//! - callers register a waiter (a oneshot) under a new request id, then
//!   queue the request on a bounded channel; at most `max_in_flight` waiters
//!   exist, beyond that a call fails at once with `Overloaded`;
//! - one task drives the connection: its write loop drains the queue, its
//!   read loop delivers each response to the waiter with the same id;
//! - when the connection fails, every waiter gets the reason and the
//!   connection leaves the pool.
//!
//! A caller that times out (or is dropped) removes its waiter; a late
//! response for it is discarded. Several timeouts in a row with nothing
//! received at all mean the peer vanished without closing the connection:
//! it is then dropped, so the next call reconnects.
//!
//! Connecting is also shared: while a connection to an address is being
//! opened, other callers wait for the same attempt rather than starting their
//! own. The attempt runs in its own task, bounded by `connect_timeout`, so a
//! caller giving up does not cancel it for the others.
//!
//! Locks: the pool and each connection's waiter table are `std::sync::Mutex`,
//! held only for map operations and never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use tracing::{debug, trace};

use crate::auth;
use crate::config::RpcConfig;
use crate::conn::{FrameReader, ReadError, write_loop};
use crate::error::RpcError;
use crate::frame::{Kind, MAX_FRAME_BYTES, Message, Reassembler};
use crate::transport::Transport;

/// A handle for calling other nodes; cheap to clone (clones share the
/// connections). Connections close when the last clone is dropped.
pub struct RpcClient<T: Transport> {
    inner: Arc<Inner<T>>,
}

impl<T: Transport> Clone for RpcClient<T> {
    fn clone(&self) -> Self {
        RpcClient { inner: Arc::clone(&self.inner) }
    }
}

struct Inner<T> {
    transport: T,
    config: RpcConfig,
    pool: Arc<Pool>,
}

impl<T: Transport> RpcClient<T> {
    /// A client connecting through `transport` as the node described by
    /// `config`.
    pub fn new(transport: T, config: RpcConfig) -> Self {
        let pool = Arc::new(Pool { slots: Mutex::new(HashMap::new()), next_conn_id: AtomicU64::new(1) });
        RpcClient { inner: Arc::new(Inner { transport, config, pool }) }
    }

    /// Calls `method` on the node at `addr` with `body`; returns the
    /// handler's answer.
    ///
    /// `timeout` covers everything: connecting and the handshake if there
    /// is no connection yet, queueing, sending, and the answer. Bodies above
    /// the message limit fail with `TooLarge` before anything is sent.
    /// Calls are not retried once sent (the caller knows whether its method
    /// is idempotent); a call that finds its connection already closed
    /// before sending is moved to a fresh connection.
    pub async fn call(&self, addr: &str, method: u16, body: Bytes, timeout: Duration) -> Result<Bytes, RpcError> {
        let max_bytes = self.inner.config.limits().max_message_bytes;
        if body.len() > max_bytes {
            return Err(RpcError::TooLarge { addr: addr.to_owned(), bytes: body.len(), max_bytes });
        }
        let deadline = deadline_after(timeout);
        let timed_out = || RpcError::Timeout { addr: addr.to_owned(), ms: millis(timeout) };
        let (conn, request_id, answer) = match timeout_at(deadline, self.inner.register(addr)).await {
            Ok(registered) => registered?,
            Err(_) => return Err(timed_out()),
        };
        match timeout_at(deadline, conn.send_and_wait(request_id, answer, method, body)).await {
            Ok(result) => result,
            Err(_) => {
                self.inner.note_timeout(addr, &conn);
                Err(timed_out())
            }
        }
    }

    /// Whether an authenticated connection to `addr` is open now (for
    /// diagnostics and tests; a call never needs to check first).
    pub fn is_connected(&self, addr: &str) -> bool {
        matches!(self.inner.pool.lock().get(addr), Some(Slot::Ready(conn)) if !conn.shared.is_closed())
    }
}

/// `timeout` from now; a timeout too large to represent means "never".
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<T: Transport> Inner<T> {
    /// A connection to `addr` with a waiter registered under a fresh
    /// request id.
    async fn register(self: &Arc<Self>, addr: &str) -> Result<(Arc<Conn>, u64, AnswerReceiver), RpcError> {
        let max_in_flight = self.config.limits().max_in_flight;
        let mut conn = self.connection(addr).await?;
        let (id, answer) = match conn.shared.register(max_in_flight) {
            Err(Register::Closed(_)) => {
                // Raced with the connection failing; nothing was sent, so
                // the call can safely move to a new connection, once.
                conn = self.connection(addr).await?;
                conn.shared.register(max_in_flight)
            }
            other => other,
        }
        .map_err(|refusal| refusal.into_error(addr))?;
        Ok((conn, id, answer))
    }

    /// A call on `conn` timed out. After [`SILENT_TIMEOUTS_BEFORE_RECONNECT`]
    /// in a row with nothing received in between, the peer is presumed gone
    /// without closing the connection (host lost, cable cut): TCP would
    /// only notice after many minutes, so the connection is dropped and the
    /// next call reconnects (and fails fast, or finds the peer back).
    fn note_timeout(&self, addr: &str, conn: &Arc<Conn>) {
        if !conn.shared.note_silent_timeout() {
            return;
        }
        let reason = format!(
            "{SILENT_TIMEOUTS_BEFORE_RECONNECT} calls in a row timed out with nothing received; presuming the connection dead"
        );
        debug!(addr, "rpc: {reason}");
        conn.shared.abandon(RpcError::closed(addr, reason));
        self.pool.remove(addr, conn.id);
    }

    /// The open connection to `addr`, or the result of the attempt to open
    /// one (started now, or already in progress).
    async fn connection(self: &Arc<Self>, addr: &str) -> Result<Arc<Conn>, RpcError> {
        let attempt = match self.pool.lookup_or_start(addr) {
            Lookup::Ready(conn) => return Ok(conn),
            Lookup::Wait(attempt) => attempt,
            Lookup::Start(attempt) => {
                tokio::spawn(Arc::clone(self).connect_task(addr.to_owned(), Arc::clone(&attempt)));
                attempt
            }
        };
        let result = attempt.wait().await;
        if result.is_err() {
            self.pool.remove(addr, attempt.id);
        }
        result
    }

    /// Opens, authenticates and starts one connection; reports the outcome
    /// to the pool and to every caller waiting for it.
    async fn connect_task(self: Arc<Self>, addr: String, attempt: Arc<Attempt>) {
        let id = attempt.id;
        // Reports a failure if this task ends without an outcome (dropped
        // or panicked), so that no caller waits for nothing.
        let report = ReportOnDrop { attempt, addr: addr.clone() };
        let limit = self.config.limits().connect_timeout;
        let result = match tokio::time::timeout(limit, self.establish(&addr, id)).await {
            Ok(result) => result,
            Err(_) => {
                let message = format!("connecting and authenticating took longer than {} ms", millis(limit));
                Err(RpcError::connect(&addr, io::Error::new(io::ErrorKind::TimedOut, message)))
            }
        };
        if let Err(e) = &result {
            debug!(addr, error = %e, "rpc: connection attempt failed");
        }
        self.pool.finish(&addr, id, &result);
        report.attempt.finish(result);
    }

    async fn establish(&self, addr: &str, id: u64) -> Result<Arc<Conn>, RpcError> {
        let stream = self.transport.connect(addr).await.map_err(|e| RpcError::connect(addr, e))?;
        let mut reader = FrameReader::new(stream);
        let server_name =
            auth::client_handshake(&mut reader, &self.config).await.map_err(|e| e.into_rpc_error(addr))?;
        debug!(addr, server_name, "rpc: connected");
        Ok(Conn::start(reader, addr, id, &self.config, Arc::downgrade(&self.pool)))
    }
}

/// Timed-out calls in a row, with no frame received from the peer in
/// between, after which a connection is presumed dead (see
/// `Inner::note_timeout`). One slow answer is not enough: the connection
/// stays for the calls that follow it.
const SILENT_TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// The receiving end of one call's answer.
type AnswerReceiver = oneshot::Receiver<Result<Bytes, RpcError>>;

/// One connection attempt, shared by every caller waiting for it.
///
/// Not a `watch` channel: tokio's watch wakes its waiters in an order drawn
/// from the runtime's random generator, so two runs of the deterministic
/// simulation with the same seed would diverge. `Notify` wakes them in a
/// fixed order.
struct Attempt {
    /// Identifies the attempt in the pool (see `Pool::finish`).
    id: u64,
    /// The outcome, once known.
    outcome: Mutex<Option<Result<Arc<Conn>, RpcError>>>,
    /// Wakes the waiters when the outcome is set.
    done: Notify,
}

impl Attempt {
    fn new(id: u64) -> Self {
        Attempt { id, outcome: Mutex::new(None), done: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<Arc<Conn>, RpcError>>> {
        self.outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the outcome (the first one wins) and wakes every waiter.
    fn finish(&self, result: Result<Arc<Conn>, RpcError>) {
        self.lock().get_or_insert(result);
        self.done.notify_waiters();
    }

    /// Waits for the outcome.
    async fn wait(&self) -> Result<Arc<Conn>, RpcError> {
        loop {
            // Registered before checking, so a `finish` in between is not
            // missed.
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.lock().clone() {
                return result;
            }
            notified.await;
        }
    }
}

/// Finishes an attempt with a failure if its task ends without an outcome.
struct ReportOnDrop {
    attempt: Arc<Attempt>,
    addr: String,
}

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        if self.attempt.lock().is_none() {
            self.attempt.finish(Err(RpcError::closed(&self.addr, "the connection attempt ended without a result")));
        }
    }
}

/// The connections of one client, by peer address.
struct Pool {
    slots: Mutex<HashMap<String, Slot>>,
    /// Identifies connections (and attempts) so that a finished one removes
    /// only itself, never its replacement.
    next_conn_id: AtomicU64,
}

enum Slot {
    Connecting(Arc<Attempt>),
    Ready(Arc<Conn>),
}

impl Slot {
    fn id(&self) -> u64 {
        match self {
            Slot::Connecting(attempt) => attempt.id,
            Slot::Ready(conn) => conn.id,
        }
    }
}

enum Lookup {
    Ready(Arc<Conn>),
    Wait(Arc<Attempt>),
    Start(Arc<Attempt>),
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A usable connection, the attempt in progress, or a new attempt
    /// registered for the caller to start. A closed connection that has not
    /// yet removed itself counts as absent.
    fn lookup_or_start(&self, addr: &str) -> Lookup {
        let mut slots = self.lock();
        match slots.get(addr) {
            Some(Slot::Ready(conn)) if !conn.shared.is_closed() => return Lookup::Ready(Arc::clone(conn)),
            Some(Slot::Connecting(attempt)) => return Lookup::Wait(Arc::clone(attempt)),
            _ => {}
        }
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let attempt = Arc::new(Attempt::new(id));
        slots.insert(addr.to_owned(), Slot::Connecting(Arc::clone(&attempt)));
        Lookup::Start(attempt)
    }

    /// Records the outcome of attempt `id`, unless it was replaced meanwhile.
    fn finish(&self, addr: &str, id: u64, result: &Result<Arc<Conn>, RpcError>) {
        let mut slots = self.lock();
        if slots.get(addr).map(Slot::id) != Some(id) {
            return;
        }
        match result {
            Ok(conn) => slots.insert(addr.to_owned(), Slot::Ready(Arc::clone(conn))),
            Err(_) => slots.remove(addr),
        };
    }

    /// Forgets connection (or attempt) `id`, unless it was replaced.
    fn remove(&self, addr: &str, id: u64) {
        let mut slots = self.lock();
        if slots.get(addr).map(Slot::id) == Some(id) {
            slots.remove(addr);
        }
    }
}

/// One open connection, as callers see it.
struct Conn {
    id: u64,
    /// The writer's queue. Dropping the last `Conn` handle closes it, which
    /// ends the writer and so the connection.
    queue: mpsc::Sender<Message>,
    shared: Arc<ConnShared>,
}

impl Conn {
    fn start<S>(reader: FrameReader<S>, addr: &str, id: u64, config: &RpcConfig, pool: Weak<Pool>) -> Arc<Conn>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = config.limits();
        let (stream, buffered) = reader.into_parts();
        let (read_half, write_half) = tokio::io::split(stream);
        let (queue, queued) = mpsc::channel(limits.write_queue_messages);
        let shared = Arc::new(ConnShared::new(addr));
        let reader = FrameReader::from_parts(read_half, buffered);
        let driver = Driver { shared: Arc::clone(&shared), pool, id, max_message_bytes: limits.max_message_bytes };
        tokio::spawn(driver.run(reader, write_half, queued));
        Arc::new(Conn { id, queue, shared })
    }

    async fn send_and_wait(
        &self,
        request_id: u64,
        answer: AnswerReceiver,
        method: u16,
        body: Bytes,
    ) -> Result<Bytes, RpcError> {
        let _registration = Registration { shared: &self.shared, request_id };
        let request = Message { kind: Kind::Request, request_id, method, body };
        if self.queue.send(request).await.is_err() {
            return Err(self.shared.closed_reason());
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(self.shared.closed_reason()),
        }
    }
}

/// Removes a caller's waiter when the call ends in any way (answered,
/// timed out, dropped).
struct Registration<'a> {
    shared: &'a ConnShared,
    request_id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiters.remove(&self.request_id);
    }
}

/// State shared by a connection's callers and its driver task.
struct ConnShared {
    addr: String,
    state: Mutex<ConnState>,
    /// Frames read so far; tells a silent peer from a slow one.
    frames_received: AtomicU64,
    /// Wakes the driver to close a connection given up by a caller.
    abandoned: Notify,
}

struct ConnState {
    next_request_id: u64,
    /// Ordered, so that failing a connection wakes its callers in request
    /// order: iteration order must not depend on a random hash seed, or a
    /// simulation run would not replay from its seed.
    waiters: BTreeMap<u64, oneshot::Sender<Result<Bytes, RpcError>>>,
    /// Set once when the connection ends; later callers get this reason.
    closed: Option<RpcError>,
    /// Consecutive timed-out calls with no frame received in between.
    silent_timeouts: u32,
    /// `frames_received` at the last timed-out call.
    frames_at_last_timeout: u64,
}

/// Why a call could not be registered on a connection.
enum Register {
    Closed(RpcError),
    Overloaded(usize),
}

impl Register {
    fn into_error(self, addr: &str) -> RpcError {
        match self {
            Register::Closed(e) => e,
            Register::Overloaded(in_flight) => RpcError::Overloaded { addr: addr.to_owned(), in_flight },
        }
    }
}

type Registered = (u64, AnswerReceiver);

impl ConnShared {
    fn new(addr: &str) -> Self {
        let state = ConnState {
            next_request_id: 1,
            waiters: BTreeMap::new(),
            closed: None,
            silent_timeouts: 0,
            frames_at_last_timeout: 0,
        };
        ConnShared {
            addr: addr.to_owned(),
            state: Mutex::new(state),
            frames_received: AtomicU64::new(0),
            abandoned: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    fn closed_reason(&self) -> RpcError {
        let reason = self.lock().closed.clone();
        reason.unwrap_or_else(|| RpcError::closed(&self.addr, "the connection ended"))
    }

    /// A fresh request id and the receiver of its answer.
    fn register(&self, max_in_flight: usize) -> Result<Registered, Register> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(Register::Closed(reason.clone()));
        }
        if state.waiters.len() >= max_in_flight {
            return Err(Register::Overloaded(state.waiters.len()));
        }
        let id = state.next_request_id;
        state.next_request_id += 1;
        let (answer, receiver) = oneshot::channel();
        state.waiters.insert(id, answer);
        Ok((id, receiver))
    }

    /// Hands a response or error to its waiter. Anything else from a
    /// server breaks the protocol.
    fn deliver(&self, message: Message) -> Result<(), RpcError> {
        let result = match message.kind {
            Kind::Response => Ok(message.body),
            Kind::Error => Err(RpcError::Remote {
                addr: self.addr.clone(),
                message: String::from_utf8_lossy(&message.body).into_owned(),
            }),
            other => return Err(RpcError::protocol(&self.addr, format!("the server sent a {other:?} message"))),
        };
        let waiter = self.lock().waiters.remove(&message.request_id);
        match waiter {
            Some(waiter) => drop(waiter.send(result)),
            None => trace!(addr = self.addr, request_id = message.request_id, "rpc: late answer discarded"),
        }
        Ok(())
    }

    /// Counts a timed-out call; true when enough of them in a row saw no
    /// frame at all from the peer.
    fn note_silent_timeout(&self) -> bool {
        let received = self.frames_received.load(Ordering::Relaxed);
        let mut state = self.lock();
        if received != state.frames_at_last_timeout {
            state.frames_at_last_timeout = received;
            state.silent_timeouts = 0;
        }
        state.silent_timeouts += 1;
        state.silent_timeouts >= SILENT_TIMEOUTS_BEFORE_RECONNECT
    }

    /// Fails the connection on a caller's behalf and makes its driver
    /// close it.
    fn abandon(&self, reason: RpcError) {
        self.fail(reason);
        self.abandoned.notify_one();
    }

    /// Ends the connection for its callers: present waiters get the reason,
    /// later registrations too. The first reason given is kept.
    fn fail(&self, reason: RpcError) {
        let (reason, waiters) = {
            let mut state = self.lock();
            let reason = state.closed.get_or_insert(reason).clone();
            (reason, std::mem::take(&mut state.waiters))
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(reason.clone()));
        }
    }
}

/// The task that owns one connection's stream.
struct Driver {
    shared: Arc<ConnShared>,
    /// Weak, so that open connections do not keep a dropped client alive.
    pool: Weak<Pool>,
    id: u64,
    max_message_bytes: usize,
}

impl Driver {
    async fn run<S>(self, reader: FrameReader<ReadHalf<S>>, writer: WriteHalf<S>, queued: mpsc::Receiver<Message>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // `biased`: a fixed polling order keeps simulation runs
        // deterministic (tokio otherwise picks a random branch first).
        let reason = tokio::select! {
            biased;
            () = self.shared.abandoned.notified() => self.shared.closed_reason(),
            reason = self.read_answers(reader) => reason,
            written = write_loop(queued, writer) => self.writer_ended(written),
        };
        debug!(addr = self.shared.addr, reason = %reason, "rpc: connection closed");
        self.shared.fail(reason);
        if let Some(pool) = self.pool.upgrade() {
            pool.remove(&self.shared.addr, self.id);
        }
    }

    /// Delivers answers until the connection fails; returns why it did.
    async fn read_answers<R: AsyncRead + Unpin>(&self, mut reader: FrameReader<R>) -> RpcError {
        let addr = &self.shared.addr;
        let mut reassembler = Reassembler::new(self.max_message_bytes);
        loop {
            let frame = match reader.read_frame(MAX_FRAME_BYTES).await {
                Ok(Some(frame)) => {
                    self.shared.frames_received.fetch_add(1, Ordering::Relaxed);
                    frame
                }
                Ok(None) => return RpcError::closed(addr, "the server closed the connection"),
                Err(ReadError::Frame(e)) => return RpcError::protocol(addr, e),
                Err(e) => return RpcError::closed(addr, e.to_string()),
            };
            let message = match reassembler.push(frame) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(e) => return RpcError::protocol(addr, e),
            };
            if let Err(e) = self.shared.deliver(message) {
                return e;
            }
        }
    }

    fn writer_ended(&self, written: io::Result<()>) -> RpcError {
        match written {
            Ok(()) => RpcError::closed(&self.shared.addr, "the client was dropped"),
            Err(e) => RpcError::closed(&self.shared.addr, format!("write failed: {e}")),
        }
    }
}
