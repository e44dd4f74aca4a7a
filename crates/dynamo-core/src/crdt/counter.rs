//! [`Counter`]: a PN-counter (Shapiro et al. 2011, as Riak's `riak_dt_pncounter`)
//! that also remembers recent **operation ids**, so that a retried
//! increment counts once (issue 12).
//!
//! **Totals.** Per actor, the total of its increments and the total of its
//! decrements, each only ever growing; the value is the sum of all
//! increments minus the sum of all decrements. Why two grow-only totals and
//! not one signed number per actor: a signed entry that can go down cannot
//! be merged by taking the maximum, and a merge that is not a maximum is not
//! idempotent.
//!
//! An actor is a replica that applies updates (in the store, a node, never
//! a client, so the number of entries stays bounded by the nodes that ever
//! coordinated an update: at most [`MAX_ACTORS`]). An actor must never be
//! reused after its node lost the state it had built: its entry would
//! restart below what other replicas hold, and its new increments would
//! vanish under the older, larger revision. A removed node's entry stays:
//! its increments are part of the value.
//!
//! **Operation ids.** An increment may carry an [`OperationId`]. The acting
//! replica records it (a *remembered id*: the id, the amount, and a dot
//! `(actor, n)` numbering the actor's id-carrying increments) beside adding
//! the amount to its totals. An id the replica's state already remembers is
//! not applied again: the retry is answered as done. A retry that reached
//! a *different* replica before the first one's change did (the first
//! replica timed out, the client or a forwarding node tried the next one)
//! is applied there too, and the two remembered ids meet when the replicas
//! merge: the application with the lowest dot is the one that counts, the
//! others are *duplicates*, and the value subtracts them. The duplicate's
//! actor later *compensates* (adds the amount to its opposite total and
//! forgets its record, in one change), so the value stays the same and the
//! memory is returned.
//!
//! **The window.** Each actor remembers its last [`ID_WINDOW`] id-carrying
//! increments to the counter; an older one it forgets (at its next
//! update), except one it must keep because another actor's duplicate of it
//! is still remembered (forgetting it would make the duplicate count). A
//! retry of a forgotten id counts again. So do two applications of one id
//! on two replicas that stay apart (a partition) while either applies
//! [`ID_WINDOW`] more id-carrying increments to the counter.
//!
//! **Why each entry carries a revision and the set of its remembered dots.**
//! The totals of an actor and its remembered ids must change together:
//! a receiver that saw a duplicate's compensation in the totals but still
//! held the duplicate's record would subtract it twice. Every change by an
//! actor bumps its entry's revision, and a merge keeps, per actor, the
//! entry of the higher revision whole (only that actor changes its entry,
//! so its entries are totally ordered), and keeps a remembered id only
//! while its actor's entry still lists its dot. (A state decoded from an
//! older build may list a dot without its record; it counts in the totals
//! and is recognised as a duplicate once a delta of its actor arrives.)
//!
//! **Delta.** An update returns a counter holding the acting replica's
//! entry (totals, revision, remembered dots) and every record it
//! remembers, so that any one delta of an actor lets a receiver tell that
//! actor's duplicates (one carrying only the new record would leave a
//! receiver that missed an earlier delta listing dots it cannot judge; the
//! chaos test found duplicates that never met that way). It merges into
//! any state, with no causal precondition. Its size is one entry: 45
//! bytes, plus 33 bytes per remembered id (at most about 2 KiB), whatever
//! the number of actors.
//!
//! **Bounds.** Totals saturate at `u64::MAX`; the value saturates at the
//! ends of `i64`.
//!
//! Laws proved by the tests below: merge commutative, associative,
//! idempotent; deltas merged in any order, duplicated, give the state the
//! updates built; the value is the sum of the updates, each id counted
//! once; codec round trip.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::codec::{CodecError, Reader, clamped_u16, first_128_bits};
use crate::crdt::Crdt;
use crate::version::{ActorId, Dot};

