//! A replica: this node's copy of the keys it stores, and the only code that
//! reads or writes objects in storage. Every change to a key is a
//! read-merge-write under that key's lock, so two concurrent writes to one
//! key on one node can never overwrite each other (both survive as siblings
//! or one supersedes the other, as their contexts say). Waiting for an fsync
//! happens after the lock is released, so durable writes to one key still
//! share a group commit. Every change is also reported, under the same
//! lock, to the anti-entropy [`MerkleIndex`], which keeps one Merkle tree per
//! partition in step with storage, and to the [`crate::tombstone_index`].
//!
//! [`Replica::serve`] is the replica side of the node-to-node protocol: the
//! requests one replica sends another (read, write, reap, Merkle questions,
//! transfer pages), served the same way whether they come over RPC or from
//! this node's own coordinator.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dynamo_core::codec::{CodecError, check_encodable, decode_object, encode_object};
use dynamo_core::crdt::counter::OperationId;
use dynamo_core::crdt::value::{DataOp, OpError};
use dynamo_core::hlc::{Hlc, HlcClock};
use dynamo_core::keys::ObjectKey;
use dynamo_core::listing::ReplicaPage;
use dynamo_core::merkle::ObjectDigest;
use dynamo_core::messages::{MAX_LISTED_BUCKETS, MAX_TRANSFER_KEYS, Request, Response, TRANSFER_PAGE_BYTES};
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{ConflictMode, DataType};
use dynamo_core::version::{ActorId, VersionVector};
use dynamo_storage::{Durability, Namespace, StorageError, Store};
use thiserror::Error;
use tracing::warn;

use crate::clock::WallClock;
use crate::merkle_index::MerkleIndex;
use crate::tombstone_index;

/// Number of key-lock stripes: enough that unrelated keys rarely share one
/// on a 2-core box, small enough to allocate up front.
const LOCK_STRIPES: usize = 4096;

/// Why a replica could not serve a request.
#[derive(Debug, Error)]
pub enum ReplicaError {
    /// Storage failed (I/O, corruption detected by the record checksum).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record passed its checksum but does not decode: written by a newer
    /// format or corrupted before framing. Treated as corruption.
    #[error("corruption detected in stored object {bucket}/{key}: {source}")]
    Undecodable {
        /// Bucket of the key.
        bucket: String,
        /// Key, lossy UTF-8.
        key: String,
        /// The decode error.
        source: CodecError,
    },
    /// A stored object's key does not follow the storage layout.
    #[error("corruption detected in the objects namespace: {detail}")]
    BadStorageKey {
        /// What is wrong with it.
        detail: String,
    },
    /// The write would leave an object the storage format cannot hold (too
    /// many siblings or clock entries); nothing was written.
    #[error(
        "refused a write to {bucket}/{key}: the object would exceed the storage format ({reason}); resolve its \
         siblings by writing with the context of a read"
    )]
    Unencodable {
        /// Bucket of the key.
        bucket: String,
        /// Key, lossy UTF-8.
        key: String,
        /// Which bound.
        reason: String,
    },
    /// A data-type operation the stored value refuses (wrong type, a
    /// remove of what the client never saw, a limit); nothing was written.
    #[error(transparent)]
    Refused(#[from] OpError),
}

impl ReplicaError {
    /// Whether the stored record failed its checksum: damaged bytes (bit
    /// rot, a torn write) that hold nothing readable, so that a good copy
    /// may replace them. A record that passes its checksum but does not
    /// decode (a newer format, or a bound exceeded) is not: it is what the
    /// node wrote, and overwriting it could drop acknowledged versions.
    pub fn is_bit_rot(&self) -> bool {
        matches!(self, ReplicaError::Storage(StorageError::Corruption { .. }))
    }

    /// Whether this is detected corruption (as opposed to an I/O failure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            ReplicaError::Undecodable { .. }
                | ReplicaError::BadStorageKey { .. }
                | ReplicaError::Storage(StorageError::Corruption { .. })
        )
    }
}

/// Which timestamp a coordinated write gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStamp {
    /// A fresh one from this node's clock, after the given timestamp (the
    /// greatest one the client's read saw).
    After(Hlc),
    /// Exactly this one: a forwarding node stamped the write (see
    /// [`dynamo_core::messages::ForwardOptions::stamp`]).
    Exactly(Hlc),
}

/// What [`Replica::update`] does with a record that fails its checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unreadable {
    /// Count it as absent and write the change over it (merges: see
    /// `update`).
    Replace,
    /// Refuse the change. A data-type operation must act on a state that
    /// holds this actor's own earlier updates, or its new totals and dots
    /// would restart below what other replicas hold and vanish in the
    /// merge; the client's retry goes to another replica, and anti-entropy
    /// repairs this one.
    Refuse,
}

