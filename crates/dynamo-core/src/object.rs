//! The versioned object stored for one key: a dotted version vector set
//! (Preguiça, Baquero, Almeida et al.; Riak 2.0), i.e. a set of siblings, each
//! tagged with the dot of the write that created it, plus a causal context
//! (version vector) of everything this replica has seen for the key.
//!
//! Why not the paper's plain vector clocks: with per-server vector clocks,
//! clients writing through one coordinator with stale contexts make their
//! writes look like descendants of each other or create false siblings that
//! grow without bound ("sibling explosion"). With a dot per sibling, a put
//! discards exactly the siblings its context has seen, so the number of
//! siblings equals the number of truly concurrent writes.
//!
//! The laws, proved by property tests in this module:
//! - `merge` is commutative, associative and idempotent;
//! - a put with the context of a read supersedes exactly what that read saw;
//! - a put without a context (or with a stale one) never discards a version
//!   its context has not seen.
//!
//! Last-write-wins (`ConflictMode::Lww`) keeps the single version with the
//! greatest `(timestamp, dot)` of every version a replica has received, and
//! ignores causality when merging: resolving by timestamp *after* a causal
//! merge is not associative (a version dropped by LWW on one path can still
//! discard another version on a different path, and everything can vanish).
//! Causality still counts where it is known: a put gives its version a
//! timestamp above every version it supersedes, so a write that saw the
//! current value always replaces it, even when the coordinator's clock lags.

use bytes::Bytes;

use crate::crdt::value::{DataOp, DataValue, OpError};
use crate::hlc::Hlc;
use crate::props::{ConflictMode, DataType};
use crate::version::{ActorId, Dot, VersionVector};

/// Longest content type kept with a value.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// What one write stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A value with its (optional) content type and expiry.
    Value {
        /// The opaque bytes.
        data: Bytes,
        /// The client's `Content-Type`, if it sent one.
        content_type: Option<String>,
        /// When the value expires (wall-clock unix ms), if the write gave
        /// it a TTL (issue 14). Part of the version, so it travels with
        /// the value everywhere a version goes (hints, read repair,
        /// anti-entropy, transfers); an expired value reads as a delete.
        expires_ms: Option<u64>,
    },
    /// A delete marker. Kept until every replica has it (so deleted data
    /// never comes back), then collected.
    Tombstone,
    /// A convergent data-type value (issue 12): a whole state, or the delta
    /// of one update. An object holding one merges by the value's own rule
    /// (see [`VersionedObject::merge`]), never into siblings.
    Datatype(DataValue),
}

/// One version of the object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sibling {
    /// The write that created this version.
    pub dot: Dot,
    /// When it was written (hybrid logical clock of the coordinator).
    pub timestamp: Hlc,
    /// What was written.
    pub payload: Payload,
}

impl Sibling {
    /// Whether this version is a delete marker.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.payload, Payload::Tombstone)
    }

    /// When this version stops being live: a tombstone at its write
    /// (wall-clock ms of its timestamp), a value or map at its expiry; `None` for
    /// a version that lives until superseded.
    pub fn dead_from_ms(&self) -> Option<u64> {
        match &self.payload {
            Payload::Tombstone => Some(self.timestamp.wall_ms()),
            _ => self.expires_ms(),
        }
    }

    /// Whether this version reads as absent at `now_ms`: a tombstone, or a
    /// value or map whose expiry has come.
    pub fn is_dead_at(&self, now_ms: u64) -> bool {
        match &self.payload {
            Payload::Tombstone => true,
            _ => self.expires_ms().is_some_and(|expires| expires <= now_ms),
        }
    }

    /// The expiry of a value or map that has one.
    pub fn expires_ms(&self) -> Option<u64> {
        match &self.payload {
            Payload::Value { expires_ms, .. } => *expires_ms,
            Payload::Datatype(value) => value.expires_ms(),
            Payload::Tombstone => None,
        }
    }
}

/// All versions of one key that a replica holds, plus its causal context.
///
/// Invariants: no two siblings share a dot; every sibling's dot is covered by
/// `clock`; siblings are kept sorted by dot (so equal states compare equal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionedObject {
    clock: VersionVector,
    siblings: Vec<Sibling>,
}

