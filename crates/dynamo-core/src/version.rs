//! Actors, dots and version vectors: the vocabulary of causality (paper
//! section 4.4). See [`crate::object`] for how they combine into dotted
//! version vector sets.

use std::collections::BTreeMap;
use std::fmt;

/// Identity of a writer of versions. A node takes a fresh actor id at every
/// start (incarnation), so that a write lost from an unsynced buffer in a crash
/// can never be re-issued under the same dot with a different value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub u64);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One event: the `counter`-th write coordinated by `actor` on some key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dot {
    /// Who coordinated the write.
    pub actor: ActorId,
    /// Position of the write in that actor's sequence for this key (from 1).
    pub counter: u64,
}

/// A version vector: for each actor, the highest counter seen (all dots of
/// that actor up to the counter are considered seen).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionVector {
    entries: BTreeMap<ActorId, u64>,
}

impl VersionVector {
    /// The empty vector (has seen nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest counter seen for `actor` (0 when none).
    pub fn get(&self, actor: ActorId) -> u64 {
        self.entries.get(&actor).copied().unwrap_or(0)
    }

    /// Raise `actor`'s entry to at least `counter`.
    pub fn observe(&mut self, dot: Dot) {
        // A zero counter names no event; storing it would break equality of
        // vectors that have seen the same thing.
        if dot.counter == 0 {
            return;
        }
        let entry = self.entries.entry(dot.actor).or_insert(0);
        *entry = (*entry).max(dot.counter);
    }

    /// Whether `dot` has been seen by this vector.
    pub fn covers(&self, dot: Dot) -> bool {
        dot.counter <= self.get(dot.actor)
    }

    /// Pointwise maximum (least upper bound) with `other`.
    pub fn join(&mut self, other: &VersionVector) {
        for (actor, counter) in other.iter() {
            self.observe(Dot { actor, counter });
        }
    }

    /// Whether every entry of `other` is <= the entry here.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.iter().all(|(actor, counter)| counter <= self.get(actor))
    }

    /// Number of actors with a non-zero entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the vector has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.entries.iter().map(|(a, c)| (*a, *c))
    }
}

/// Builds a vector from `(actor, counter)` pairs: zero counters are dropped
/// and a repeated actor keeps its highest counter (the join of the pairs).
impl FromIterator<(ActorId, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ActorId, u64)>>(iter: I) -> Self {
        let mut vector = VersionVector::new();
        for (actor, counter) in iter {
            vector.observe(Dot { actor, counter });
        }
        vector
    }
}