/// Records [`Replica::list_keys`] reads per storage scan: bounds the memory
/// of a listing call whatever the bucket's size.
const LIST_SCAN_CHUNK: usize = 256;
/// Most records one [`Replica::list_keys`] call examines, live or dead, so
/// that a range full of tombstones answers in bounded time.
pub const LIST_SCAN_BUDGET: usize = 20_000;
/// Records [`Replica::live_buckets`] reads per scan: small, since it jumps
/// past a bucket as soon as it finds a live key of it.
const BUCKET_SCAN_CHUNK: usize = 16;
/// Most records one [`Replica::live_buckets`] call reads in all.
pub const BUCKET_SCAN_BUDGET: usize = 1_000_000;

/// Most records [`Replica::holds_live_keys`] reads before it gives up and
/// answers true.
pub const MAX_LIVE_KEY_PROBE: usize = 100_000;
/// Records it reads per scan.
const LIVE_KEY_PROBE_PAGE: usize = 256;

/// This node's replica of the keyspace.
pub struct Replica {
    store: Store,
    partitions: u32,
    /// The actor of the writes and data-type operations coordinated here:
    /// fresh per process incarnation, and replaced by a new one whenever a
    /// damaged record is written over (see [`Replica::rotate_actor`]).
    actor: AtomicU64,
    hlc: Mutex<HlcClock>,
    wall: Arc<dyn WallClock>,
    key_locks: Box<[Mutex<()>]>,
    /// The greatest dot counter this incarnation's actor has issued, for
    /// any key: new dots go above it (see
    /// [`VersionedObject::put_above`]), so a key whose tombstone was
    /// collected never reuses a dot.
    issued: AtomicU64,
    /// Operation ids minted by this incarnation.
    minted: AtomicU64,
    /// Most bytes a data-type value may take once an operation applied
    /// here changed it (`max_value_bytes`; merges are never refused).
    max_value_bytes: usize,
    /// The Merkle trees of this replica's objects, updated on every write.
    index: Arc<MerkleIndex>,
}

impl Replica {
    /// A replica over `store`. `actor` must be fresh for this process
    /// incarnation (see [`dynamo_core::version::ActorId`]). `index` must have
    /// been built from `store` ([`MerkleIndex::build`]) with nothing written
    /// since.
    pub fn new(
        store: Store,
        partitions: u32,
        actor: ActorId,
        wall: Arc<dyn WallClock>,
        index: Arc<MerkleIndex>,
    ) -> Self {
        let key_locks = (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect();
        Self {
            store,
            partitions,
            actor: AtomicU64::new(actor.0),
            hlc: Mutex::new(HlcClock::new()),
            wall,
            key_locks,
            issued: AtomicU64::new(0),
            minted: AtomicU64::new(0),
            max_value_bytes: usize::MAX,
            index,
        }
    }

    /// This replica with data-type operations refused when they would grow
    /// a stored value past `limit` bytes (see [`Replica::coordinate_update`]).
    pub fn with_max_value_bytes(mut self, limit: usize) -> Self {
        self.max_value_bytes = limit;
        self
    }

    /// A fresh operation id for an increment this node forwards without
    /// one (so that the forwarder's own retry through another replica
    /// counts once): this incarnation's actor and a sequence number, unique
    /// because the actor is.
    pub fn mint_operation_id(&self) -> OperationId {
        let sequence = self.minted.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.actor.load(Ordering::Acquire).to_be_bytes());
        bytes[8..].copy_from_slice(&sequence.to_be_bytes());
        OperationId(bytes)
    }

    /// The anti-entropy Merkle trees of this replica.
    pub fn index(&self) -> &MerkleIndex {
        &self.index
    }

    /// The actor id this replica signs the writes it coordinates with.
    pub fn actor(&self) -> ActorId {
        ActorId(self.actor.load(Ordering::Acquire))
    }

    /// Takes a new actor id, after a damaged record was written over: the
    /// record may have held this actor's own updates of the key, which the
    /// replacement lacks, so updates coordinated from it under the same
    /// actor could reuse a dot or restart a counter entry below what other
    /// replicas hold (both lost in the merge). The new id is derived from
    /// the old one (splitmix64), so a deterministic simulation stays so.
    fn rotate_actor(&self) {
        let old = self.actor.load(Ordering::Acquire);
        let fresh = dynamo_core::rng::SplitMix64::new(old).next_u64();
        if self.actor.compare_exchange(old, fresh, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            warn!(old = %ActorId(old), new = %ActorId(fresh), "took a new actor id after replacing a damaged record");
        }
    }

    /// A fresh hybrid-logical-clock timestamp from this node's clock (for
    /// versioning metadata changes such as bucket props).
    pub fn timestamp(&self) -> u64 {
        self.lock_hlc().now(self.wall.now_ms()).0
    }

    /// A fresh timestamp after `seen`, for a write this node forwards to a
    /// replica (the replica stamps the new version with it exactly).
    pub fn stamp_after(&self, seen: Hlc) -> Hlc {
        let mut hlc = self.lock_hlc();
        hlc.observe(seen);
        hlc.now(self.wall.now_ms())
    }

    /// This node's wall clock, in ms since the epoch.
    pub fn wall_ms(&self) -> u64 {
        self.wall.now_ms()
    }

