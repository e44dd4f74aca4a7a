//! The durable engine: one [fjall](https://docs.rs/fjall) database per node
//! data directory, one fjall keyspace per [`Namespace`] (named by
//! [`Namespace::name`]), so a scan of one namespace never reads another's
//! data.
//!
//! # What fjall does with a write (read from the fjall 3.1 source)
//!
//! Every keyspace of a database shares one journal (write-ahead log), a
//! `BufWriter` (8 KiB) over a pre-allocated 64 MiB file, behind a mutex.
//!
//! - **When bytes reach the OS.** `Keyspace::insert` / `remove` append the
//!   entry to the journal's `BufWriter` and then, because we leave the
//!   keyspace option `manual_journal_persist` at its default (`false`), call
//!   `persist(PersistMode::Buffer)`, which flushes the `BufWriter` with a
//!   `write(2)` syscall — all before the memtable is updated and before the
//!   call returns. So a write that returned is in the kernel's page cache: it
//!   survives a process crash (`kill -9`, panic, abort) but **not** a power
//!   loss or kernel crash. That is what [`crate::Durability::Buffered`] means
//!   with this engine.
//! - **When fsync happens.** Only when asked, never on a timer: fjall 3 has
//!   no background fsync thread (fjall 2's `fsync_ms` is gone). The journal
//!   is fsynced (`sync_all`) by `Database::persist(SyncAll)` (our
//!   [`Engine::sync`], batched by [`crate::group_commit`]); incidentally by
//!   the flush worker each time a full memtable (64 MiB by default) is
//!   flushed, rotating the journal once it passes ~64 MB; on recovery at
//!   open; and when the journal is dropped (database closed, which
//!   [`FjallEngine`]'s `Drop` also does explicitly). The incidental fsyncs
//!   are not something to rely on: a write is durable against power loss
//!   only once a `sync` that started after it returned has succeeded.
//! - **fjall's fsync blocks writers, ours does not.** fjall's `persist`
//!   holds the journal mutex for the whole `fsync`, and every
//!   `insert`/`remove` takes that mutex first, so writers would wait (on
//!   their own thread — a tokio worker, if called from async code) for
//!   every fsync. [`Engine::sync`] therefore flushes the buffer under the
//!   mutex and fsyncs the active journal file on a descriptor of its own
//!   ([`crate::journal_sync`]). fjall still fsyncs under the mutex when it
//!   rotates the journal after a memtable flush.
//! - **Write stalls.** When flushing falls behind (4+ sealed memtables of a
//!   keyspace queued) `insert` sleeps in 100 ms steps on the calling thread
//!   until it catches up; at 20+ level-0 runs it also spins briefly.
//! - **A new table version is persisted under a lock.** After each flush
//!   and compaction, lsm-tree writes the keyspace's new version (a file,
//!   its fsync, the directory's fsync, an atomic rewrite of `current`)
//!   while holding the tree's version lock for writing, and every `get` and
//!   `insert` takes that lock for reading. Measured under load: 2–5 ms.
//!   That is also why fjall's threads keep the normal CPU priority: at
//!   nice 10 the lock holder was preempted mid-persist and the node's tokio
//!   workers, queued behind it, waited 14–16 ms (ninth pass in
//!   `docs/benchmarks.md`).
//! - **Torn tails.** A crash mid-append leaves a partial batch at the end of
//!   the journal; recovery checks each batch's checksum and drops the torn
//!   tail, so a write that had not returned may be lost, never half-applied.
//! - **Errors are sticky.** A failed journal write or fsync *poisons* the
//!   database: every later write and persist fails with `Poisoned` (fsync
//!   errors cannot be retried safely: the kernel may have dropped the dirty
//!   pages, and a later fsync would succeed without them). A failure of our
//!   own fsync poisons [`FjallEngine`] the same way. The node should then
//!   stop and recover from disk.
//!
//! # Corrupting a record on purpose (tests)
//!
//! External tests that check corruption detection can, while the node is
//! stopped, open its data directory with [`FjallEngine::open`], flip a bit
//! of a stored record with [`crate::record::damage`] and drop the engine
//! (which fsyncs). The node then reports [`StorageError::Corruption`] for
//! that key on its next read.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::engine::{Engine, Namespace, Records, StorageError};
use crate::journal_sync;

