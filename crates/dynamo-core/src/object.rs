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
    pub fn from_parts(clock: VersionVector, siblings: Vec<Sibling>) -> Result<Self, &'static str> {
        todo!()
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
        todo!()
    }

    /// A client write coordinated by `actor`: discards the siblings that
    /// `context` has seen, adds the new version under the dot
    /// `(actor, clock[actor] + 1)`, and joins `context` into the clock.
    /// In `Lww` mode only the greatest version (by timestamp, then dot) is
    /// kept. Returns the new version's dot.
    pub fn put(
        &mut self,
        context: &VersionVector,
        actor: ActorId,
        timestamp: Hlc,
        payload: Payload,
        mode: ConflictMode,
    ) -> Dot {
        todo!()
    }

    /// Merges another replica's state of the same key into this one. A
    /// sibling survives if both sides have it, or if the side that lacks it
    /// has not seen its dot. Commutative, associative, idempotent. In `Lww`
    /// mode the result keeps only the greatest version.
    pub fn merge(&mut self, other: &VersionedObject, mode: ConflictMode) {
        todo!()
    }

    /// Whether this state already contains everything in `other` (merging
    /// `other` in would change nothing). Used by read repair to find stale
    /// replicas.
    pub fn descends(&self, other: &VersionedObject) -> bool {
        todo!()
    }
}
