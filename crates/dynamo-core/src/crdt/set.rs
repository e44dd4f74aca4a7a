//! [`OrSet`]: an observed-remove set where a concurrent add wins over a
//! remove, built from dots as Riak's ORSWOT is ("OR-Set WithOut
//! Tombstones"), in delta-state form (Almeida et al. 2018, the add-wins
//! set of section 7).
//!
//! **How it works.** Each add of an element is an update with a fresh dot
//! of the acting replica; the element is present while it holds at least
//! one dot. The set's [`CausalContext`] records every dot it has seen. A
//! remove drops the element's dots that the remover had observed; an add
//! concurrent with it carries a dot the remover never saw, so it survives
//! (add wins). Merging two states keeps a dot when both sides hold it, or
//! when the side lacking it never saw it (the other side's add is news);
//! a dot one side has seen and no longer holds was removed there. So a
//! removed element leaves nothing behind but the dots in the context,
//! which is a vector entry per actor, not a tombstone per element.
//!
//! **Deltas.** [`OrSet::add`] returns `{element: {new dot}}` with a context
//! of the new dot and the element's previous dots (so the delta also
//! retires them elsewhere); [`OrSet::remove`] returns no elements and a
//! context of the dots it removed. Because the context keeps out-of-order
//! dots apart ([`CausalContext`]), a delta merges correctly into any
//! state, with or without the updates before it.
//!
//! **Removes the acting replica cannot judge yet.** A client removes what
//! its read observed: the context it sends. If that context has seen dots
//! the acting replica has not (the client read another replica that was
//! ahead), the dots of the element the client saw may not be here yet.
//! The remove then also waits in the state as a *deferred* remove
//! (as Riak's ORSWOT does), and any replica applies it as soon as its own
//! context has seen everything the remover's had. At most
//! [`MAX_DEFERRED`] contexts wait at once; beyond that a remove is refused
//! until anti-entropy catches the replica up.
//!
//! **Precondition.** The acting replica must hold every dot it issued for
//! this set (its [`CausalContext::next_dot`] must be fresh). A node keeps
//! its own updates, and takes a new actor id at every start and after it
//! replaces a damaged record, so this holds.
//!
//! Laws proved by the tests below: merge commutative, associative,
//! idempotent; deltas merged in any order and duplicated give the state the
//! updates built; an add is lost only to a remove that observed it;
//! codec round trip, and arbitrary bytes never panic the decoder.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::codec::{CodecError, Reader, clamped_u16, clamped_u32};
use crate::crdt::Crdt;
use crate::crdt::context::{CausalContext, decode_dot, encode_dot};
use crate::version::{ActorId, Dot};

/// Longest element, in bytes.
pub const MAX_ELEMENT_LEN: usize = 16 * 1024;
/// Most removes that may wait for their context at once (see the module doc).
pub const MAX_DEFERRED: usize = 64;

/// Format byte of an encoded set.
const FORMAT: u8 = 1;
/// Smallest encoded element: length, no bytes, one dot.
const MIN_ELEMENT_LEN: usize = 4 + 2 + 16;

/// An add-wins observed-remove set (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OrSet {
    context: CausalContext,
    /// Each present element's dots: never empty, all in `context`.
    elements: BTreeMap<Bytes, BTreeSet<Dot>>,
    /// Removes waiting until `context` includes the remover's context.
    deferred: BTreeMap<CausalContext, BTreeSet<Bytes>>,
}

/// Why an update was refused; the set is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetError {
    /// An element longer than [`MAX_ELEMENT_LEN`].
    #[error("a set element is {0} bytes; the limit is {MAX_ELEMENT_LEN}")]
    ElementTooLong(usize),
    /// A remove of an element the given context never saw in the set.
    #[error("cannot remove {0:?}: it is not in the set as the given context saw it (read the set again)")]
    NotObserved(String),
    /// Too many removes already wait for their context.
    #[error("{MAX_DEFERRED} removes already wait for this replica to catch up; retry shortly")]
    TooManyDeferred,
}