/// Memtable size of [`FjallEngine::open`]: fjall's default.
pub const DEFAULT_MEMTABLE_BYTES: u64 = 64 << 20;

/// Engine name used in errors and metrics.
const ENGINE_NAME: &str = "fjall";

/// A fjall database in one directory. Dropping it fsyncs the journal and
/// closes the database (releasing its lock file, so the directory can be
/// opened again).
pub struct FjallEngine {
    /// One keyspace per namespace, indexed by [`keyspace_index`]. Each handle
    /// holds the database open, so they are dropped with the database.
    keyspaces: [Keyspace; Namespace::ALL.len()],
    /// The database: owns the journal and the background flush/compaction
    /// workers.
    db: Database,
    /// Where the database lives (and its journal files).
    dir: PathBuf,
    /// Set by a failed fsync of ours: every later write and sync fails.
    poisoned: AtomicBool,
}

impl FjallEngine {
    /// Opens (creating if needed) the database in `dir`, with a keyspace per
    /// namespace. Fails if another process (or another `FjallEngine` in this
    /// process) has the directory open.
    ///
    /// Also the way for a test to reach the raw records of a stopped node's
    /// data directory; see the module documentation.
    pub fn open(dir: &Path) -> Result<FjallEngine, StorageError> {
        Self::open_with(dir, DEFAULT_MEMTABLE_BYTES)
    }

    /// Like [`FjallEngine::open`], with memtables of `memtable_bytes`: a
    /// full memtable is sealed and flushed to a table file, and the stall
    /// that flush causes (see the module documentation) comes once per
    /// memtable. Nodes that take the same writes (replicas) and use the
    /// same size flush at the same moment; different sizes spread the
    /// stalls so that a quorum rarely waits on more than one.
    pub fn open_with(dir: &Path, memtable_bytes: u64) -> Result<FjallEngine, StorageError> {
        let db = Database::builder(dir)
            .open()
            .map_err(|e| engine_error("open", format!("database in {}: {e}", dir.display())))?;
        let open_keyspace = |ns: Namespace| {
            db.keyspace(ns.name(), || KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes))
                .map_err(|e| engine_error("open", format!("keyspace {} in {}: {e}", ns.name(), dir.display())))
        };
        // In `keyspace_index` order (checked below).
        let keyspaces =
            [open_keyspace(Namespace::Objects)?, open_keyspace(Namespace::Meta)?, open_keyspace(Namespace::Hints)?];
        debug_assert!(Namespace::ALL.iter().all(|ns| &**keyspaces[keyspace_index(*ns)].name() == ns.name()));
        tracing::debug!(dir = %dir.display(), "opened fjall storage");
        Ok(FjallEngine { keyspaces, db, dir: dir.to_path_buf(), poisoned: AtomicBool::new(false) })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keyspace(&self, ns: Namespace) -> &Keyspace {
        &self.keyspaces[keyspace_index(ns)]
    }

    /// Fails once an fsync of ours has failed (see the module docs).
    fn check_not_poisoned(&self, operation: &'static str) -> Result<(), StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(engine_error(
                operation,
                format!(
                    "an earlier fsync of the journal in {} failed, so writes since may not be on disk; \
                     restart the node to recover from what is",
                    self.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// fjall's own fsync, under its journal mutex: for closing, and when no
    /// journal file is found where fjall 3 keeps it.
    fn sync_under_journal_lock(&self) -> Result<(), StorageError> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| engine_error("sync", format!("persist of {}: {e}", self.dir.display())))
    }
}

/// Position of a namespace's keyspace; matches the order of
/// [`Namespace::ALL`].
fn keyspace_index(ns: Namespace) -> usize {
    match ns {
        Namespace::Objects => 0,
        Namespace::Meta => 1,
        Namespace::Hints => 2,
    }
}

fn engine_error(operation: &'static str, detail: String) -> StorageError {
    StorageError::Engine { engine: ENGINE_NAME, operation, detail }
}

fn ns_error(operation: &'static str, ns: Namespace, e: fjall::Error) -> StorageError {
    engine_error(operation, format!("namespace {}: {e}", ns.name()))
}