/// Most actors one counter holds. Actors are nodes (a fresh one per data
/// directory, see the module doc), so a cluster would need this many
/// distinct node lifetimes that each updated this counter to reach it.
pub const MAX_ACTORS: usize = 4096;

/// Id-carrying increments each actor remembers per counter (see the module
/// doc: the window within which a retry counts once).
pub const ID_WINDOW: usize = 64;

/// Most remembered dots one entry may list in a decoded counter: the window
/// plus the ones kept past it for another actor's duplicate.
pub const MAX_REMEMBERED: usize = 4096;

/// Longest operation id a client may send, in bytes.
pub const MAX_OPERATION_ID_LEN: usize = 128;

/// Format byte of a counter before operation ids (decoded, never written).
const FORMAT_TOTALS_ONLY: u8 = 1;
/// Format byte of an encoded counter.
const FORMAT: u8 = 2;

/// Bytes of one encoded entry before its remembered dots: actor, revision,
/// increments, decrements, issued (u64 each), remembered count (u16).
const ENTRY_BYTES: usize = 8 * 5 + 2;
/// Bytes of one format-1 entry: actor, increments, decrements.
const TOTALS_ONLY_ENTRY_BYTES: usize = 8 * 3;

/// The id of an operation, so that applying it again changes nothing: 128
/// bits, from the client's id (hashed) or drawn at random by the node that
/// forwards an increment (so its own retry through another replica counts
/// once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperationId(pub [u8; 16]);

impl OperationId {
    /// The id of a client's operation id (any bytes, hashed with SHA-256 so
    /// that every id takes 16 bytes and two distinct ids collide with
    /// probability 2^-128).
    pub fn from_client(id: &[u8]) -> OperationId {
        OperationId(first_128_bits(Sha256::digest(id).into()))
    }
}

/// One actor's entry (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Entry {
    /// Bumped by every change of this entry; first, so the derived order
    /// is by revision.
    revision: u64,
    increments: u64,
    decrements: u64,
    /// Id-carrying increments this actor applied: their dots are 1..=issued.
    issued: u64,
    /// The dots (counters) of the ones it still remembers.
    remembered: BTreeSet<u64>,
}

impl Entry {
    fn add(&mut self, amount: i64) {
        let magnitude = amount.unsigned_abs();
        if amount >= 0 {
            self.increments = self.increments.saturating_add(magnitude);
        } else {
            self.decrements = self.decrements.saturating_add(magnitude);
        }
    }

    /// Cancels an earlier `add(amount)` through the opposite total (both
    /// only grow).
    fn take_back(&mut self, amount: i64) {
        let magnitude = amount.unsigned_abs();
        if amount >= 0 {
            self.decrements = self.decrements.saturating_add(magnitude);
        } else {
            self.increments = self.increments.saturating_add(magnitude);
        }
    }
}

/// A remembered id-carrying increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Remembered {
    id: OperationId,
    amount: i64,
}

/// A PN-counter with remembered operation ids (see the module doc).
/// Invariant: every remembered record's dot is listed by its actor's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    entries: BTreeMap<ActorId, Entry>,
    records: BTreeMap<Dot, Remembered>,
}

/// Why an update was refused; the counter is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CounterError {
    /// A new actor would exceed [`MAX_ACTORS`].
    #[error("the counter already has {MAX_ACTORS} actors, its limit")]
    TooManyActors,
}

/// What an increment did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The delta to ship to the other replicas. For an id already
    /// remembered, the entry and record of the application that counts, so
    /// that shipping it again makes a retried write as durable as a first
    /// one.
    pub delta: Counter,
    /// False when the id was already remembered and nothing changed.
    pub counted: bool,
}

impl Counter {
    /// An empty counter (value 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value: all increments minus all decrements, minus the amounts
    /// of the duplicates still remembered, saturating at the ends of `i64`.
    pub fn value(&self) -> i64 {
        let (up, down) = self.entries.values().fold((0i128, 0i128), |(up, down), entry| {
            (up + i128::from(entry.increments), down + i128::from(entry.decrements))
        });
        let duplicated: i128 = self.duplicates().map(|(_, record)| i128::from(record.amount)).sum();
        let value = up - down - duplicated;
        i64::try_from(value).unwrap_or(if value > 0 { i64::MAX } else { i64::MIN })
    }