impl OrSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The elements, in byte order.
    pub fn elements(&self) -> impl Iterator<Item = &Bytes> {
        self.elements.keys()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the set has no elements.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Whether `element` is in the set.
    pub fn contains(&self, element: &[u8]) -> bool {
        self.elements.contains_key(element)
    }

    /// Everything this state has seen: what a client hands back to remove.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }

    /// Removes waiting for their context (see the module doc).
    pub fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    /// Adds `element` as `actor`; returns the delta.
    pub fn add(&mut self, actor: ActorId, element: Bytes) -> Result<OrSet, SetError> {
        if element.len() > MAX_ELEMENT_LEN {
            return Err(SetError::ElementTooLong(element.len()));
        }
        let dot = self.context.next_dot(actor);
        self.context.insert(dot);
        let mut delta = OrSet::new();
        delta.context.insert(dot);
        if let Some(previous) = self.elements.insert(element.clone(), BTreeSet::from([dot])) {
            previous.into_iter().for_each(|old| delta.context.insert(old));
        }
        delta.elements.insert(element, BTreeSet::from([dot]));
        Ok(delta)
    }

    /// Removes `element` as a client that observed `observed` (a context
    /// from a read; this state's own context for a client that sent none);
    /// returns the delta. Refused when this replica has seen all the
    /// client saw and the client saw no add of `element`.
    pub fn remove(&mut self, element: &[u8], observed: &CausalContext) -> Result<OrSet, SetError> {
        let judged_here = self.context.includes(observed);
        let dots: BTreeSet<Dot> = self
            .elements
            .get(element)
            .map(|dots| dots.iter().copied().filter(|dot| observed.contains(*dot)).collect())
            .unwrap_or_default();
        if judged_here && dots.is_empty() {
            return Err(SetError::NotObserved(String::from_utf8_lossy(element).into_owned()));
        }
        if !judged_here && !self.deferred.contains_key(observed) && self.deferred.len() >= MAX_DEFERRED {
            return Err(SetError::TooManyDeferred);
        }
        let mut delta = OrSet::new();
        self.drop_dots(element, &dots);
        dots.iter().for_each(|dot| delta.context.insert(*dot));
        if !judged_here {
            let element = Bytes::copy_from_slice(element);
            self.deferred.entry(observed.clone()).or_default().insert(element.clone());
            delta.deferred.entry(observed.clone()).or_default().insert(element);
        }
        Ok(delta)
    }

    /// Applies `updates` in order, all or none; returns their joined delta.
    /// The batch is checked first (no copy of the set is made, so an
    /// operation on a large set costs what its updates touch).
    pub fn apply_all(
        &mut self,
        updates: &[SetUpdate],
        actor: ActorId,
        observed: &CausalContext,
    ) -> Result<OrSet, SetError> {
        self.check_batch(updates, observed)?;
        let mut delta = OrSet::new();
        for update in updates {
            let step = match update {
                SetUpdate::Add(element) => self.add(actor, element.clone()),
                SetUpdate::Remove(element) => self.remove(element, observed),
            };
            delta.merge(&step.expect("checked by check_batch"));
        }
        Ok(delta)
    }

    /// Whether every update of the batch would be accepted, in order: what
    /// [`OrSet::add`] and [`OrSet::remove`] would refuse, with the effect
    /// of the batch's earlier updates (an element added earlier in the
    /// batch holds only a dot the client cannot have observed; one removed
    /// earlier holds no observed dot any more).
    fn check_batch(&self, updates: &[SetUpdate], observed: &CausalContext) -> Result<(), SetError> {
        let judged_here = self.context.includes(observed);
        let mut touched: BTreeSet<&[u8]> = BTreeSet::new();
        for update in updates {
            match update {
                SetUpdate::Add(element) if element.len() > MAX_ELEMENT_LEN => {
                    return Err(SetError::ElementTooLong(element.len()));
                }
                SetUpdate::Add(element) => {
                    touched.insert(element);
                }
                SetUpdate::Remove(element) => {
                    let observed_here = !touched.contains(element.as_ref())
                        && self
                            .elements
                            .get(element)
                            .is_some_and(|dots| dots.iter().any(|dot| observed.contains(*dot)));
                    if judged_here && !observed_here {
                        return Err(SetError::NotObserved(String::from_utf8_lossy(element).into_owned()));
                    }
                    touched.insert(element);
                }
            }
        }
        let defers = !judged_here && updates.iter().any(|update| matches!(update, SetUpdate::Remove(_)));
        if defers && !self.deferred.contains_key(observed) && self.deferred.len() >= MAX_DEFERRED {
            return Err(SetError::TooManyDeferred);
        }
        Ok(())
    }

    fn drop_dots(&mut self, element: &[u8], dots: &BTreeSet<Dot>) {
        if let Some(held) = self.elements.get_mut(element) {
            held.retain(|dot| !dots.contains(dot));
            if held.is_empty() {
                self.elements.remove(element);
            }
        }
    }

    /// Applies the deferred removes whose context this state now includes.
    fn apply_deferred(&mut self) {
        let ready: Vec<CausalContext> =
            self.deferred.keys().filter(|observed| self.context.includes(observed)).cloned().collect();
        for observed in ready {
            let Some(elements) = self.deferred.remove(&observed) else { continue };
            for element in elements {
                let seen: BTreeSet<Dot> = self
                    .elements
                    .get(&element)
                    .map(|dots| dots.iter().copied().filter(|dot| observed.contains(*dot)).collect())
                    .unwrap_or_default();
                self.drop_dots(&element, &seen);
            }
        }
    }

    /// The encoding (format 1): `format u8 | context | elements u32 | per
    /// element (in byte order): length u32, bytes, dots u16, dots | deferred
    /// u16 | per deferred remove (in context order): context, elements u32,
    /// per element: length u32, bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        self.context.encode(&mut out);
        out.extend_from_slice(&clamped_u32(self.elements.len()).to_be_bytes());
        for (element, dots) in &self.elements {
            encode_element(element, &mut out);
            out.extend_from_slice(&clamped_u16(dots.len()).to_be_bytes());
            dots.iter().for_each(|dot| encode_dot(*dot, &mut out));
        }
        out.extend_from_slice(&clamped_u16(self.deferred.len()).to_be_bytes());
        for (observed, elements) in &self.deferred {
            observed.encode(&mut out);
            out.extend_from_slice(&clamped_u32(elements.len()).to_be_bytes());
            elements.iter().for_each(|element| encode_element(element, &mut out));
        }
        out
    }

    /// Decodes [`OrSet::encode`]'s bytes, refusing anything the encoder
    /// would not write: an unknown format, elements or dots out of order, an
    /// element without dots or with a dot its context has not seen, an
    /// empty or already-applicable deferred remove, truncation, trailing
    /// bytes.
    pub fn decode(bytes: &[u8]) -> Result<OrSet, CodecError> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("set format")?;
        if format != FORMAT {
            return Err(CodecError::UnknownFormat(format));
        }
        let context = CausalContext::decode(&mut reader)?;
        let count = usize::try_from(reader.u32("set element count")?).unwrap_or(usize::MAX);
        if count.saturating_mul(MIN_ELEMENT_LEN) > reader.remaining() {
            return Err(CodecError::Truncated("set elements"));
        }
        let mut elements = BTreeMap::new();
        let mut previous: Option<Bytes> = None;
        for _ in 0..count {
            let element = decode_element(&mut reader, previous.as_ref())?;
            let dot_count = usize::from(reader.u16("set element dot count")?);
            if dot_count == 0 {
                return Err(CodecError::Invalid("a set element without dots"));
            }
            let mut dots = BTreeSet::new();
            for _ in 0..dot_count {
                let dot = decode_dot(&mut reader, "set element dot")?;
                if !context.contains(dot) || dots.last().is_some_and(|last| *last >= dot) {
                    return Err(CodecError::Invalid("set element dots out of order or not in the context"));
                }
                dots.insert(dot);
            }
            previous = Some(element.clone());
            elements.insert(element, dots);
        }
        let deferred_count = usize::from(reader.u16("set deferred count")?);
        if deferred_count > MAX_DEFERRED {
            return Err(CodecError::Invalid("more deferred removes than allowed"));
        }
        let mut deferred = BTreeMap::new();
        for _ in 0..deferred_count {
            let observed = CausalContext::decode(&mut reader)?;
            if context.includes(&observed) || deferred.last_key_value().is_some_and(|(last, _)| *last >= observed) {
                return Err(CodecError::Invalid("deferred removes out of order or already applicable"));
            }
            let count = usize::try_from(reader.u32("deferred element count")?).unwrap_or(usize::MAX);
            if count == 0 || count.saturating_mul(4) > reader.remaining() {
                return Err(CodecError::Invalid("a deferred remove without elements or with more than the bytes hold"));
            }
            let mut removed = BTreeSet::new();
            let mut previous: Option<Bytes> = None;
            for _ in 0..count {
                let element = decode_element(&mut reader, previous.as_ref())?;
                previous = Some(element.clone());
                removed.insert(element);
            }
            deferred.insert(observed, removed);
        }
        if reader.remaining() > 0 {
            return Err(CodecError::TrailingBytes(reader.remaining()));
        }
        Ok(OrSet { context, elements, deferred })
    }
}