impl Engine for FjallEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let value = self.keyspace(ns).get(key).map_err(|e| ns_error("get", ns, e))?;
        Ok(value.map(|value| value.to_vec()))
    }

    fn put(&self, ns: Namespace, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.check_not_poisoned("put")?;
        self.keyspace(ns).insert(key, value).map_err(|e| ns_error("put", ns, e))
    }

    fn remove(&self, ns: Namespace, key: &[u8]) -> Result<(), StorageError> {
        self.check_not_poisoned("remove")?;
        self.keyspace(ns).remove(key).map_err(|e| ns_error("remove", ns, e))
    }

    fn scan(&self, ns: Namespace, prefix: &[u8], start: &[u8], limit: usize) -> Result<Records, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Every key with `prefix` is >= `prefix`, so the range from the larger
        // of the two bounds, cut at the first key without the prefix, is
        // exactly the wanted set.
        let lower = prefix.max(start);
        for guard in self.keyspace(ns).range(lower..) {
            let (key, value) = guard.into_inner().map_err(|e| ns_error("scan", ns, e))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.check_not_poisoned("sync")?;
        self.db
            .persist(PersistMode::Buffer)
            .map_err(|e| engine_error("sync", format!("journal buffer flush of {}: {e}", self.dir.display())))?;
        match journal_sync::sync_active_journal(&self.dir) {
            Ok(true) => Ok(()),
            Ok(false) => self.sync_under_journal_lock(),
            Err(error) => {
                self.poisoned.store(true, Ordering::Release);
                tracing::error!(dir = %self.dir.display(), %error, "journal fsync failed; no write is accepted any more");
                Err(engine_error("sync", format!("fsync of the journal in {}: {error}", self.dir.display())))
            }
        }
    }
}

impl Drop for FjallEngine {
    fn drop(&mut self) {
        // fjall also fsyncs its journal when the last handle goes, but say so
        // here, where it can be logged with the directory.
        if let Err(e) = self.sync_under_journal_lock() {
            tracing::error!(dir = %self.dir.display(), error = %e, "final fsync on close failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        rows.iter().map(|(key, _)| key.as_slice()).collect()
    }

    #[test]
    fn values_survive_reopening_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let engine = FjallEngine::open(dir.path()).expect("open");
            engine.put(Namespace::Objects, b"k1", b"v1").expect("put");
            engine.put(Namespace::Objects, b"k2", b"v2").expect("put");
            engine.remove(Namespace::Objects, b"k2").expect("remove");
            engine.put(Namespace::Meta, b"node", b"n1").expect("put");
        }
        let engine = FjallEngine::open(dir.path()).expect("reopen");
        assert_eq!(engine.get(Namespace::Objects, b"k1").expect("get").as_deref(), Some(&b"v1"[..]));
        assert_eq!(engine.get(Namespace::Objects, b"k2").expect("get"), None);
        assert_eq!(engine.get(Namespace::Meta, b"node").expect("get").as_deref(), Some(&b"n1"[..]));
    }

