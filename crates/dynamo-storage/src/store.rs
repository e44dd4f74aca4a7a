//! [`Store`]: what a node holds to reach its storage. Cheap to clone.

use std::path::Path;
use std::sync::Arc;

use crate::engine::{Engine, Namespace, StorageError};
use crate::memory::MemoryEngine;

/// Whether a write must be on disk before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In the engine's buffer (survives a process crash with fjall, not a
    /// power loss). The paper's section 6.1 write buffer.
    Buffered,
    /// Fsynced, via group commit.
    Durable,
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
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    engine: Arc<dyn Engine>,
    // group commit handle, stats...
}

impl Store {
    /// Opens (creating if needed) a fjall store in `dir`.
    pub fn open_fjall(dir: &Path) -> Result<Store, StorageError> {
        todo!()
    }

    /// A store over an in-memory engine (shared: the caller keeps a clone to
    /// crash it or to reopen it after a simulated restart).
    pub fn memory(engine: MemoryEngine) -> Store {
        todo!()
    }

    /// Engine name.
    pub fn engine_name(&self) -> &'static str {
        todo!()
    }

    /// Reads and verifies a record; `Ok(None)` when absent.
    pub fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        todo!()
    }

    /// Writes a record; with [`Durability::Durable`] returns only after an
    /// fsync that covers it (shared with concurrent writers).
    pub async fn put(&self, ns: Namespace, key: &[u8], payload: &[u8], durability: Durability) -> Result<(), StorageError> {
        todo!()
    }

    /// Writes a record without waiting (the caller then awaits
    /// [`Store::sync`] outside any lock). Used by the replica, which writes
    /// under a per-key lock and waits for durability after releasing it.
    pub fn put_buffered(&self, ns: Namespace, key: &[u8], payload: &[u8]) -> Result<(), StorageError> {
        todo!()
    }

    /// Removes a record (buffered).
    pub fn remove(&self, ns: Namespace, key: &[u8]) -> Result<(), StorageError> {
        todo!()
    }

    /// Verified scan; see [`Engine::scan`]. A corrupt record is an error.
    pub fn scan(&self, ns: Namespace, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        todo!()
    }

    /// Waits until every write made before this call is durable, joining the
    /// group commit in progress or the next one.
    pub async fn sync(&self) -> Result<(), StorageError> {
        todo!()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> StoreStats {
        todo!()
    }

    /// Final fsync and stop of the group-commit worker, for shutdown.
    pub fn close(&self) -> Result<(), StorageError> {
        todo!()
    }
}