    /// The underlying store (for metrics and shutdown).
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// Serves one replica request (from a peer, or from this node without
    /// the network). Requests that are not a replica's (coordination,
    /// props, hints, membership) are refused: the RPC handler serves those.
    pub async fn serve(&self, request: Request) -> Result<Response, String> {
        match request {
            Request::Read { key } => match self.read(&key) {
                Ok(object) => Ok(Response::Read { object }),
                Err(error) if error.is_bit_rot() => Ok(Response::Unreadable { reason: error.to_string() }),
                Err(error) => Err(error.to_string()),
            },
            Request::Write { key, object, mode, durable } => {
                let durability = if durable { Durability::Durable } else { Durability::Buffered };
                match self.merge_write(&key, &object, mode, durability).await {
                    Ok(_) => Ok(Response::Written { durable }),
                    Err(error) => Err(error.to_string()),
                }
            }
            Request::Reap { key, tombstone } => match self.reap(&key, &tombstone) {
                Ok(_) => Ok(Response::Written { durable: false }),
                Err(error) => Err(error.to_string()),
            },
            Request::Ping => Ok(Response::Pong),
            Request::BucketHasKeys { bucket } => match self.holds_live_keys(&bucket) {
                Ok(any) => Ok(Response::BucketKeys { any }),
                Err(error) => Err(format!("cannot tell whether bucket {bucket} holds keys: {error}")),
            },
            Request::ListKeys { partition, bucket, after, max_keys, max_bytes } => {
                if partition >= self.partitions {
                    return Err(format!("partition {partition} is out of range; this ring has {}", self.partitions));
                }
                let limits = (usize::from(max_keys), max_bytes as usize);
                match self.list_keys(partition, &bucket, after.as_deref(), limits.0, limits.1) {
                    Ok(page) => Ok(Response::ListedKeys { keys: page.keys, covered: page.covered }),
                    Err(error) => Err(format!("cannot list bucket {bucket} in partition {partition}: {error}")),
                }
            }
            Request::ListBuckets => match self.live_buckets() {
                Ok((buckets, complete)) => Ok(Response::Buckets { buckets, complete }),
                Err(error) => Err(format!("cannot list buckets: {error}")),
            },
            request @ (Request::MerkleHashes { .. } | Request::MerkleKeys { .. }) => self.index.serve(request),
            Request::TransferPage { partition, after, .. } => match self.transfer_page(partition, after.as_ref()) {
                Ok((entries, more)) => Ok(Response::TransferPage { entries, more }),
                Err(error) => Err(error.to_string()),
            },
            Request::Coordinate { .. }
            | Request::CoordinateUpdate { .. }
            | Request::SetProps { .. }
            | Request::HintedWrite { .. }
            | Request::Gossip { .. }
            | Request::GossipPush { .. }
            | Request::Join { .. } => Err("not a replica request; the node handler serves it".to_string()),
        }
    }

    /// Reads this replica's state of `key` (empty when never written).
    ///
    /// A record that fails its checksum is an error (corrupt data is
    /// never served), and the key leaves the anti-entropy index, so that
    /// the next exchange with a peer holding the key sends a good copy,
    /// which replaces the record (see [`Replica::merge_write`]).
    pub fn read(&self, key: &ObjectKey) -> Result<VersionedObject, ReplicaError> {
        let storage_key = key.storage_key(self.partitions);
        let loaded = self.load(key, &storage_key);
        if let Err(error) = &loaded
            && error.is_bit_rot()
        {
            self.unindex_if_still_rotten(key, &storage_key);
        }
        loaded
    }

    /// Takes `key` out of the anti-entropy index if its record (still,
    /// under the key's lock) fails its checksum. Logged once per rotten
    /// record: later reads find the key already out of the index.
    fn unindex_if_still_rotten(&self, key: &ObjectKey, storage_key: &[u8]) {
        let _guard = self.lock_key(key);
        if let Err(error) = self.load(key, storage_key)
            && error.is_bit_rot()
            && self.index.replace(key, None).is_some()
        {
            warn!(bucket = key.bucket(), %error, "stored object is unreadable; a good copy from another replica will replace it");
        }
    }

    /// Applies a client write coordinated here: supersedes what `context`
    /// has seen and adds `payload` as a new version. Its timestamp comes
    /// after the greatest one the client's read returned (`stamp`), so in a
    /// last-write-wins bucket it replaces what the client saw even if this
    /// node's clock lags and it never held that version. Returns the new
    /// state.
    pub async fn coordinate_write(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        stamp: WriteStamp,
        payload: Payload,
        mode: ConflictMode,
        durability: Durability,
    ) -> Result<VersionedObject, ReplicaError> {
        let timestamp = match stamp {
            WriteStamp::After(seen) => self.stamp_after(seen),
            WriteStamp::Exactly(timestamp) => {
                self.lock_hlc().observe(timestamp);
                timestamp
            }
        };
        let floor = self.issued.load(Ordering::Acquire);
        let (updated, ()) = self.update(key, Unreadable::Replace, None, |object| {
            let dot = object.put_above(context, self.actor(), floor, timestamp, payload, mode);
            self.issued.fetch_max(dot.counter, Ordering::AcqRel);
            Ok(())
        })?;
        self.wait_durable(durability).await?;
        Ok(updated)
    }