impl VersionedObject {
    /// The state of a key nobody has written.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds an object from decoded parts, checking the invariants.
    pub fn from_parts(clock: VersionVector, mut siblings: Vec<Sibling>) -> Result<Self, &'static str> {
        if siblings.iter().any(|sibling| sibling.dot.counter == 0) {
            return Err("a sibling's dot has counter zero");
        }
        if !siblings.iter().all(|sibling| clock.covers(sibling.dot)) {
            return Err("a sibling's dot is not covered by the clock");
        }
        siblings.sort_unstable_by_key(|sibling| sibling.dot);
        if siblings.windows(2).any(|pair| pair[0].dot == pair[1].dot) {
            return Err("two siblings share a dot");
        }
        Ok(Self { clock, siblings })
    }

    /// The causal context handed to clients: everything seen for this key.
    pub fn context(&self) -> &VersionVector {
        &self.clock
    }

    /// The current versions, sorted by dot.
    pub fn siblings(&self) -> &[Sibling] {
        &self.siblings
    }

    /// True when no version exists at all (never written, or fully collected).
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// True when there are versions and every one is a tombstone.
    pub fn is_deleted(&self) -> bool {
        !self.siblings.is_empty() && self.siblings.iter().all(Sibling::is_tombstone)
    }

    /// True when there are versions and none is live at `now_ms` (each a
    /// tombstone or an expired value): the key reads as absent.
    pub fn is_dead_at(&self, now_ms: u64) -> bool {
        !self.siblings.is_empty() && self.siblings.iter().all(|sibling| sibling.is_dead_at(now_ms))
    }

    /// From when the whole object is dead, if every version will be (each a
    /// tombstone or a value with an expiry): the latest of their deaths.
    /// What the tombstone collector's grace period counts from.
    pub fn dead_from_ms(&self) -> Option<u64> {
        if self.siblings.is_empty() {
            return None;
        }
        self.siblings.iter().map(Sibling::dead_from_ms).try_fold(0, |latest, dead| dead.map(|dead| latest.max(dead)))
    }

    /// How many versions this state holds that a reader who saw `context`
    /// lacks: 0 when `context` descends from this state's, else at least 1
    /// (the versions not covered by it, or 1 when only superseded writes
    /// are missing). The k of PBS k-staleness, counted in versions the
    /// reader could have seen: counters are issued per replica across keys,
    /// so the vectors' distance is not a count of writes.
    pub fn versions_missing_from(&self, context: &VersionVector) -> usize {
        if context.descends(&self.clock) {
            return 0;
        }
        self.siblings.iter().filter(|sibling| !context.covers(sibling.dot)).count().max(1)
    }

    /// Whether a client reading at `now_ms` finds something: a version
    /// that is neither dead (deleted, expired) nor a data-type value that
    /// holds nothing. What listing lists.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        self.live_siblings(now_ms)
            .any(|sibling| !matches!(&sibling.payload, Payload::Datatype(value) if value.holds_nothing()))
    }

    /// The versions live at `now_ms`, in dot order.
    pub fn live_siblings(&self, now_ms: u64) -> impl Iterator<Item = &Sibling> {
        self.siblings.iter().filter(move |sibling| !sibling.is_dead_at(now_ms))
    }

    /// The greatest timestamp among the versions (0 when there are none):
    /// what a client context must carry so that later writes are stamped
    /// above everything the client saw, and when a tombstone was written.
    pub fn latest_timestamp(&self) -> Hlc {
        self.siblings.iter().map(|sibling| sibling.timestamp).max().unwrap_or_default()
    }

    /// The version last-write-wins keeps: the greatest by (timestamp, dot).
    pub fn latest(&self) -> Option<&Sibling> {
        self.siblings.iter().max_by_key(|sibling| lww_key(sibling))
    }

    /// A client write coordinated by `actor`: discards the siblings that
    /// `context` has seen, adds the new version under the dot
    /// `(actor, clock[actor] + 1)`, and joins `context` into the clock.
    /// In `Lww` mode only the greatest version (by timestamp, then dot) is
    /// kept. Returns the new version's dot.
    ///
    /// The counter is one above the larger of this clock's and `context`'s
    /// entries for `actor`, so a dot is never issued twice even if the
    /// context has seen writes of `actor` that this copy lacks. The stored
    /// timestamp is raised above every superseded version's, so causal order
    /// and timestamp order agree (what makes LWW keep the later write).
    /// `actor` must only ever put into its own node's copy of the key.
    pub fn put(
        &mut self,
        context: &VersionVector,
        actor: ActorId,
        timestamp: Hlc,
        payload: Payload,
        mode: ConflictMode,
    ) -> Dot {
        self.put_above(context, actor, 0, timestamp, payload, mode)
    }

    /// [`VersionedObject::put`] with a counter above `floor` too. A replica
    /// passes the greatest counter its actor has issued for any key, so that
    /// a key whose record was removed (a collected tombstone) never gets a
    /// dot it had before: a stale copy of that key somewhere (a late hint)
    /// must not share a dot with a different new version. Gaps in an
    /// actor's counters are harmless: a clock entry covers dots that were
    /// never issued for the key.
    pub fn put_above(
        &mut self,
        context: &VersionVector,
        actor: ActorId,
        floor: u64,
        timestamp: Hlc,
        payload: Payload,
        mode: ConflictMode,
    ) -> Dot {
        let counter = self.clock.get(actor).max(context.get(actor)).max(floor).saturating_add(1);
        let dot = Dot { actor, counter };
        let superseded_max = self.siblings.iter().filter(|s| context.covers(s.dot)).map(|s| s.timestamp).max();
        let timestamp = superseded_max.map_or(timestamp, |superseded| timestamp.max(superseded.next()));
        self.siblings.retain(|sibling| !context.covers(sibling.dot));
        self.clock.join(context);
        self.clock.observe(dot);
        let sibling = Sibling { dot, timestamp, payload };
        match self.siblings.binary_search_by_key(&dot, |s| s.dot) {
            // Unreachable while counters stay below u64::MAX: the dot is fresh.
            Ok(index) => self.siblings[index] = sibling,
            Err(index) => self.siblings.insert(index, sibling),
        }
        if mode == ConflictMode::Lww {
            self.keep_latest();
        }
        dot
    }

    /// Merges another replica's state of the same key into this one. A
    /// sibling survives if both sides have it, or if the side that lacks it
    /// has not seen its dot. Commutative, associative, idempotent. In `Lww`
    /// mode the result keeps only the greatest version.
    ///
    /// Relies on dots being unique (one dot, one version): if both sides hold
    /// the same dot, this side's copy is kept.
    pub fn merge(&mut self, other: &VersionedObject, mode: ConflictMode) {
        // Decided by the data, not by `mode`: a node that has not yet
        // learned a bucket's datatype must still merge its values as data
        // types, or a delta would supersede the whole state it came from.
        if self.is_convergent() || other.is_convergent() {
            self.converge(other);
            return;
        }
        // A copy of what this side had, to check the result against (debug
        // builds only: it costs a clone per merge).
        #[cfg(debug_assertions)]
        let before = self.clone();
        match mode {
            ConflictMode::Siblings => self.siblings = self.surviving_siblings(other),
            ConflictMode::Lww => {
                // Pure maximum over both sides: a semilattice join, unlike
                // LWW applied after the causal merge (see the module doc).
                self.siblings.extend(other.latest().cloned());
                self.keep_latest();
            }
        }
        self.clock.join(&other.clock);
        #[cfg(debug_assertions)]
        self.assert_merged_without_loss(&before, other, mode);
    }

    /// Asserts that `self`, the merge of `ours` and `theirs` in `mode`, lost
    /// no dot either input had: its context covers every dot either side
    /// knew (their clocks, and so their siblings), every version it holds
    /// comes from one of them, and in `Siblings` mode a version of one side
    /// is gone only if the other side had seen its dot and no longer holds
    /// it (superseded, never dropped). In `Lww` mode exactly the latest
    /// version of both is kept.
    #[cfg(any(debug_assertions, test))]
    fn assert_merged_without_loss(&self, ours: &VersionedObject, theirs: &VersionedObject, mode: ConflictMode) {
        for (side, other) in [(ours, theirs), (theirs, ours)] {
            assert!(self.clock.descends(&side.clock), "a merge lost part of an input's causal context");
            for sibling in &side.siblings {
                let superseded = other.clock.covers(sibling.dot) && !other.has_dot(sibling.dot);
                let kept = self.has_dot(sibling.dot);
                if mode == ConflictMode::Siblings {
                    assert!(kept || superseded, "a merge lost the version of dot {:?}", sibling.dot);
                }
            }
        }
        for sibling in &self.siblings {
            let from_an_input = ours.has_dot(sibling.dot) || theirs.has_dot(sibling.dot);
            assert!(from_an_input, "a merge invented the version of dot {:?}", sibling.dot);
        }
        if mode == ConflictMode::Lww {
            let latest = ours.siblings.iter().chain(&theirs.siblings).max_by_key(|sibling| lww_key(sibling));
            assert_eq!(self.siblings.iter().collect::<Vec<_>>(), Vec::from_iter(latest), "a LWW merge lost the latest");
        }
    }

    /// Whether this state already contains everything in `other` (merging
    /// `other` in would change nothing). Used by read repair to find stale
    /// replicas.
    ///
    /// This is the `Siblings` mode answer; use [`VersionedObject::descends_in`]
    /// for `Lww` buckets, where merging keeps the latest version regardless
    /// of clocks.
    pub fn descends(&self, other: &VersionedObject) -> bool {
        self.descends_in(other, ConflictMode::Siblings)
    }

    /// Whether merging `other` into this state in `mode` would change nothing.
    pub fn descends_in(&self, other: &VersionedObject, mode: ConflictMode) -> bool {
        if self.is_convergent() || other.is_convergent() {
            let mut merged = self.clone();
            merged.converge(other);
            return merged == *self;
        }
        if !self.clock.descends(&other.clock) {
            return false;
        }
        match mode {
            ConflictMode::Siblings => {
                let theirs_known = other.siblings.iter().all(|o| self.has_dot(o.dot) || self.clock.covers(o.dot));
                let ours_kept = self.siblings.iter().all(|s| other.has_dot(s.dot) || !other.clock.covers(s.dot));
                theirs_known && ours_kept
            }
            ConflictMode::Lww => match (self.siblings.as_slice(), other.latest()) {
                ([], None) => true,
                ([ours], theirs) => theirs.is_none_or(|theirs| lww_key(theirs) <= lww_key(ours)),
                _ => false,
            },
        }
    }

    /// The siblings that survive a causal merge with `other`: those both
    /// sides hold, and those the side lacking them has not seen (a side that
    /// has seen a dot but lacks its version has superseded it).
    fn surviving_siblings(&self, other: &VersionedObject) -> Vec<Sibling> {
        let ours = self.siblings.iter().filter(|s| other.has_dot(s.dot) || !other.clock.covers(s.dot));
        let theirs = other.siblings.iter().filter(|o| !self.has_dot(o.dot) && !self.clock.covers(o.dot));
        let mut kept: Vec<Sibling> = ours.chain(theirs).cloned().collect();
        kept.sort_unstable_by_key(|sibling| sibling.dot);
        kept
    }

    /// Drops every version but the latest (LWW resolution).
    fn keep_latest(&mut self) {
        let latest = (0..self.siblings.len()).max_by_key(|&index| lww_key(&self.siblings[index]));
        if let Some(index) = latest {
            let kept = self.siblings.swap_remove(index);
            self.siblings.clear();
            self.siblings.push(kept);
        }
    }

    /// Whether this object holds a data-type value (so merges converge).
    pub fn is_convergent(&self) -> bool {
        self.siblings.iter().any(|sibling| matches!(sibling.payload, Payload::Datatype(_)))
    }

    /// The data-type value this object holds: `Ok(None)` when it holds
    /// nothing, an error naming what is there when it holds an opaque
    /// value or tombstone too (written while the bucket had no datatype, or
    /// by a node that had not learned it yet).
    pub fn datatype_value(&self) -> Result<Option<&DataValue>, &'static str> {
        let mut values = self.siblings.iter().map(|sibling| match &sibling.payload {
            Payload::Datatype(value) => Ok(value),
            Payload::Value { .. } | Payload::Tombstone => Err("the key holds an opaque value beside its data type"),
        });
        let first = values.next().transpose()?;
        match values.next() {
            None => Ok(first),
            Some(Err(error)) => Err(error),
            Some(Ok(_)) => Err("the key holds values of two data types"),
        }
    }

    /// Applies a data-type operation as `actor` (the replica coordinating
    /// it) to this object, which holds `kind` or nothing; returns the
    /// delta object to ship to the other replicas. The object keeps one
    /// sibling: the updated value under a fresh dot. Nothing changes on an
    /// error.
    pub fn apply_datatype(
        &mut self,
        op: &DataOp,
        kind: DataType,
        actor: ActorId,
        floor: u64,
        timestamp: Hlc,
    ) -> Result<VersionedObject, OpError> {
        if op.kind() != kind {
            return Err(OpError::WrongType { op: op.kind(), stored: kind });
        }
        // The value is taken out of its sibling and changed in place (a
        // large set is not copied), and put back if the operation is
        // refused. Any other sibling (an opaque value beside it, see
        // `datatype_value`) is left as it is: every merge keeps it.
        let position = self.siblings.iter().position(|sibling| match &sibling.payload {
            Payload::Datatype(value) => value.kind() == kind,
            _ => false,
        });
        let (mut value, restore) = match position.map(|index| (index, self.siblings.remove(index))) {
            Some((index, Sibling { dot, timestamp, payload: Payload::Datatype(value) })) => {
                (value, Some((index, dot, timestamp)))
            }
            Some((index, other)) => unreachable!("sibling {index} was found holding a data type: {other:?}"),
            None => (DataValue::empty(kind).ok_or(OpError::WrongType { op: op.kind(), stored: kind })?, None),
        };
        let previous = restore.map(|(_, _, timestamp)| timestamp);
        let timestamp = timestamp.max(self.latest_timestamp().next()).max(previous.map_or(Hlc(0), Hlc::next));
        let delta = match value.apply(op, actor, timestamp) {
            Ok(delta) => delta,
            Err(refusal) => {
                if let Some((index, dot, timestamp)) = restore {
                    self.siblings.insert(index, Sibling { dot, timestamp, payload: Payload::Datatype(value) });
                }
                return Err(refusal);
            }
        };
        let counter = self.clock.get(actor).max(floor).saturating_add(1);
        let dot = Dot { actor, counter };
        // Labelled as merging the delta into the old state labels it (the
        // greater dot), so that the acting replica and every replica that
        // merges the delta hold the same object, byte for byte (found by the
        // simulation: with the fresh dot alone, the copies differed whenever
        // the actor's id sorted below the previous label's).
        let label = restore.map_or(dot, |(_, previous, _)| previous.max(dot));
        let updated = Sibling { dot: label, timestamp, payload: Payload::Datatype(value) };
        let index = self.siblings.binary_search_by_key(&label, |s| s.dot).unwrap_or_else(|index| index);
        self.siblings.insert(index, updated);
        self.clock.observe(dot);
        let mut delta_clock = VersionVector::new();
        delta_clock.observe(dot);
        Ok(VersionedObject {
            clock: delta_clock,
            siblings: vec![Sibling { dot, timestamp, payload: Payload::Datatype(delta) }],
        })
    }

    /// The merge of objects holding data-type values: the values of each
    /// kind merge into one sibling, under the greatest dot and timestamp
    /// of those merged (so equal states stay equal, byte for byte); any
    /// opaque sibling either side holds is kept (by dot), never lost; the
    /// clocks join. Commutative, associative and idempotent because the
    /// value merge, the maximum and the union are.
    fn converge(&mut self, other: &VersionedObject) {
        let mut merged: Vec<Sibling> = Vec::new();
        let mut opaque: Vec<Sibling> = Vec::new();
        for sibling in self.siblings.iter().chain(&other.siblings) {
            let Payload::Datatype(value) = &sibling.payload else {
                if !opaque.iter().any(|kept| kept.dot == sibling.dot) {
                    opaque.push(sibling.clone());
                }
                continue;
            };
            let same_kind = merged.iter_mut().find(|kept| match &kept.payload {
                Payload::Datatype(kept_value) => kept_value.kind() == value.kind(),
                _ => false,
            });
            match same_kind {
                Some(kept) => {
                    if let Payload::Datatype(kept_value) = &mut kept.payload {
                        kept_value.merge(value);
                    }
                    kept.dot = kept.dot.max(sibling.dot);
                    kept.timestamp = kept.timestamp.max(sibling.timestamp);
                }
                None => merged.push(sibling.clone()),
            }
        }
        merged.retain(|sibling| !opaque.iter().any(|kept| kept.dot == sibling.dot));
        merged.extend(opaque);
        merged.sort_unstable_by_key(|sibling| sibling.dot);
        self.siblings = merged;
        self.clock.join(&other.clock);
    }

    fn has_dot(&self, dot: Dot) -> bool {
        self.siblings.binary_search_by_key(&dot, |s| s.dot).is_ok()
    }
}

