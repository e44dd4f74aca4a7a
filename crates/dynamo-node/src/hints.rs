//! Hinted handoff (paper section 4.6): writes this node holds on behalf of a
//! replica that could not take them, until that replica is back.
//!
//! A hint is the version set of one key for one intended owner. It lives in
//! its own storage namespace ([`Namespace::Hints`]), never in the node's own
//! objects: a hinted copy is not served as this node's data, does not enter
//! its Merkle trees, and leaves as soon as the owner has it.
//!
//! Record layout: key `owner length u8 | owner id | storage key`, value
//! `format u8 (1) | conflict mode u8 | created ms u64 | object`. Two hints
//! for the same owner and key merge (DVV merge) into one record, so a
//! flapping replica does not make hints pile up per write; the record keeps
//! the creation time of its oldest part.
//!
//! Hints expire: one older than the tombstone grace period is dropped, not
//! delivered (see [`crate::tombstone_collector`]: a pre-delete value arriving after
//! the tombstone was collected would come back to life). Dropping is safe
//! for acknowledged writes: the coordinator of every write is a replica
//! and keeps its own copy, which anti-entropy spreads.
//!
//! The store is bounded ([`HintStore::open`]'s `max_bytes`): a hint that would
//! go over the bound is refused (the write then does not count that fallback
//! toward W), logged, and counted in metrics. A hint is removed only after
//! the owner acknowledged it, and only if it did not change meanwhile (a
//! newer merge is delivered on the next round).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use dynamo_core::codec::{check_encodable, decode_object, encode_object};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::VersionedObject;
use dynamo_core::props::ConflictMode;
use dynamo_core::ring::NodeId;
use dynamo_storage::record::HEADER_LEN;
use dynamo_storage::{Durability, Namespace, StorageError, Store};
use serde::Serialize;
use thiserror::Error;
use tracing::warn;

/// Format byte of hint records.
const HINT_FORMAT: u8 = 1;
/// Records read per scan while rebuilding the size count at start-up.
const SCAN_BATCH: usize = 512;

/// Why a hint could not be stored or read.
#[derive(Debug, Error)]
pub enum HintError {
    /// The hint store is at its size bound.
    #[error(
        "hint store full: {stored_bytes} of {max_bytes} bytes used, a hint of {bytes} bytes refused \
         (the owner has been unreachable for long; bring it back, or raise max_hint_bytes)"
    )]
    Full {
        /// Bytes already stored.
        stored_bytes: u64,
        /// The bound.
        max_bytes: u64,
        /// Size of the refused hint.
        bytes: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored hint does not decode (corruption).
    #[error("corrupt hint record for {owner}: {reason}")]
    Corrupt {
        /// The owner named in the record key.
        owner: String,
        /// What is wrong.
        reason: String,
    },
}

/// One stored hint, as delivery reads it.
#[derive(Clone, Debug)]
pub struct Hint {
    /// The record key (owner and storage key).
    pub record_key: Vec<u8>,
    /// The object's key.
    pub key: ObjectKey,
    /// The versions to deliver.
    pub object: VersionedObject,
    /// The bucket's conflict mode when the hint was taken.
    pub mode: ConflictMode,
    /// When the oldest write merged into this hint was taken (wall ms).
    pub created_ms: u64,
    /// The stored bytes, to remove the record only if unchanged.
    pub stored: Vec<u8>,
}

/// Counters of the hint store, for metrics and the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HintStats {
    /// Hint records stored now.
    pub stored: u64,
    /// Their total size in bytes.
    pub stored_bytes: u64,
    /// The size bound.
    pub max_bytes: u64,
    /// Hints written since start (including merges into an existing one).
    pub accepted: u64,
    /// Hints refused because the store was full.
    pub refused_full: u64,
    /// Hints delivered to their owner and removed.
    pub delivered: u64,
    /// Hints dropped undelivered because they outlived the tombstone grace
    /// period.
    pub expired: u64,
}

/// The hints this node holds.
pub struct HintStore {
    store: Store,
    partitions: u32,
    max_bytes: u64,
    /// Serializes read-merge-write of hint records (hints are written only
    /// while some replica is unreachable; one lock is enough).
    write_lock: Mutex<()>,
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    accepted: AtomicU64,
    refused_full: AtomicU64,
    delivered: AtomicU64,
    expired: AtomicU64,
}

