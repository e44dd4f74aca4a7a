//! The contract between a node and a storage backend.

use thiserror::Error;

/// Separate key spaces of one node's storage. Each maps to its own fjall
/// keyspace, so scans of one never touch the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The node's own replicas of objects, keyed by `ObjectKey::storage_key`.
    Objects,
    /// Node metadata: bucket props, node identity, incarnation.
    Meta,
    /// Hinted-handoff records held for other nodes (paper section 4.6).
    Hints,
}

impl Namespace {
    /// Every namespace, for engines that create them up front.
    pub const ALL: [Namespace; 3] = [Namespace::Objects, Namespace::Meta, Namespace::Hints];

    /// Stable name, used as the fjall keyspace name and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Namespace::Objects => "objects",
            Namespace::Meta => "meta",
            Namespace::Hints => "hints",
        }
    }
}

/// What went wrong in storage. Messages say what failed and where.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A stored record failed its checksum or framing check. The data is not
    /// returned; on a cluster the replica is treated as missing the key.
    #[error("corruption detected in {namespace} record {key}: {detail}")]
    Corruption {
        /// Namespace name.
        namespace: &'static str,
        /// The key, printable (lossy UTF-8 or hex).
        key: String,
        /// What check failed.
        detail: String,
    },
    /// The backend reported an error.
    #[error("storage engine {engine} failed during {operation}: {detail}")]
    Engine {
        /// Engine name.
        engine: &'static str,
        /// What was being done (`get`, `put`, `sync`...).
        operation: &'static str,
        /// The backend's message.
        detail: String,
    },
    /// The store was shut down.
    #[error("storage is closed (node shutting down)")]
    Closed,
}

/// Key-value records as a scan returns them: `(key, value)` in key order.
pub type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// A storage backend. Operations are synchronous and expected to be fast
/// (memtable writes, cached reads); durability is requested separately with
/// [`Engine::sync`], which [`crate::group_commit`] batches.
///
/// Laws: a `get` after a `put` on the same key returns that put's value; a
/// successful `sync` makes every `put`/`remove` that returned before `sync`
/// was called survive a crash.
pub trait Engine: Send + Sync + 'static {
    /// Engine name for messages and metrics (`fjall`, `memory`).
    fn name(&self) -> &'static str;
    /// Reads a raw record.
    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Writes a raw record (buffered until the next sync).
    fn put(&self, ns: Namespace, key: &[u8], value: &[u8]) -> Result<(), StorageError>;
    /// Removes a record (buffered until the next sync).
    fn remove(&self, ns: Namespace, key: &[u8]) -> Result<(), StorageError>;
    /// Up to `limit` records with keys `>= start` and starting with `prefix`,
    /// in key order. Callers page with the last key returned.
    fn scan(&self, ns: Namespace, prefix: &[u8], start: &[u8], limit: usize) -> Result<Records, StorageError>;
    /// Makes every write that returned before this call durable (fsync).
    fn sync(&self) -> Result<(), StorageError>;
}
