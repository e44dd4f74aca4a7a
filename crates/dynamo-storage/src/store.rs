//! [`Store`]: what a node holds to reach its storage. Cheap to clone.
//!
//! A store is an [`Engine`] plus record framing ([`crate::record`]: every
//! value written is framed, every value read is checked) plus a way to make
//! writes durable ([`SyncMode`]: the group-commit thread, or inline calls
//! for the deterministic simulation) plus counters for metrics.
//!
//! After [`Store::close`] every operation returns [`StorageError::Closed`],
//! and the engine is released (for fjall: the data directory is unlocked
//! once no other handle to the engine is left).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::{Engine, Namespace, Records, StorageError};
use crate::fjall_engine::FjallEngine;
use crate::group_commit::GroupCommit;
use crate::memory::MemoryEngine;
use crate::record;

/// Whether a write must be on disk before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In the engine's buffer (survives a process crash with fjall, not a
    /// power loss). The paper's section 6.1 write buffer.
    Buffered,
    /// Fsynced, via group commit.
    Durable,
}

/// How often a fjall store syncs on its own when it has unsynced writes:
/// writes acknowledged without `dw` reach the disk within about this long.
pub const BACKGROUND_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// How a store makes writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// A dedicated thread batches concurrent requests into one
    /// [`Engine::sync`] ([`crate::group_commit`]). The default for fjall.
    GroupCommit,
    /// Each [`Store::sync`] calls [`Engine::sync`] directly on the calling
    /// task. No thread and no batching: deterministic, which the simulation
    /// needs, and cheap for the memory engine. Do not use with an engine
    /// whose sync blocks for long (it would stall an async worker thread).
    Inline,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Fsyncs performed.
    pub syncs: u64,
    /// Durable writes acknowledged (each waited for some fsync).
    pub durable_writes: u64,
    /// Corrupt records detected on read.
    pub corruptions: u64,
}

/// Handle to a node's storage: engine + record framing + group commit.
///
/// Call [`Store::close`] at shutdown. Dropping the last handle without it
/// does the same work (final sync, worker joined, engine released), blocking
/// the dropping thread for one fsync.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    /// How durability requests reach the engine. Declared first so that,
    /// when the last handle is dropped without `close`, the group-commit
    /// worker does its final sync and is joined before the engine goes.
    syncer: Syncer,
    /// The engine; `None` once closed. Operations hold the read lock while
    /// they run, so `close` (write lock) waits for them and no write can
    /// slip in after the final sync.
    engine: RwLock<Option<Arc<dyn Engine>>>,
    /// Kept apart from `engine` so it is available after close.
    engine_name: &'static str,
    /// Successful [`Store::sync`] calls (including those of durable puts).
    durable_writes: AtomicU64,
    /// Records that failed their framing check on read.
    corruptions: AtomicU64,
}

enum Syncer {
    Group(GroupCommit),
    Inline {
        /// Engine syncs performed.
        syncs: AtomicU64,
    },
}

impl Store {
    /// Opens (creating if needed) a fjall store in `dir`, with group commit
    /// and a background sync every [`BACKGROUND_SYNC_INTERVAL`] when
    /// anything was written (see [`crate::group_commit`] for why).
    pub fn open_fjall(dir: &Path) -> Result<Store, StorageError> {
        Self::open_fjall_with(dir, crate::fjall_engine::DEFAULT_MEMTABLE_BYTES)
    }

    /// Like [`Store::open_fjall`], with memtables of `memtable_bytes` (see
    /// [`FjallEngine::open_with`]).
    pub fn open_fjall_with(dir: &Path, memtable_bytes: u64) -> Result<Store, StorageError> {
        let engine: Arc<dyn Engine> = Arc::new(FjallEngine::open_with(dir, memtable_bytes)?);
        let group = GroupCommit::start_with_background_sync(Arc::clone(&engine), Some(BACKGROUND_SYNC_INTERVAL))?;
        Ok(Store::from_parts(engine, Syncer::Group(group)))
    }