impl HintStore {
    /// The hints in `store`, bounded to `max_bytes`; counts what is already
    /// stored (one scan of the hint namespace).
    pub fn open(store: Store, partitions: u32, max_bytes: u64) -> Result<Self, StorageError> {
        let hints = Self {
            store,
            partitions,
            max_bytes,
            write_lock: Mutex::new(()),
            stored: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused_full: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        };
        let mut start = Vec::new();
        loop {
            let rows = hints.store.scan_records(Namespace::Hints, &[], &start, SCAN_BATCH)?;
            for (key, value) in &rows {
                match value {
                    Ok(value) => {
                        hints.stored.fetch_add(1, Ordering::Relaxed);
                        hints.stored_bytes.fetch_add(record_size(key, value), Ordering::Relaxed);
                    }
                    // Not counted yet, so nothing to take off the counts.
                    Err(error) => {
                        warn!(%error, "dropping an unreadable hint record");
                        hints.store.remove(Namespace::Hints, key)?;
                    }
                }
            }
            match rows.last() {
                Some((key, _)) if rows.len() == SCAN_BATCH => start = successor(key),
                _ => break,
            }
        }
        Ok(hints)
    }

    /// Stores `object` as a hint for `owner`, taken at `now_ms` (wall
    /// clock), merged with any hint already held for that owner and key.
    pub async fn store_hint(
        &self,
        owner: &NodeId,
        key: &ObjectKey,
        object: &VersionedObject,
        mode: ConflictMode,
        durability: Durability,
        now_ms: u64,
    ) -> Result<(), HintError> {
        let record_key = record_key(owner, &key.storage_key(self.partitions));
        {
            let _guard = self.lock();
            let previous = match self.store.get(Namespace::Hints, &record_key) {
                Ok(previous) => previous,
                Err(error @ StorageError::Corruption { .. }) => {
                    let size = self.raw_size(&record_key)?;
                    self.drop_counted(&record_key, size, &error.into())?;
                    None
                }
                Err(error) => return Err(error.into()),
            };
            // A record that passes its checksum but does not decode (a
            // newer format) is refused, never overwritten.
            let (mut merged, created_ms) = match &previous {
                Some(bytes) => {
                    let record = decode_record(owner, bytes)?;
                    (record.object, record.created_ms.min(now_ms))
                }
                None => (VersionedObject::new(), now_ms),
            };
            merged.merge(object, mode);
            check_encodable(&merged).map_err(|bound| HintError::Corrupt {
                owner: owner.to_string(),
                reason: format!("the merged hint would exceed the storage format ({bound}); not stored"),
            })?;
            let value = encode_record(mode, created_ms, &merged);
            if previous.as_deref() == Some(value.as_slice()) {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let old_size = previous.as_ref().map_or(0, |bytes| record_size(&record_key, bytes));
            let new_size = record_size(&record_key, &value);
            let stored_bytes = self.stored_bytes.load(Ordering::Relaxed);
            if stored_bytes.saturating_sub(old_size).saturating_add(new_size) > self.max_bytes {
                self.refused_full.fetch_add(1, Ordering::Relaxed);
                let error = HintError::Full { stored_bytes, max_bytes: self.max_bytes, bytes: new_size };
                warn!(%owner, %error, "hint refused");
                return Err(error);
            }
            self.store.put_buffered(Namespace::Hints, &record_key, &value)?;
            if previous.is_none() {
                self.stored.fetch_add(1, Ordering::Relaxed);
            }
            self.stored_bytes.fetch_add(new_size, Ordering::Relaxed);
            self.stored_bytes.fetch_sub(old_size, Ordering::Relaxed);
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
        if durability == Durability::Durable {
            self.store.sync().await?;
        }
        Ok(())
    }

    /// Up to `limit` hints for `owner`, in key order, starting after
    /// `after` (a record key from the previous batch; empty to start).
    pub fn batch(&self, owner: &NodeId, after: &[u8], limit: usize) -> Result<Vec<Hint>, HintError> {
        let prefix = owner_prefix(owner);
        let start = if after.is_empty() { prefix.clone() } else { successor(after) };
        let rows = self.store.scan_records(Namespace::Hints, &prefix, &start, limit)?;
        let mut hints = Vec::with_capacity(rows.len());
        for (record_key, stored) in rows {
            let stored = match stored {
                Ok(stored) => stored,
                Err(error) => {
                    self.drop_if_still_unreadable(&record_key, &error.into())?;
                    continue;
                }
            };
            match decode_hint(owner, &prefix, record_key, stored) {
                Ok(hint) => hints.push(hint),
                // It passes its checksum: what this node wrote (a newer
                // format, say). Kept, not delivered.
                Err(error) => warn!(%error, "a hint record does not decode; kept undelivered"),
            }
        }
        Ok(hints)
    }

    /// Drops the hint record at `record_key` if, read again under the lock,
    /// it still fails its checksum (a `store_hint` may have replaced it
    /// since the scan). Nothing in it can be delivered, and kept it would be
    /// met on every round; the write it held is also on the replicas that
    /// acknowledged it, from which anti-entropy and read repair spread it.
    fn drop_if_still_unreadable(&self, record_key: &[u8], error: &HintError) -> Result<(), HintError> {
        let _guard = self.lock();
        match self.store.get(Namespace::Hints, record_key) {
            Err(StorageError::Corruption { .. }) => {
                let size = self.raw_size(record_key)?;
                self.drop_counted(record_key, size, error)
            }
            Ok(_) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// The size [`record_size`] counted for a record whose checksum fails,
    /// from its raw bytes (the payload without the record frame).
    fn raw_size(&self, record_key: &[u8]) -> Result<u64, HintError> {
        let raw = self.store.engine()?.get(Namespace::Hints, record_key)?.unwrap_or_default();
        Ok(record_size(record_key, raw.get(HEADER_LEN..).unwrap_or_default()))
    }

    /// Removes a counted record of `size` bytes. Call under the lock.
    fn drop_counted(&self, record_key: &[u8], size: u64, error: &HintError) -> Result<(), HintError> {
        warn!(%error, "dropping an unreadable hint record");
        self.store.remove(Namespace::Hints, record_key)?;
        self.stored.fetch_sub(1, Ordering::Relaxed);
        self.stored_bytes.fetch_sub(size, Ordering::Relaxed);
        Ok(())
    }

    /// Removes `hint` after its owner acknowledged it, unless it changed
    /// since it was read (then the newer state is delivered next round).
    /// Returns whether it was removed.
    pub fn remove_delivered(&self, hint: &Hint) -> Result<bool, HintError> {
        let removed = self.remove_if_unchanged(hint)?;
        if removed {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Drops `hint` undelivered: it outlived the tombstone grace period.
    pub fn remove_expired(&self, hint: &Hint) -> Result<bool, HintError> {
        let removed = self.remove_if_unchanged(hint)?;
        if removed {
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
        Ok(removed)
    }

    fn remove_if_unchanged(&self, hint: &Hint) -> Result<bool, HintError> {
        let _guard = self.lock();
        let current = self.store.get(Namespace::Hints, &hint.record_key)?;
        if current.as_deref() != Some(hint.stored.as_slice()) {
            return Ok(false);
        }
        self.store.remove(Namespace::Hints, &hint.record_key)?;
        self.stored.fetch_sub(1, Ordering::Relaxed);
        self.stored_bytes.fetch_sub(record_size(&hint.record_key, &hint.stored), Ordering::Relaxed);
        Ok(true)
    }

    /// Whether any hint is stored.
    pub fn is_empty(&self) -> bool {
        self.stored.load(Ordering::Relaxed) == 0
    }

    /// Counters.
    pub fn stats(&self) -> HintStats {
        HintStats {
            stored: self.stored.load(Ordering::Relaxed),
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn owner_prefix(owner: &NodeId) -> Vec<u8> {
    let id = owner.as_str().as_bytes();
    // Node ids are validated to at most 64 bytes at configuration.
    let mut prefix = Vec::with_capacity(1 + id.len());
    prefix.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    prefix.extend_from_slice(id);
    prefix
}

fn record_key(owner: &NodeId, storage_key: &[u8]) -> Vec<u8> {
    let mut key = owner_prefix(owner);
    key.extend_from_slice(storage_key);
    key
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

fn record_size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// A decoded hint record value.
struct Record {
    mode: ConflictMode,
    created_ms: u64,
    object: VersionedObject,
}

fn encode_record(mode: ConflictMode, created_ms: u64, object: &VersionedObject) -> Vec<u8> {
    let mode_byte = match mode {
        ConflictMode::Siblings => 0,
        ConflictMode::Lww => 1,
    };
    let mut value = vec![HINT_FORMAT, mode_byte];
    value.extend_from_slice(&created_ms.to_be_bytes());
    value.extend_from_slice(&encode_object(object));
    value
}

/// A stored hint record as delivery reads it.
fn decode_hint(owner: &NodeId, prefix: &[u8], record_key: Vec<u8>, stored: Vec<u8>) -> Result<Hint, HintError> {
    let (_, key) = ObjectKey::from_storage_key(&record_key[prefix.len()..])
        .map_err(|error| HintError::Corrupt { owner: owner.to_string(), reason: error.to_string() })?;
    let Record { mode, created_ms, object } = decode_record(owner, &stored)?;
    Ok(Hint { record_key, key, object, mode, created_ms, stored })
}

fn decode_record(owner: &NodeId, bytes: &[u8]) -> Result<Record, HintError> {
    let corrupt = |reason: String| HintError::Corrupt { owner: owner.to_string(), reason };
    let [format, mode, rest @ ..] = bytes else {
        return Err(corrupt("record shorter than its header".to_string()));
    };
    let Some((created, object)) = rest.split_first_chunk::<8>() else {
        return Err(corrupt("record shorter than its header".to_string()));
    };
    if *format != HINT_FORMAT {
        return Err(corrupt(format!("unknown hint format {format}")));
    }
    let mode = match mode {
        0 => ConflictMode::Siblings,
        1 => ConflictMode::Lww,
        other => return Err(corrupt(format!("unknown conflict mode {other}"))),
    };
    let object = decode_object(object).map_err(|error| corrupt(error.to_string()))?;
    Ok(Record { mode, created_ms: u64::from_be_bytes(*created), object })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dynamo_core::hlc::Hlc;
    use dynamo_core::object::Payload;
    use dynamo_core::version::{ActorId, VersionVector};
    use dynamo_storage::MemoryEngine;

    use super::*;

    const PARTITIONS: u32 = 64;

    fn written(value: &str, actor: u64) -> VersionedObject {
        let mut object = VersionedObject::new();
        let payload = Payload::Value { data: Bytes::from(value.to_string()), content_type: None, expires_ms: None };
        object.put(&VersionVector::new(), ActorId(actor), Hlc(actor), payload, ConflictMode::Siblings);
        object
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("b", name.as_bytes()).expect("valid key")
    }

    fn open(engine: &MemoryEngine, max_bytes: u64) -> HintStore {
        HintStore::open(Store::memory(engine.clone()), PARTITIONS, max_bytes).expect("open")
    }

    #[tokio::test]
    async fn hints_for_one_owner_and_key_merge_and_are_listed_per_owner() {
        let engine = MemoryEngine::new();
        let hints = open(&engine, 1 << 20);
        let owner = NodeId::new("node2");
        hints
            .store_hint(&owner, &key("k"), &written("a", 1), ConflictMode::Siblings, Durability::Durable, 1_000)
            .await
            .unwrap();
        hints
            .store_hint(&owner, &key("k"), &written("b", 2), ConflictMode::Siblings, Durability::Durable, 1_000)
            .await
            .unwrap();
        hints
            .store_hint(
                &NodeId::new("node3"),
                &key("k"),
                &written("c", 3),
                ConflictMode::Siblings,
                Durability::Durable,
                1_000,
            )
            .await
            .unwrap();
        let batch = hints.batch(&owner, &[], 10).unwrap();
        assert_eq!(batch.len(), 1, "one record per owner and key");
        assert_eq!(batch[0].object.siblings().len(), 2, "merged as siblings");
        assert_eq!(batch[0].key, key("k"));
        assert_eq!(hints.stats().stored, 2);
    }

    #[tokio::test]
    async fn batches_page_through_an_owners_hints() {
        let hints = open(&MemoryEngine::new(), 1 << 20);
        let owner = NodeId::new("n1");
        for index in 0..25 {
            let name = format!("k{index}");
            hints
                .store_hint(&owner, &key(&name), &written("v", 1), ConflictMode::Lww, Durability::Buffered, 1_000)
                .await
                .unwrap();
        }
        let mut seen = 0;
        let mut after = Vec::new();
        loop {
            let batch = hints.batch(&owner, &after, 10).unwrap();
            if batch.is_empty() {
                break;
            }
            seen += batch.len();
            after = batch.last().unwrap().record_key.clone();
        }
        assert_eq!(seen, 25);
        assert!(hints.batch(&NodeId::new("n"), &[], 10).unwrap().is_empty(), "n is a prefix of n1, not an owner");
    }

    #[tokio::test]
    async fn a_hint_changed_after_it_was_read_is_not_removed() {
        let hints = open(&MemoryEngine::new(), 1 << 20);
        let owner = NodeId::new("n1");
        hints
            .store_hint(&owner, &key("k"), &written("a", 1), ConflictMode::Siblings, Durability::Buffered, 1_000)
            .await
            .unwrap();
        let read = hints.batch(&owner, &[], 10).unwrap().remove(0);
        hints
            .store_hint(&owner, &key("k"), &written("b", 2), ConflictMode::Siblings, Durability::Buffered, 1_000)
            .await
            .unwrap();
        assert!(!hints.remove_delivered(&read).unwrap(), "changed meanwhile");
        let newer = hints.batch(&owner, &[], 10).unwrap().remove(0);
        assert!(hints.remove_delivered(&newer).unwrap());
        assert!(hints.is_empty());
        assert_eq!(hints.stats().stored_bytes, 0);
        assert_eq!(hints.stats().delivered, 1);
    }

    #[tokio::test]
    async fn a_merged_hint_keeps_the_creation_time_of_its_oldest_part() {
        let hints = open(&MemoryEngine::new(), 1 << 20);
        let owner = NodeId::new("n1");
        let siblings = ConflictMode::Siblings;
        hints.store_hint(&owner, &key("k"), &written("a", 1), siblings, Durability::Buffered, 500).await.unwrap();
        hints.store_hint(&owner, &key("k"), &written("b", 2), siblings, Durability::Buffered, 900).await.unwrap();
        let hint = hints.batch(&owner, &[], 10).unwrap().remove(0);
        assert_eq!(hint.created_ms, 500);
        assert!(hints.remove_expired(&hint).unwrap());
        assert_eq!((hints.stats().expired, hints.stats().delivered), (1, 0));
    }

    #[tokio::test]
    async fn the_size_bound_refuses_hints_and_counts_them() {
        let hints = open(&MemoryEngine::new(), 200);
        let owner = NodeId::new("n1");
        let mut refused = 0;
        for index in 0..20 {
            let name = format!("key-{index}");
            if let Err(HintError::Full { .. }) = hints
                .store_hint(&owner, &key(&name), &written("value", 1), ConflictMode::Lww, Durability::Buffered, 1_000)
                .await
            {
                refused += 1;
            }
        }
        let stats = hints.stats();
        assert!(refused > 0 && stats.stored_bytes <= 200, "{stats:?}");
        assert_eq!(stats.refused_full, refused);
    }

    /// Flips a bit of the stored hint record of `owner` and `key`, below
    /// the store (as bit rot would), so its checksum fails.
    fn corrupt(engine: &MemoryEngine, owner: &NodeId, key: &ObjectKey) {
        let record_key = record_key(owner, &key.storage_key(PARTITIONS));
        dynamo_storage::record::damage(engine, Namespace::Hints, &record_key).unwrap();
    }

    async fn store(hints: &HintStore, owner: &NodeId, name: &str, value: &str) {
        let durable = Durability::Durable;
        hints.store_hint(owner, &key(name), &written(value, 1), ConflictMode::Lww, durable, 1_000).await.unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_hint_is_dropped_and_the_others_are_still_listed() {
        let engine = MemoryEngine::new();
        let hints = open(&engine, 1 << 20);
        let owner = NodeId::new("n1");
        for name in ["a", "b", "c"] {
            store(&hints, &owner, name, "v").await;
        }
        let size_of_one = hints.stats().stored_bytes / 3;
        corrupt(&engine, &owner, &key("b"));
        let listed: Vec<ObjectKey> = hints.batch(&owner, &[], 10).unwrap().into_iter().map(|hint| hint.key).collect();
        assert_eq!(listed, [key("a"), key("c")]);
        assert_eq!((hints.stats().stored, hints.stats().stored_bytes), (2, 2 * size_of_one));
        assert_eq!(hints.batch(&owner, &[], 10).unwrap().len(), 2, "dropped, not met again");
    }

    #[tokio::test]
    async fn a_store_with_an_unreadable_hint_opens_without_it() {
        let engine = MemoryEngine::new();
        let owner = NodeId::new("n1");
        let size_of_one = {
            let hints = open(&engine, 1 << 20);
            store(&hints, &owner, "a", "v").await;
            store(&hints, &owner, "b", "v").await;
            hints.stats().stored_bytes / 2
        };
        corrupt(&engine, &owner, &key("a"));
        let reopened = open(&engine, 1 << 20);
        assert_eq!((reopened.stats().stored, reopened.stats().stored_bytes), (1, size_of_one));
        assert_eq!(reopened.batch(&owner, &[], 10).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_new_hint_for_the_key_of_an_unreadable_one_replaces_it() {
        let engine = MemoryEngine::new();
        let hints = open(&engine, 1 << 20);
        let owner = NodeId::new("n1");
        store(&hints, &owner, "k", "old").await;
        let size_of_one = hints.stats().stored_bytes;
        corrupt(&engine, &owner, &key("k"));
        store(&hints, &owner, "k", "new").await;
        let batch = hints.batch(&owner, &[], 10).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].object, written("new", 1));
        assert_eq!(
            (hints.stats().stored, hints.stats().stored_bytes),
            (1, size_of_one),
            "the old bytes are off the count"
        );
    }

    #[tokio::test]
    async fn a_hint_replaced_after_a_scan_found_it_unreadable_is_kept() {
        let engine = MemoryEngine::new();
        let hints = open(&engine, 1 << 20);
        let owner = NodeId::new("n1");
        store(&hints, &owner, "k", "old").await;
        corrupt(&engine, &owner, &key("k"));
        // A delivery scan meets the bad record; before it drops it, a new
        // hint for the key replaces the record.
        store(&hints, &owner, "k", "new").await;
        let record_key = record_key(&owner, &key("k").storage_key(PARTITIONS));
        let seen = HintError::Corrupt { owner: owner.to_string(), reason: "checksum".to_string() };
        hints.drop_if_still_unreadable(&record_key, &seen).unwrap();
        let batch = hints.batch(&owner, &[], 10).unwrap();
        assert_eq!(batch.len(), 1, "the fresh hint is not dropped");
        assert_eq!(batch[0].object, written("new", 1));
        assert_eq!(hints.stats().stored, 1);
    }

    #[tokio::test]
    async fn a_hint_that_passes_its_checksum_but_does_not_decode_is_kept_and_never_overwritten() {
        let engine = MemoryEngine::new();
        let owner = NodeId::new("n1");
        let record_key = record_key(&owner, &key("k").storage_key(PARTITIONS));
        Store::memory(engine.clone()).put_buffered(Namespace::Hints, &record_key, b"\x09a newer format").unwrap();
        let hints = open(&engine, 1 << 20);
        store(&hints, &owner, "other", "v").await;
        let listed: Vec<ObjectKey> = hints.batch(&owner, &[], 10).unwrap().into_iter().map(|hint| hint.key).collect();
        assert_eq!(listed, [key("other")], "not delivered");
        assert_eq!(hints.stats().stored, 2, "but kept");
        let refused =
            hints.store_hint(&owner, &key("k"), &written("v", 1), ConflictMode::Lww, Durability::Buffered, 1_000).await;
        assert!(matches!(refused, Err(HintError::Corrupt { .. })), "{refused:?}");
        let kept = Store::memory(engine.clone()).get(Namespace::Hints, &record_key).unwrap();
        assert_eq!(kept.as_deref(), Some(&b"\x09a newer format"[..]));
    }

    #[tokio::test]
    async fn durable_hints_survive_a_crash_and_are_counted_on_reopen() {
        let engine = MemoryEngine::new();
        let hints = open(&engine, 1 << 20);
        let owner = NodeId::new("n1");
        hints
            .store_hint(&owner, &key("k"), &written("a", 1), ConflictMode::Siblings, Durability::Durable, 1_000)
            .await
            .unwrap();
        let before = hints.stats();
        engine.crash();
        let reopened = open(&engine, 1 << 20);
        assert_eq!((reopened.stats().stored, reopened.stats().stored_bytes), (before.stored, before.stored_bytes));
        assert_eq!(reopened.batch(&owner, &[], 10).unwrap().len(), 1);
    }
}
