//! Group commit: many concurrent "make my write durable" requests share one
//! fsync (paper section 4.5's durable writes, at the cost of one disk flush
//! per batch instead of one per request).
//!
//! A dedicated OS thread owns the engine's sync. It blocks for the first
//! request, then takes every request already queued (at most
//! [`BATCH_MAX`]), calls [`Engine::sync`] **once**, and answers every waiter
//! in the batch with that result. The invariant that makes this correct: a
//! request is answered only by a sync that *started after the request was
//! received*. Since a writer sends its request only after its write
//! returned, that sync covers the write (the [`Engine`] law). Requests that
//! arrive while a sync runs wait in the queue for the next one.
//!
//! The queue is bounded ([`QUEUE_CAPACITY`]): when the disk falls behind,
//! writers wait on `send` instead of piling up without limit.
//!
//! Why a thread and not a tokio task: fsync blocks for milliseconds; on a
//! dedicated thread it never stalls the runtime's workers, and the thread's
//! lifetime is explicit (joined by [`GroupCommit::close`]).
//!
//! **Background syncs** ([`GroupCommit::start_with_background_sync`]): when
//! writes were made since the last sync, the worker also syncs every
//! interval without being asked. This bounds how much unsynced data the
//! engine holds, which matters for two reasons. It bounds what a power loss
//! takes from writes acknowledged without `dw` (about one interval's worth).
//! And it keeps fjall's own syncs short: fjall fsyncs its journal while
//! holding the journal lock (when it rotates the journal after a memtable
//! flush), and every insert waits on that lock; with tens of megabytes of
//! unsynced journal that fsync took 100-300 ms on this project's test VM
//! and stalled every write of the node for as long.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, StorageError};

/// How many durability requests may wait in the queue before senders block.
pub const QUEUE_CAPACITY: usize = 4096;
/// Most waiters answered by one sync. Bounds the worker's memory and the
/// time between receiving a request and starting its sync.
pub const BATCH_MAX: usize = 4096;

/// What a waiter is told once its sync is done.
type SyncResult = Result<(), StorageError>;

/// A message to the worker.
enum Request {
    /// Answer this waiter after a sync that starts after now.
    Sync(oneshot::Sender<SyncResult>),
    /// A background-sync tick: sync if anything was written since the last
    /// sync.
    Tick,
    /// Final sync, answer everyone still queued, and exit.
    Stop,
}

/// What the worker does next.
enum Next {
    /// Sync for the collected batch.
    Batch,
    /// A tick with nothing queued.
    Tick,
    /// Final sync and exit.
    Stop,
}

/// Counters of the worker, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Syncs performed (including failed ones and the final one at close).
    pub syncs: u64,
    /// Syncs that failed.
    pub sync_failures: u64,
    /// Durability requests answered.
    pub requests: u64,
    /// Largest number of requests answered by one sync.
    pub batch_max: u64,
    /// Syncs done by the background interval, without a waiter.
    pub background_syncs: u64,
}

/// Counters shared between the handle and the worker thread.
#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    sync_failures: AtomicU64,
    requests: AtomicU64,
    batch_max: AtomicU64,
    background_syncs: AtomicU64,
    /// Set by every write, cleared by the worker before each sync.
    dirty: AtomicBool,
}

/// Handle to the group-commit worker thread. Dropping it closes the worker
/// (final sync, join).
pub struct GroupCommit {
    /// The bounded request queue.
    sender: mpsc::Sender<Request>,
    /// Set by [`GroupCommit::close`]: new requests are refused with
    /// [`StorageError::Closed`] and the worker stops after its current batch.
    closing: Arc<AtomicBool>,
    /// The worker, until it is joined. Its result is the final sync's.
    worker: Mutex<Option<JoinHandle<SyncResult>>>,
    counters: Arc<Counters>,
    /// Engine name, for messages.
    engine_name: &'static str,
}