    /// Number of actors that updated this counter.
    pub fn actors(&self) -> usize {
        self.entries.len()
    }

    /// Number of operation ids remembered (records held).
    pub fn remembered_ids(&self) -> usize {
        self.records.len()
    }

    /// Adds `amount` (negative to decrement) as `actor`; returns the delta
    /// to ship to the other replicas (this actor's entry alone).
    pub fn increment(&mut self, actor: ActorId, amount: i64) -> Result<Counter, CounterError> {
        self.apply(actor, amount, None).map(|applied| applied.delta)
    }

    /// Adds `amount` as `actor` unless an increment with `id` is already
    /// remembered here (then nothing changes: see [`Applied`]).
    pub fn increment_once(&mut self, actor: ActorId, amount: i64, id: OperationId) -> Result<Applied, CounterError> {
        self.apply(actor, amount, Some(id))
    }

    fn apply(&mut self, actor: ActorId, amount: i64, id: Option<OperationId>) -> Result<Applied, CounterError> {
        if let Some(id) = id
            && let Some((dot, _)) = self.records.iter().find(|(_, record)| record.id == id)
        {
            return Ok(Applied { delta: self.entry_of(dot.actor), counted: false });
        }
        if !self.entries.contains_key(&actor) && self.entries.len() >= MAX_ACTORS {
            return Err(CounterError::TooManyActors);
        }
        let entry = self.entries.entry(actor).or_default();
        entry.add(amount);
        if let Some(id) = id {
            entry.issued += 1;
            entry.remembered.insert(entry.issued);
            self.records.insert(Dot { actor, counter: entry.issued }, Remembered { id, amount });
        }
        self.tidy(actor);
        let entry = self.entries.get_mut(&actor).expect("inserted above");
        entry.revision = entry.revision.saturating_add(1);
        Ok(Applied { delta: self.entry_of(actor), counted: true })
    }

    /// `actor`'s entry with every record it remembers: the delta of its
    /// updates. Why all the records and not just the new one: a receiver
    /// that missed an earlier delta would otherwise list the dot without
    /// the record, and could not tell a duplicate by it; with every delta
    /// carrying them, any delta of an actor tells its duplicates.
    fn entry_of(&self, actor: ActorId) -> Counter {
        let entry = self.entries.get(&actor).cloned().unwrap_or_default();
        let records = self
            .records
            .range(Dot { actor, counter: 0 }..=Dot { actor, counter: u64::MAX })
            .map(|(dot, record)| (*dot, *record))
            .collect();
        Counter { entries: BTreeMap::from([(actor, entry)]), records }
    }

    /// The remembered applications that do not count: for each id, every
    /// record but the one with the lowest dot.
    fn duplicates(&self) -> impl Iterator<Item = (&Dot, &Remembered)> {
        let mut counting: BTreeMap<OperationId, Dot> = BTreeMap::new();
        for (dot, record) in &self.records {
            counting.entry(record.id).or_insert(*dot);
        }
        self.records.iter().filter(move |(dot, record)| counting.get(&record.id) != Some(*dot))
    }

