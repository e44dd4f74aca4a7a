//! [`Counter`]: a PN-counter (Shapiro et al. 2011, as Riak's `riak_dt_pncounter`):
//! per actor, the total of its increments and the total of its decrements,
//! each only ever growing. The value is the sum of all increments minus the
//! sum of all decrements; a merge keeps, per actor, the larger of each
//! total. Why two grow-only totals and not one signed number per actor: a
//! signed entry that can go down cannot be merged by taking the maximum,
//! and a merge that is not a maximum is not idempotent.
//!
//! An actor is a replica that applies updates (in the store, a node, never
//! a client, so the number of entries stays bounded by the nodes that ever
//! coordinated an update: at most [`MAX_ACTORS`]). An actor must never be
//! reused after its node lost the state it had built: its totals would
//! restart below what other replicas hold, and its new increments would
//! vanish under the maximum.
//!
//! **Delta.** [`Counter::increment`] returns a counter holding only the
//! acting replica's entry, with its new totals. It merges into any state,
//! with no causal precondition: an older delta of the same actor is below
//! it, a newer one above it, and the maximum picks the right one whatever
//! the order of arrival. Its size is one entry, whatever the number of
//! actors.
//!
//! **Bounds.** Totals saturate at `u64::MAX` (still a maximum, so the laws
//! hold); the value saturates at the ends of `i64`.
//!
//! Laws proved by the tests below: merge commutative, associative,
//! idempotent; deltas merged in any order, duplicated, give the state the
//! updates built; the value is the sum of the updates; codec round trip.

use std::collections::BTreeMap;

use crate::codec::{CodecError, Reader, clamped_u16};
use crate::crdt::Crdt;
use crate::version::ActorId;

/// Most actors one counter holds. Actors are nodes (a fresh one per data
/// directory, see the module doc), so a cluster would need this many
/// distinct node lifetimes that each updated this counter to reach it.
pub const MAX_ACTORS: usize = 4096;

/// Format byte of an encoded counter.
const FORMAT: u8 = 1;

/// Bytes of one encoded entry: actor, increments, decrements.
const ENTRY_BYTES: usize = 8 + 8 + 8;

/// One actor's grow-only totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Totals {
    increments: u64,
    decrements: u64,
}

/// A PN-counter (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    entries: BTreeMap<ActorId, Totals>,
}

/// Why an update was refused; the counter is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CounterError {
    /// A new actor would exceed [`MAX_ACTORS`].
    #[error("the counter already has {MAX_ACTORS} actors, its limit")]
    TooManyActors,
}

impl Counter {
    /// An empty counter (value 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value: all increments minus all decrements, saturating at the
    /// ends of `i64`.
    pub fn value(&self) -> i64 {
        let (up, down) = self.entries.values().fold((0i128, 0i128), |(up, down), totals| {
            (up + i128::from(totals.increments), down + i128::from(totals.decrements))
        });
        i64::try_from(up - down).unwrap_or(if up > down { i64::MAX } else { i64::MIN })
    }

    /// Number of actors that updated this counter.
    pub fn actors(&self) -> usize {
        self.entries.len()
    }

    /// Adds `amount` (negative to decrement) as `actor`; returns the delta
    /// to ship to the other replicas (this actor's entry alone).
    pub fn increment(&mut self, actor: ActorId, amount: i64) -> Result<Counter, CounterError> {
        if !self.entries.contains_key(&actor) && self.entries.len() >= MAX_ACTORS {
            return Err(CounterError::TooManyActors);
        }
        let totals = self.entries.entry(actor).or_default();
        let magnitude = amount.unsigned_abs();
        if amount >= 0 {
            totals.increments = totals.increments.saturating_add(magnitude);
        } else {
            totals.decrements = totals.decrements.saturating_add(magnitude);
        }
        Ok(Counter { entries: BTreeMap::from([(actor, *totals)]) })
    }

    /// The encoding (format 1): the format byte, the number of entries
    /// (u16), then per entry in actor order: actor, increments,
    /// decrements (u64 each, big-endian).
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.entries.len() <= MAX_ACTORS, "a counter never holds more than MAX_ACTORS");
        let mut out = Vec::with_capacity(3 + self.entries.len() * ENTRY_BYTES);
        out.push(FORMAT);
        out.extend_from_slice(&clamped_u16(self.entries.len()).to_be_bytes());
        for (actor, totals) in &self.entries {
            out.extend_from_slice(&actor.0.to_be_bytes());
            out.extend_from_slice(&totals.increments.to_be_bytes());
            out.extend_from_slice(&totals.decrements.to_be_bytes());
        }
        out
    }

    /// Decodes [`Counter::encode`]'s bytes, refusing anything else: an
    /// unknown format, more than [`MAX_ACTORS`] entries, actors out of
    /// order or repeated, truncation, trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Counter, CodecError> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("counter format")?;
        if format != FORMAT {
            return Err(CodecError::UnknownFormat(format));
        }
        let count = usize::from(reader.u16("counter entry count")?);
        if count > MAX_ACTORS {
            return Err(CodecError::Invalid("counter has more actors than MAX_ACTORS"));
        }
        if reader.remaining() != count * ENTRY_BYTES {
            return match reader.remaining() < count * ENTRY_BYTES {
                true => Err(CodecError::Truncated("counter entries")),
                false => Err(CodecError::TrailingBytes(reader.remaining() - count * ENTRY_BYTES)),
            };
        }
        let mut entries = BTreeMap::new();
        let mut previous: Option<ActorId> = None;
        for _ in 0..count {
            let actor = ActorId(reader.u64("counter actor")?);
            if previous.is_some_and(|previous| previous >= actor) {
                return Err(CodecError::Invalid("counter actors out of order or repeated"));
            }
            previous = Some(actor);
            let increments = reader.u64("counter increments")?;
            let decrements = reader.u64("counter decrements")?;
            entries.insert(actor, Totals { increments, decrements });
        }
        Ok(Counter { entries })
    }
}