impl GroupCommit {
    /// Starts the worker thread, which owns a handle to `engine`. Syncs
    /// happen only when asked.
    pub fn start(engine: Arc<dyn Engine>) -> Result<GroupCommit, StorageError> {
        Self::start_with_background_sync(engine, None)
    }

    /// Like [`GroupCommit::start`], and with `interval` also syncs on its own
    /// every interval when writes were made since the last sync (see the
    /// module docs). Writes must be reported with [`GroupCommit::note_write`].
    pub fn start_with_background_sync(
        engine: Arc<dyn Engine>,
        interval: Option<Duration>,
    ) -> Result<GroupCommit, StorageError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let closing = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let engine_name = engine.name();
        let worker = Worker { engine, receiver, closing: Arc::clone(&closing), counters: Arc::clone(&counters) };
        let handle = std::thread::Builder::new()
            .name(format!("group-commit-{engine_name}"))
            .spawn(move || worker.run())
            .map_err(|e| StorageError::Engine {
                engine: engine_name,
                operation: "start group commit",
                detail: format!("cannot spawn the worker thread: {e}"),
            })?;
        if let Some(interval) = interval {
            start_ticker(sender.clone(), Arc::clone(&closing), interval, engine_name)?;
        }
        Ok(GroupCommit { sender, closing, worker: Mutex::new(Some(handle)), counters, engine_name })
    }

    /// Records that a write was made (for background syncs).
    pub fn note_write(&self) {
        self.counters.dirty.store(true, Ordering::Release);
    }

    /// Waits until every write that returned before this call is durable.
    /// Waits for queue space when the queue is full (backpressure).
    pub async fn sync(&self) -> SyncResult {
        if self.closing.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        if self.sender.send(Request::Sync(reply)).await.is_err() {
            return Err(self.worker_gone());
        }
        // The worker drops the reply sender without answering only if it is
        // gone (panic, or a request that slipped in behind the final drain).
        answer.await.unwrap_or_else(|_| Err(self.worker_gone()))
    }

    /// Counters so far.
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            sync_failures: self.counters.sync_failures.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            batch_max: self.counters.batch_max.load(Ordering::Relaxed),
            background_syncs: self.counters.background_syncs.load(Ordering::Relaxed),
        }
    }

    /// Stops the worker: requests already queued are answered by a final
    /// sync, later ones get [`StorageError::Closed`]. Blocks until the thread
    /// has exited and returns the final sync's result. Calling it again
    /// returns `Ok(())`.
    pub fn close(&self) -> SyncResult {
        self.closing.store(true, Ordering::Release);
        // Wake the worker if it is idle. If the queue is full the worker is
        // busy and sees `closing` after its current batch; if it is gone,
        // there is nothing to wake.
        let _ = self.sender.try_send(Request::Stop);
        let handle = self.worker.lock().unwrap_or_else(PoisonError::into_inner).take();
        match handle {
            None => Ok(()),
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(StorageError::Engine {
                    engine: self.engine_name,
                    operation: "sync",
                    detail: "the group commit worker panicked".to_owned(),
                })
            }),
        }
    }

    /// The error for a request the worker will never answer.
    fn worker_gone(&self) -> StorageError {
        if self.closing.load(Ordering::Acquire) {
            StorageError::Closed
        } else {
            StorageError::Engine {
                engine: self.engine_name,
                operation: "sync",
                detail: "the group commit worker has stopped".to_owned(),
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(engine = self.engine_name, error = %e, "final group commit sync failed");
        }
    }
}

