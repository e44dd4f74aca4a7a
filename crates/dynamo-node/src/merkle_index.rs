//! The Merkle index (paper section 4.7): [`MerkleIndex`] keeps one Merkle
//! tree per partition over this node's objects, plus, per partition, the
//! sorted `(segment, key) -> digest` list that the leaves summarize (what a
//! peer gets when a leaf differs). It is what the replica updates on every
//! write and what a peer's anti-entropy exchange asks about
//! ([`MerkleIndex::serve`]); the workers that drive exchanges are in
//! [`crate::anti_entropy`], above it.
//!
//! **The invariant.** For every partition, the tree is exactly the tree of
//! the key list, and the key list is exactly the set of `(key, digest of the
//! stored object)` in that partition of the `objects` namespace.
//!
//! How it is kept:
//! - **At start-up**, one full scan of the `objects` namespace builds
//!   everything ([`MerkleIndex::build`]), before the node serves anything.
//! - **On every write**, [`crate::replica::Replica`] calls
//!   [`MerkleIndex::record`] with the key's digest before and after, while
//!   it still holds the key's lock, after the object reached storage. Writes
//!   to one key therefore reach the index in storage order, and writes to
//!   different keys commute (a leaf is a sum). The tree is updated in O(1)
//!   from the digest the list recorded for the key, so the tree always
//!   matches the list, whatever happens.
//! - **Hinted data** (`hints` namespace) is not in any tree: it is not this
//!   node's replica.
//!
//! **Detected corruption.** If a write's "before" digest is neither what the
//! list recorded nor the write's own "after" digest, storage changed behind
//! the index's back (a bug, or a tool writing to the data directory). The
//! key itself is fixed by the write; the partition is marked suspect and
//! rebuilt from storage ([`MerkleIndex::rebuild`]) before its next
//! exchange. The "after" exception covers a write racing with a rebuild:
//! the rebuild's scan may already have seen the new state.
//!
//! **Memory.** Per partition that holds keys: 16 KiB of leaves; per key:
//! its bucket and key bytes plus about 60 bytes (a million keys of 20 bytes
//! cost about 80 MiB). An on-disk listing, as Riak keeps its hash trees in
//! LevelDB, is the next step for nodes with tens of millions of keys.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use dynamo_core::codec::decode_object;
use dynamo_core::keys::ObjectKey;
use dynamo_core::merkle::{
    ListingDiff, MerkleTree, NodeHash, ObjectDigest, SEGMENTS, TreeError, diff_listings, segment_of,
};
use dynamo_core::messages::{MAX_LISTED_KEYS, Request, Response};
use dynamo_storage::{Namespace, StorageError, Store};
use thiserror::Error;
use tracing::{error, warn};

/// Largest listing page this node sends, in bytes of keys and digests (on
/// top of the [`MAX_LISTED_KEYS`] entry bound): about a quarter of an RPC
/// frame, so a page never holds up other calls on the connection for long.
pub const MAX_PAGE_BYTES: usize = 256 * 1024;

/// Records read per storage scan call while building or rebuilding.
const SCAN_PAGE: usize = 1024;

/// Why the index could not answer.
#[derive(Debug, Error)]
pub enum IndexError {
    /// The partition is not below this node's Q.
    #[error("partition {partition} does not exist (the ring has {partitions})")]
    NoSuchPartition {
        /// The partition asked for.
        partition: u32,
        /// This node's Q.
        partitions: u32,
    },
    /// A tree query outside the tree's shape.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Storage failed during a build or rebuild.
    #[error("storage failed while indexing: {0}")]
    Storage(#[from] StorageError),
    /// A peer's listing is not in (segment, key) order, or strays outside
    /// the segments and range asked for.
    #[error("the peer's key listing is out of order or outside the segments asked for")]
    Unordered,
}

/// What a full build found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// Keys indexed.
    pub keys: u64,
    /// Partitions holding at least one key.
    pub partitions: u64,
    /// Records skipped: undecodable (corrupt) or in another partition than
    /// their key belongs to. Reported, never indexed.
    pub skipped: u64,
}

/// The trees and key lists of every partition (see the module docs).
pub struct MerkleIndex {
    partitions: u32,
    store: Store,
    /// One slot per partition; a slot allocates its tree on first use.
    slots: Box<[Mutex<Slot>]>,
    /// Writes whose "before" digest disagreed with the list.
    mismatches: AtomicU64,
}