impl Crdt for Counter {
    fn merge(&mut self, other: &Self) {
        for (actor, theirs) in &other.entries {
            let ours = self.entries.entry(*actor).or_default();
            ours.increments = ours.increments.max(theirs.increments);
            ours.decrements = ours.decrements.max(theirs.decrements);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn merged(a: &Counter, b: &Counter) -> Counter {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    /// A counter built by `updates` (actor index, amount) on one replica.
    fn built(updates: &[(u8, i32)]) -> Counter {
        let mut counter = Counter::new();
        for (actor, amount) in updates {
            counter.increment(ActorId(u64::from(*actor)), i64::from(*amount)).expect("few actors");
        }
        counter
    }

    fn updates() -> impl Strategy<Value = Vec<(u8, i32)>> {
        prop::collection::vec((0u8..4, -1000i32..1000), 0..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merge_is_commutative_associative_and_idempotent(a in updates(), b in updates(), c in updates()) {
            let (a, b, c) = (built(&a), built(&b), built(&c));
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }

        /// Replica 0 applies every update (each actor updates only its own
        /// entry, as a node does) and ships each delta; the other replica
        /// receives the deltas shuffled, some twice, and must end equal,
        /// with the sum of the updates as its value.
        #[test]
        fn deltas_in_any_order_and_duplicated_give_the_updated_state(
            updates in updates(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..48),
        ) {
            let mut origin = Counter::new();
            let mut deltas = Vec::new();
            for (actor, amount) in &updates {
                deltas.push(origin.increment(ActorId(u64::from(*actor)), i64::from(*amount)).expect("few actors"));
            }
            let mut replica = Counter::new();
            for index in &order {
                if !deltas.is_empty() {
                    replica.merge(&deltas[index.index(deltas.len())]);
                }
            }
            for delta in &deltas {
                replica.merge(delta);
            }
            prop_assert_eq!(&replica, &origin);
            let sum: i64 = updates.iter().map(|(_, amount)| i64::from(*amount)).sum();
            prop_assert_eq!(replica.value(), sum);
        }

        /// Updates by different actors on different replicas, merged in
        /// either direction, lose none of them.
        #[test]
        fn concurrent_updates_on_two_replicas_all_count(a in updates(), b in updates()) {
            let shift = |updates: &[(u8, i32)]| updates.iter().map(|(actor, amount)| (actor + 4, *amount)).collect::<Vec<_>>();
            let (left, right) = (built(&a), built(&shift(&b)));
            let sum: i64 = a.iter().chain(b.iter()).map(|(_, amount)| i64::from(*amount)).sum();
            prop_assert_eq!(merged(&left, &right).value(), sum);
        }

        #[test]
        fn encoding_round_trips(updates in updates()) {
            let counter = built(&updates);
            prop_assert_eq!(Counter::decode(&counter.encode()), Ok(counter));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(counter) = Counter::decode(&bytes) {
                prop_assert_eq!(counter.encode(), bytes);
            }
        }
    }

    #[test]
    fn a_delta_carries_one_entry_whatever_the_number_of_actors() {
        let mut counter = Counter::new();
        for actor in 0..100 {
            counter.increment(ActorId(actor), 1).expect("under the limit");
        }
        let delta = counter.increment(ActorId(7), 5).expect("known actor");
        assert_eq!(delta.actors(), 1);
        assert_eq!(delta.encode().len(), 3 + ENTRY_BYTES);
        assert_eq!(counter.value(), 105);
    }

    #[test]
    fn totals_and_value_saturate_instead_of_wrapping() {
        let mut counter = Counter::new();
        counter.increment(ActorId(1), i64::MAX).expect("first");
        counter.increment(ActorId(2), i64::MAX).expect("second");
        assert_eq!(counter.value(), i64::MAX);
        counter.increment(ActorId(3), i64::MIN).expect("third");
        counter.increment(ActorId(4), i64::MIN).expect("fourth");
        counter.increment(ActorId(5), i64::MIN).expect("fifth");
        assert_eq!(counter.value(), i64::MIN);
    }

    #[test]
    fn a_new_actor_past_the_limit_is_refused_and_changes_nothing() {
        let mut counter = Counter::new();
        for actor in 0..MAX_ACTORS as u64 {
            counter.increment(ActorId(actor), 1).expect("under the limit");
        }
        let before = counter.clone();
        assert_eq!(counter.increment(ActorId(u64::MAX), 1), Err(CounterError::TooManyActors));
        assert_eq!(counter, before);
        assert!(counter.increment(ActorId(0), 1).is_ok(), "a known actor may still update");
    }

    #[test]
    fn malformed_encodings_are_refused() {
        let good = built(&[(1, 3), (2, -4)]).encode();
        assert_eq!(Counter::decode(&[2]), Err(CodecError::UnknownFormat(2)));
        assert!(matches!(Counter::decode(&good[..good.len() - 1]), Err(CodecError::Truncated(_))));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Counter::decode(&trailing), Err(CodecError::TrailingBytes(1)));
        let mut repeated = good.clone();
        repeated[3 + ENTRY_BYTES..3 + ENTRY_BYTES + 8].copy_from_slice(&1u64.to_be_bytes());
        assert!(matches!(Counter::decode(&repeated), Err(CodecError::Invalid(_))));
        let too_many = [vec![FORMAT], ((MAX_ACTORS + 1) as u16).to_be_bytes().to_vec()].concat();
        assert!(matches!(Counter::decode(&too_many), Err(CodecError::Invalid(_))));
    }
}