/// The worker thread's state.
struct Worker {
    engine: Arc<dyn Engine>,
    receiver: mpsc::Receiver<Request>,
    closing: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl Worker {
    /// The worker loop; returns the final sync's result.
    fn run(mut self) -> SyncResult {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        loop {
            let next = self.collect_batch(&mut batch);
            if matches!(next, Next::Tick) {
                self.background_sync();
                continue;
            }
            let mut stopping = matches!(next, Next::Stop);
            if self.closing.load(Ordering::Acquire) {
                stopping = true;
            }
            if stopping {
                // No new requests from here on; everything already queued is
                // answered by the final sync below.
                self.receiver.close();
                while let Ok(request) = self.receiver.try_recv() {
                    if let Request::Sync(waiter) = request {
                        batch.push(waiter);
                    }
                }
            }
            // The sync starts only now, after every request in `batch` was
            // received: it covers their writes (and every write so far).
            self.counters.dirty.store(false, Ordering::Release);
            let result = self.engine.sync();
            self.answer(&mut batch, &result);
            if stopping {
                tracing::debug!(engine = self.engine.name(), "group commit worker stopped");
                return result;
            }
        }
    }

    /// Blocks for the first request, then takes what is already queued, up
    /// to [`BATCH_MAX`]. Ticks queued behind sync requests are absorbed by
    /// the batch's sync.
    fn collect_batch(&mut self, batch: &mut Vec<oneshot::Sender<SyncResult>>) -> Next {
        debug_assert!(batch.is_empty());
        match self.receiver.blocking_recv() {
            // Every handle is gone.
            None | Some(Request::Stop) => return Next::Stop,
            Some(Request::Tick) => return Next::Tick,
            Some(Request::Sync(waiter)) => batch.push(waiter),
        }
        while batch.len() < BATCH_MAX {
            match self.receiver.try_recv() {
                Ok(Request::Sync(waiter)) => batch.push(waiter),
                Ok(Request::Tick) => {}
                Ok(Request::Stop) => return Next::Stop,
                Err(_) => break,
            }
        }
        Next::Batch
    }

    /// A tick: syncs if anything was written since the last sync. Nobody
    /// waits for it; a failure is logged and counted (the next durable
    /// request's sync reports it to its writer).
    fn background_sync(&self) {
        if !self.counters.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let result = self.engine.sync();
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.counters.background_syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(engine = self.engine.name(), error = %e, "background sync failed");
        }
    }

    /// Answers every waiter of the batch with the sync's result.
    fn answer(&self, batch: &mut Vec<oneshot::Sender<SyncResult>>, result: &SyncResult) {
        let count = batch.len() as u64;
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.counters.requests.fetch_add(count, Ordering::Relaxed);
        self.counters.batch_max.fetch_max(count, Ordering::Relaxed);
        if let Err(e) = result {
            self.counters.sync_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(engine = self.engine.name(), waiters = count, error = %e, "group commit sync failed");
        } else {
            tracing::trace!(engine = self.engine.name(), waiters = count, "group commit sync done");
        }
        for waiter in batch.drain(..) {
            // A waiter that gave up (its future was dropped) is not an error.
            let _ = waiter.send(result.as_ref().map(|_| ()).map_err(copy_error));
        }
    }
}

/// Starts the thread that sends a [`Request::Tick`] every `interval` until
/// the worker stops. A full queue skips a tick: the worker is busy syncing
/// anyway.
fn start_ticker(
    sender: mpsc::Sender<Request>,
    closing: Arc<AtomicBool>,
    interval: Duration,
    engine_name: &'static str,
) -> Result<(), StorageError> {
    std::thread::Builder::new()
        .name(format!("background-sync-{engine_name}"))
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                if closing.load(Ordering::Acquire) {
                    return;
                }
                if let Err(mpsc::error::TrySendError::Closed(_)) = sender.try_send(Request::Tick) {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| StorageError::Engine {
            engine: engine_name,
            operation: "start background sync",
            detail: format!("cannot spawn the ticker thread: {e}"),
        })
}

