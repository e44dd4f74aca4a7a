//! [`CausalContext`]: the set of dots (updates) a data-type replica has
//! seen, kept as a version vector plus a *dot cloud* of the dots seen out
//! of order (Almeida, Shoker and Baquero, "Delta state replicated data
//! types", 2018, section 4).
//!
//! Why not a plain [`crate::version::VersionVector`]: a vector says "every
//! dot of this actor up to n", which is only true of a replica that
//! received every update in order. A replica that merged a delta while it
//! missed an earlier one (the earlier write went to a fallback, its hint is
//! still on the way) has seen dot 7 but not dot 6; a vector would have to
//! either claim dot 6 (and then a later merge would treat the element of
//! dot 6 as removed here: lost) or drop dot 7. The cloud keeps dot 7 apart
//! until dot 6 arrives, and then folds both into the vector, so the cloud
//! is empty once replicas have caught up.

use std::collections::{BTreeMap, BTreeSet};

use crate::codec::{CodecError, Reader, clamped_u16, clamped_u32};
use crate::version::{ActorId, Dot};

/// Most actors a decoded context may name in its vector.
pub const MAX_CONTEXT_ACTORS: usize = 4096;
/// Most out-of-order dots a decoded context may hold. A healthy replica's
/// cloud is empty; one that has missed deltas holds one dot per update it
/// merged since, until anti-entropy gives it the rest.
pub const MAX_CLOUD_DOTS: usize = 1 << 20;

/// The dots a replica has seen (see the module doc). Invariant: no cloud
/// dot is covered by the vector, and no actor's next dot (vector entry
/// plus one) is in the cloud (it would have been folded in), so equal sets
/// of dots have equal representations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CausalContext {
    vector: BTreeMap<ActorId, u64>,
    cloud: BTreeSet<Dot>,
}