    #[test]
    fn a_directory_cannot_be_opened_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _engine = FjallEngine::open(dir.path()).expect("open");
        let second = FjallEngine::open(dir.path());
        assert!(matches!(second, Err(StorageError::Engine { engine: "fjall", operation: "open", .. })));
    }

    #[test]
    fn namespaces_are_separate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FjallEngine::open(dir.path()).expect("open");
        engine.put(Namespace::Hints, b"k", b"hint").expect("put");
        engine.put(Namespace::Objects, b"k", b"object").expect("put");
        assert_eq!(engine.get(Namespace::Meta, b"k").expect("get"), None);
        assert_eq!(engine.get(Namespace::Hints, b"k").expect("get").as_deref(), Some(&b"hint"[..]));
        assert_eq!(engine.get(Namespace::Objects, b"k").expect("get").as_deref(), Some(&b"object"[..]));
        let hints = engine.scan(Namespace::Hints, b"", b"", 10).expect("scan");
        assert_eq!(hints, vec![(b"k".to_vec(), b"hint".to_vec())]);
    }

    #[test]
    fn scan_honours_prefix_start_and_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FjallEngine::open(dir.path()).expect("open");
        for key in [&b"a/1"[..], b"b/3", b"b/1", b"b/2", b"b/4", b"c/1", b"b"] {
            engine.put(Namespace::Objects, key, key).expect("put");
        }
        let rows = engine.scan(Namespace::Objects, b"b/", b"", 100).expect("scan");
        assert_eq!(keys(&rows), vec![&b"b/1"[..], b"b/2", b"b/3", b"b/4"]);
        assert_eq!(rows[0].1, b"b/1");
        let rows = engine.scan(Namespace::Objects, b"b/", b"b/2", 2).expect("scan");
        assert_eq!(keys(&rows), vec![&b"b/2"[..], b"b/3"]);
        let rows = engine.scan(Namespace::Objects, b"b/", b"a", 1).expect("scan");
        assert_eq!(keys(&rows), vec![&b"b/1"[..]]);
        assert!(engine.scan(Namespace::Objects, b"b/", b"b/5", 10).expect("scan").is_empty());
        assert!(engine.scan(Namespace::Objects, b"", b"", 0).expect("scan").is_empty());
        let all = engine.scan(Namespace::Objects, b"", b"", 100).expect("scan");
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn sync_succeeds_and_synced_values_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let engine = FjallEngine::open(dir.path()).expect("open");
            engine.put(Namespace::Objects, b"k", b"v").expect("put");
            engine.sync().expect("sync");
        }
        let engine = FjallEngine::open(dir.path()).expect("reopen");
        assert_eq!(engine.get(Namespace::Objects, b"k").expect("get").as_deref(), Some(&b"v"[..]));
        assert_eq!(engine.dir(), dir.path());
    }

    /// Whether the journal file at `path` holds `needle`.
    fn journal_holds(path: &Path, needle: &[u8]) -> bool {
        let bytes = std::fs::read(path).expect("read the journal");
        bytes.windows(needle.len()).any(|window| window == needle)
    }

    /// What [`crate::journal_sync`] relies on, pinned against the fjall in
    /// use: a write that returned is in the highest-numbered `.jnl` file of
    /// the database directory, and after a rotation new writes go to a
    /// higher-numbered one.
    #[test]
    fn writes_land_in_the_journal_file_that_sync_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FjallEngine::open(dir.path()).expect("open");
        engine.put(Namespace::Objects, b"first", b"first-value-7d1c").expect("put");
        let before = journal_sync::active_journal(dir.path()).expect("list").expect("a journal file");
        assert!(journal_holds(&before, b"first-value-7d1c"), "{} holds the write", before.display());

        // fjall starts a new journal file at a memtable flush once the
        // active one passed 64 MB.
        // Incompressible (the journal may compress values).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let filler: Vec<u8> = (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for index in 0..64u32 {
            engine.put(Namespace::Objects, &index.to_be_bytes(), &filler).expect("fill");
        }
        engine.keyspace(Namespace::Objects).rotate_memtable_and_wait().expect("flush");
        // The flush worker rotates the journal right after taking the flush
        // off its queue, which is when the wait above returns.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while journal_sync::active_journal(dir.path()).expect("list").as_ref() == Some(&before) {
            assert!(std::time::Instant::now() < deadline, "no new journal file after 64 MB and a flush");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        engine.put(Namespace::Objects, b"second", b"second-value-93ab").expect("put");
        let after = journal_sync::active_journal(dir.path()).expect("list").expect("a journal file");
        assert!(journal_holds(&after, b"second-value-93ab"), "{} holds the write after rotation", after.display());
        engine.sync().expect("sync");
    }

    #[test]
    fn a_failed_fsync_refuses_every_later_write_and_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = FjallEngine::open(dir.path()).expect("open");
        engine.put(Namespace::Objects, b"k", b"v").expect("put");
        // What a failed fsync leaves behind (the failure itself cannot be
        // provoked on a healthy disk).
        engine.poisoned.store(true, Ordering::Release);
        for result in
            [engine.put(Namespace::Objects, b"k2", b"v"), engine.remove(Namespace::Objects, b"k"), engine.sync()]
        {
            let error = result.expect_err("refused after a failed fsync").to_string();
            assert!(error.contains("earlier fsync") && error.contains("restart the node"), "{error}");
        }
        assert_eq!(engine.get(Namespace::Objects, b"k").expect("reads still work").as_deref(), Some(&b"v"[..]));
    }
}