    /// `actor`'s housekeeping, as part of one of its updates: it
    /// compensates and forgets its duplicates, then forgets its oldest
    /// records past [`ID_WINDOW`], keeping any that another actor's
    /// remembered duplicate still needs.
    fn tidy(&mut self, actor: ActorId) {
        let own_duplicates: Vec<Dot> =
            self.duplicates().filter(|(dot, _)| dot.actor == actor).map(|(dot, _)| *dot).collect();
        let entry = self.entries.get_mut(&actor).expect("the acting actor has an entry");
        for dot in own_duplicates {
            if let Some(record) = self.records.remove(&dot) {
                entry.remembered.remove(&dot.counter);
                entry.take_back(record.amount);
            }
        }
        let mut excess = entry.remembered.len().saturating_sub(ID_WINDOW);
        if excess == 0 {
            return;
        }
        let mut applications: BTreeMap<OperationId, usize> = BTreeMap::new();
        for record in self.records.values() {
            *applications.entry(record.id).or_default() += 1;
        }
        let forgettable: Vec<u64> = entry
            .remembered
            .iter()
            .copied()
            .filter(|counter| match self.records.get(&Dot { actor, counter: *counter }) {
                Some(record) => applications.get(&record.id).copied().unwrap_or(0) < 2,
                None => true,
            })
            .collect();
        for counter in forgettable {
            if excess == 0 {
                break;
            }
            entry.remembered.remove(&counter);
            self.records.remove(&Dot { actor, counter });
            excess -= 1;
        }
    }

    /// Drops the records whose actor's entry no longer lists them.
    fn forget_unlisted(&mut self) {
        let entries = &self.entries;
        self.records
            .retain(|dot, _| entries.get(&dot.actor).is_some_and(|entry| entry.remembered.contains(&dot.counter)));
    }

    /// The encoding (format 2): the format byte, the number of entries
    /// (u16), then per entry in actor order: actor, revision, increments,
    /// decrements, issued (u64 each, big-endian), the number of remembered
    /// dots (u16), and per dot in increasing order: its counter (u64), then
    /// `0`, or `1 | id (16 bytes) | amount (i64)` when this state holds its
    /// record.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(self.entries.len() <= MAX_ACTORS, "a counter never holds more than MAX_ACTORS");
        let mut out = Vec::with_capacity(3 + self.entries.len() * ENTRY_BYTES + self.records.len() * 33);
        out.push(FORMAT);
        out.extend_from_slice(&clamped_u16(self.entries.len()).to_be_bytes());
        for (actor, entry) in &self.entries {
            for field in [actor.0, entry.revision, entry.increments, entry.decrements, entry.issued] {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(&clamped_u16(entry.remembered.len()).to_be_bytes());
            for counter in &entry.remembered {
                out.extend_from_slice(&counter.to_be_bytes());
                match self.records.get(&Dot { actor: *actor, counter: *counter }) {
                    None => out.push(0),
                    Some(record) => {
                        out.push(1);
                        out.extend_from_slice(&record.id.0);
                        out.extend_from_slice(&record.amount.to_be_bytes());
                    }
                }
            }
        }
        out
    }