impl CausalContext {
    /// The context that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.vector.is_empty() && self.cloud.is_empty()
    }

    /// Whether `dot` has been seen.
    pub fn contains(&self, dot: Dot) -> bool {
        dot.counter <= self.contiguous(dot.actor) || self.cloud.contains(&dot)
    }

    /// Records `dot` as seen.
    pub fn insert(&mut self, dot: Dot) {
        if dot.counter == 0 || self.contains(dot) {
            return;
        }
        self.cloud.insert(dot);
        self.fold(dot.actor);
    }

    /// A dot `actor` has never issued as far as this context knows: one
    /// above the greatest it has seen of `actor`. Fresh only if this
    /// context has seen every dot `actor` issued for this value, which
    /// holds at the replica that is `actor` (it keeps its own updates).
    pub fn next_dot(&self, actor: ActorId) -> Dot {
        let in_cloud = self.cloud.range(Dot { actor, counter: 0 }..=Dot { actor, counter: u64::MAX }).next_back();
        let greatest = in_cloud.map_or(0, |dot| dot.counter).max(self.contiguous(actor));
        Dot { actor, counter: greatest.saturating_add(1) }
    }

    /// Adds every dot `other` has seen.
    pub fn join(&mut self, other: &CausalContext) {
        for (actor, counter) in &other.vector {
            let entry = self.vector.entry(*actor).or_insert(0);
            *entry = (*entry).max(*counter);
        }
        self.cloud.extend(other.cloud.iter().copied());
        let actors: BTreeSet<ActorId> =
            other.vector.keys().chain(other.cloud.iter().map(|dot| &dot.actor)).copied().collect();
        for actor in actors {
            self.fold(actor);
        }
    }

    /// Whether every dot `other` has seen has been seen here too.
    pub fn includes(&self, other: &CausalContext) -> bool {
        let vector_seen = other.vector.iter().all(|(actor, counter)| {
            let contiguous = self.contiguous(*actor);
            // The dots above our contiguous run must all be in our cloud:
            // the cloud holds distinct dots, so counting them is enough.
            *counter <= contiguous || {
                let wanted = Dot { actor: *actor, counter: contiguous + 1 }..=Dot { actor: *actor, counter: *counter };
                self.cloud.range(wanted).count() as u64 == *counter - contiguous
            }
        });
        vector_seen && other.cloud.iter().all(|dot| self.contains(*dot))
    }

    /// Number of actors in the vector plus dots in the cloud (for bounds).
    pub fn len(&self) -> usize {
        self.vector.len() + self.cloud.len()
    }

    /// Dots seen out of order, waiting for the ones before them.
    pub fn cloud_len(&self) -> usize {
        self.cloud.len()
    }

    fn contiguous(&self, actor: ActorId) -> u64 {
        self.vector.get(&actor).copied().unwrap_or(0)
    }

    /// Restores the invariant for `actor`: drops its cloud dots the vector
    /// covers and folds in the ones that continue its run.
    fn fold(&mut self, actor: ActorId) {
        let mut contiguous = self.contiguous(actor);
        let covered: Vec<Dot> =
            self.cloud.range(Dot { actor, counter: 0 }..=Dot { actor, counter: contiguous }).copied().collect();
        for dot in covered {
            self.cloud.remove(&dot);
        }
        while let Some(next) = contiguous.checked_add(1)
            && self.cloud.remove(&Dot { actor, counter: next })
        {
            contiguous = next;
        }
        if contiguous > 0 {
            self.vector.insert(actor, contiguous);
        }
    }

    /// The encoding as bytes, for a client to hand back (see
    /// [`CausalContext::encode`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads [`CausalContext::to_bytes`]'s bytes, refusing trailing ones.
    pub fn from_bytes(bytes: &[u8]) -> Result<CausalContext, CodecError> {
        let mut reader = Reader::new(bytes);
        let context = CausalContext::decode(&mut reader)?;
        match reader.remaining() {
            0 => Ok(context),
            extra => Err(CodecError::TrailingBytes(extra)),
        }
    }

    /// Appends the encoding: `actors u16 | (actor u64, counter u64)* |
    /// cloud dots u32 | (actor u64, counter u64)*`, both in increasing
    /// order.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&clamped_u16(self.vector.len()).to_be_bytes());
        for (actor, counter) in &self.vector {
            out.extend_from_slice(&actor.0.to_be_bytes());
            out.extend_from_slice(&counter.to_be_bytes());
        }
        out.extend_from_slice(&clamped_u32(self.cloud.len()).to_be_bytes());
        for dot in &self.cloud {
            encode_dot(*dot, out);
        }
    }

    /// Reads [`CausalContext::encode`]'s bytes, refusing any other
    /// representation of the same dots (out of order, a zero counter, a
    /// cloud dot the vector covers or that should have been folded in).
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<CausalContext, CodecError> {
        let actors = usize::from(reader.u16("context actor count")?);
        if actors > MAX_CONTEXT_ACTORS {
            return Err(CodecError::Invalid("context names more actors than allowed"));
        }
        let mut context = CausalContext::new();
        let mut previous: Option<ActorId> = None;
        for _ in 0..actors {
            let actor = ActorId(reader.u64("context actor")?);
            let counter = reader.u64("context counter")?;
            if counter == 0 || previous.is_some_and(|previous| previous >= actor) {
                return Err(CodecError::Invalid("context vector out of order or with a zero counter"));
            }
            previous = Some(actor);
            context.vector.insert(actor, counter);
        }
        let cloud = usize::try_from(reader.u32("context cloud size")?).unwrap_or(usize::MAX);
        if cloud > MAX_CLOUD_DOTS || cloud.saturating_mul(16) > reader.remaining() {
            return Err(CodecError::Invalid("context cloud larger than allowed or than the bytes present"));
        }
        let mut previous: Option<Dot> = None;
        for _ in 0..cloud {
            let dot = decode_dot(reader, "context cloud dot")?;
            // (Saturating: a vector entry may be u64::MAX; found by fuzzing.)
            let folded = dot.counter <= context.contiguous(dot.actor).saturating_add(1);
            if folded || previous.is_some_and(|previous| previous >= dot) {
                return Err(CodecError::Invalid("context cloud out of order or not folded into the vector"));
            }
            previous = Some(dot);
            context.cloud.insert(dot);
        }
        Ok(context)
    }
}

/// Appends a dot: `actor u64 | counter u64`.
pub(crate) fn encode_dot(dot: Dot, out: &mut Vec<u8>) {
    out.extend_from_slice(&dot.actor.0.to_be_bytes());
    out.extend_from_slice(&dot.counter.to_be_bytes());
}