    /// Merges a version set coordinated elsewhere (replication, read repair,
    /// hinted handoff, anti-entropy) into this replica. Returns the new state.
    pub async fn merge_write(
        &self,
        key: &ObjectKey,
        incoming: &VersionedObject,
        mode: ConflictMode,
        durability: Durability,
    ) -> Result<VersionedObject, ReplicaError> {
        if let Some(latest) = incoming.siblings().iter().map(|sibling| sibling.timestamp).max() {
            self.lock_hlc().observe(latest);
        }
        let (updated, ()) = self.update(key, Unreadable::Replace, None, |object| {
            object.merge(incoming, mode);
            Ok(())
        })?;
        self.wait_durable(durability).await?;
        Ok(updated)
    }

    /// Applies a data-type operation coordinated here, this replica acting
    /// as the operation's actor (issue 12). Returns the new state and the
    /// delta to ship to the other replicas; nothing is written when the
    /// value refuses the operation.
    pub async fn coordinate_update(
        &self,
        key: &ObjectKey,
        op: &DataOp,
        kind: DataType,
        durability: Durability,
    ) -> Result<(VersionedObject, VersionedObject), ReplicaError> {
        let timestamp = self.stamp_after(Hlc(0));
        let floor = self.issued.load(Ordering::Acquire);
        let (updated, delta) = self.update(key, Unreadable::Refuse, Some(self.max_value_bytes), |object| {
            let delta = object.apply_datatype(op, kind, self.actor(), floor, timestamp)?;
            if let Some(sibling) = delta.siblings().first() {
                self.issued.fetch_max(sibling.dot.counter, Ordering::AcqRel);
            }
            Ok(delta)
        })?;
        self.wait_durable(durability).await?;
        Ok((updated, delta))
    }

    /// Read-merge-write of one key under its stripe lock. Writes only when
    /// the state changed, and then updates the key's Merkle tree from its
    /// digests before and after, still under the lock (so the index sees a
    /// key's writes in the order storage did).
    ///
    /// A stored record that fails its checksum counts as absent (one that
    /// passes it but does not decode is refused): the write replaces it. Nothing readable is lost (the record was not),
    /// and every acknowledged write it held is on W-1 other replicas, from
    /// which read repair and anti-entropy bring it back. Refusing instead
    /// would make the key unwritable here, and unrepairable, for good.
    fn update<T>(
        &self,
        key: &ObjectKey,
        unreadable: Unreadable,
        limit: Option<usize>,
        change: impl FnOnce(&mut VersionedObject) -> Result<T, ReplicaError>,
    ) -> Result<(VersionedObject, T), ReplicaError> {
        let storage_key = key.storage_key(self.partitions);
        let _guard = self.lock_key(key);
        let (mut object, readable) = match self.load(key, &storage_key) {
            Ok(object) => (object, true),
            Err(error) if error.is_bit_rot() && unreadable == Unreadable::Replace => {
                self.rotate_actor();
                warn!(bucket = key.bucket(), %error, "replacing an unreadable stored object with the merge of a write");
                (VersionedObject::new(), false)
            }
            Err(error) => return Err(error),
        };
        let before = object.clone();
        let outcome = change(&mut object)?;
        if let Err(bound) = check_encodable(&object) {
            return Err(ReplicaError::Unencodable {
                bucket: key.bucket().to_string(),
                key: String::from_utf8_lossy(key.key()).into_owned(),
                reason: bound.to_string(),
            });
        }
        if object != before {
            let encoded = encode_object(&object);
            if let Some(limit) = limit
                && encoded.len() > limit
            {
                return Err(ReplicaError::Refused(OpError::TooLarge { size: encoded.len(), limit }));
            }
            // Paired with the decode of every read (`load`): what goes to
            // disk must read back as exactly this object. A full decode per
            // write is for debug builds; release keeps check_encodable.
            debug_assert_eq!(
                decode_object(&encoded).ok().as_ref(),
                Some(&object),
                "an encoded object does not decode back to itself"
            );
            self.store.put_buffered(Namespace::Objects, &storage_key, &encoded)?;
            let digest = ObjectDigest::of_encoding(&object, &encoded);
            if readable {
                self.index.record(key, ObjectDigest::of(&before), digest);
            } else {
                self.index.replace(key, digest);
            }
            if let Some(dead_from_ms) = object.dead_from_ms() {
                tombstone_index::note(&self.store, &storage_key, dead_from_ms)?;
            }
        }
        Ok((object, outcome))
    }

    /// Removes `key`'s record if it is still exactly `tombstone` (a
    /// collected tombstone: every replica holds it and its grace period is
    /// over; see [`crate::tombstone_collector`]). Returns whether it was removed. A
    /// write that landed since makes the record differ, and it stays.
    pub fn reap(&self, key: &ObjectKey, tombstone: &VersionedObject) -> Result<bool, ReplicaError> {
        let storage_key = key.storage_key(self.partitions);
        let _guard = self.lock_key(key);
        let current = self.load(key, &storage_key)?;
        if current != *tombstone || !current.is_dead_at(self.wall_ms()) {
            return Ok(false);
        }
        self.store.remove(Namespace::Objects, &storage_key)?;
        self.index.record(key, ObjectDigest::of(&current), None);
        tombstone_index::forget(&self.store, &storage_key)?;
        Ok(true)
    }