    /// Decodes [`Counter::encode`]'s bytes (and format 1, the totals alone,
    /// written before operation ids), refusing anything else: an unknown
    /// format, more than [`MAX_ACTORS`] entries or [`MAX_REMEMBERED`] dots
    /// in one, actors or dots out of order or repeated, a dot above the
    /// entry's issued count, truncation, trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Counter, CodecError> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("counter format")?;
        if format != FORMAT && format != FORMAT_TOTALS_ONLY {
            return Err(CodecError::UnknownFormat(format));
        }
        let count = usize::from(reader.u16("counter entry count")?);
        if count > MAX_ACTORS {
            return Err(CodecError::Invalid("counter has more actors than MAX_ACTORS"));
        }
        let least = count * if format == FORMAT { ENTRY_BYTES } else { TOTALS_ONLY_ENTRY_BYTES };
        if reader.remaining() < least {
            return Err(CodecError::Truncated("counter entries"));
        }
        let mut counter = Counter::new();
        let mut previous: Option<ActorId> = None;
        for _ in 0..count {
            let actor = ActorId(reader.u64("counter actor")?);
            if previous.is_some_and(|previous| previous >= actor) {
                return Err(CodecError::Invalid("counter actors out of order or repeated"));
            }
            previous = Some(actor);
            let entry = match format {
                FORMAT => counter.decode_entry(actor, &mut reader)?,
                _ => {
                    let increments = reader.u64("counter increments")?;
                    let decrements = reader.u64("counter decrements")?;
                    // Format 1 merged each total by its maximum; their sum
                    // grows with every change, as a revision must.
                    let revision = increments.saturating_add(decrements);
                    Entry { revision, increments, decrements, ..Entry::default() }
                }
            };
            counter.entries.insert(actor, entry);
        }
        match reader.remaining() {
            0 => Ok(counter),
            extra => Err(CodecError::TrailingBytes(extra)),
        }
    }

    /// Reads one format-2 entry after its actor, and its records.
    fn decode_entry(&mut self, actor: ActorId, reader: &mut Reader<'_>) -> Result<Entry, CodecError> {
        let revision = reader.u64("counter revision")?;
        let increments = reader.u64("counter increments")?;
        let decrements = reader.u64("counter decrements")?;
        let issued = reader.u64("counter issued ids")?;
        let remembered = usize::from(reader.u16("counter remembered count")?);
        if remembered > MAX_REMEMBERED || remembered.saturating_mul(9) > reader.remaining() {
            return Err(CodecError::Invalid("counter remembers more ids than allowed or than the bytes present"));
        }
        let mut entry = Entry { revision, increments, decrements, issued, remembered: BTreeSet::new() };
        let mut previous = 0u64;
        for _ in 0..remembered {
            let counter = reader.u64("counter remembered dot")?;
            if counter <= previous || counter > issued {
                return Err(CodecError::Invalid(
                    "counter remembered dots out of order, zero or above the issued count",
                ));
            }
            previous = counter;
            entry.remembered.insert(counter);
            if reader.flag("counter record present")? {
                let id = OperationId(reader.array("counter operation id")?);
                let amount = i64::from_be_bytes(reader.array("counter remembered amount")?);
                self.records.insert(Dot { actor, counter }, Remembered { id, amount });
            }
        }
        Ok(entry)
    }
}