/// A key as the index keeps it, ordered as listings are: by segment, then
/// by `bucket | 0x00 | key`. Bucket names never contain 0x00, so this is the
/// order of (bucket, key), in one allocation instead of two.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ListedKey {
    segment: u16,
    key: Box<[u8]>,
}

impl ListedKey {
    fn new(key: &ObjectKey) -> Self {
        let mut bytes = Vec::with_capacity(key.bucket().len() + 1 + key.key().len());
        bytes.extend_from_slice(key.bucket().as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(key.key());
        Self { segment: segment_of(key), key: bytes.into_boxed_slice() }
    }

    /// Below every key of `segment`.
    fn start_of(segment: u16) -> Self {
        Self { segment, key: Box::default() }
    }

    fn object_key(&self) -> Option<ObjectKey> {
        let split = self.key.iter().position(|byte| *byte == 0)?;
        let bucket = std::str::from_utf8(&self.key[..split]).ok()?;
        ObjectKey::new(bucket, &self.key[split + 1..]).ok()
    }
}

#[derive(Default)]
struct Slot {
    tree: Option<Box<MerkleTree>>,
    keys: BTreeMap<ListedKey, ObjectDigest>,
    /// Set when a write showed the list disagreeing with storage.
    suspect: bool,
}

impl Slot {
    fn tree(&mut self) -> &mut MerkleTree {
        self.tree.get_or_insert_with(Box::default)
    }

    /// Sets `key`'s digest, keeping the tree equal to the list.
    fn set(&mut self, key: &ObjectKey, listed: ListedKey, new: Option<ObjectDigest>) {
        let recorded = self.keys.get(&listed).copied();
        self.tree().update(key, recorded.as_ref(), new.as_ref());
        match new {
            Some(digest) => self.keys.insert(listed, digest),
            None => self.keys.remove(&listed),
        };
    }

    fn clear(&mut self) {
        self.tree = None;
        self.keys.clear();
    }

    /// The slot's entries in `segments` strictly after `after` and up to
    /// `through` (inclusive), in order.
    fn range<'a>(
        &'a self,
        segments: &'a [u16],
        after: Option<&'a ListedKey>,
        through: Option<&'a ListedKey>,
    ) -> impl Iterator<Item = (&'a ListedKey, &'a ObjectDigest)> + 'a {
        segments.iter().flat_map(move |&segment| {
            let lower = match after {
                Some(after) if after.segment == segment => Bound::Excluded(after.clone()),
                _ => Bound::Included(ListedKey::start_of(segment)),
            };
            let upper = match through {
                Some(through) if through.segment == segment => Bound::Included(through.clone()),
                _ => Bound::Excluded(ListedKey::start_of(segment.saturating_add(1))),
            };
            let wanted = after.is_none_or(|after| after.segment <= segment)
                && through.is_none_or(|through| through.segment >= segment)
                && bounds_ordered(&lower, &upper);
            wanted.then(|| self.keys.range((lower, upper))).into_iter().flatten()
        })
    }
}

/// Whether `(lower, upper)` is a range `BTreeMap::range` accepts.
fn bounds_ordered(lower: &Bound<ListedKey>, upper: &Bound<ListedKey>) -> bool {
    match (lower, upper) {
        (Bound::Included(low), Bound::Included(high)) => low <= high,
        (Bound::Included(low) | Bound::Excluded(low), Bound::Included(high) | Bound::Excluded(high)) => low < high,
        _ => true,
    }
}

impl MerkleIndex {
    /// The peer's side of an anti-entropy exchange: answers `MerkleHashes`
    /// and `MerkleKeys` from this index (any other request is not for this
    /// function).
    pub fn serve(&self, request: Request) -> Result<Response, String> {
        match request {
            Request::MerkleHashes { partition, level, indices } => self
                .hashes(partition, level, &indices)
                .map(|hashes| Response::MerkleHashes { hashes })
                .map_err(|error| error.to_string()),
            Request::MerkleKeys { partition, segments, after } => self
                .list(partition, &segments, after.as_ref(), MAX_LISTED_KEYS, MAX_PAGE_BYTES)
                .map(|(entries, more)| Response::MerkleKeys { entries, more })
                .map_err(|error| error.to_string()),
            _ => Err("not an anti-entropy request".to_string()),
        }
    }