    /// Rewrites the tombstone-index entry of `storage_key` from the stored
    /// object, under the key's lock (so that it cannot undo a newer
    /// entry): for an entry that failed its checksum. A key that is deleted
    /// gets a fresh entry, any other loses it.
    pub fn reindex_tombstone(&self, storage_key: &[u8]) -> Result<(), ReplicaError> {
        let Ok((_, key)) = ObjectKey::from_storage_key(storage_key) else {
            tombstone_index::forget(&self.store, storage_key)?;
            return Ok(());
        };
        let _guard = self.lock_key(&key);
        match self.load(&key, storage_key) {
            Ok(object) => match object.dead_from_ms() {
                Some(dead_from_ms) => tombstone_index::note(&self.store, storage_key, dead_from_ms)?,
                None => tombstone_index::forget(&self.store, storage_key)?,
            },
            Err(error) if error.is_bit_rot() => tombstone_index::forget(&self.store, storage_key)?,
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// One page of this replica's objects of `partition`, in storage-key
    /// order, after `after` (partition transfers): at most
    /// [`MAX_TRANSFER_KEYS`] objects, closed early once they pass
    /// [`TRANSFER_PAGE_BYTES`]. Returns the page and whether more follow.
    ///
    /// A record that fails its checksum is left out (and logged): it holds
    /// nothing a copy could carry, and the puller copies the partition from
    /// every previous replica, so the key's good versions arrive from the
    /// others. Failing the page instead would stop the ring change for
    /// good. A record that passes its checksum but does not decode fails
    /// the page: it is what the node wrote, and every source holds the
    /// same, so leaving it out would lose it.
    pub fn transfer_page(
        &self,
        partition: u32,
        after: Option<&ObjectKey>,
    ) -> Result<(Vec<(ObjectKey, VersionedObject)>, bool), ReplicaError> {
        let prefix = partition.to_be_bytes();
        let mut start = match after {
            // The smallest storage key above `after`'s.
            Some(key) => {
                let mut start = key.storage_key(self.partitions);
                start.push(0);
                start
            }
            None => prefix.to_vec(),
        };
        let limit = MAX_TRANSFER_KEYS + 1;
        loop {
            let rows = self.store.scan_records(Namespace::Objects, &prefix, &start, limit)?;
            // A full scan may have stopped before the partition's end.
            let mut more = rows.len() == limit;
            let resume = rows.last().map(|(storage_key, _)| storage_key.clone());
            let mut entries = Vec::new();
            let mut bytes = 0usize;
            for (storage_key, payload) in rows {
                if entries.len() == MAX_TRANSFER_KEYS || bytes >= TRANSFER_PAGE_BYTES {
                    more = true;
                    break;
                }
                match self.decode_record(&storage_key, payload) {
                    Ok((key, object, size)) => {
                        bytes += size + storage_key.len();
                        entries.push((key, object));
                    }
                    Err(error) if error.is_bit_rot() => {
                        warn!(partition, %error, "left an unreadable record out of a partition transfer");
                    }
                    Err(error) => return Err(error),
                }
            }
            match resume {
                // A whole scan of unreadable records: go on after them, as
                // a page must either hold something or end the partition.
                Some(mut last) if entries.is_empty() && more => {
                    last.push(0);
                    start = last;
                }
                _ => {
                    let more = more && !entries.is_empty();
                    return Ok((entries, more));
                }
            }
        }
    }

    /// Whether this replica stores a live key of `bucket` (one that is not
    /// only tombstones), for the rule that a bucket's datatype is fixed
    /// once it holds data. Reads each partition's range of the bucket until
    /// it finds one, and at most [`MAX_LIVE_KEY_PROBE`] records in all:
    /// past that, or on a record it cannot read, it answers true, so a
    /// datatype change is refused rather than allowed on a guess.
    pub fn holds_live_keys(&self, bucket: &str) -> Result<bool, ReplicaError> {
        let mut budget = MAX_LIVE_KEY_PROBE;
        let now_ms = self.wall_ms();
        for partition in 0..self.partitions {
            let mut prefix = partition.to_be_bytes().to_vec();
            prefix.push(u8::try_from(bucket.len()).unwrap_or(u8::MAX));
            prefix.extend_from_slice(bucket.as_bytes());
            let mut start = prefix.clone();
            loop {
                let rows = self.store.scan_records(Namespace::Objects, &prefix, &start, LIVE_KEY_PROBE_PAGE)?;
                let full = rows.len() == LIVE_KEY_PROBE_PAGE;
                for (storage_key, payload) in rows {
                    budget = budget.saturating_sub(1);
                    match self.decode_record(&storage_key, payload) {
                        Ok((_, object, _)) if !object.is_live_at(now_ms) => {}
                        _ => return Ok(true),
                    }
                    if budget == 0 {
                        return Ok(true);
                    }
                    start = storage_key;
                    start.push(0);
                }
                if !full {
                    break;
                }
            }
        }
        Ok(false)
    }

    /// One page of this replica's live keys of `bucket` in `partition`, in
    /// key order, after `after` (paged listing, issue 14): at most
    /// `max_keys` keys of at most `max_bytes` bytes in all (the first key
    /// always fits), with how far it looked ([`ReplicaPage::covered`]).
    ///
    /// Storage puts the partition and then the bucket first in every key,
    /// so the bucket's keys of a partition are one contiguous range, read
    /// [`LIST_SCAN_CHUNK`] records at a time: memory stays bounded however
    /// large the bucket. Dead keys (tombstones, expired values, by this
    /// node's clock) are skipped; at most [`LIST_SCAN_BUDGET`] records are
    /// examined per call, so a range of many tombstones answers in bounded
    /// time too, with an empty page that still moves the listing on. A
    /// record that fails its checksum is left out (logged): the
    /// coordinator reads more than one replica, and another holds a good
    /// copy. One that does not decode (a newer format) is listed: it is
    /// what the node wrote, most likely live.
    pub fn list_keys(
        &self,
        partition: u32,
        bucket: &str,
        after: Option<&[u8]>,
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<ReplicaPage, ReplicaError> {
        let prefix = bucket_prefix(partition, bucket);
        let mut start = prefix.clone();
        if let Some(after) = after {
            // The smallest storage key above `after`'s.
            start.extend_from_slice(after);
            start.push(0);
        }
        let now_ms = self.wall_ms();
        let (mut keys, mut bytes, mut examined) = (Vec::new(), 0usize, 0usize);
        let mut covered: Option<Vec<u8>> = None;
        loop {
            let rows = self.store.scan_records(Namespace::Objects, &prefix, &start, LIST_SCAN_CHUNK)?;
            let full = rows.len() == LIST_SCAN_CHUNK;
            for (storage_key, payload) in rows {
                let key = storage_key[prefix.len()..].to_vec();
                let closed = keys.len() == max_keys || (!keys.is_empty() && bytes + key.len() > max_bytes);
                if closed || examined == LIST_SCAN_BUDGET {
                    // Paired with the first-key rule: a call always looks
                    // at one record, so `covered` is set here.
                    debug_assert!(covered.is_some(), "a page closed before it examined a record");
                    return Ok(ReplicaPage { keys, covered });
                }
                examined += 1;
                match self.decode_record(&storage_key, payload) {
                    Ok((_, object, _)) if !object.is_live_at(now_ms) => {}
                    Ok(_) | Err(ReplicaError::Undecodable { .. }) => {
                        bytes += key.len();
                        keys.push(key.clone());
                    }
                    Err(error) if error.is_bit_rot() => {
                        warn!(partition, bucket, %error, "left an unreadable record out of a key listing");
                    }
                    Err(error) => return Err(error),
                }
                covered = Some(key);
                start = storage_key;
                start.push(0);
            }
            if !full {
                return Ok(ReplicaPage { keys, covered: None });
            }
        }
    }

    /// The buckets this replica stores a live key of, in any partition,
    /// and whether it looked at everything (bucket listing, issue 14).
    ///
    /// In each partition it reads records in storage-key order until it
    /// finds a live key of a bucket, then jumps past the rest of that
    /// bucket's range (and past the range of any bucket already found):
    /// about one short scan per bucket and partition, not one per key.
    /// Tombstones are read through; past [`BUCKET_SCAN_BUDGET`] records,
    /// or [`MAX_LISTED_BUCKETS`] buckets, it stops and says it is
    /// incomplete. A record that does not decode counts as live (it is
    /// what the node wrote); one that fails its checksum does not.
    pub fn live_buckets(&self) -> Result<(Vec<String>, bool), ReplicaError> {
        let now_ms = self.wall_ms();
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut budget = BUCKET_SCAN_BUDGET;
        for partition in 0..self.partitions {
            let prefix = partition.to_be_bytes();
            let mut start = prefix.to_vec();
            'partition: loop {
                let rows = self.store.scan_records(Namespace::Objects, &prefix, &start, BUCKET_SCAN_CHUNK)?;
                let full = rows.len() == BUCKET_SCAN_CHUNK;
                for (storage_key, payload) in rows {
                    if budget == 0 || found.len() == MAX_LISTED_BUCKETS {
                        return Ok((found.into_iter().collect(), false));
                    }
                    budget -= 1;
                    let Some((bucket, range)) = bucket_of(&storage_key) else {
                        start = storage_key;
                        start.push(0);
                        continue;
                    };
                    let live = found.contains(bucket)
                        || match self.decode_record(&storage_key, payload) {
                            Ok((_, object, _)) => object.is_live_at(now_ms),
                            Err(error) => !error.is_bit_rot(),
                        };
                    if live {
                        found.insert(bucket.to_string());
                        match prefix_successor(range) {
                            Some(next) => start = next,
                            None => break 'partition,
                        }
                        // Jumped: scan again from past the bucket's range.
                        continue 'partition;
                    }
                    start = storage_key;
                    start.push(0);
                }
                if !full {
                    break;
                }
            }
        }
        Ok((found.into_iter().collect(), true))
    }

    /// A scanned object record: its key, its object and its encoded size.
    fn decode_record(
        &self,
        storage_key: &[u8],
        payload: Result<Vec<u8>, StorageError>,
    ) -> Result<(ObjectKey, VersionedObject, usize), ReplicaError> {
        let (_, key) = ObjectKey::from_storage_key(storage_key)
            .map_err(|error| ReplicaError::BadStorageKey { detail: error.to_string() })?;
        let encoded = payload?;
        let object = decode_stored(&key, &encoded)?;
        Ok((key, object, encoded.len()))
    }

    /// Removes up to `max` objects of `partition`, which this node no
    /// longer replicates (after a ring change has settled; see
    /// [`crate::transfers`]). Returns how many were removed; fewer than
    /// `max` means the partition is empty here now.
    pub fn purge_partition(&self, partition: u32, max: usize) -> Result<usize, ReplicaError> {
        let prefix = partition.to_be_bytes();
        let rows = self.store.scan_records(Namespace::Objects, &prefix, &prefix, max)?;
        let count = rows.len();
        for (storage_key, _) in rows {
            // Unreadable records go too: this node no longer owns them.
            let Ok((_, key)) = ObjectKey::from_storage_key(&storage_key) else {
                // No key to lock or index: nothing else knows this record.
                self.store.remove(Namespace::Objects, &storage_key)?;
                continue;
            };
            let _guard = self.lock_key(&key);
            let current = match self.load(&key, &storage_key) {
                Ok(current) => Some(current),
                Err(error) if error.is_bit_rot() => None,
                Err(error) => return Err(error),
            };
            self.store.remove(Namespace::Objects, &storage_key)?;
            match current {
                Some(current) => self.index.record(&key, ObjectDigest::of(&current), None),
                None => {
                    self.index.replace(&key, None);
                }
            }
            tombstone_index::forget(&self.store, &storage_key)?;
        }
        Ok(count)
    }

    fn load(&self, key: &ObjectKey, storage_key: &[u8]) -> Result<VersionedObject, ReplicaError> {
        match self.store.get(Namespace::Objects, storage_key)? {
            None => Ok(VersionedObject::new()),
            Some(bytes) => decode_stored(key, &bytes),
        }
    }

    async fn wait_durable(&self, durability: Durability) -> Result<(), ReplicaError> {
        if durability == Durability::Durable {
            self.store.sync().await?;
        }
        Ok(())
    }

    fn lock_key(&self, key: &ObjectKey) -> MutexGuard<'_, ()> {
        let stripe = (key.ring_position() as usize) % self.key_locks.len();
        // A poisoned stripe only means another request panicked mid-update;
        // the stored bytes are still whole (one put per update), so go on.
        self.key_locks[stripe].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_hlc(&self) -> MutexGuard<'_, HlcClock> {
        self.hlc.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The storage-key prefix of `bucket`'s keys in `partition` (see
/// [`ObjectKey::storage_key`]): partition, bucket length, bucket.
fn bucket_prefix(partition: u32, bucket: &str) -> Vec<u8> {
    let mut prefix = partition.to_be_bytes().to_vec();
    prefix.push(u8::try_from(bucket.len()).unwrap_or(u8::MAX));
    prefix.extend_from_slice(bucket.as_bytes());
    prefix
}

/// The bucket of a storage key, and the key's prefix up to and including
/// the bucket; `None` when the key does not follow the layout.
fn bucket_of(storage_key: &[u8]) -> Option<(&str, &[u8])> {
    let bucket_len = usize::from(*storage_key.get(4)?);
    let range = storage_key.get(..5 + bucket_len)?;
    let bucket = std::str::from_utf8(&range[5..]).ok()?;
    Some((bucket, range))
}

/// The smallest byte string above every string starting with `prefix`;
/// `None` when there is none (all bytes 0xff).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// Decodes `key`'s stored object; a failure is corruption naming the key.
fn decode_stored(key: &ObjectKey, bytes: &[u8]) -> Result<VersionedObject, ReplicaError> {
    decode_object(bytes).map_err(|source| ReplicaError::Undecodable {
        bucket: key.bucket().to_string(),
        key: String::from_utf8_lossy(key.key()).into_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use dynamo_core::hlc::Hlc;
    use dynamo_storage::MemoryEngine;

    use super::*;
    use crate::clock::SystemClock;

    const PARTITIONS: u32 = 16;

    fn replica() -> Replica {
        let store = Store::memory(MemoryEngine::new());
        let (index, _) = MerkleIndex::build(store.clone(), PARTITIONS).expect("index");
        Replica::new(store, PARTITIONS, ActorId(1), Arc::new(SystemClock), Arc::new(index))
    }

    async fn store(replica: &Replica, bucket: &str, key: &str, payload: Payload) {
        let key = ObjectKey::new(bucket, key.as_bytes()).expect("key");
        let mut object = replica.read(&key).expect("read");
        let context = object.context().clone();
        object.put(&context, ActorId(1), Hlc(1 + context.get(ActorId(1))), payload, ConflictMode::Siblings);
        replica.merge_write(&key, &object, ConflictMode::Siblings, Durability::Buffered).await.expect("write");
    }

    fn value() -> Payload {
        Payload::Value { data: Bytes::from_static(b"v"), content_type: None, expires_ms: None }
    }

    #[tokio::test]
    async fn an_operation_that_would_grow_a_value_past_the_limit_is_refused_and_stores_nothing() {
        let replica = replica().with_max_value_bytes(300);
        let key = ObjectKey::new("carts", b"alice").expect("key");
        let add = |element: &str| DataOp::Set {
            updates: vec![dynamo_core::crdt::set::SetUpdate::Add(Bytes::from(element.to_string()))],
            context: None,
        };
        let mut added = 0;
        let refusal = loop {
            match replica
                .coordinate_update(&key, &add(&format!("item-{added:04}")), DataType::Set, Durability::Buffered)
                .await
            {
                Ok(_) => added += 1,
                Err(refusal) => break refusal,
            }
            assert!(added < 100, "the limit was never reached");
        };
        assert!(added > 0, "small values fit");
        assert!(refusal.to_string().contains("max_value_bytes"), "{refusal}");
        let stored = replica.read(&key).expect("read");
        let elements = match stored.datatype_value() {
            Ok(Some(dynamo_core::crdt::value::DataValue::Set(set))) => set.len(),
            other => panic!("a set: {other:?}"),
        };
        assert_eq!(elements, added, "the refused add stored nothing");
        assert!(dynamo_core::codec::encode_object(&stored).len() <= 300);
    }

    /// Every live key of `bucket` in every partition, paging `max_keys` at
    /// a time through `list_keys`.
    fn list_all(replica: &Replica, bucket: &str, max_keys: usize) -> Vec<Vec<u8>> {
        let mut listed = Vec::new();
        for partition in 0..PARTITIONS {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = replica.list_keys(partition, bucket, after.as_deref(), max_keys, 1 << 20).expect("list");
                assert!(page.keys.len() <= max_keys);
                assert!(page.keys.windows(2).all(|pair| pair[0] < pair[1]), "in key order");
                listed.extend(page.keys);
                match page.covered {
                    Some(covered) => after = Some(covered),
                    None => break,
                }
            }
        }
        listed.sort();
        listed
    }

    #[tokio::test]
    async fn a_key_listing_pages_through_live_keys_of_its_bucket_only() {
        let replica = replica();
        let mut expected = Vec::new();
        for index in 0..60 {
            let key = format!("k{index:03}");
            store(&replica, "carts", &key, value()).await;
            if index % 3 == 0 {
                store(&replica, "carts", &key, Payload::Tombstone).await;
            } else {
                expected.push(key.into_bytes());
            }
        }
        store(&replica, "cartsx", "other", value()).await;
        store(&replica, "cart", "other", value()).await;
        expected.sort();
        assert_eq!(list_all(&replica, "carts", 1000), expected);
        assert_eq!(list_all(&replica, "carts", 1), expected, "one key per page resumes after each");
        assert_eq!(list_all(&replica, "none", 10), Vec::<Vec<u8>>::new());
    }

    #[tokio::test]
    async fn a_bucket_is_listed_while_it_holds_a_live_key() {
        let replica = replica();
        store(&replica, "alive", "k", value()).await;
        store(&replica, "gone", "k", value()).await;
        store(&replica, "gone", "k", Payload::Tombstone).await;
        for index in 0..50 {
            store(&replica, "many", &format!("k{index}"), value()).await;
        }
        let (buckets, complete) = replica.live_buckets().expect("buckets");
        assert_eq!(buckets, ["alive", "many"]);
        assert!(complete);
    }

    #[test]
    fn the_successor_of_a_prefix_is_above_everything_it_starts() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }

    #[tokio::test]
    async fn a_bucket_holds_live_keys_only_while_one_is_not_deleted() {
        let replica = replica();
        assert!(!replica.holds_live_keys("carts").unwrap(), "nothing stored");
        // A bucket whose name extends this one's is another bucket.
        store(&replica, "cartsx", "k", value()).await;
        store(&replica, "cart", "k", value()).await;
        assert!(!replica.holds_live_keys("carts").unwrap(), "neighbouring buckets are not this one");
        store(&replica, "carts", "gone", value()).await;
        assert!(replica.holds_live_keys("carts").unwrap());
        store(&replica, "carts", "gone", Payload::Tombstone).await;
        assert!(!replica.holds_live_keys("carts").unwrap(), "a deleted key is not data");
        for index in 0..40 {
            store(&replica, "carts", &format!("dead{index}"), value()).await;
            store(&replica, "carts", &format!("dead{index}"), Payload::Tombstone).await;
        }
        store(&replica, "carts", "alive", value()).await;
        assert!(replica.holds_live_keys("carts").unwrap(), "found past the tombstones");
    }
}