impl Crdt for Counter {
    fn merge(&mut self, other: &Self) {
        for (actor, theirs) in &other.entries {
            match self.entries.get_mut(actor) {
                Some(ours) if *ours >= *theirs => {}
                Some(ours) => *ours = theirs.clone(),
                None => {
                    self.entries.insert(*actor, theirs.clone());
                }
            }
        }
        for (dot, theirs) in &other.records {
            // One dot has one record; the minimum only keeps the merge
            // commutative should bytes from elsewhere disagree.
            let ours = self.records.entry(*dot).or_insert(*theirs);
            *ours = (*ours).min(*theirs);
        }
        self.forget_unlisted();
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

    fn id(n: u8) -> OperationId {
        OperationId::from_client(&[n])
    }

    /// The amount every application of id `n` carries (a retry repeats
    /// its operation).
    fn amount_of(n: u8) -> i64 {
        i64::from(n) * 7 - 40
    }

    /// One update: actor index, amount, and an id from a small pool (so
    /// that ids repeat) or none.
    type Update = (u8, i32, Option<u8>);

    fn apply(counter: &mut Counter, (actor, amount, with_id): &Update) -> Counter {
        let actor = ActorId(u64::from(*actor));
        match with_id {
            None => counter.increment(actor, i64::from(*amount)).expect("few actors"),
            Some(n) => counter.increment_once(actor, amount_of(*n), id(*n)).expect("few actors").delta,
        }
    }

    /// A counter built by `updates` on one replica.
    fn built(updates: &[Update]) -> Counter {
        let mut counter = Counter::new();
        for update in updates {
            apply(&mut counter, update);
        }
        counter
    }

    fn updates() -> impl Strategy<Value = Vec<Update>> {
        prop::collection::vec((0u8..4, -1000i32..1000, prop::option::of(0u8..12)), 0..24)
    }

    /// What the updates add up to when each id counts once.
    fn expected_value(updates: &[Update]) -> i64 {
        let ids: BTreeSet<u8> = updates.iter().filter_map(|(_, _, with_id)| *with_id).collect();
        let plain: i64 = updates.iter().filter(|update| update.2.is_none()).map(|update| i64::from(update.1)).sum();
        plain + ids.into_iter().map(amount_of).sum::<i64>()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn merge_is_commutative_associative_and_idempotent(a in updates(), b in updates(), c in updates()) {
            // Three replicas, each its own actors, so ids repeat across
            // replicas as a retry through another node does.
            let shift = |updates: &[Update], by: u8| updates.iter().map(|(actor, amount, id)| (actor + by, *amount, *id)).collect::<Vec<_>>();
            let (a, b, c) = (built(&a), built(&shift(&b, 4)), built(&shift(&c, 8)));
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a);
        }

        /// Replica 0 applies every update (each actor updates only its own
        /// entry, as a node does) and ships each delta; the other replica
        /// receives the deltas shuffled, some twice, and must end equal,
        /// with each id counted once.
        #[test]
        fn deltas_in_any_order_and_duplicated_give_the_updated_state(
            updates in updates(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..48),
        ) {
            let mut origin = Counter::new();
            let deltas: Vec<Counter> = updates.iter().map(|update| apply(&mut origin, update)).collect();
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
            prop_assert_eq!(replica.value(), expected_value(&updates));
        }

        /// Three replicas apply updates (ids repeating across them, as
        /// retries through other nodes do) while exchanging states at
        /// random; once all is merged every replica is equal and each id
        /// counted once, whichever replica applied it first.
        #[test]
        fn an_id_applied_on_several_replicas_counts_once(
            steps in prop::collection::vec((0usize..3, prop::option::of(0u8..12), -50i32..50, prop::option::of(0usize..3)), 0..40),
        ) {
            let mut replicas = vec![Counter::new(); 3];
            let mut updates = Vec::new();
            for (at, with_id, amount, then_merge_from) in steps {
                let update = (at as u8, amount, with_id);
                apply(&mut replicas[at], &update);
                updates.push(update);
                if let Some(from) = then_merge_from {
                    let theirs = replicas[from].clone();
                    replicas[at].merge(&theirs);
                }
            }
            let all = replicas.iter().fold(Counter::new(), |all, replica| merged(&all, replica));
            for replica in &replicas {
                let caught_up = merged(replica, &all);
                prop_assert_eq!(&caught_up, &all);
                prop_assert_eq!(caught_up.value(), expected_value(&updates));
            }
        }

        #[test]
        fn encoding_round_trips(updates in updates()) {
            let counter = built(&updates);
            prop_assert_eq!(Counter::decode(&counter.encode()), Ok(counter));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(counter) = Counter::decode(&bytes)
                && bytes.first() == Some(&FORMAT)
            {
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
    fn a_retry_at_the_same_replica_changes_nothing_and_ships_the_first_application() {
        let mut counter = Counter::new();
        let first = counter.increment_once(ActorId(1), 5, id(1)).unwrap();
        assert!(first.counted);
        let before = counter.clone();
        let retry = counter.increment_once(ActorId(1), 5, id(1)).unwrap();
        assert!(!retry.counted);
        assert_eq!(counter, before);
        assert_eq!(counter.value(), 5);
        assert_eq!(retry.delta, first.delta, "the retry re-ships what the first application shipped");
    }

    #[test]
    fn a_retry_through_another_replica_counts_once_and_its_duplicate_is_compensated() {
        let (mut left, mut right) = (Counter::new(), Counter::new());
        left.increment_once(ActorId(1), 5, id(1)).unwrap();
        right.increment_once(ActorId(2), 5, id(1)).unwrap();
        assert_eq!(merged(&left, &right).value(), 5);
        assert_eq!(merged(&right, &left).value(), 5);
        // Actor 2's next update compensates its duplicate and forgets it.
        right.merge(&left);
        let delta = right.increment(ActorId(2), 1).unwrap();
        assert_eq!(right.value(), 6);
        assert_eq!(right.remembered_ids(), 1, "only the application that counts is remembered");
        // A replica that held both records and gets the compensation
        // counts the id once still.
        let mut third = merged(&left, &merged(&Counter::new(), &right));
        third.merge(&delta);
        assert_eq!(third.value(), 6);
        left.merge(&delta);
        assert_eq!(left.value(), 6, "the compensation's delta alone suffices: it says the duplicate is forgotten");
    }

    #[test]
    fn an_actor_forgets_ids_past_the_window_and_a_retry_of_one_counts_again() {
        let mut counter = Counter::new();
        counter.increment_once(ActorId(1), 1, id(0)).unwrap();
        for n in 0..ID_WINDOW as u64 {
            counter.increment_once(ActorId(1), 1, OperationId::from_client(&n.to_be_bytes())).unwrap();
        }
        assert_eq!(counter.remembered_ids(), ID_WINDOW);
        assert!(counter.increment_once(ActorId(1), 1, id(0)).unwrap().counted, "id 0 was forgotten");
        assert_eq!(counter.value(), ID_WINDOW as i64 + 2);
    }

    #[test]
    fn an_application_is_kept_past_the_window_while_a_duplicate_of_it_is_remembered() {
        let (mut left, mut right) = (Counter::new(), Counter::new());
        left.increment_once(ActorId(1), 5, id(200)).unwrap();
        right.increment_once(ActorId(2), 5, id(200)).unwrap();
        left.merge(&right);
        for n in 0..2 * ID_WINDOW as u64 {
            left.increment_once(ActorId(1), 1, OperationId::from_client(&n.to_be_bytes())).unwrap();
        }
        // Actor 2 has not compensated yet; forgetting actor 1's application
        // would make actor 2's count.
        assert_eq!(left.value(), 5 + 2 * ID_WINDOW as i64);
        assert_eq!(merged(&left, &right).value(), 5 + 2 * ID_WINDOW as i64);
        right.merge(&left);
        right.increment(ActorId(2), 0).unwrap();
        left.merge(&right);
        left.increment_once(ActorId(1), 1, id(201)).unwrap();
        assert_eq!(left.remembered_ids(), ID_WINDOW, "once compensated, the kept application is forgotten");
        assert_eq!(merged(&left, &right).value(), 6 + 2 * ID_WINDOW as i64);
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
    fn a_format_1_counter_still_decodes_and_merges_with_newer_states() {
        let mut old = vec![FORMAT_TOTALS_ONLY, 0, 1];
        for field in [1u64, 10, 3] {
            old.extend_from_slice(&field.to_be_bytes());
        }
        let mut counter = Counter::decode(&old).expect("format 1");
        assert_eq!(counter.value(), 7);
        let stale = counter.clone();
        counter.increment(ActorId(1), 2).unwrap();
        assert_eq!(merged(&stale, &counter).value(), 9);
        assert_eq!(merged(&counter, &stale).value(), 9);
    }

    #[test]
    fn malformed_encodings_are_refused() {
        let good = built(&[(1, 3, None), (2, -4, Some(1))]).encode();
        assert_eq!(Counter::decode(&[3]), Err(CodecError::UnknownFormat(3)));
        assert!(matches!(Counter::decode(&good[..good.len() - 1]), Err(CodecError::Truncated(_))));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Counter::decode(&trailing), Err(CodecError::TrailingBytes(1)));
        let mut repeated = good.clone();
        repeated[3 + ENTRY_BYTES..3 + ENTRY_BYTES + 8].copy_from_slice(&1u64.to_be_bytes());
        assert!(matches!(Counter::decode(&repeated), Err(CodecError::Invalid(_))));
        let mut above_issued = good.clone();
        let dot_at = 3 + 2 * ENTRY_BYTES;
        above_issued[dot_at..dot_at + 8].copy_from_slice(&2u64.to_be_bytes());
        assert!(matches!(Counter::decode(&above_issued), Err(CodecError::Invalid(_))));
        let too_many = [vec![FORMAT], ((MAX_ACTORS + 1) as u16).to_be_bytes().to_vec()].concat();
        assert!(matches!(Counter::decode(&too_many), Err(CodecError::Invalid(_))));
    }
}