    /// Builds the index of every object in `store` by one full scan (see
    /// the module docs). Corrupt records (failing their checksum, or not
    /// decoding) are logged, counted and left out, so a node with a bad
    /// record still starts: anti-entropy will find the key missing here,
    /// and its repair replaces a record that failed its checksum with a
    /// good copy (one that does not decode is refused and reported: it is
    /// what the node wrote, see [`crate::replica::ReplicaError::is_bit_rot`]).
    pub fn build(store: Store, partitions: u32) -> Result<(MerkleIndex, BuildReport), IndexError> {
        let index = MerkleIndex {
            partitions,
            store,
            slots: (0..partitions).map(|_| Mutex::new(Slot::default())).collect(),
            mismatches: AtomicU64::new(0),
        };
        let mut report = BuildReport::default();
        index.scan(
            &[],
            |partition, key, digest| {
                let mut slot = index.lock(partition);
                report.partitions += u64::from(slot.keys.is_empty());
                slot.set(&key, ListedKey::new(&key), Some(digest));
                report.keys += 1;
            },
            &mut report.skipped,
        )?;
        Ok((index, report))
    }

    /// Rebuilds one partition from storage, holding its lock throughout so
    /// that no write's update lands between the scan and the swap (see the
    /// module docs). Returns the keys indexed.
    pub fn rebuild(&self, partition: u32) -> Result<u64, IndexError> {
        self.check(partition)?;
        let mut slot = self.lock(partition);
        slot.clear();
        let mut keys = 0;
        let mut skipped = 0;
        let prefix = partition.to_be_bytes();
        let scanned = self.scan(
            &prefix,
            |_, key, digest| {
                slot.set(&key, ListedKey::new(&key), Some(digest));
                keys += 1;
            },
            &mut skipped,
        );
        if let Err(error) = scanned {
            // Stay suspect: the next exchange tries again.
            slot.suspect = true;
            return Err(error);
        }
        slot.suspect = false;
        Ok(keys)
    }

