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

use crate::hlc::Hlc;
use crate::props::ConflictMode;
use crate::version::{ActorId, Dot, VersionVector};

/// Longest content type kept with a value.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;

/// What one write stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A value with its (optional) content type.
    Value {
        /// The opaque bytes.
        data: Bytes,
        /// The client's `Content-Type`, if it sent one.
        content_type: Option<String>,
    },
    /// A delete marker. Kept until every replica has it (so deleted data
    /// never comes back), then collected.
    Tombstone,
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
        let counter = self.clock.get(actor).max(context.get(actor)).saturating_add(1);
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
        if !self.clock.descends(&other.clock) {
            return false;
        }
        match mode {
            ConflictMode::Siblings => {
                let theirs_known =
                    other.siblings.iter().all(|o| self.has_dot(o.dot) || self.clock.covers(o.dot));
                let ours_kept =
                    self.siblings.iter().all(|s| other.has_dot(s.dot) || !other.clock.covers(s.dot));
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

    fn has_dot(&self, dot: Dot) -> bool {
        self.siblings.binary_search_by_key(&dot, |s| s.dot).is_ok()
    }
}

/// Last-write-wins order: timestamp, then dot to break ties deterministically.
fn lww_key(sibling: &Sibling) -> (Hlc, Dot) {
    (sibling.timestamp, sibling.dot)
}