/// One update of [`OrSet::apply_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetUpdate {
    /// Add this element.
    Add(Bytes),
    /// Remove this element, as observed.
    Remove(Bytes),
}

impl Crdt for OrSet {
    fn merge(&mut self, other: &Self) {
        let mut merged = BTreeMap::new();
        let names: BTreeSet<&Bytes> = self.elements.keys().chain(other.elements.keys()).collect();
        let empty = BTreeSet::new();
        for name in names {
            let ours = self.elements.get(name).unwrap_or(&empty);
            let theirs = other.elements.get(name).unwrap_or(&empty);
            let kept: BTreeSet<Dot> = ours
                .iter()
                .filter(|dot| theirs.contains(dot) || !other.context.contains(**dot))
                .chain(theirs.iter().filter(|dot| !self.context.contains(**dot)))
                .copied()
                .collect();
            if !kept.is_empty() {
                merged.insert(name.clone(), kept);
            }
        }
        self.elements = merged;
        self.context.join(&other.context);
        for (observed, elements) in &other.deferred {
            self.deferred.entry(observed.clone()).or_default().extend(elements.iter().cloned());
        }
        self.apply_deferred();
    }
}

fn encode_element(element: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u32(element.len()).to_be_bytes());
    out.extend_from_slice(element);
}