    /// Pages through the objects under `prefix`, calling `found` with each
    /// decodable object's partition, key and digest.
    fn scan(
        &self,
        prefix: &[u8],
        mut found: impl FnMut(u32, ObjectKey, ObjectDigest),
        skipped: &mut u64,
    ) -> Result<(), IndexError> {
        let mut start = prefix.to_vec();
        loop {
            let page = self.store.scan_records(Namespace::Objects, prefix, &start, SCAN_PAGE)?;
            let Some((last, _)) = page.last() else { return Ok(()) };
            start = last.clone();
            start.push(0);
            let full = page.len() == SCAN_PAGE;
            for (storage_key, record) in page {
                // A record failing its checksum was logged and counted by
                // the store; it is left out like an undecodable one.
                let indexable = record.ok().and_then(|bytes| self.indexable(&storage_key, &bytes));
                match indexable {
                    Some((partition, key, Some(digest))) => found(partition, key, digest),
                    Some((_, _, None)) => {}
                    None => *skipped += 1,
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// A stored record's partition, key and digest, or `None` (logged) when
    /// it cannot be indexed.
    fn indexable(&self, storage_key: &[u8], bytes: &[u8]) -> Option<(u32, ObjectKey, Option<ObjectDigest>)> {
        let (partition, key) = match ObjectKey::from_storage_key(storage_key) {
            Ok(parsed) => parsed,
            Err(problem) => {
                error!(%problem, "an object record has a malformed key; not indexed for anti-entropy");
                return None;
            }
        };
        if partition >= self.partitions || key.partition(self.partitions) != partition {
            error!(
                partition,
                bucket = key.bucket(),
                "an object record is stored under the wrong partition; not indexed"
            );
            return None;
        }
        match decode_object(bytes) {
            Ok(object) => Some((partition, key, ObjectDigest::of(&object))),
            Err(problem) => {
                error!(%problem, bucket = key.bucket(), "corrupt object record; not indexed for anti-entropy");
                None
            }
        }
    }

    /// Applies one write: `key` went from `old` to `new` in storage. Call
    /// under the key's lock, after the write reached storage.
    pub fn record(&self, key: &ObjectKey, old: Option<ObjectDigest>, new: Option<ObjectDigest>) {
        let partition = key.partition(self.partitions);
        let listed = ListedKey::new(key);
        let mut slot = self.lock(partition);
        let recorded = slot.keys.get(&listed).copied();
        if recorded != old && recorded != new {
            slot.suspect = true;
            self.mismatches.fetch_add(1, Ordering::Relaxed);
            warn!(
                partition,
                bucket = key.bucket(),
                "anti-entropy index disagreed with storage; partition will be rebuilt"
            );
        }
        slot.set(key, listed, new);
    }

    /// Records `key`'s state as `new` without checking what the index held:
    /// for a key whose stored record failed its integrity check, so its old
    /// digest is unknown. `None` (the record is unreadable, or was removed)
    /// makes anti-entropy see the key as missing here, and a peer then sends
    /// a good copy. Call under the key's lock.
    /// Returns the digest the index held.
    pub fn replace(&self, key: &ObjectKey, new: Option<ObjectDigest>) -> Option<ObjectDigest> {
        let partition = key.partition(self.partitions);
        let listed = ListedKey::new(key);
        let mut slot = self.lock(partition);
        let held = slot.keys.get(&listed).copied();
        slot.set(key, listed, new);
        held
    }

    /// The hashes of nodes `indices` of `level` of `partition`'s tree.
    pub fn hashes(&self, partition: u32, level: u8, indices: &[u16]) -> Result<Vec<NodeHash>, IndexError> {
        self.check(partition)?;
        Ok(self.lock(partition).tree().hashes(level, indices)?)
    }

    /// One page of `partition`'s listing of `segments` (strictly
    /// increasing), after `after`: at most `max_entries` entries and about
    /// `max_bytes` of keys. Returns the entries and whether more follow.
    pub fn list(
        &self,
        partition: u32,
        segments: &[u16],
        after: Option<&ObjectKey>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(ObjectKey, ObjectDigest)>, bool), IndexError> {
        self.check(partition)?;
        let after = after.map(ListedKey::new);
        let slot = self.lock(partition);
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut listing = slot.range(segments, after.as_ref(), None);
        for (listed, digest) in listing.by_ref() {
            let Some(key) = listed.object_key() else { continue };
            bytes += listed.key.len() + digest.0.len();
            entries.push((key, *digest));
            if entries.len() >= max_entries || bytes >= max_bytes {
                break;
            }
        }
        let more = listing.next().is_some();
        Ok((entries, more))
    }

    /// Compares one page of a peer's listing of `segments` with this node's
    /// entries in the same range: strictly after `after` and up to
    /// `through` (`None`: to the end of the segments). Stops after `limit`
    /// differences. The peer's entries must be in listing order, inside
    /// that range.
    pub fn compare(
        &self,
        partition: u32,
        segments: &[u16],
        after: Option<&ObjectKey>,
        through: Option<&ObjectKey>,
        remote: Vec<(ObjectKey, ObjectDigest)>,
        limit: usize,
    ) -> Result<ListingDiff<ObjectKey, ObjectDigest>, IndexError> {
        self.check(partition)?;
        let after = after.map(ListedKey::new);
        let through = through.map(ListedKey::new);
        let remote: Vec<(ListedKey, ObjectDigest)> =
            remote.iter().map(|(key, digest)| (ListedKey::new(key), *digest)).collect();
        check_listing(&remote, segments, after.as_ref(), through.as_ref())?;
        let slot = self.lock(partition);
        let local = slot.range(segments, after.as_ref(), through.as_ref()).map(|(key, digest)| (key.clone(), *digest));
        let diff = diff_listings(local, remote, limit);
        drop(slot);
        let differences = diff
            .differences
            .into_iter()
            .filter_map(|difference| {
                let key = difference.key.object_key()?;
                Some(dynamo_core::merkle::Difference { key, local: difference.local, remote: difference.remote })
            })
            .collect();
        Ok(ListingDiff { differences, compared: diff.compared, truncated: diff.truncated })
    }

    /// Whether `partition` must be rebuilt before it is compared.
    pub fn is_suspect(&self, partition: u32) -> bool {
        partition < self.partitions && self.lock(partition).suspect
    }

    /// Partitions marked suspect.
    pub fn suspect_partitions(&self) -> Vec<u32> {
        (0..self.partitions).filter(|partition| self.is_suspect(*partition)).collect()
    }

    /// Keys indexed, over all partitions.
    pub fn keys(&self) -> u64 {
        (0..self.partitions).map(|partition| self.lock(partition).keys.len() as u64).sum()
    }

    /// Writes whose "before" digest disagreed with the index (each marked
    /// its partition suspect).
    pub fn mismatches(&self) -> u64 {
        self.mismatches.load(Ordering::Relaxed)
    }

    /// Q, the ring's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    fn check(&self, partition: u32) -> Result<(), IndexError> {
        if partition < self.partitions {
            Ok(())
        } else {
            Err(IndexError::NoSuchPartition { partition, partitions: self.partitions })
        }
    }

    fn lock(&self, partition: u32) -> MutexGuard<'_, Slot> {
        // A panic while holding a slot cannot leave the tree and list apart
        // (`Slot::set` changes both without anything that can panic in
        // between), so a poisoned slot is still usable.
        self.slots[partition as usize].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A peer's listing must be strictly increasing, inside the segments asked
/// for, after `after` and not beyond `through`.
fn check_listing(
    remote: &[(ListedKey, ObjectDigest)],
    segments: &[u16],
    after: Option<&ListedKey>,
    through: Option<&ListedKey>,
) -> Result<(), IndexError> {
    let increasing = remote.windows(2).all(|pair| pair[0].0 < pair[1].0);
    let inside = remote.iter().all(|(key, _)| {
        segments.binary_search(&key.segment).is_ok()
            && after.is_none_or(|after| key > after)
            && through.is_none_or(|through| key <= through)
    });
    if increasing && inside && usize::from(segments.last().copied().unwrap_or(0)) < SEGMENTS {
        Ok(())
    } else {
        Err(IndexError::Unordered)
    }
}

#[cfg(test)]
mod tests {
    use dynamo_core::codec::encode_object;
    use dynamo_core::object::VersionedObject;
    use dynamo_core::props::ConflictMode;
    use dynamo_core::version::{ActorId, VersionVector};
    use dynamo_storage::MemoryEngine;

    use super::*;

    const Q: u32 = 4;

    fn key(index: u32) -> ObjectKey {
        ObjectKey::new("b", format!("k{index}").as_bytes()).expect("valid")
    }

    fn object(value: &str) -> VersionedObject {
        let mut object = VersionedObject::new();
        let payload = dynamo_core::object::Payload::Value {
            data: bytes::Bytes::from(value.to_string()),
            content_type: None,
            expires_ms: None,
        };
        object.put(&VersionVector::new(), ActorId(1), dynamo_core::hlc::Hlc(1), payload, ConflictMode::Siblings);
        object
    }

    fn store_with(keys: &[(u32, &str)]) -> Store {
        store_of(keys, Q)
    }

    fn store_of(keys: &[(u32, &str)], partitions: u32) -> Store {
        let store = Store::memory(MemoryEngine::new());
        for (index, value) in keys {
            let key = key(*index).storage_key(partitions);
            store.put_buffered(Namespace::Objects, &key, &encode_object(&object(value))).expect("put");
        }
        store
    }

    fn all_roots(index: &MerkleIndex) -> Vec<NodeHash> {
        (0..Q).map(|partition| index.hashes(partition, 0, &[0]).expect("root")[0]).collect()
    }

    #[test]
    fn a_build_equals_the_same_writes_recorded_one_by_one() {
        let entries: Vec<(u32, &str)> = (0..500).map(|index| (index, "v")).collect();
        let (built, report) = MerkleIndex::build(store_with(&entries), Q).expect("build");
        assert_eq!((report.keys, report.partitions, report.skipped), (500, 4, 0));
        let (recorded, _) = MerkleIndex::build(store_with(&[]), Q).expect("build");
        for (index, value) in &entries {
            recorded.record(&key(*index), None, ObjectDigest::of(&object(value)));
        }
        assert_eq!(all_roots(&built), all_roots(&recorded));
        assert_eq!(built.keys(), 500);
        assert_eq!(recorded.mismatches(), 0);
    }

    #[test]
    fn a_write_that_disagrees_with_the_index_marks_the_partition_and_a_rebuild_clears_it() {
        let store = store_with(&[(1, "a")]);
        let (index, _) = MerkleIndex::build(store.clone(), Q).expect("build");
        let partition = key(1).partition(Q);
        // Storage changes behind the index's back...
        store.put_buffered(Namespace::Objects, &key(1).storage_key(Q), &encode_object(&object("b"))).expect("put");
        // ...and the next write reports a "before" the index never saw.
        index.record(&key(1), ObjectDigest::of(&object("b")), ObjectDigest::of(&object("c")));
        assert!(index.is_suspect(partition));
        assert_eq!(index.suspect_partitions(), [partition]);
        assert_eq!(index.mismatches(), 1);
        store.put_buffered(Namespace::Objects, &key(1).storage_key(Q), &encode_object(&object("c"))).expect("put");
        let before = index.hashes(partition, 0, &[0]).expect("root");
        assert_eq!(index.rebuild(partition).expect("rebuild"), 1);
        assert!(!index.is_suspect(partition));
        assert_eq!(index.hashes(partition, 0, &[0]).expect("root"), before, "the write had fixed the key already");
    }

    #[test]
    fn a_corrupt_record_is_left_out_and_the_build_goes_on() {
        let store = store_with(&[(1, "a"), (2, "b"), (3, "c")]);
        let engine = store.engine().expect("engine");
        let storage_key = key(2).storage_key(Q);
        let mut raw = engine.get(Namespace::Objects, &storage_key).expect("get").expect("present");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        engine.put(Namespace::Objects, &storage_key, &raw).expect("corrupt it");
        let (index, report) = MerkleIndex::build(store, Q).expect("a corrupt record does not stop the build");
        assert_eq!((report.keys, report.skipped), (2, 1));
        assert_eq!(index.keys(), 2);
    }

    #[test]
    fn a_write_already_seen_by_a_rebuild_is_not_a_mismatch() {
        let (index, _) = MerkleIndex::build(store_with(&[(1, "new")]), Q).expect("build");
        index.record(&key(1), ObjectDigest::of(&object("old")), ObjectDigest::of(&object("new")));
        assert_eq!(index.mismatches(), 0);
    }

    #[test]
    fn listings_page_in_order_and_resume_after_the_last_key() {
        let entries: Vec<(u32, &str)> = (0..300).map(|index| (index, "v")).collect();
        let (index, _) = MerkleIndex::build(store_of(&entries, 1), 1).expect("build");
        let all: Vec<u16> = (0..SEGMENTS as u16).collect();
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let (page, more) = index.list(0, &all, after.as_ref(), 7, usize::MAX).expect("list");
            assert!(page.len() <= 7);
            after = page.last().map(|(key, _)| key.clone());
            listed.extend(page);
            if !more {
                break;
            }
        }
        assert_eq!(listed.len(), 300);
        let order: Vec<ListedKey> = listed.iter().map(|(key, _)| ListedKey::new(key)).collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn comparing_pages_finds_keys_missing_extra_and_changed() {
        let (local, _) = MerkleIndex::build(store_of(&[(1, "a"), (2, "b"), (3, "c")], 1), 1).expect("build");
        let (remote, _) = MerkleIndex::build(store_of(&[(2, "B"), (3, "c"), (4, "d")], 1), 1).expect("build");
        let mut segments: Vec<u16> = [1, 2, 3, 4].iter().map(|index| segment_of(&key(*index))).collect();
        segments.sort_unstable();
        segments.dedup();
        let (page, more) = remote.list(0, &segments, None, 100, usize::MAX).expect("list");
        assert!(!more);
        let diff = local.compare(0, &segments, None, None, page, 100).expect("compare");
        let mut found: Vec<ObjectKey> = diff.differences.iter().map(|difference| difference.key.clone()).collect();
        found.sort();
        assert_eq!(found, [key(1), key(2), key(4)]);
        assert_eq!(diff.compared, 4);
    }

    #[test]
    fn a_listing_out_of_order_or_outside_the_segments_is_refused() {
        let (index, _) = MerkleIndex::build(store_of(&[], 1), 1).expect("build");
        let segment = segment_of(&key(1));
        let digest = ObjectDigest::default();
        let outside = index.compare(0, &[segment.wrapping_add(1) % 1024], None, None, vec![(key(1), digest)], 10);
        assert!(matches!(outside, Err(IndexError::Unordered)));
        let twice = index.compare(0, &[segment], None, None, vec![(key(1), digest), (key(1), digest)], 10);
        assert!(matches!(twice, Err(IndexError::Unordered)));
        assert!(matches!(index.hashes(1, 0, &[0]), Err(IndexError::NoSuchPartition { partition: 1, .. })));
    }

    #[test]
    fn listed_keys_order_as_bucket_then_key() {
        let a = ObjectKey::new("ab", b"z").expect("valid");
        let b = ObjectKey::new("abc", b"a").expect("valid");
        let (left, right) = (ListedKey::new(&a), ListedKey::new(&b));
        assert_eq!(left.key.cmp(&right.key), a.cmp(&b));
        assert_eq!(left.object_key(), Some(a));
    }
}
