//! The tombstone index: which keys of this replica hold a state that is
//! (or will be) dead, and from when, so that the collector
//! ([`crate::tombstone_collector`]) finds tombstones and expired values
//! without scanning all data.
//!
//! Every write that leaves a key mortal (every version a tombstone or a
//! value with an expiry: [`VersionedObject::dead_from_ms`]) records it here,
//! under the key's lock ([`crate::replica::Replica`] calls [`note`] and
//! [`forget`]), in the metadata namespace: `tomb/` + storage key →
//! wall-clock ms from which the key is dead (big-endian): the delete's
//! time, or the latest expiry.
//!
//! [`VersionedObject::dead_from_ms`]: dynamo_core::object::VersionedObject::dead_from_ms The index is a hint, never the truth: the collector reads
//! the object itself before acting, and an entry that no longer matches is
//! forgotten.

use dynamo_storage::{Namespace, StorageError, Store};

/// Prefix of the tombstone index in [`Namespace::Meta`].
const INDEX_PREFIX: &[u8] = b"tomb/";

/// Records that `storage_key` now holds a state that is dead from
/// `dead_from_ms` on.
pub fn note(store: &Store, storage_key: &[u8], dead_from_ms: u64) -> Result<(), StorageError> {
    store.put_buffered(Namespace::Meta, &index_key(storage_key), &dead_from_ms.to_be_bytes())
}

/// Forgets `storage_key` in the index.
pub fn forget(store: &Store, storage_key: &[u8]) -> Result<(), StorageError> {
    store.remove(Namespace::Meta, &index_key(storage_key))
}

fn index_key(storage_key: &[u8]) -> Vec<u8> {
    let mut key = INDEX_PREFIX.to_vec();
    key.extend_from_slice(storage_key);
    key
}

/// One entry of the index, as [`page`] reads it.
#[derive(Debug)]
pub struct Entry {
    /// The object's storage key.
    pub storage_key: Vec<u8>,
    /// From when the key is dead (wall-clock ms: the delete's time or the
    /// latest expiry), or why the entry could
    /// not be read (it is then rewritten from the object:
    /// [`crate::replica::Replica::reindex_tombstone`]).
    pub deleted_ms: Result<u64, StorageError>,
}

/// Where a walk of the index stands: the first entry of the next page.
#[derive(Clone, Debug)]
pub struct Cursor(Vec<u8>);

impl Cursor {
    /// The start of the index.
    pub fn start() -> Self {
        Cursor(INDEX_PREFIX.to_vec())
    }
}

/// Reads up to `max` entries from `cursor` on, and moves the cursor past
/// them. Fewer than `max` entries means the walk reached the end.
pub fn page(store: &Store, cursor: &mut Cursor, max: usize) -> Result<Vec<Entry>, StorageError> {
    let records = store.scan_records(Namespace::Meta, INDEX_PREFIX, &cursor.0, max)?;
    if let Some((last, _)) = records.last() {
        cursor.0 = last.clone();
        cursor.0.push(0);
    }
    let entries = records
        .into_iter()
        .map(|(index_key, value)| {
            debug_assert!(index_key.starts_with(INDEX_PREFIX), "a scan of the prefix stays in it");
            let storage_key = index_key[INDEX_PREFIX.len()..].to_vec();
            // A value of the wrong length reads as "deleted at 0": due at
            // once, and the collector checks the object itself anyway.
            let deleted_ms = value.map(|value| value.as_slice().try_into().map(u64::from_be_bytes).unwrap_or(0));
            Entry { storage_key, deleted_ms }
        })
        .collect();
    Ok(entries)
}
