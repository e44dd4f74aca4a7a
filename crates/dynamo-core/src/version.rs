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

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(actor: u64, counter: u64) -> Dot {
        Dot { actor: ActorId(actor), counter }
    }

    #[test]
    fn observe_only_raises_and_never_stores_zero() {
        let mut vector = VersionVector::new();
        vector.observe(dot(1, 0));
        assert!(vector.is_empty());
        vector.observe(dot(1, 3));
        vector.observe(dot(1, 2));
        assert_eq!(vector.get(ActorId(1)), 3);
        assert!(vector.covers(dot(1, 3)) && !vector.covers(dot(1, 4)) && !vector.covers(dot(2, 1)));
    }

    #[test]
    fn join_is_the_pointwise_maximum_and_descends_both() {
        let mut a: VersionVector = [(ActorId(1), 2), (ActorId(2), 5)].into_iter().collect();
        let b: VersionVector = [(ActorId(1), 4), (ActorId(3), 1)].into_iter().collect();
        assert!(!a.descends(&b) && !b.descends(&a));
        a.join(&b);
        let expected: Vec<(ActorId, u64)> = vec![(ActorId(1), 4), (ActorId(2), 5), (ActorId(3), 1)];
        assert_eq!(a.iter().collect::<Vec<_>>(), expected);
        assert!(a.descends(&b) && a.descends(&VersionVector::new()));
    }

    #[test]
    fn collecting_drops_zero_counters_and_keeps_the_highest_repeat() {
        let vector: VersionVector = [(ActorId(1), 0), (ActorId(2), 7), (ActorId(2), 3)].into_iter().collect();
        assert_eq!(vector.len(), 1);
        assert_eq!(vector.get(ActorId(2)), 7);
        assert_eq!(vector, [(ActorId(2), 7)].into_iter().collect());
    }

    #[test]
    fn actor_displays_as_fixed_width_hex() {
        assert_eq!(ActorId(0xab).to_string(), "00000000000000ab");
    }
}