    /// A store over an in-memory engine (shared: the caller keeps a clone to
    /// crash it or to reopen it after a simulated restart).
    ///
    /// Syncs run inline ([`SyncMode::Inline`]): no thread, deterministic.
    /// For group commit over a memory engine use [`Store::with_engine`].
    pub fn memory(engine: MemoryEngine) -> Store {
        Store::from_parts(Arc::new(engine), Syncer::Inline { syncs: AtomicU64::new(0) })
    }

    /// A store over any engine. With [`SyncMode::GroupCommit`] this starts
    /// the worker thread, which can fail.
    pub fn with_engine(engine: Arc<dyn Engine>, mode: SyncMode) -> Result<Store, StorageError> {
        let syncer = match mode {
            SyncMode::GroupCommit => Syncer::Group(GroupCommit::start(Arc::clone(&engine))?),
            SyncMode::Inline => Syncer::Inline { syncs: AtomicU64::new(0) },
        };
        Ok(Store::from_parts(engine, syncer))
    }

    fn from_parts(engine: Arc<dyn Engine>, syncer: Syncer) -> Store {
        let engine_name = engine.name();
        Store {
            inner: Arc::new(StoreInner {
                syncer,
                engine: RwLock::new(Some(engine)),
                engine_name,
                durable_writes: AtomicU64::new(0),
                corruptions: AtomicU64::new(0),
            }),
        }
    }