/// Last-write-wins order: timestamp, then dot to break ties deterministically.
fn lww_key(sibling: &Sibling) -> (Hlc, Dot) {
    (sibling.timestamp, sibling.dot)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::testing::{Op, World, history, three_states, value_of, value_payload};

    const SIBLINGS: ConflictMode = ConflictMode::Siblings;

    fn expiring(data: &'static [u8], expires_ms: Option<u64>) -> Payload {
        Payload::Value { data: Bytes::from_static(data), content_type: None, expires_ms }
    }

    #[test]
    fn an_expiring_value_is_dead_from_its_expiry_and_an_object_once_every_version_is() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc::from_parts(1_000, 0), expiring(b"a", Some(5_000)), SIBLINGS);
        assert!(!object.is_dead_at(4_999));
        assert!(object.is_dead_at(5_000), "expired at its expiry");
        assert!(!object.is_deleted(), "expired is not deleted: it reads absent only by the clock");
        assert_eq!(object.dead_from_ms(), Some(5_000));
        // A concurrent version without an expiry keeps the key alive.
        object.put(&VersionVector::new(), ActorId(2), Hlc::from_parts(2_000, 0), expiring(b"b", None), SIBLINGS);
        assert!(!object.is_dead_at(u64::MAX));
        assert_eq!(object.dead_from_ms(), None);
        assert_eq!(object.live_siblings(6_000).count(), 1);
        // A delete of both, then a later expiring write beside it: dead from the later of the two.
        let context = object.context().clone();
        object.put(&context, ActorId(1), Hlc::from_parts(3_000, 0), Payload::Tombstone, SIBLINGS);
        assert_eq!(object.dead_from_ms(), Some(3_000));
        object.put(&VersionVector::new(), ActorId(3), Hlc::from_parts(3_500, 0), expiring(b"c", Some(9_000)), SIBLINGS);
        assert_eq!(object.dead_from_ms(), Some(9_000));
        assert!(!object.is_dead_at(8_999) && object.is_dead_at(9_000));
        assert!(VersionedObject::new().dead_from_ms().is_none() && !VersionedObject::new().is_dead_at(0));
    }

    #[test]
    #[should_panic(expected = "a merge lost the version of dot")]
    fn a_merge_result_missing_a_concurrent_version_is_caught() {
        let mut ours = VersionedObject::new();
        ours.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        let mut theirs = VersionedObject::new();
        theirs.put(&VersionVector::new(), ActorId(2), Hlc(2), value_payload(2), SIBLINGS);
        let mut merged = ours.clone();
        merged.merge(&theirs, SIBLINGS);
        merged.assert_merged_without_loss(&ours, &theirs, SIBLINGS);
        // Drop one of the two concurrent versions, keeping the context.
        let lossy = VersionedObject::from_parts(merged.context().clone(), merged.siblings()[..1].to_vec()).unwrap();
        lossy.assert_merged_without_loss(&ours, &theirs, SIBLINGS);
    }

    #[test]
    #[should_panic(expected = "a merge lost part of an input's causal context")]
    fn a_merge_result_forgetting_a_seen_dot_is_caught() {
        let mut ours = VersionedObject::new();
        ours.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        let mut theirs = ours.clone();
        theirs.put(ours.context(), ActorId(2), Hlc(2), value_payload(2), SIBLINGS);
        // Their write superseded ours; a result without our dot in its
        // context would let our old version come back as a sibling.
        let forgetful =
            VersionedObject::from_parts([(ActorId(2), 1)].into_iter().collect(), theirs.siblings().to_vec()).unwrap();
        forgetful.assert_merged_without_loss(&ours, &theirs, SIBLINGS);
    }
    const LWW: ConflictMode = ConflictMode::Lww;

    fn merged(a: &VersionedObject, b: &VersionedObject, mode: ConflictMode) -> VersionedObject {
        let mut result = a.clone();
        result.merge(b, mode);
        result
    }

    fn dots(object: &VersionedObject) -> BTreeSet<Dot> {
        object.siblings().iter().map(|s| s.dot).collect()
    }

    fn values(object: &VersionedObject) -> BTreeSet<u32> {
        object.siblings().iter().filter_map(|s| value_of(&s.payload)).collect()
    }

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        entries.iter().map(|&(actor, counter)| (ActorId(actor), counter)).collect()
    }

    fn check_merge_laws(a: &VersionedObject, b: &VersionedObject, c: &VersionedObject, mode: ConflictMode) {
        assert_eq!(merged(a, b, mode), merged(b, a, mode), "commutative");
        assert_eq!(merged(&merged(a, b, mode), c, mode), merged(a, &merged(b, c, mode), mode), "associative");
        let once = merged(a, b, mode);
        assert_eq!(merged(&once, &once, mode), once, "idempotent");
        assert_eq!(merged(&once, b, mode), once, "absorbs an input again");
        assert!(once.descends_in(a, mode) && once.descends_in(b, mode), "a merge descends its inputs");
    }

    /// Ground truth of causality: the writes each write's context had seen.
    #[derive(Default)]
    struct Causality {
        seen_by: BTreeMap<u32, BTreeSet<u32>>,
    }

    impl Causality {
        fn record(&mut self, write: u32, seen: &BTreeSet<u32>) {
            self.seen_by.insert(write, seen.clone());
        }

        /// Writes of `history` that no other write of `history` has seen.
        fn frontier(&self, history: &BTreeSet<u32>) -> BTreeSet<u32> {
            let superseded: BTreeSet<u32> = history.iter().flat_map(|w| self.seen_by[w].iter().copied()).collect();
            history.difference(&superseded).copied().collect()
        }
    }

    /// What a client remembers of its last read: the context and, as ground
    /// truth, the writes that replica state had seen.
    type ClientRead = Option<(VersionVector, BTreeSet<u32>)>;

    #[test]
    fn concurrent_puts_without_context_become_siblings() {
        let mut object = VersionedObject::new();
        let first = object.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        let second = object.put(&VersionVector::new(), ActorId(1), Hlc(2), value_payload(2), SIBLINGS);
        assert_eq!(first, Dot { actor: ActorId(1), counter: 1 });
        assert_eq!(second, Dot { actor: ActorId(1), counter: 2 });
        assert_eq!(values(&object), BTreeSet::from([1, 2]));
        assert_eq!(object.context(), &vv(&[(1, 2)]));
    }

    #[test]
    fn put_with_context_of_both_siblings_replaces_them() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        object.put(&VersionVector::new(), ActorId(1), Hlc(2), value_payload(2), SIBLINGS);
        let read = object.context().clone();
        object.put(&read, ActorId(1), Hlc(3), value_payload(3), SIBLINGS);
        assert_eq!(values(&object), BTreeSet::from([3]));
    }

    #[test]
    fn put_never_reissues_a_dot_the_context_has_seen() {
        // The context saw (1, 5) although this copy only knows (1, 2).
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        object.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(2), SIBLINGS);
        let dot = object.put(&vv(&[(1, 5)]), ActorId(1), Hlc(2), value_payload(3), SIBLINGS);
        assert_eq!(dot, Dot { actor: ActorId(1), counter: 6 });
        assert_eq!(values(&object), BTreeSet::from([3]));
    }

    #[test]
    fn put_raises_its_timestamp_above_the_versions_it_supersedes() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(100), value_payload(1), SIBLINGS);
        let read = object.context().clone();
        object.put(&read, ActorId(2), Hlc(7), value_payload(2), SIBLINGS);
        assert_eq!(object.siblings()[0].timestamp, Hlc(101));
    }

    #[test]
    fn lww_put_that_saw_the_current_version_replaces_it_even_with_a_lagging_clock() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(100), value_payload(1), LWW);
        let read = object.context().clone();
        object.put(&read, ActorId(2), Hlc(5), value_payload(2), LWW);
        assert_eq!(values(&object), BTreeSet::from([2]));
    }

    #[test]
    fn lww_concurrent_put_with_older_timestamp_loses() {
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(100), value_payload(1), LWW);
        object.put(&VersionVector::new(), ActorId(2), Hlc(5), value_payload(2), LWW);
        assert_eq!(values(&object), BTreeSet::from([1]));
        assert_eq!(object.context(), &vv(&[(1, 1), (2, 1)]), "the lost write is still known");
    }

    #[test]
    fn lww_merge_stays_associative_when_a_put_supersedes_a_version_it_never_held() {
        // Resolving LWW after a causal merge fails here: (a ⊔ b) ⊔ c would
        // drop both x and y (each side has seen the other's and lacks it)
        // and end empty, while a ⊔ (b ⊔ c) keeps y.
        let empty = VersionVector::new();
        let mut a = VersionedObject::new();
        a.put(&empty, ActorId(1), Hlc(10), value_payload(1), LWW); // x
        let mut b = VersionedObject::new();
        b.put(&empty, ActorId(2), Hlc(5), value_payload(2), LWW); // y
        let mut c = VersionedObject::new();
        c.put(a.context(), ActorId(3), Hlc(1), value_payload(3), LWW); // z saw x, lacks it
        c.merge(&b, LWW);
        let left = merged(&merged(&a, &b, LWW), &c, LWW);
        assert_eq!(left, merged(&a, &merged(&b, &c, LWW), LWW));
        assert_eq!(values(&left), BTreeSet::from([1]), "the greatest timestamp received wins");
    }

    #[test]
    fn deleted_means_versions_exist_and_all_are_tombstones() {
        let mut object = VersionedObject::new();
        assert!(!object.is_deleted() && object.is_empty());
        object.put(&VersionVector::new(), ActorId(1), Hlc(1), Payload::Tombstone, SIBLINGS);
        assert!(object.is_deleted());
        object.put(&VersionVector::new(), ActorId(1), Hlc(2), value_payload(1), SIBLINGS);
        assert!(!object.is_deleted(), "a concurrent value keeps the key alive");
    }

    #[test]
    fn put_above_a_floor_never_reuses_a_dot_of_a_collected_history() {
        // A key deleted and collected: its record is gone, and a client
        // writes again with no context. A stale copy of the old history
        // holds dot (1, 1); the new write must not get that dot (a merge
        // would then take one for the other). Above the floor, its clock
        // covers the stale dot, which is right: that version was deleted.
        let mut stale = VersionedObject::new();
        stale.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        let mut fresh = VersionedObject::new();
        let dot = fresh.put_above(&VersionVector::new(), ActorId(1), 7, Hlc(2), value_payload(2), SIBLINGS);
        assert_eq!(dot, Dot { actor: ActorId(1), counter: 8 });
        assert_eq!(merged(&fresh, &stale, SIBLINGS), fresh, "the new write survives, the deleted one stays deleted");
    }

    #[test]
    fn from_parts_sorts_siblings_and_checks_the_invariants() {
        let sibling = |actor, counter| Sibling {
            dot: Dot { actor: ActorId(actor), counter },
            timestamp: Hlc(0),
            payload: Payload::Tombstone,
        };
        let object = VersionedObject::from_parts(vv(&[(1, 3), (2, 1)]), vec![sibling(2, 1), sibling(1, 3)]);
        let sorted: Vec<Dot> = object.expect("valid parts").siblings().iter().map(|s| s.dot).collect();
        assert_eq!(sorted, [Dot { actor: ActorId(1), counter: 3 }, Dot { actor: ActorId(2), counter: 1 }]);
        let clock = vv(&[(1, 3)]);
        assert!(VersionedObject::from_parts(clock.clone(), vec![sibling(1, 4)]).is_err(), "uncovered dot");
        assert!(VersionedObject::from_parts(clock.clone(), vec![sibling(1, 2), sibling(1, 2)]).is_err(), "dup");
        assert!(VersionedObject::from_parts(clock, vec![sibling(1, 0)]).is_err(), "zero counter");
    }

    #[test]
    fn replica_that_missed_a_write_does_not_descend_one_that_has_it() {
        let mut fresh = VersionedObject::new();
        fresh.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
        let stale = fresh.clone();
        let read = fresh.context().clone();
        fresh.put(&read, ActorId(1), Hlc(2), value_payload(2), SIBLINGS);
        assert!(fresh.descends(&stale));
        assert!(!stale.descends(&fresh));
        assert!(VersionedObject::new().descends(&VersionedObject::new()));
    }

    proptest! {
        // The laws get many cases: the LWW counterexample above needs a rare
        // shape (a put whose context came from another replica).
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn merge_is_commutative_associative_and_idempotent([a, b, c] in three_states(SIBLINGS)) {
            check_merge_laws(&a, &b, &c, SIBLINGS);
        }

        #[test]
        fn lww_merge_is_commutative_associative_and_idempotent([a, b, c] in three_states(LWW)) {
            check_merge_laws(&a, &b, &c, LWW);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn descends_means_merging_changes_nothing([a, b, _c] in three_states(SIBLINGS), lww in any::<bool>()) {
            let mode = if lww { LWW } else { SIBLINGS };
            let (a, b) = if lww { (merged(&a, &a, LWW), merged(&b, &b, LWW)) } else { (a, b) };
            prop_assert_eq!(a.descends_in(&b, mode), merged(&a, &b, mode) == a);
        }

        #[test]
        fn put_with_read_context_supersedes_exactly_what_was_read(
            (replicas, before) in history(30),
            after in prop::collection::vec(crate::testing::op(), 0..30),
            coordinator in any::<Index>(),
        ) {
            let mut world = World::run(replicas, &before, SIBLINGS);
            let coordinator = coordinator.index(replicas);
            let read = world.replicas[coordinator].clone();
            // Other clients write and replicas merge between read and write.
            for op in &after {
                world.apply(op);
            }
            let current = world.replicas[coordinator].clone();
            let (dot, _) = world.put(coordinator, read.context(), 0, false);
            let mut expected: BTreeSet<Dot> = dots(&current).difference(&dots(&read)).copied().collect();
            expected.insert(dot);
            prop_assert_eq!(dots(&world.replicas[coordinator]), expected);
        }

        #[test]
        fn put_without_context_keeps_every_existing_version((replicas, ops) in history(40), at in any::<Index>()) {
            let mut world = World::run(replicas, &ops, SIBLINGS);
            let at = at.index(replicas);
            let before = dots(&world.replicas[at]);
            let (dot, _) = world.put(at, &VersionVector::new(), 0, false);
            let after = dots(&world.replicas[at]);
            prop_assert!(after.is_superset(&before) && after.contains(&dot));
            prop_assert_eq!(after.len(), before.len() + 1);
        }

        #[test]
        fn one_coordinator_keeps_exactly_the_truly_concurrent_writes(
            clients in 2..=5usize,
            steps in prop::collection::vec((any::<bool>(), any::<Index>()), 1..80),
        ) {
            // The classic Riak case: every client goes through one node, so
            // every write carries the same actor.
            let mut object = VersionedObject::new();
            let mut history = BTreeSet::new();
            let mut causality = Causality::default();
            let mut reads: Vec<ClientRead> = vec![None; clients];
            for (write, client) in steps {
                let client = client.index(clients);
                if !write {
                    reads[client] = Some((object.context().clone(), history.clone()));
                    continue;
                }
                let (context, seen) = reads[client].clone().unwrap_or_default();
                let id = history.len() as u32 + 1;
                object.put(&context, ActorId(1), Hlc(0), value_payload(id), SIBLINGS);
                causality.record(id, &seen);
                history.extend(seen);
                history.insert(id);
                prop_assert_eq!(values(&object), causality.frontier(&history));
            }
        }

        #[test]
        fn siblings_never_outnumber_clients_that_read_before_each_write(
            clients in 1..=5usize,
            steps in prop::collection::vec(any::<Index>(), 1..120),
        ) {
            let mut object = VersionedObject::new();
            let mut reads: Vec<Option<VersionVector>> = vec![None; clients];
            for client in steps {
                let client = client.index(clients);
                match reads[client].take() {
                    None => reads[client] = Some(object.context().clone()),
                    Some(context) => {
                        object.put(&context, ActorId(1), Hlc(0), value_payload(1), SIBLINGS);
                    }
                }
                prop_assert!(object.siblings().len() <= clients);
            }
        }

        #[test]
        fn many_coordinators_with_merges_keep_exactly_the_truly_concurrent_writes(
            replicas in 2..=4usize,
            clients in 2..=5usize,
            steps in prop::collection::vec((0..3u8, any::<Index>(), any::<Index>()), 1..80),
        ) {
            let mut world = World::new(replicas, SIBLINGS);
            let mut histories = vec![BTreeSet::new(); replicas];
            let mut causality = Causality::default();
            let mut reads: Vec<ClientRead> = vec![None; clients];
            for (kind, first, second) in steps {
                let replica = second.index(replicas);
                match kind {
                    0 => {
                        let client = first.index(clients);
                        let read = (world.replicas[replica].context().clone(), histories[replica].clone());
                        reads[client] = Some(read);
                    }
                    1 => {
                        let (context, seen) = reads[first.index(clients)].clone().unwrap_or_default();
                        let (_, id) = world.put(replica, &context, 0, false);
                        causality.record(id, &seen);
                        histories[replica].extend(seen);
                        histories[replica].insert(id);
                    }
                    _ => {
                        let from = first.index(replicas);
                        world.apply(&Op::Merge { from: first, into: second });
                        let source = histories[from].clone();
                        histories[replica].extend(source);
                    }
                }
                for (object, history) in world.replicas.iter().zip(&histories) {
                    prop_assert_eq!(values(object), causality.frontier(history));
                }
            }
        }

        #[test]
        fn lww_keeps_only_the_latest_of_every_version_received((replicas, ops) in history(60)) {
            let mut world = World::new(replicas, LWW);
            // Model: the greatest (timestamp, dot) each replica has received.
            let mut latest: Vec<Option<(Hlc, Dot)>> = vec![None; replicas];
            for op in &ops {
                match op {
                    Op::Put { replica, context, timestamp, .. } => {
                        let at = replica.index(replicas);
                        let context = context.map(|i| i.get(&world.snapshots).context().clone()).unwrap_or_default();
                        // A put orders after the version it saw (see `put`).
                        let floor = latest[at].filter(|(_, dot)| context.covers(*dot)).map(|(ts, _)| ts.next());
                        let (dot, _) = world.put(at, &context, *timestamp, false);
                        let stored = Hlc(*timestamp).max(floor.unwrap_or_default());
                        latest[at] = latest[at].max(Some((stored, dot)));
                    }
                    Op::Merge { from, into } => {
                        let (from_index, into_index) = (from.index(replicas), into.index(replicas));
                        world.apply(op);
                        latest[into_index] = latest[into_index].max(latest[from_index]);
                    }
                }
                for (object, expected) in world.replicas.iter().zip(&latest) {
                    let kept: Vec<(Hlc, Dot)> = object.siblings().iter().map(|s| (s.timestamp, s.dot)).collect();
                    prop_assert_eq!(kept, expected.iter().copied().collect::<Vec<_>>());
                }
            }
        }
    }

    mod datatypes {
        use proptest::prelude::*;

        use super::*;
        use crate::crdt::set::SetUpdate;

        fn increment(object: &mut VersionedObject, actor: u64, amount: i64) -> VersionedObject {
            object.apply_datatype(&DataOp::increment(amount), DataType::Counter, ActorId(actor), 0, Hlc(actor)).unwrap()
        }

        fn counter_value(object: &VersionedObject) -> i64 {
            match object.datatype_value() {
                Ok(Some(DataValue::Counter(counter))) => counter.value(),
                other => panic!("not a counter: {other:?}"),
            }
        }

        fn merged(a: &VersionedObject, b: &VersionedObject, mode: ConflictMode) -> VersionedObject {
            let mut out = a.clone();
            out.merge(b, mode);
            out
        }

        proptest! {
            /// Three replicas of a counter, each acting as its own actor and
            /// shipping deltas to the others in any order: the objects merge
            /// as a semilattice in either conflict mode, and every replica
            /// ends with the sum of the increments.
            #[test]
            fn counter_objects_converge_whatever_the_merge_order_and_mode(
                updates in prop::collection::vec((0u64..3, -50i64..50), 1..20),
                lww in any::<bool>(),
            ) {
                let mode = if lww { ConflictMode::Lww } else { ConflictMode::Siblings };
                let mut replicas = vec![VersionedObject::new(); 3];
                let mut deltas = Vec::new();
                for (actor, amount) in &updates {
                    deltas.push(increment(&mut replicas[*actor as usize], *actor, *amount));
                }
                let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];
                prop_assert_eq!(merged(a, b, mode), merged(b, a, mode));
                prop_assert_eq!(merged(&merged(a, b, mode), c, mode), merged(a, &merged(b, c, mode), mode));
                prop_assert_eq!(&merged(a, a, mode), a);
                let mut receiver = VersionedObject::new();
                for delta in deltas.iter().rev() {
                    receiver.merge(delta, mode);
                }
                let whole = merged(&merged(a, b, mode), c, mode);
                prop_assert_eq!(counter_value(&receiver), updates.iter().map(|(_, amount)| amount).sum::<i64>());
                prop_assert_eq!(counter_value(&receiver), counter_value(&whole));
                prop_assert!(whole.descends_in(&receiver, mode) && receiver.descends_in(a, mode) == (receiver == merged(&receiver, a, mode)));
                let encoded = crate::codec::encode_object(&whole);
                prop_assert_eq!(crate::codec::decode_object(&encoded), Ok(whole));
            }
        }

        /// The acting replica and a replica that had the same state and
        /// merges the delta end with equal objects, whatever the actors'
        /// order (so anti-entropy finds nothing to repair).
        #[test]
        fn the_acting_replica_and_a_delta_receiver_hold_the_same_object() {
            for (first, second) in [(1, 2), (2, 1)] {
                let mut acting = VersionedObject::new();
                increment(&mut acting, first, 5);
                let mut receiver = acting.clone();
                let delta = increment(&mut acting, second, 1);
                receiver.merge(&delta, ConflictMode::Siblings);
                assert_eq!(receiver, acting, "actors {first} then {second}");
            }
        }

        #[test]
        fn a_delta_never_supersedes_the_state_it_came_from() {
            let mut origin = VersionedObject::new();
            increment(&mut origin, 1, 5);
            let mut other = origin.clone();
            increment(&mut other, 2, 7);
            let delta = increment(&mut origin, 1, 1);
            other.merge(&delta, ConflictMode::Siblings);
            assert_eq!(counter_value(&other), 13, "actor 2's increment survived actor 1's delta");
            assert_eq!(other.siblings().len(), 1, "a data type never shows siblings");
        }

        #[test]
        fn a_reader_behind_misses_the_versions_its_context_does_not_cover() {
            let mut object = VersionedObject::new();
            object.put(&VersionVector::new(), ActorId(1), Hlc(1), value_payload(1), SIBLINGS);
            let seen = object.context().clone();
            assert_eq!(object.versions_missing_from(&seen), 0);
            object.put(&VersionVector::new(), ActorId(2), Hlc(2), value_payload(2), SIBLINGS);
            assert_eq!(object.versions_missing_from(&seen), 1, "one concurrent version it lacks");
            object.put(&VersionVector::new(), ActorId(3), Hlc(3), value_payload(3), SIBLINGS);
            assert_eq!(object.versions_missing_from(&seen), 2);
            let all = object.context().clone();
            object.put(&all, ActorId(1), Hlc(4), value_payload(4), SIBLINGS);
            assert_eq!(object.versions_missing_from(&seen), 1, "the superseding write is one version");
            assert_eq!(object.versions_missing_from(object.context()), 0);
        }

        #[test]
        fn a_set_emptied_by_its_removes_is_not_live_but_a_counter_at_zero_is() {
            let set_op = |update: SetUpdate| DataOp::Set { updates: vec![update], context: None };
            let mut set = VersionedObject::new();
            set.apply_datatype(&set_op(SetUpdate::Add(Bytes::from_static(b"x"))), DataType::Set, ActorId(1), 0, Hlc(1))
                .unwrap();
            assert!(set.is_live_at(0));
            set.apply_datatype(
                &set_op(SetUpdate::Remove(Bytes::from_static(b"x"))),
                DataType::Set,
                ActorId(1),
                0,
                Hlc(2),
            )
            .unwrap();
            assert!(!set.is_empty() && !set.is_live_at(0), "an emptied set is kept (its context) but not live");
            let mut counter = VersionedObject::new();
            counter.apply_datatype(&DataOp::increment(1), DataType::Counter, ActorId(1), 0, Hlc(1)).unwrap();
            counter.apply_datatype(&DataOp::increment(-1), DataType::Counter, ActorId(1), 0, Hlc(2)).unwrap();
            assert!(counter.is_live_at(0), "a counter that reads 0 exists");
            assert!(!VersionedObject::new().is_live_at(0));
        }

        #[test]
        fn an_opaque_sibling_beside_a_value_is_kept_and_reported() {
            let mut object = VersionedObject::new();
            object.put(&VersionVector::new(), ActorId(9), Hlc(1), value_payload(1), SIBLINGS);
            let delta = object
                .apply_datatype(
                    &DataOp::Set { updates: vec![SetUpdate::Add(Bytes::from_static(b"x"))], context: None },
                    DataType::Set,
                    ActorId(1),
                    0,
                    Hlc(2),
                )
                .unwrap();
            assert_eq!(object.siblings().len(), 2);
            assert!(object.datatype_value().is_err());
            let mut elsewhere = VersionedObject::new();
            elsewhere.merge(&delta, SIBLINGS);
            elsewhere.merge(&object, SIBLINGS);
            assert_eq!(elsewhere, object);
            let wrong = object.apply_datatype(&DataOp::increment(1), DataType::Set, ActorId(1), 0, Hlc(3));
            assert_eq!(wrong, Err(OpError::WrongType { op: DataType::Counter, stored: DataType::Set }));
        }
    }
}