/// Reads one element, which must sort after `previous`.
fn decode_element(reader: &mut Reader<'_>, previous: Option<&Bytes>) -> Result<Bytes, CodecError> {
    let len = usize::try_from(reader.u32("set element length")?).unwrap_or(usize::MAX);
    if len > MAX_ELEMENT_LEN {
        return Err(CodecError::Invalid("a set element longer than allowed"));
    }
    let element = Bytes::copy_from_slice(reader.take(len, "set element")?);
    if previous.is_some_and(|previous| *previous >= element) {
        return Err(CodecError::Invalid("set elements out of order or repeated"));
    }
    Ok(element)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn merged(a: &OrSet, b: &OrSet) -> OrSet {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    fn element(index: u8) -> Bytes {
        Bytes::from(vec![b'a' + index])
    }

    fn names(set: &OrSet) -> BTreeSet<Bytes> {
        set.elements().cloned().collect()
    }

    /// One step of a history over three replicas.
    #[derive(Clone, Debug)]
    enum Step {
        Add {
            replica: usize,
            element: u8,
        },
        /// A remove at `replica` with the context of a read of `read_from`.
        Remove {
            replica: usize,
            element: u8,
            read_from: usize,
        },
        /// `to` merges `from`'s whole state.
        Sync {
            from: usize,
            to: usize,
        },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0usize..3, 0u8..4).prop_map(|(replica, element)| Step::Add { replica, element }),
            (0usize..3, 0u8..4, 0usize..3).prop_map(|(replica, element, read_from)| Step::Remove {
                replica,
                element,
                read_from
            }),
            (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
        ];
        prop::collection::vec(step, 0..32)
    }

    /// What a history did: the three replicas' states, every delta shipped
    /// (in order), and the dots of every add with whether a later remove
    /// observed it.
    struct Run {
        replicas: Vec<OrSet>,
        deltas: Vec<OrSet>,
        adds: Vec<(Bytes, Dot)>,
        removes: Vec<(Bytes, CausalContext)>,
    }

    fn run(steps: &[Step]) -> Run {
        let mut replicas = vec![OrSet::new(); 3];
        let (mut deltas, mut adds, mut removes) = (Vec::new(), Vec::new(), Vec::new());
        for step in steps {
            match *step {
                Step::Add { replica, element: index } => {
                    let delta = replicas[replica].add(ActorId(replica as u64), element(index)).expect("short");
                    let dot = *delta.elements.values().next().and_then(|dots| dots.first()).expect("one dot");
                    adds.push((element(index), dot));
                    deltas.push(delta);
                }
                Step::Remove { replica, element: index, read_from } => {
                    let observed = replicas[read_from].context().clone();
                    if let Ok(delta) = replicas[replica].remove(&element(index), &observed) {
                        removes.push((element(index), observed));
                        deltas.push(delta);
                    }
                }
                Step::Sync { from, to } => {
                    let state = replicas[from].clone();
                    replicas[to].merge(&state);
                }
            }
        }
        Run { replicas, deltas, adds, removes }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merge_is_commutative_associative_and_idempotent(steps in steps()) {
            let Run { replicas, .. } = run(&steps);
            let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(&merged(a, a), a);
        }

        /// Every delta, delivered to a fresh replica in any order and some
        /// twice, gives what merging the three replicas' states gives.
        #[test]
        fn deltas_in_any_order_and_duplicated_give_the_merged_state(
            steps in steps(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..48),
        ) {
            let Run { replicas, deltas, .. } = run(&steps);
            let everything = merged(&merged(&replicas[0], &replicas[1]), &replicas[2]);
            let mut receiver = OrSet::new();
            for index in &order {
                if !deltas.is_empty() {
                    receiver.merge(&deltas[index.index(deltas.len())]);
                }
            }
            for delta in deltas.iter().rev() {
                receiver.merge(delta);
            }
            prop_assert_eq!(names(&receiver), names(&everything));
            prop_assert_eq!(receiver.context(), everything.context());
        }

        /// Nothing lost: after all replicas merge, an add is present unless
        /// some remove of its element observed its dot.
        #[test]
        fn an_add_is_gone_only_if_a_remove_observed_it(steps in steps()) {
            let Run { replicas, adds, removes, .. } = run(&steps);
            let everything = merged(&merged(&replicas[0], &replicas[1]), &replicas[2]);
            for (name, dot) in &adds {
                let removed = removes.iter().any(|(removed, observed)| removed == name && observed.contains(*dot));
                let superseded = adds.iter().any(|(other, later)| other == name && later.actor == dot.actor && later.counter > dot.counter);
                if !removed && !superseded {
                    prop_assert!(everything.contains(name), "add {:?} of {:?} lost", dot, name);
                }
            }
            prop_assert_eq!(everything.deferred_len(), 0, "a fully merged state applies every deferred remove");
        }

        #[test]
        fn encoding_round_trips(steps in steps()) {
            for set in run(&steps).replicas {
                prop_assert_eq!(OrSet::decode(&set.encode()), Ok(set));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(set) = OrSet::decode(&bytes) {
                prop_assert_eq!(set.encode(), bytes);
            }
        }
    }

    #[test]
    fn a_concurrent_add_wins_over_a_remove() {
        let (mut left, mut right) = (OrSet::new(), OrSet::new());
        let delta = left.add(ActorId(1), element(0)).unwrap();
        right.merge(&delta);
        let observed = right.context().clone();
        right.remove(&element(0), &observed).unwrap();
        left.add(ActorId(1), element(0)).unwrap();
        assert!(merged(&left, &right).contains(&element(0)));
        assert!(merged(&right, &left).contains(&element(0)));
    }

    #[test]
    fn a_remove_of_what_the_context_never_saw_is_refused_and_changes_nothing() {
        let mut set = OrSet::new();
        set.add(ActorId(1), element(0)).unwrap();
        let before = set.clone();
        let error = set.remove(&element(1), &before.context().clone()).unwrap_err();
        assert_eq!(error, SetError::NotObserved("b".to_string()));
        assert_eq!(
            error.to_string(),
            "cannot remove \"b\": it is not in the set as the given context saw it (read the set again)"
        );
        assert_eq!(set.remove(&element(0), &CausalContext::new()), Err(SetError::NotObserved("a".to_string())));
        assert_eq!(set, before);
    }

    #[test]
    fn a_remove_from_a_context_ahead_of_the_replica_waits_then_applies() {
        let (mut ahead, mut behind) = (OrSet::new(), OrSet::new());
        ahead.add(ActorId(1), element(0)).unwrap();
        let observed = ahead.context().clone();
        behind.remove(&element(0), &observed).expect("deferred, not refused");
        assert_eq!(behind.deferred_len(), 1);
        behind.merge(&ahead);
        assert_eq!(behind.deferred_len(), 0);
        assert!(!behind.contains(&element(0)), "the deferred remove applied once the add arrived");
    }

    #[test]
    fn an_add_delta_is_small_whatever_the_size_of_the_set() {
        let mut set = OrSet::new();
        for index in 0..10_000u32 {
            set.add(ActorId(1), Bytes::from(format!("item-{index}"))).unwrap();
        }
        let delta = set.add(ActorId(2), Bytes::from_static(b"one more")).unwrap();
        assert!(delta.encode().len() < 100, "delta is {} bytes", delta.encode().len());
        assert!(set.encode().len() > 100_000);
    }

    #[test]
    fn a_batch_applies_all_or_nothing() {
        let mut set = OrSet::new();
        set.add(ActorId(1), element(0)).unwrap();
        let observed = set.context().clone();
        let before = set.clone();
        let batch = [SetUpdate::Add(element(1)), SetUpdate::Remove(element(2))];
        assert_eq!(set.apply_all(&batch, ActorId(1), &observed), Err(SetError::NotObserved("c".to_string())));
        let twice = [SetUpdate::Remove(element(0)), SetUpdate::Remove(element(0))];
        assert_eq!(set.apply_all(&twice, ActorId(1), &observed), Err(SetError::NotObserved("a".to_string())));
        let added_then_removed = [SetUpdate::Add(element(1)), SetUpdate::Remove(element(1))];
        assert!(set.apply_all(&added_then_removed, ActorId(1), &observed).is_err(), "the client never saw that add");
        assert_eq!(set, before, "a refused batch changes nothing");
        let good = [SetUpdate::Add(element(1)), SetUpdate::Remove(element(0))];
        let delta = set.apply_all(&good, ActorId(1), &observed).unwrap();
        assert_eq!(names(&set), BTreeSet::from([element(1)]));
        let mut elsewhere = before.clone();
        elsewhere.merge(&delta);
        assert_eq!(elsewhere, set, "the batch's delta carries both updates");
    }

    #[test]
    fn oversized_elements_and_deferred_floods_are_refused() {
        let mut set = OrSet::new();
        let long = Bytes::from(vec![0; MAX_ELEMENT_LEN + 1]);
        assert_eq!(set.add(ActorId(1), long), Err(SetError::ElementTooLong(MAX_ELEMENT_LEN + 1)));
        for counter in 1..=MAX_DEFERRED as u64 {
            let mut observed = CausalContext::new();
            observed.insert(Dot { actor: ActorId(9), counter: counter * 2 });
            set.remove(&element(0), &observed).expect("deferred");
        }
        let mut one_more = CausalContext::new();
        one_more.insert(Dot { actor: ActorId(8), counter: 1 });
        assert_eq!(set.remove(&element(0), &one_more), Err(SetError::TooManyDeferred));
        assert_eq!(OrSet::decode(&set.encode()), Ok(set));
    }
}
