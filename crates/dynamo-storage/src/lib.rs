//! Storage for a dynamo node: where a replica's versioned objects (and its
//! metadata) live on disk, and how writes become durable.
//!
//! Map of the modules:
//! - [`engine`]: the [`Engine`] trait every backend implements, its
//!   namespaces and errors.
//! - [`fjall_engine`]: the durable default, on the fjall LSM-tree.
//! - [`memory`]: an in-memory engine for tests and the simulation, which can
//!   drop every write not yet synced, to model a crash.
//! - [`record`]: the framing of each stored record (format version and
//!   CRC-32), so that corruption is detected on read, never served.
//! - [`group_commit`]: batches concurrent durability requests into one fsync.
//! - [`store`]: [`Store`], the handle the node uses: an engine plus framing
//!   plus group commit.
//!
//! What "durable" means: a [`Durability::Buffered`] write has reached the
//! engine (for fjall, the OS page cache: it survives a process kill, not a
//! power loss); a [`Durability::Durable`] write has been covered by an fsync
//! that started after the write returned. See [`fjall_engine`] for the
//! details of fjall's journal.

#![warn(missing_docs)]

pub mod engine;
pub mod fjall_engine;
pub mod group_commit;
mod journal_sync;
pub mod memory;
pub mod record;
pub mod store;

pub use engine::{Engine, Namespace, Records, StorageError};
pub use fjall_engine::FjallEngine;
pub use group_commit::{GroupCommit, GroupCommitStats};
pub use memory::MemoryEngine;
pub use store::{Durability, Store, StoreStats, SyncMode};