/// Reads a dot, refusing counter zero (it names no update).
pub(crate) fn decode_dot(reader: &mut Reader<'_>, what: &'static str) -> Result<Dot, CodecError> {
    let actor = ActorId(reader.u64(what)?);
    let counter = reader.u64(what)?;
    if counter == 0 {
        return Err(CodecError::Invalid("a dot with counter zero"));
    }
    Ok(Dot { actor, counter })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn dot(actor: u64, counter: u64) -> Dot {
        Dot { actor: ActorId(actor), counter }
    }

    fn of(dots: &[(u64, u64)]) -> CausalContext {
        let mut context = CausalContext::new();
        for (actor, counter) in dots {
            context.insert(dot(*actor, *counter));
        }
        context
    }

    fn dots() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((0u64..3, 1u64..8), 0..16)
    }

    fn round_trip(context: &CausalContext) -> Result<CausalContext, CodecError> {
        let mut out = Vec::new();
        context.encode(&mut out);
        let mut reader = Reader::new(&out);
        let decoded = CausalContext::decode(&mut reader)?;
        assert_eq!(reader.remaining(), 0);
        Ok(decoded)
    }

    #[test]
    fn a_vector_entry_at_the_largest_counter_neither_overflows_decoding_nor_folding() {
        // Found by fuzzing: the fold check added one to u64::MAX.
        let mut bytes = 1u16.to_be_bytes().to_vec();
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        let full = CausalContext::from_bytes(&[bytes.clone(), 0u32.to_be_bytes().to_vec()].concat()).expect("valid");
        let mut with_cloud = bytes;
        with_cloud.extend_from_slice(&1u32.to_be_bytes());
        with_cloud.extend_from_slice(&1u64.to_be_bytes());
        with_cloud.extend_from_slice(&5u64.to_be_bytes());
        assert!(matches!(CausalContext::from_bytes(&with_cloud), Err(CodecError::Invalid(_))));
        let mut joined = full.clone();
        joined.join(&of(&[(1, 7)]));
        joined.insert(dot(1, 9));
        assert_eq!(joined, full);
        assert_eq!(full.next_dot(ActorId(1)), dot(1, u64::MAX));
    }

    #[test]
    fn out_of_order_dots_wait_in_the_cloud_and_fold_when_the_gap_fills() {
        let mut context = of(&[(1, 1), (1, 3), (1, 4)]);
        assert!(context.contains(dot(1, 3)) && !context.contains(dot(1, 2)));
        assert_eq!(context.cloud_len(), 2);
        assert_eq!(context.next_dot(ActorId(1)), dot(1, 5));
        context.insert(dot(1, 2));
        assert_eq!(context.cloud_len(), 0);
        assert_eq!(context, of(&[(1, 4), (1, 3), (1, 2), (1, 1)]));
    }

    #[test]
    fn includes_counts_the_cloud_for_a_vector_run() {
        let context = of(&[(1, 1), (1, 2), (1, 4)]);
        assert!(context.includes(&of(&[(1, 1), (1, 2)])));
        assert!(context.includes(&of(&[(1, 4)])));
        assert!(!context.includes(&of(&[(1, 1), (1, 2), (1, 3)])));
        assert!(of(&[(1, 1), (1, 2), (1, 3), (1, 4)]).includes(&context));
    }

    proptest! {
        /// Whatever the order of insertion and joins, the context holds
        /// exactly the dots inserted, in one canonical representation.
        #[test]
        fn equal_dot_sets_have_equal_contexts(a in dots(), b in dots()) {
            let mut joined = of(&a);
            joined.join(&of(&b));
            let all: Vec<(u64, u64)> = b.iter().chain(a.iter()).rev().copied().collect();
            prop_assert_eq!(&joined, &of(&all));
            for actor in 0..3 {
                for counter in 1..9 {
                    let expected = a.contains(&(actor, counter)) || b.contains(&(actor, counter));
                    prop_assert_eq!(joined.contains(dot(actor, counter)), expected);
                }
            }
            prop_assert!(joined.includes(&of(&a)) && joined.includes(&of(&b)));
            prop_assert_eq!(round_trip(&joined), Ok(joined.clone()));
        }

        #[test]
        fn includes_agrees_with_dot_by_dot_containment(a in dots(), b in dots()) {
            let (a, b) = (of(&a), of(&b));
            let expected = (0..3).all(|actor| (1..9).all(|counter| !b.contains(dot(actor, counter)) || a.contains(dot(actor, counter))));
            prop_assert_eq!(a.includes(&b), expected);
        }
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // Cloud dot 1:2 right after vector 1:1 should have been folded.
        let mut out = Vec::new();
        out.extend_from_slice(&1u16.to_be_bytes());
        encode_dot(dot(1, 1), &mut out);
        out.extend_from_slice(&1u32.to_be_bytes());
        encode_dot(dot(1, 2), &mut out);
        assert!(matches!(CausalContext::decode(&mut Reader::new(&out)), Err(CodecError::Invalid(_))));
        // A cloud size the bytes cannot hold is refused before allocating.
        let huge = [0u8, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(CausalContext::decode(&mut Reader::new(&huge)), Err(CodecError::Invalid(_))));
    }
}