    /// Engine name.
    pub fn engine_name(&self) -> &'static str {
        self.inner.engine_name
    }

    /// The engine under the store, bypassing record framing: for tests
    /// (e.g. corrupting a stored record on purpose) and inspection tools.
    /// Holding the returned handle keeps the engine open after
    /// [`Store::close`].
    pub fn engine(&self) -> Result<Arc<dyn Engine>, StorageError> {
        self.run_on_engine(|engine| Ok(Arc::clone(engine)))
    }

    /// Reads and verifies a record; `Ok(None)` when absent.
    pub fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(raw) = self.run_on_engine(|engine| engine.get(ns, key))? else {
            return Ok(None);
        };
        self.unframe(ns, key, &raw).map(Some)
    }

    /// Writes a record; with [`Durability::Durable`] returns only after an
    /// fsync that covers it (shared with concurrent writers).
    pub async fn put(
        &self,
        ns: Namespace,
        key: &[u8],
        payload: &[u8],
        durability: Durability,
    ) -> Result<(), StorageError> {
        self.put_buffered(ns, key, payload)?;
        match durability {
            Durability::Buffered => Ok(()),
            Durability::Durable => self.sync().await,
        }
    }

    /// Writes a record without waiting (the caller then awaits
    /// [`Store::sync`] outside any lock). Used by the replica, which writes
    /// under a per-key lock and waits for durability after releasing it.
    pub fn put_buffered(&self, ns: Namespace, key: &[u8], payload: &[u8]) -> Result<(), StorageError> {
        let framed = record::frame(payload);
        self.run_on_engine(|engine| engine.put(ns, key, &framed))?;
        self.note_write();
        Ok(())
    }

    fn note_write(&self) {
        if let Syncer::Group(group) = &self.inner.syncer {
            group.note_write();
        }
    }

    /// Removes a record (buffered).
    pub fn remove(&self, ns: Namespace, key: &[u8]) -> Result<(), StorageError> {
        self.run_on_engine(|engine| engine.remove(ns, key))?;
        self.note_write();
        Ok(())
    }

    /// Verified scan; see [`Engine::scan`]. A corrupt record is an error.
    pub fn scan(&self, ns: Namespace, prefix: &[u8], start: &[u8], limit: usize) -> Result<Records, StorageError> {
        let rows = self.run_on_engine(|engine| engine.scan(ns, prefix, start, limit))?;
        rows.into_iter()
            .map(|(key, raw)| {
                let payload = self.unframe(ns, &key, &raw)?;
                Ok((key, payload))
            })
            .collect()
    }

    /// Like [`Store::scan`], but a record that fails its check comes back
    /// as its own error (counted and logged) instead of failing the whole
    /// scan: for passes over a whole namespace (the anti-entropy index at
    /// start-up) that must not stop at one bad record. Only an engine
    /// failure fails the call.
    #[allow(clippy::type_complexity)]
    pub fn scan_records(
        &self,
        ns: Namespace,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Result<Vec<u8>, StorageError>)>, StorageError> {
        let rows = self.run_on_engine(|engine| engine.scan(ns, prefix, start, limit))?;
        Ok(rows
            .into_iter()
            .map(|(key, raw)| {
                let payload = self.unframe(ns, &key, &raw);
                (key, payload)
            })
            .collect())
    }

    /// Waits until every write made before this call is durable, joining the
    /// group commit in progress or the next one.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let result = match &self.inner.syncer {
            Syncer::Group(group) => group.sync().await,
            Syncer::Inline { syncs } => self.run_on_engine(|engine| {
                syncs.fetch_add(1, Ordering::Relaxed);
                engine.sync()
            }),
        };
        if result.is_ok() {
            self.inner.durable_writes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        let syncs = match &self.inner.syncer {
            Syncer::Group(group) => group.stats().syncs,
            Syncer::Inline { syncs } => syncs.load(Ordering::Relaxed),
        };
        StoreStats {
            syncs,
            durable_writes: self.inner.durable_writes.load(Ordering::Relaxed),
            corruptions: self.inner.corruptions.load(Ordering::Relaxed),
        }
    }

    /// Final fsync and stop of the group-commit worker, for shutdown.
    ///
    /// Waits for operations in progress, refuses new ones
    /// ([`StorageError::Closed`]), syncs once more (answering every queued
    /// durability request), joins the worker thread and releases the engine.
    /// Returns the final sync's result; calling it again returns `Ok(())`.
    /// Blocks the calling thread for the duration of one fsync.
    pub fn close(&self) -> Result<(), StorageError> {
        let taken = self.inner.engine.write().unwrap_or_else(PoisonError::into_inner).take();
        let Some(engine) = taken else {
            return Ok(());
        };
        let result = match &self.inner.syncer {
            Syncer::Group(group) => group.close(),
            Syncer::Inline { syncs } => {
                syncs.fetch_add(1, Ordering::Relaxed);
                engine.sync()
            }
        };
        if let Err(e) = &result {
            tracing::error!(engine = self.inner.engine_name, error = %e, "final sync on close failed");
        }
        // The last handle (unless a caller kept one from `Store::engine`):
        // for fjall this closes the database and unlocks the directory.
        drop(engine);
        result
    }

    /// Runs `op` on the engine, or fails with [`StorageError::Closed`].
    fn run_on_engine<T>(
        &self,
        op: impl FnOnce(&Arc<dyn Engine>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let guard = self.inner.engine.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(engine) => op(engine),
            None => Err(StorageError::Closed),
        }
    }

    /// Checks a raw record, counting and logging corruption.
    fn unframe(&self, ns: Namespace, key: &[u8], raw: &[u8]) -> Result<Vec<u8>, StorageError> {
        record::unframe(ns, key, raw).inspect_err(|e| {
            self.inner.corruptions.fetch_add(1, Ordering::Relaxed);
            tracing::error!(engine = self.inner.engine_name, error = %e, "corrupt record");
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::record::HEADER_LEN;

    const NS: Namespace = Namespace::Objects;

    fn value(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
        store.get(NS, key).expect("get")
    }

    // ---- memory engine -------------------------------------------------

    #[tokio::test]
    async fn buffered_puts_are_lost_on_crash_and_durable_puts_survive() {
        let engine = MemoryEngine::new();
        let store = Store::memory(engine.clone());
        store.put(NS, b"durable", b"1", Durability::Durable).await.expect("put");
        store.put(NS, b"buffered", b"2", Durability::Buffered).await.expect("put");
        assert_eq!(value(&store, b"buffered").as_deref(), Some(&b"2"[..]));

        engine.crash();

        assert_eq!(value(&store, b"durable").as_deref(), Some(&b"1"[..]));
        assert_eq!(value(&store, b"buffered"), None);
        assert_eq!(store.stats(), StoreStats { syncs: 1, durable_writes: 1, corruptions: 0 });
    }

    #[tokio::test]
    async fn buffered_writes_become_durable_with_sync() {
        let engine = MemoryEngine::new();
        let store = Store::memory(engine.clone());
        store.put_buffered(NS, b"a", b"1").expect("put");
        store.put_buffered(NS, b"b", b"2").expect("put");
        store.sync().await.expect("sync");
        store.remove(NS, b"a").expect("remove");
        engine.crash();
        assert_eq!(value(&store, b"a").as_deref(), Some(&b"1"[..]), "unsynced remove undone");
        assert_eq!(value(&store, b"b").as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test]
    async fn scan_returns_unframed_payloads_in_key_order() {
        let store = Store::memory(MemoryEngine::new());
        for key in [&b"b/2"[..], b"a/1", b"b/1", b"b/3"] {
            store.put(NS, key, &[key, b"!"].concat(), Durability::Buffered).await.expect("put");
        }
        let rows = store.scan(NS, b"b/", b"b/2", 10).expect("scan");
        assert_eq!(rows, vec![(b"b/2".to_vec(), b"b/2!".to_vec()), (b"b/3".to_vec(), b"b/3!".to_vec())]);
        assert_eq!(store.scan(NS, b"", b"", 1).expect("scan").len(), 1);
    }

    #[tokio::test]
    async fn scan_records_reports_a_corrupt_record_in_place_and_goes_on() {
        let engine = MemoryEngine::new();
        let store = Store::memory(engine.clone());
        for key in [&b"a"[..], b"b", b"c"] {
            store.put(NS, key, key, Durability::Buffered).await.expect("put");
        }
        let mut raw = engine.get(NS, b"b").expect("get").expect("present");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        engine.put(NS, b"b", &raw).expect("corrupt it");
        assert!(store.scan(NS, b"", b"", 10).is_err(), "a plain scan fails on it");
        let rows = store.scan_records(NS, b"", b"", 10).expect("scan");
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].0.as_slice(), rows[0].1.as_deref().ok()), (&b"a"[..], Some(&b"a"[..])));
        assert!(matches!(rows[1].1, Err(StorageError::Corruption { .. })));
        assert_eq!(rows[2].1.as_deref().ok(), Some(&b"c"[..]));
        assert_eq!(store.stats().corruptions, 2, "both scans counted it");
    }

    #[tokio::test]
    async fn operations_after_close_fail_with_closed() {
        let engine = MemoryEngine::new();
        let store = Store::memory(engine.clone());
        store.put(NS, b"k", b"v", Durability::Buffered).await.expect("put");
        let other_handle = store.clone();
        store.close().expect("close");
        // The final sync made the buffered write durable.
        engine.crash();
        assert_eq!(engine.get(NS, b"k").expect("get").map(|raw| raw.len()), Some(HEADER_LEN + 1));

        assert!(matches!(other_handle.get(NS, b"k"), Err(StorageError::Closed)));
        assert!(matches!(other_handle.put(NS, b"k", b"v", Durability::Buffered).await, Err(StorageError::Closed)));
        assert!(matches!(other_handle.put_buffered(NS, b"k", b"v"), Err(StorageError::Closed)));
        assert!(matches!(other_handle.remove(NS, b"k"), Err(StorageError::Closed)));
        assert!(matches!(other_handle.scan(NS, b"", b"", 10), Err(StorageError::Closed)));
        assert!(matches!(other_handle.sync().await, Err(StorageError::Closed)));
        assert!(matches!(other_handle.engine(), Err(StorageError::Closed)));
        other_handle.close().expect("second close is a no-op");
        assert_eq!(other_handle.engine_name(), "memory");
    }

    #[tokio::test]
    async fn group_commit_store_refuses_operations_after_close() {
        let engine = MemoryEngine::new();
        let store = Store::with_engine(Arc::new(engine.clone()), SyncMode::GroupCommit).expect("store");
        store.put(NS, b"k", b"v", Durability::Durable).await.expect("put");
        store.close().expect("close");
        assert!(matches!(store.sync().await, Err(StorageError::Closed)));
        assert!(matches!(store.put(NS, b"k", b"v", Durability::Durable).await, Err(StorageError::Closed)));
        assert_eq!(engine.sync_count(), 2, "one for the put, one final");
    }

    // ---- group commit --------------------------------------------------

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_durable_puts_share_fsyncs_and_all_survive_a_crash() {
        let engine = MemoryEngine::new();
        engine.set_sync_delay(Duration::from_millis(50));
        let store = Store::with_engine(Arc::new(engine.clone()), SyncMode::GroupCommit).expect("store");
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("key-{i:02}");
                store.put(NS, key.as_bytes(), &i.to_be_bytes(), Durability::Durable).await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("durable put");
        }
        let syncs = engine.sync_count();
        assert!(syncs < 16, "64 durable puts took {syncs} syncs");
        assert_eq!(store.stats().syncs, syncs);
        assert_eq!(store.stats().durable_writes, 64);

        engine.crash();

        for i in 0..64u32 {
            let key = format!("key-{i:02}");
            assert_eq!(value(&store, key.as_bytes()), Some(i.to_be_bytes().to_vec()), "{key} lost");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_put_issued_during_an_fsync_waits_for_the_next_one() {
        let sync_delay = Duration::from_millis(300);
        let engine = MemoryEngine::new();
        engine.set_sync_delay(sync_delay);
        let store = Store::with_engine(Arc::new(engine.clone()), SyncMode::GroupCommit).expect("store");

        let first = {
            let store = store.clone();
            tokio::spawn(async move { store.put(NS, b"first", b"1", Durability::Durable).await })
        };
        // Write exactly while the first fsync is in flight.
        while engine.syncs_in_flight() == 0 {
            assert!(!first.is_finished(), "missed the first fsync");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let issued = Instant::now();
        store.put(NS, b"second", b"2", Durability::Durable).await.expect("second put");
        let waited = issued.elapsed();
        first.await.expect("task").expect("first put");

        // Served by a second, complete fsync, not by the one in flight.
        assert!(waited >= sync_delay, "acknowledged after {waited:?}");
        assert_eq!(engine.sync_count(), 2);
        engine.crash();
        assert_eq!(value(&store, b"first").as_deref(), Some(&b"1"[..]));
        assert_eq!(value(&store, b"second").as_deref(), Some(&b"2"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_fsync_fails_the_durable_put() {
        let engine = MemoryEngine::new();
        let store = Store::with_engine(Arc::new(engine.clone()), SyncMode::GroupCommit).expect("store");
        engine.set_fail_syncs(true);
        let result = store.put(NS, b"k", b"v", Durability::Durable).await;
        assert!(matches!(result, Err(StorageError::Engine { operation: "sync", .. })), "{result:?}");
        assert_eq!(store.stats().durable_writes, 0);
    }

    // ---- corruption ----------------------------------------------------

    /// One way a stored record can go bad: what, how (applied to the raw
    /// framed bytes), and what the error's detail must say.
    type Damage = (&'static str, fn(&mut Vec<u8>), &'static str);

    fn corruptions() -> Vec<Damage> {
        vec![
            ("flipped payload byte", |raw| raw[HEADER_LEN + 2] ^= 0x10, "checksum mismatch"),
            ("truncated record", |raw| raw.truncate(raw.len() - 3), "checksum mismatch"),
            ("truncated header", |raw| raw.truncate(3), "shorter than the 5-byte header"),
            ("wrong format byte", |raw| raw[0] = 7, "unknown record format 7"),
        ]
    }

    async fn assert_corruption_detected(store: &Store) {
        let engine = store.engine().expect("engine");
        for (i, (what, damage, expected)) in corruptions().into_iter().enumerate() {
            let key = format!("bucket/key-{i}");
            store.put(NS, key.as_bytes(), b"a healthy payload", Durability::Durable).await.expect("put");
            let mut raw = engine.get(NS, key.as_bytes()).expect("raw get").expect("raw record");
            damage(&mut raw);
            engine.put(NS, key.as_bytes(), &raw).expect("raw put");

            match store.get(NS, key.as_bytes()) {
                Err(StorageError::Corruption { namespace, key: reported, detail }) => {
                    assert_eq!(namespace, "objects", "{what}");
                    assert_eq!(reported, key, "{what}");
                    assert!(detail.contains(expected), "{what}: {detail}");
                }
                other => panic!("{what}: expected corruption, got {other:?}"),
            }
        }
        assert_eq!(store.stats().corruptions, 4);
        let scanned = store.scan(NS, b"bucket/", b"", 10);
        assert!(matches!(scanned, Err(StorageError::Corruption { .. })), "{scanned:?}");
        assert_eq!(store.stats().corruptions, 5);
    }

    #[tokio::test]
    async fn corrupt_records_are_reported_not_served_with_the_memory_engine() {
        let store = Store::memory(MemoryEngine::new());
        assert_corruption_detected(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_records_are_reported_not_served_with_fjall() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_fjall(dir.path()).expect("open");
        assert_eq!(store.engine_name(), "fjall");
        assert_corruption_detected(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_corrupted_in_a_stopped_nodes_directory_is_detected_after_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = &[0u8, 3, b'b', b'k', b'1'][..];
        {
            let store = Store::open_fjall(dir.path()).expect("open");
            store.put(NS, key, b"precious", Durability::Durable).await.expect("put");
            store.close().expect("close");
        }
        {
            // What an external test does while the node is stopped.
            let engine = FjallEngine::open(dir.path()).expect("open raw");
            crate::record::damage(&engine, NS, key).expect("damage the record");
        }
        let store = Store::open_fjall(dir.path()).expect("reopen");
        match store.get(NS, key) {
            Err(StorageError::Corruption { key: reported, .. }) => {
                assert_eq!(reported, "0x0003626b31")
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    // ---- fjall ---------------------------------------------------------

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_fjall_writes_survive_a_drop_without_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open_fjall(dir.path()).expect("open");
            store.put(NS, b"k", b"durable", Durability::Durable).await.expect("put");
            store.put(Namespace::Hints, b"h", b"hint", Durability::Durable).await.expect("put");
            assert!(store.stats().syncs >= 1);
            // No close: the handle is simply dropped.
        }
        let store = Store::open_fjall(dir.path()).expect("reopen");
        assert_eq!(value(&store, b"k").as_deref(), Some(&b"durable"[..]));
        assert_eq!(store.get(Namespace::Hints, b"h").expect("get").as_deref(), Some(&b"hint"[..]));
        assert_eq!(store.get(Namespace::Objects, b"h").expect("get"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fjall_values_survive_close_and_reopen_in_the_same_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_fjall(dir.path()).expect("open");
        for i in 0..100u32 {
            let key = format!("obj/{i:03}");
            store.put(NS, key.as_bytes(), &i.to_be_bytes(), Durability::Buffered).await.expect("put");
        }
        store.remove(NS, b"obj/050").expect("remove");
        store.close().expect("close");
        // The directory is unlocked even though `store` (a handle) is alive.
        let reopened = Store::open_fjall(dir.path()).expect("reopen");
        assert!(matches!(store.get(NS, b"obj/001"), Err(StorageError::Closed)));
        let rows = reopened.scan(NS, b"obj/", b"obj/048", 4).expect("scan");
        let keys: Vec<_> = rows.iter().map(|(key, _)| String::from_utf8_lossy(key).into_owned()).collect();
        assert_eq!(keys, ["obj/048", "obj/049", "obj/051", "obj/052"]);
        assert_eq!(rows[0].1, 48u32.to_be_bytes());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_durable_fjall_puts_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_fjall(dir.path()).expect("open");
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { store.put(NS, &i.to_be_bytes(), b"v", Durability::Durable).await }));
        }
        for task in tasks {
            task.await.expect("task").expect("durable put");
        }
        let stats = store.stats();
        assert_eq!(stats.durable_writes, 64);
        assert!(stats.syncs <= 64, "{stats:?}");
        store.close().expect("close");
    }
}