/// A copy of `e` for one more waiter (`StorageError` holds only strings, so
/// every waiter gets the full message).
pub(crate) fn copy_error(e: &StorageError) -> StorageError {
    match e {
        StorageError::Corruption { namespace, key, detail } => {
            StorageError::Corruption { namespace, key: key.clone(), detail: detail.clone() }
        }
        StorageError::Engine { engine, operation, detail } => {
            StorageError::Engine { engine, operation, detail: detail.clone() }
        }
        StorageError::Closed => StorageError::Closed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::Namespace;
    use crate::memory::MemoryEngine;

    fn start(engine: &MemoryEngine) -> Arc<GroupCommit> {
        Arc::new(GroupCommit::start(Arc::new(engine.clone())).expect("start group commit"))
    }

    #[test]
    fn background_syncs_make_buffered_writes_durable_only_when_there_are_any() {
        let engine = MemoryEngine::new();
        let interval = Duration::from_millis(10);
        let group = GroupCommit::start_with_background_sync(Arc::new(engine.clone()), Some(interval)).expect("start");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(group.stats().background_syncs, 0, "nothing written, nothing synced");
        engine.put(Namespace::Objects, b"k", b"v").expect("put");
        group.note_write();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while group.stats().background_syncs == 0 {
            assert!(std::time::Instant::now() < deadline, "no background sync within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let after_one = group.stats().background_syncs;
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(group.stats().background_syncs, after_one, "one sync per burst of writes, not one per tick");
        engine.crash();
        assert_eq!(engine.get(Namespace::Objects, b"k").expect("get").as_deref(), Some(&b"v"[..]), "survived");
        group.close().expect("close");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_share_syncs() {
        let engine = MemoryEngine::new();
        engine.set_sync_delay(Duration::from_millis(50));
        let group = start(&engine);
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let group = Arc::clone(&group);
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                engine.put(Namespace::Objects, &i.to_be_bytes(), b"v")?;
                group.sync().await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("durable");
        }
        let stats = group.stats();
        assert_eq!(stats.requests, 64);
        assert!(stats.syncs < 16, "{stats:?}");
        assert!(stats.batch_max > 1, "{stats:?}");
        assert_eq!(engine.sync_count(), stats.syncs);
        engine.crash();
        for i in 0..64u32 {
            assert!(engine.get(Namespace::Objects, &i.to_be_bytes()).expect("get").is_some(), "key {i} lost");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_of_a_failed_sync_gets_the_error() {
        let engine = MemoryEngine::new();
        engine.set_fail_syncs(true);
        let group = start(&engine);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let group = Arc::clone(&group);
            tasks.push(tokio::spawn(async move { group.sync().await }));
        }
        for task in tasks {
            let result = task.await.expect("task");
            assert!(
                matches!(&result, Err(StorageError::Engine { engine: "memory", operation: "sync", detail }) if detail.contains("injected")),
                "{result:?}"
            );
        }
        assert!(group.stats().sync_failures >= 1);
        engine.set_fail_syncs(false);
        group.sync().await.expect("sync works again");
    }

    #[tokio::test]
    async fn close_runs_a_final_sync_and_later_requests_are_refused() {
        let engine = MemoryEngine::new();
        let group = start(&engine);
        engine.put(Namespace::Meta, b"k", b"v").expect("put");
        group.close().expect("close");
        assert_eq!(engine.sync_count(), 1, "final sync");
        engine.crash();
        assert!(engine.get(Namespace::Meta, b"k").expect("get").is_some());
        assert!(matches!(group.sync().await, Err(StorageError::Closed)));
        group.close().expect("second close is a no-op");
        assert_eq!(engine.sync_count(), 1);
    }

    #[test]
    fn dropping_the_handle_stops_the_worker_and_releases_the_engine() {
        let engine = MemoryEngine::new();
        let shared: Arc<dyn Engine> = Arc::new(engine.clone());
        let group = GroupCommit::start(Arc::clone(&shared)).expect("start");
        assert_eq!(Arc::strong_count(&shared), 2);
        drop(group);
        assert_eq!(Arc::strong_count(&shared), 1, "worker thread joined and its handle dropped");
        assert_eq!(engine.sync_count(), 1);
    }
}
