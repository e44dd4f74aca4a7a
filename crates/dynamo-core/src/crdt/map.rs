//! [`Map`]: named fields, each a convergent value of its own kind
//! (register, flag, counter, set or nested map), with the observed-remove
//! and **reset-remove** semantics of Riak's map (`riak_dt_map`, Riak 2.0),
//! in delta-state form: the whole map is one *causal CRDT*, a dot store
//! over one [`CausalContext`] (Almeida, Shoker and Baquero, "Delta state
//! replicated data types", 2018, section 7: the `DotSet`, `DotFun` and
//! `DotMap` stores and the map that embeds them).
//!
//! **How it works.** A field is identified by its name *and* kind
//! ([`FieldKey`]): `x` the register and `x` the counter are two fields, as
//! in Riak (rendered `x_register`, `x_counter`). Every update of a field by
//! an actor takes a fresh dot from the map's context (nested maps share
//! it), and each kind keeps its dots:
//!
//! - a **register** maps dots to written values (`(timestamp, bytes)`). A
//!   write replaces every value the acting replica holds (it has seen
//!   them, whatever their timestamps), so only concurrent writes coexist,
//!   and a read shows the greatest by (HLC timestamp, actor): last write
//!   wins, ties broken by actor;
//! - a **flag** is a set of dots, enable-wins: enable adds a fresh dot
//!   (retiring the ones held), disable drops the dots it observed, so a
//!   concurrent enable survives a disable;
//! - a **counter** maps dots to (increments, decrements) totals: an
//!   increment adds a dot holding its own amount (see "Counters" below);
//! - a **set** maps elements to dots, as [`crate::crdt::set::OrSet`] does;
//! - a **map** maps field keys to fields, recursively.
//!
//! A field is present while it holds at least one dot, so there is no
//! tombstone: a disabled flag, an emptied set or a removed field are simply
//! absent (reading an absent flag as false). Merging keeps a dot that both
//! sides hold, or that one side holds and the other never saw; a dot one
//! side saw and no longer holds was removed or replaced there.
//!
//! **Reset-remove.** Removing a field with an observed context drops the
//! dots that context saw, at every depth of the field. An update
//! concurrent with the remove carries a dot the remover never saw, so the
//! field survives (update wins), but holding *only* what the remover had
//! not observed: a set field keeps only the elements added concurrently, a
//! nested map only the sub-fields updated concurrently, a counter only the
//! concurrent increments (removed at 5 while another replica added 3, it
//! reads 3, not 8), a register only a concurrent write. Why reset and not
//! "the whole old value comes back": the remover asked to forget what it
//! saw, and the field a concurrent updater recreates should not bring it
//! back (Riak's semantics; Riak documents its counters as the exception).
//!
//! **Counters.** Riak's embedded counter (`riak_dt_emcntr`) keeps one dot
//! per actor carrying the actor's running totals, and so cannot reset: the
//! concurrent increment's new dot carries the old totals too (Baquero,
//! Almeida and Lerche, "The problem with embedded CRDT counters and a
//! solution", PaPoC 2016). Here each increment's dot holds its own amount,
//! so a remove takes away exactly what it observed. To keep the state
//! bounded, an actor holds at most [`COUNTER_DOTS_PER_ACTOR`] dots per
//! counter: past that, its increment folds its oldest dot into the next
//! oldest (which grows; the oldest is retired). So the reset is exact when
//! each actor made fewer than [`COUNTER_DOTS_PER_ACTOR`] increments of the
//! field concurrently with the remove; beyond that, the observed amount
//! folded into a dot the remover had not seen comes back with it (Riak's
//! behaviour). Exact in every history would need a dot per increment
//! forever, or tombstones; neither is bounded.
//!
//! **Deltas.** [`Map::apply`] returns a delta: a map holding just the new
//! dots at their paths, with a context of the new dots and of every dot
//! the update retired or removed (a write's predecessors, a counter's
//! folded dot, a remove's observed dots), so merging it elsewhere retires
//! them too. A batch's delta is the join of its updates' deltas.
//!
//! **Precondition.** As for the set, the acting replica must hold every
//! dot it issued for this map (its [`CausalContext::next_dot`] must be
//! fresh); a node keeps its own updates and takes a new actor id at every
//! start, so this holds. A delta is *exact* when merged into a state that
//! has the acting replica's earlier updates of this map (its base); merged
//! into a state missing some of them it is still safe (the merge is a join,
//! and the result is exact once the missing updates or a whole state
//! arrive), but meanwhile a dot the missed update retired may linger: a
//! counter can show a folded amount twice, a register an older write.
//! Where a replica has no base, the node ships it the whole state.
//!
//! **Removes the acting replica cannot judge yet.** As in the set: when the
//! client's context has seen dots this replica has not, the remove (of a
//! field, a set element, or a flag disable) drops what it can now and also
//! waits as a *deferred* remove, applied by any replica once its context
//! includes the remover's. At most [`MAX_DEFERRED`] contexts wait.
//!
//! **Limits.** [`MAX_FIELDS`] fields per map level, [`MAX_DEPTH`] levels,
//! [`MAX_NAME_LEN`] bytes of field name, [`MAX_REGISTER_LEN`] bytes of
//! register value, [`MAX_OPS`] operations per update, plus the set's
//! element length and the counter's actors
//! ([`crate::crdt::counter::MAX_ACTORS`]); counter totals saturate at
//! `u64::MAX` and the value at the ends of `i64`, as the counter's do.
//!
//! Laws proved by the tests below: merge commutative, associative,
//! idempotent; the acting replica's state is its old state merged with the
//! delta; deltas merged in any order and duplicated give the state the
//! updates built; reset-remove per kind (nested maps included), register
//! last-write-wins with ties broken by actor, flag enable-wins; refused
//! updates change nothing; codec round trip, and arbitrary bytes never
//! panic the decoder.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::codec::{CodecError, Reader, clamped_u16, clamped_u32};
use crate::crdt::Crdt;
use crate::crdt::context::{CausalContext, decode_dot, encode_dot};
use crate::crdt::counter::MAX_ACTORS;
use crate::crdt::set::{MAX_ELEMENT_LEN, SetUpdate};
use crate::hlc::Hlc;
use crate::version::{ActorId, Dot};

/// Most fields an update may leave in one map level (the top level or a
/// nested map). A hash of this many fields is already a large value; more
/// belong in separate keys.
pub const MAX_FIELDS: usize = 1024;
/// Most levels of maps, the top one included (so three nested levels).
/// Every operation and every merge recurses once per level.
pub const MAX_DEPTH: usize = 4;
/// Longest field name, in bytes (a name is also a JSON key once rendered).
pub const MAX_NAME_LEN: usize = 1024;
/// Longest register value, in bytes.
pub const MAX_REGISTER_LEN: usize = 64 * 1024 * 1024;
/// Most dots one actor keeps in one counter field (see the module doc):
/// a remove is reset exactly against up to one fewer concurrent increments
/// of each actor.
pub const COUNTER_DOTS_PER_ACTOR: usize = 4;
/// Most operations one update may carry, counting nested ones and each
/// set element update.
pub const MAX_OPS: usize = 1000;
/// Most removes that may wait for their context at once (see the module
/// doc), and (times [`MAX_OPS`]) most targets one waiting context holds.
pub const MAX_DEFERRED: usize = 64;
/// How far past the update limits a decoded state may be: each replica
/// keeps a level within [`MAX_FIELDS`], but a merge of replicas that added
/// fields concurrently holds the union (so up to this many replicas' worth).
pub const MERGE_HEADROOM: usize = 16;

/// Format byte of an encoded map.
const FORMAT: u8 = 1;
/// Most targets one deferred context may hold.
const MAX_DEFERRED_TARGETS: usize = MAX_OPS;

/// The kind of a field: which convergent type it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldKind {
    /// Last-write-wins bytes.
    Register,
    /// Enable-wins boolean.
    Flag,
    /// A counter.
    Counter,
    /// An add-wins set of byte strings.
    Set,
    /// A nested map.
    Map,
}

impl FieldKind {
    /// Every kind, in order.
    pub const ALL: [FieldKind; 5] =
        [FieldKind::Register, FieldKind::Flag, FieldKind::Counter, FieldKind::Set, FieldKind::Map];

    /// The kind's name, the suffix of a rendered field (`visits_counter`).
    pub fn name(self) -> &'static str {
        match self {
            FieldKind::Register => "register",
            FieldKind::Flag => "flag",
            FieldKind::Counter => "counter",
            FieldKind::Set => "set",
            FieldKind::Map => "map",
        }
    }

    /// The kind named `name` (as [`FieldKind::name`] spells it).
    pub fn from_name(name: &str) -> Option<FieldKind> {
        FieldKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    fn tag(self) -> u8 {
        match self {
            FieldKind::Register => 1,
            FieldKind::Flag => 2,
            FieldKind::Counter => 3,
            FieldKind::Set => 4,
            FieldKind::Map => 5,
        }
    }

    fn from_tag(tag: u8) -> Option<FieldKind> {
        FieldKind::ALL.into_iter().find(|kind| kind.tag() == tag)
    }
}

/// A field's identity: its name and kind (ordered by name, then kind).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey {
    /// The name, any bytes up to [`MAX_NAME_LEN`].
    pub name: Bytes,
    /// The kind.
    pub kind: FieldKind,
}

impl FieldKey {
    /// The field `name` of `kind`.
    pub fn new(name: impl Into<Bytes>, kind: FieldKind) -> FieldKey {
        FieldKey { name: name.into(), kind }
    }

    /// `name_kind`, as Riak renders a field (the name decoded lossily).
    pub fn label(&self) -> String {
        format!("{}_{}", String::from_utf8_lossy(&self.name), self.kind.name())
    }
}

/// An operation on one field, of the field's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// Write a register. The timestamp orders this write against
    /// concurrent ones (the caller's hybrid logical clock).
    Assign {
        /// The bytes written.
        value: Bytes,
        /// When, by the acting node's clock.
        timestamp: Hlc,
    },
    /// Enable a flag.
    Enable,
    /// Disable a flag, as observed. Disabling a flag the context never saw
    /// enabled changes nothing (and is not refused, as in Riak).
    Disable,
    /// Add this amount (negative to decrement) to a counter.
    Increment(i64),
    /// Adds and removes on a set, in order; removes as observed.
    Set(Vec<SetUpdate>),
    /// Operations on a nested map, in order.
    Map(Vec<MapOp>),
}

impl FieldOp {
    /// The kind of field this operation applies to.
    pub fn kind(&self) -> FieldKind {
        match self {
            FieldOp::Assign { .. } => FieldKind::Register,
            FieldOp::Enable | FieldOp::Disable => FieldKind::Flag,
            FieldOp::Increment(_) => FieldKind::Counter,
            FieldOp::Set(_) => FieldKind::Set,
            FieldOp::Map(_) => FieldKind::Map,
        }
    }
}

/// One operation of [`Map::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Update the field `name` of the operation's kind (creating it).
    Update {
        /// The field's name.
        name: Bytes,
        /// What to do to it.
        op: FieldOp,
    },
    /// Remove the field, as observed (reset-remove, see the module doc).
    Remove(FieldKey),
    /// Remove every field of this level, as observed (a reset-remove of
    /// each field present). Never refused for removing nothing, so it
    /// empties a map whatever it holds; refused with a context this
    /// replica cannot judge yet ([`MapError::ClearNotJudged`]), since a
    /// field this replica has not received cannot wait as a deferred
    /// remove by name.
    Clear,
    /// Refuse the whole batch unless `condition` holds at this point of it,
    /// on this replica's state: a check made where the update is applied,
    /// so that no update lands on a state it was not meant for (what the
    /// Redis front end's `WRONGTYPE` and `SET NX` need).
    Require(Condition),
}

/// A precondition of [`MapOp::Require`], on the level the operation is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The level has no fields.
    Empty,
    /// The level has at least one field.
    NotEmpty,
    /// The field is absent.
    Absent(FieldKey),
    /// The register `name` is absent, or its winning write is an integer
    /// in decimal (an optional `-`, then digits without a leading zero,
    /// within `i64`), as Redis requires of a string it increments.
    Integer(Bytes),
}

impl Condition {
    /// What the condition says, to name it in a refusal.
    pub fn describe(&self) -> String {
        match self {
            Condition::Empty => "the map is empty".to_string(),
            Condition::NotEmpty => "the map has a field".to_string(),
            Condition::Absent(key) => format!("{} is absent", key.label()),
            Condition::Integer(name) => {
                format!("{} holds an integer", FieldKey::new(name.clone(), FieldKind::Register).label())
            }
        }
    }
}

/// Parses `bytes` as Redis parses an integer string: an optional `-`, then
/// decimal digits with no leading zero (`0` itself allowed, `-0` not), no
/// sign `+`, no spaces, within `i64`.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == bytes.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical || bytes.len() > 20 {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

impl MapOp {
    /// An update of the field `name`.
    pub fn update(name: impl Into<Bytes>, op: FieldOp) -> MapOp {
        MapOp::Update { name: name.into(), op }
    }

    /// A remove of the field `name` of `kind`.
    pub fn remove(name: impl Into<Bytes>, kind: FieldKind) -> MapOp {
        MapOp::Remove(FieldKey::new(name, kind))
    }

    /// The field this operation acts on; `None` for one that acts on (or
    /// looks at) its whole level.
    pub fn key(&self) -> Option<FieldKey> {
        match self {
            MapOp::Update { name, op } => Some(FieldKey { name: name.clone(), kind: op.kind() }),
            MapOp::Remove(key) | MapOp::Require(Condition::Absent(key)) => Some(key.clone()),
            MapOp::Require(Condition::Integer(name)) => Some(FieldKey::new(name.clone(), FieldKind::Register)),
            MapOp::Clear | MapOp::Require(Condition::Empty | Condition::NotEmpty) => None,
        }
    }
}

/// A field's value as a client reads it (see [`Map::value`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// The winning write's bytes.
    Register(Bytes),
    /// Always true: a flag that is not enabled is absent.
    Flag(bool),
    /// The counter's value.
    Counter(i64),
    /// The elements, in byte order.
    Set(Vec<Bytes>),
    /// The nested map's fields.
    Map(BTreeMap<FieldKey, FieldValue>),
}

/// Why an update was refused; the map is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// A remove of a field the given context never saw in the map.
    #[error("cannot remove {0}: it is not in the map as the given context saw it (read the map again)")]
    NotObserved(String),
    /// A remove of a set element the given context never saw in the set.
    #[error(
        "cannot remove {element:?} from {field}: it is not in the set as the given context saw it (read the map again)"
    )]
    ElementNotObserved {
        /// The set field's path.
        field: String,
        /// The element (lossily decoded).
        element: String,
    },
    /// An update would leave a map level with more than [`MAX_FIELDS`].
    #[error("{0} already has {MAX_FIELDS} fields, its limit")]
    TooManyFields(String),
    /// A nested map deeper than [`MAX_DEPTH`] levels.
    #[error("maps nest at most {MAX_DEPTH} levels deep")]
    TooDeep,
    /// A field name longer than [`MAX_NAME_LEN`].
    #[error("a field name is {0} bytes; the limit is {MAX_NAME_LEN}")]
    NameTooLong(usize),
    /// A register value longer than [`MAX_REGISTER_LEN`].
    #[error("a register value is {0} bytes; the limit is {MAX_REGISTER_LEN}")]
    RegisterTooLong(usize),
    /// A set element longer than the set's limit.
    #[error("a set element is {0} bytes; the limit is {MAX_ELEMENT_LEN}")]
    ElementTooLong(usize),
    /// A new actor would exceed the counter's [`MAX_ACTORS`].
    #[error("counter {0} already has {MAX_ACTORS} actors, its limit")]
    TooManyActors(String),
    /// Too many removes already wait for their context.
    #[error("{MAX_DEFERRED} removes already wait for this replica to catch up; retry shortly")]
    TooManyDeferred,
    /// More than [`MAX_OPS`] operations in one update.
    #[error("an update carries more than {MAX_OPS} operations")]
    TooManyOps,
    /// A [`MapOp::Require`] whose condition does not hold here.
    #[error("refused: the update requires that {}, and it does not", .0.describe())]
    Unmet(Condition),
    /// A [`MapOp::Clear`] with a context that saw dots this replica has not.
    #[error("cannot clear the map with a context this replica has not caught up with yet; retry shortly")]
    ClearNotJudged,
}

/// A map of named convergent fields (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Map {
    /// Every dot this state has seen, for the whole map (nested maps too).
    context: CausalContext,
    /// The present fields: none empty, every dot in `context`.
    fields: Fields,
    /// Removes waiting until `context` includes the remover's context.
    deferred: BTreeMap<CausalContext, BTreeSet<Target>>,
}

/// One map level.
type Fields = BTreeMap<FieldKey, Field>;

/// A field's dots and what they carry, by kind (the key says which).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Field {
    /// Concurrent writes, by dot.
    Register(BTreeMap<Dot, Write>),
    /// The enables not disabled.
    Flag(BTreeSet<Dot>),
    /// Each dot's own amount (at most [`COUNTER_DOTS_PER_ACTOR`] per actor
    /// at the actor itself).
    Counter(BTreeMap<Dot, Totals>),
    /// Each present element's dots, none empty.
    Set(BTreeMap<Bytes, BTreeSet<Dot>>),
    /// A nested map level, not empty.
    Map(Fields),
}

/// One register write.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Write {
    timestamp: Hlc,
    value: Bytes,
}

/// The amount one counter dot carries, as two grow-only totals (a fold
/// only ever adds to a dot, so two copies of one dot merge by maximum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Totals {
    increments: u64,
    decrements: u64,
}

/// What a deferred remove removes: a field (at a path of keys, all but the
/// last naming nested maps), or one element of a set field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Target {
    path: Vec<FieldKey>,
    element: Option<Bytes>,
}

impl Totals {
    fn of(amount: i64) -> Totals {
        let magnitude = amount.unsigned_abs();
        match amount >= 0 {
            true => Totals { increments: magnitude, decrements: 0 },
            false => Totals { increments: 0, decrements: magnitude },
        }
    }

    fn plus(self, other: Totals) -> Totals {
        Totals {
            increments: self.increments.saturating_add(other.increments),
            decrements: self.decrements.saturating_add(other.decrements),
        }
    }

    fn max(self, other: Totals) -> Totals {
        Totals { increments: self.increments.max(other.increments), decrements: self.decrements.max(other.decrements) }
    }
}

impl Field {
    fn empty(kind: FieldKind) -> Field {
        match kind {
            FieldKind::Register => Field::Register(BTreeMap::new()),
            FieldKind::Flag => Field::Flag(BTreeSet::new()),
            FieldKind::Counter => Field::Counter(BTreeMap::new()),
            FieldKind::Set => Field::Set(BTreeMap::new()),
            FieldKind::Map => Field::Map(Fields::new()),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Field::Register(writes) => writes.is_empty(),
            Field::Flag(dots) => dots.is_empty(),
            Field::Counter(entries) => entries.is_empty(),
            Field::Set(elements) => elements.is_empty(),
            Field::Map(fields) => fields.is_empty(),
        }
    }

    /// Drops every dot `keep` refuses, at any depth, pruning what empties;
    /// pushes the dropped dots to `removed`.
    fn retain_dots(&mut self, keep: &dyn Fn(Dot) -> bool, removed: &mut Vec<Dot>) {
        if let Field::Map(fields) = self {
            fields.retain(|_, field| {
                field.retain_dots(keep, removed);
                !field.is_empty()
            });
            return;
        }
        let mut kept = |dot: Dot| {
            let kept = keep(dot);
            if !kept {
                removed.push(dot);
            }
            kept
        };
        match self {
            Field::Register(writes) => writes.retain(|dot, _| kept(*dot)),
            Field::Flag(dots) => dots.retain(|dot| kept(*dot)),
            Field::Counter(entries) => entries.retain(|dot, _| kept(*dot)),
            Field::Set(elements) => elements.retain(|_, dots| {
                dots.retain(|dot| kept(*dot));
                !dots.is_empty()
            }),
            Field::Map(_) => {}
        }
    }

    fn value(&self) -> FieldValue {
        match self {
            Field::Register(writes) => {
                let winner = writes.iter().max_by_key(|(dot, write)| (write.timestamp, dot.actor, dot.counter));
                FieldValue::Register(winner.map(|(_, write)| write.value.clone()).unwrap_or_default())
            }
            Field::Flag(dots) => FieldValue::Flag(!dots.is_empty()),
            Field::Counter(entries) => {
                let (up, down) = entries.values().fold((0i128, 0i128), |(up, down), totals| {
                    (up + i128::from(totals.increments), down + i128::from(totals.decrements))
                });
                FieldValue::Counter(i64::try_from(up - down).unwrap_or(if up > down { i64::MAX } else { i64::MIN }))
            }
            Field::Set(elements) => FieldValue::Set(elements.keys().cloned().collect()),
            Field::Map(fields) => FieldValue::Map(view(fields)),
        }
    }
}

/// The field holding a map's expiry (issue 14): the top-level register
/// with the empty name, which no front end lets a client name (the HTTP
/// API refuses an empty field name; the Redis front end uses fixed names).
/// Its winning write is the expiry in unix milliseconds, in decimal. Being
/// an ordinary register, it merges, travels and resets like any field: the
/// last `EXPIRE` wins by timestamp, a `Clear` (Redis `SET`, `DEL`) drops
/// it, and no new merge rule was needed.
pub fn expiry_key() -> FieldKey {
    FieldKey::new(Bytes::new(), FieldKind::Register)
}

impl MapOp {
    /// Sets the map's expiry to `expires_ms` (unix ms); the register write
    /// is stamped by the acting replica like any other.
    pub fn expire_at(expires_ms: u64) -> MapOp {
        MapOp::update(Bytes::new(), FieldOp::Assign { value: Bytes::from(expires_ms.to_string()), timestamp: Hlc(0) })
    }

    /// Removes the map's expiry, as observed (Redis `PERSIST`).
    pub fn persist() -> MapOp {
        MapOp::Remove(expiry_key())
    }
}

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything this state has seen: what a client hands back to remove.
    pub fn context(&self) -> &CausalContext {
        &self.context
    }

    /// Number of top-level fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the map has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// When the map expires (unix ms), if it has an expiry: see
    /// [`expiry_key`]. An unreadable expiry (not written by
    /// [`MapOp::expire_at`]) counts as none.
    pub fn expires_ms(&self) -> Option<u64> {
        let Some(Field::Register(writes)) = self.fields.get(&expiry_key()) else {
            return None;
        };
        let winner = writes.iter().max_by_key(|(dot, write)| (write.timestamp, dot.actor, dot.counter))?;
        std::str::from_utf8(&winner.1.value).ok()?.parse().ok()
    }

    /// Whether the map has expired by `now_ms`.
    pub fn is_expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms().is_some_and(|expires| expires <= now_ms)
    }

    /// Applies `ops` to this map after it expired: as if to an empty map.
    /// Everything this replica holds is cleared first (a reset-remove of
    /// each field, so an update concurrent with it survives, as a `DEL`'s
    /// does), then `ops` apply; the delta carries both, so every replica
    /// forgets the expired contents too. All or none.
    pub fn apply_after_expiry(
        &mut self,
        ops: &[MapOp],
        actor: ActorId,
        observed: Option<&CausalContext>,
    ) -> Result<Map, MapError> {
        let mut fresh = self.clone();
        let mut delta = fresh.apply(&[MapOp::Clear], actor, None)?;
        let update = fresh.apply(ops, actor, observed)?;
        delta.merge(&update);
        *self = fresh;
        Ok(delta)
    }

    /// Whether the top-level field `key` is present.
    pub fn contains(&self, key: &FieldKey) -> bool {
        self.fields.contains_key(key)
    }

    /// Removes waiting for their context (see the module doc).
    pub fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    /// The fields and their values, in key order (nested maps as nested
    /// views), for rendering.
    pub fn value(&self) -> BTreeMap<FieldKey, FieldValue> {
        view(&self.fields)
    }

    /// Applies `ops` in order as `actor`, all or none; returns the delta to
    /// ship to the other replicas. Removes act on what `observed` (the
    /// context of the client's read) saw; without one, on what this
    /// replica holds. A remove of a field or element that a context this
    /// replica can judge never saw is refused.
    ///
    /// The batch runs on a copy of the top-level fields it names (and of
    /// the context), swapped in when every operation succeeded: an update
    /// costs what those fields hold, not what the whole map holds.
    pub fn apply(&mut self, ops: &[MapOp], actor: ActorId, observed: Option<&CausalContext>) -> Result<Map, MapError> {
        check_ops(ops, 1, &mut 0)?;
        let observed = observed.unwrap_or(&self.context);
        // A clear needs every field in the copy (a condition on the level
        // only counts them).
        let mut touched: BTreeSet<FieldKey> = ops.iter().filter_map(MapOp::key).collect();
        if ops.iter().any(|op| matches!(op, MapOp::Clear)) {
            touched.extend(self.fields.keys().cloned());
        }
        let mut scratch: Fields =
            touched.iter().filter_map(|key| self.fields.get(key).map(|field| (key.clone(), field.clone()))).collect();
        let others = self.fields.len() - scratch.len();
        let mut batch = Batch {
            actor,
            observed,
            judged_here: self.context.includes(observed),
            context: self.context.clone(),
            deferred: self.deferred.clone(),
            delta: Map::new(),
        };
        batch.apply_ops(&mut scratch, others, &mut Vec::new(), ops)?;
        let Batch { context, deferred, delta, .. } = batch;
        self.context = context;
        self.deferred = deferred;
        for key in touched {
            match scratch.remove(&key) {
                Some(field) => self.fields.insert(key, field),
                None => self.fields.remove(&key),
            };
        }
        // Only a forged context can name this update's own new dots, but
        // then its deferred remove is ready now, and a state never keeps a
        // ready one (the decoder refuses it).
        self.apply_deferred();
        Ok(delta)
    }

    /// Applies the deferred removes whose context this state now includes.
    fn apply_deferred(&mut self) {
        let ready: Vec<CausalContext> =
            self.deferred.keys().filter(|observed| self.context.includes(observed)).cloned().collect();
        for observed in ready {
            let Some(targets) = self.deferred.remove(&observed) else { continue };
            for target in targets {
                remove_observed(&mut self.fields, &target.path, target.element.as_ref(), &observed, &mut Vec::new());
            }
        }
    }

    /// The encoding (format 1): `format u8 | context | level | deferred
    /// u16 | per deferred remove (in context order): context, targets u16,
    /// targets`, where a level is `fields u16 | per field (in key order):
    /// kind u8, name length u16, name, body` and a body is, by kind:
    /// register `dots u16 | (dot, timestamp u64, length u32, bytes)*`;
    /// flag `dots u16 | dot*`; counter `dots u16 | (dot, increments u64,
    /// decrements u64)*`; set `elements u32 | (length u32, bytes, dots u16,
    /// dot*)*`; map a level. A target is `keys u8 | (kind u8, name length
    /// u16, name)* | has element u8 [| length u32 | element]`. Dots are
    /// `actor u64 | counter u64`, everything in increasing order,
    /// integers big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        self.context.encode(&mut out);
        encode_fields(&self.fields, &mut out);
        out.extend_from_slice(&clamped_u16(self.deferred.len()).to_be_bytes());
        for (observed, targets) in &self.deferred {
            observed.encode(&mut out);
            out.extend_from_slice(&clamped_u16(targets.len()).to_be_bytes());
            for target in targets {
                out.push(u8::try_from(target.path.len()).unwrap_or(u8::MAX));
                target.path.iter().for_each(|key| encode_key(key, &mut out));
                out.push(u8::from(target.element.is_some()));
                if let Some(element) = &target.element {
                    encode_bytes(element, &mut out);
                }
            }
        }
        out
    }

    /// Decodes [`Map::encode`]'s bytes, refusing anything the encoder would
    /// not write for a state the map can reach: an unknown format, fields,
    /// dots or elements out of order or repeated, an empty field or nested
    /// map, a dot its context has not seen, maps nested deeper than
    /// [`MAX_DEPTH`], names, values or counts over their limits (levels up
    /// to [`MERGE_HEADROOM`] times [`MAX_FIELDS`]), an already-applicable
    /// or malformed deferred remove, truncation, trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Map, CodecError> {
        let mut reader = Reader::new(bytes);
        let format = reader.u8("map format")?;
        if format != FORMAT {
            return Err(CodecError::UnknownFormat(format));
        }
        let context = CausalContext::decode(&mut reader)?;
        let fields = decode_fields(&mut reader, &context, 1)?;
        let count = usize::from(reader.u16("map deferred count")?);
        if count > MAX_DEFERRED * MERGE_HEADROOM {
            return Err(CodecError::Invalid("more deferred map removes than allowed"));
        }
        let mut deferred: BTreeMap<CausalContext, BTreeSet<Target>> = BTreeMap::new();
        for _ in 0..count {
            let observed = CausalContext::decode(&mut reader)?;
            if context.includes(&observed) || deferred.last_key_value().is_some_and(|(last, _)| *last >= observed) {
                return Err(CodecError::Invalid("deferred map removes out of order or already applicable"));
            }
            let targets = usize::from(reader.u16("map deferred target count")?);
            if targets == 0 || targets > MAX_DEFERRED_TARGETS * MERGE_HEADROOM {
                return Err(CodecError::Invalid("a deferred map remove with no targets or more than allowed"));
            }
            let mut decoded = BTreeSet::new();
            for _ in 0..targets {
                let target = decode_target(&mut reader)?;
                if decoded.last().is_some_and(|last| *last >= target) {
                    return Err(CodecError::Invalid("deferred map remove targets out of order or repeated"));
                }
                decoded.insert(target);
            }
            deferred.insert(observed, decoded);
        }
        if reader.remaining() > 0 {
            return Err(CodecError::TrailingBytes(reader.remaining()));
        }
        Ok(Map { context, fields, deferred })
    }
}

impl Crdt for Map {
    fn merge(&mut self, other: &Self) {
        join_fields(&mut self.fields, &self.context, &other.fields, &other.context);
        self.context.join(&other.context);
        for (observed, targets) in &other.deferred {
            self.deferred.entry(observed.clone()).or_default().extend(targets.iter().cloned());
        }
        self.apply_deferred();
    }
}

/// One update batch in progress: the copies it changes and the delta so
/// far (see [`Map::apply`]).
struct Batch<'a> {
    actor: ActorId,
    /// The client's context (or the replica's own).
    observed: &'a CausalContext,
    /// Whether this replica has seen all `observed` has, so can tell what
    /// it never saw (otherwise removes also wait as deferred).
    judged_here: bool,
    context: CausalContext,
    deferred: BTreeMap<CausalContext, BTreeSet<Target>>,
    delta: Map,
}

impl Batch<'_> {
    /// Applies `ops` to the level `fields` at `prefix`, whose map also
    /// holds `others` fields not in `fields`.
    fn apply_ops(
        &mut self,
        fields: &mut Fields,
        others: usize,
        prefix: &mut Vec<FieldKey>,
        ops: &[MapOp],
    ) -> Result<(), MapError> {
        for op in ops {
            let Some(key) = op.key() else {
                self.apply_level_op(fields, others, prefix, op)?;
                continue;
            };
            let level = level_label(prefix);
            prefix.push(key.clone());
            let result = match op {
                MapOp::Update { op, .. } => {
                    let existed = fields.contains_key(&key);
                    let field = fields.entry(key.clone()).or_insert_with(|| Field::empty(key.kind));
                    let result = self.update(field, prefix, op);
                    if field.is_empty() {
                        fields.remove(&key);
                    }
                    let created = !existed && fields.contains_key(&key);
                    match result {
                        Ok(()) if created && fields.len() + others > MAX_FIELDS => Err(MapError::TooManyFields(level)),
                        result => result,
                    }
                }
                MapOp::Remove(_) => {
                    let mut removed = Vec::new();
                    remove_observed(fields, std::slice::from_ref(&key), None, self.observed, &mut removed);
                    let refusal = MapError::NotObserved(path_label(prefix));
                    self.removed(prefix, None, removed, Some(refusal))
                }
                MapOp::Require(condition) => check_field_condition(fields, &key, condition),
                MapOp::Clear => unreachable!("a clear acts on its whole level"),
            };
            prefix.pop();
            result?;
        }
        Ok(())
    }

    /// Applies an operation on the whole level `fields` at `prefix` (whose
    /// map also holds `others` fields not in `fields`): a clear, or a
    /// condition on the level.
    fn apply_level_op(
        &mut self,
        fields: &mut Fields,
        others: usize,
        prefix: &mut Vec<FieldKey>,
        op: &MapOp,
    ) -> Result<(), MapError> {
        let present = fields.len() + others;
        match op {
            MapOp::Require(Condition::Empty) if present > 0 => Err(MapError::Unmet(Condition::Empty)),
            MapOp::Require(Condition::NotEmpty) if present == 0 => Err(MapError::Unmet(Condition::NotEmpty)),
            MapOp::Require(_) => Ok(()),
            MapOp::Clear if !self.judged_here => Err(MapError::ClearNotJudged),
            MapOp::Clear => {
                debug_assert_eq!(others, 0, "a clear's level is copied whole");
                let keys: Vec<FieldKey> = fields.keys().cloned().collect();
                for key in keys {
                    let mut removed = Vec::new();
                    remove_observed(fields, std::slice::from_ref(&key), None, self.observed, &mut removed);
                    prefix.push(key);
                    let outcome = self.removed(prefix, None, removed, None);
                    prefix.pop();
                    outcome?;
                }
                Ok(())
            }
            MapOp::Update { .. } | MapOp::Remove(_) => unreachable!("an operation on one field"),
        }
    }

    /// Applies `op` to `field`, at `path`.
    fn update(&mut self, field: &mut Field, path: &[FieldKey], op: &FieldOp) -> Result<(), MapError> {
        match (op, field) {
            (FieldOp::Assign { value, timestamp }, Field::Register(writes)) => {
                let dot = self.fresh_dot();
                let write = Write { timestamp: *timestamp, value: value.clone() };
                let retired = std::mem::replace(writes, BTreeMap::from([(dot, write.clone())]));
                let content = Field::Register(BTreeMap::from([(dot, write)]));
                self.record(path, Some(content), retired.into_keys().chain([dot]), None);
            }
            (FieldOp::Enable, Field::Flag(dots)) => {
                let dot = self.fresh_dot();
                let retired = std::mem::replace(dots, BTreeSet::from([dot]));
                self.record(path, Some(Field::Flag(BTreeSet::from([dot]))), retired.into_iter().chain([dot]), None);
            }
            (FieldOp::Disable, Field::Flag(dots)) => {
                let observed: Vec<Dot> = dots.iter().copied().filter(|dot| self.observed.contains(*dot)).collect();
                observed.iter().for_each(|dot| {
                    dots.remove(dot);
                });
                self.removed(path, None, observed, None)?;
            }
            (FieldOp::Increment(amount), Field::Counter(entries)) => self.increment(entries, path, *amount)?,
            (FieldOp::Set(updates), Field::Set(elements)) => {
                for update in updates {
                    match update {
                        SetUpdate::Add(element) => {
                            let dot = self.fresh_dot();
                            let retired = elements.insert(element.clone(), BTreeSet::from([dot])).unwrap_or_default();
                            let content = Field::Set(BTreeMap::from([(element.clone(), BTreeSet::from([dot]))]));
                            self.record(path, Some(content), retired.into_iter().chain([dot]), None);
                        }
                        SetUpdate::Remove(element) => {
                            let mut removed = Vec::new();
                            remove_element(elements, element, self.observed, &mut removed);
                            let refusal = MapError::ElementNotObserved {
                                field: path_label(path),
                                element: String::from_utf8_lossy(element).into_owned(),
                            };
                            self.removed(path, Some(element), removed, Some(refusal))?;
                        }
                    }
                }
            }
            (FieldOp::Map(ops), Field::Map(fields)) => self.apply_ops(fields, 0, &mut path.to_vec(), ops)?,
            // The field was made from the operation's own kind.
            _ => debug_assert!(false, "an operation applied to a field of another kind"),
        }
        Ok(())
    }

    /// Adds `amount` to a counter field with a fresh dot, folding the
    /// actor's oldest dot into the next one past [`COUNTER_DOTS_PER_ACTOR`].
    fn increment(
        &mut self,
        entries: &mut BTreeMap<Dot, Totals>,
        path: &[FieldKey],
        amount: i64,
    ) -> Result<(), MapError> {
        let actors: BTreeSet<ActorId> = entries.keys().map(|dot| dot.actor).collect();
        if !actors.contains(&self.actor) && actors.len() >= MAX_ACTORS {
            return Err(MapError::TooManyActors(path_label(path)));
        }
        let dot = self.fresh_dot();
        entries.insert(dot, Totals::of(amount));
        let mut content = BTreeMap::from([(dot, Totals::of(amount))]);
        let mut dots = vec![dot];
        let own = Dot { actor: self.actor, counter: 0 }..=Dot { actor: self.actor, counter: u64::MAX };
        while entries.range(own.clone()).count() > COUNTER_DOTS_PER_ACTOR {
            let mut oldest = entries.range(own.clone()).map(|(dot, totals)| (*dot, *totals));
            let (Some((first, folded)), Some((next, kept))) = (oldest.next(), oldest.next()) else { break };
            entries.remove(&first);
            entries.insert(next, kept.plus(folded));
            content.insert(next, kept.plus(folded));
            dots.extend([first, next]);
        }
        self.record(path, Some(Field::Counter(content)), dots, None);
        Ok(())
    }

    /// Finishes a remove at `path` (of `element` if given) that dropped
    /// `removed`: refused with `refusal` when this replica can judge and
    /// nothing was observed, deferred when it cannot judge.
    fn removed(
        &mut self,
        path: &[FieldKey],
        element: Option<&Bytes>,
        removed: Vec<Dot>,
        refusal: Option<MapError>,
    ) -> Result<(), MapError> {
        if let Some(refusal) = refusal.filter(|_| self.judged_here && removed.is_empty()) {
            return Err(refusal);
        }
        let target = match self.judged_here {
            true => None,
            false => Some(self.defer(Target { path: path.to_vec(), element: element.cloned() })?),
        };
        self.record(path, None, removed, target);
        Ok(())
    }

    /// Records `target` as waiting for the observed context.
    fn defer(&mut self, target: Target) -> Result<Target, MapError> {
        if !self.deferred.contains_key(self.observed) && self.deferred.len() >= MAX_DEFERRED {
            return Err(MapError::TooManyDeferred);
        }
        let targets = self.deferred.entry(self.observed.clone()).or_default();
        if !targets.contains(&target) && targets.len() >= MAX_DEFERRED_TARGETS {
            return Err(MapError::TooManyDeferred);
        }
        targets.insert(target.clone());
        Ok(target)
    }

    fn fresh_dot(&mut self) -> Dot {
        let dot = self.context.next_dot(self.actor);
        self.context.insert(dot);
        dot
    }

    /// Joins one operation's delta into the batch's: `content` at `path`,
    /// a context of `dots` (the new ones and those retired or removed),
    /// and a deferred `target`.
    fn record(
        &mut self,
        path: &[FieldKey],
        content: Option<Field>,
        dots: impl IntoIterator<Item = Dot>,
        target: Option<Target>,
    ) {
        let mut step = Map::new();
        dots.into_iter().for_each(|dot| step.context.insert(dot));
        if let Some(content) = content {
            step.fields = wrap(path, content);
        }
        if let Some(target) = target {
            step.deferred.insert(self.observed.clone(), BTreeSet::from([target]));
        }
        self.delta.merge(&step);
    }
}

/// Whether the condition on the field `key` holds in `fields`.
fn check_field_condition(fields: &Fields, key: &FieldKey, condition: &Condition) -> Result<(), MapError> {
    let holds = match (condition, fields.get(key)) {
        (_, None) => true,
        (Condition::Integer(_), Some(field @ Field::Register(_))) => match field.value() {
            FieldValue::Register(bytes) => parse_integer(&bytes).is_some(),
            _ => false,
        },
        _ => false,
    };
    match holds {
        true => Ok(()),
        false => Err(MapError::Unmet(condition.clone())),
    }
}

/// Checks what needs no state: names, values and elements within their
/// limits, nesting within [`MAX_DEPTH`] (`depth` is the level of `ops`),
/// at most [`MAX_OPS`] operations (`count` so far).
fn check_ops(ops: &[MapOp], depth: usize, count: &mut usize) -> Result<(), MapError> {
    for op in ops {
        *count += 1;
        if let Some(key) = op.key().filter(|key| key.name.len() > MAX_NAME_LEN) {
            return Err(MapError::NameTooLong(key.name.len()));
        }
        match op {
            MapOp::Update { op: FieldOp::Assign { value, .. }, .. } if value.len() > MAX_REGISTER_LEN => {
                return Err(MapError::RegisterTooLong(value.len()));
            }
            MapOp::Update { op: FieldOp::Set(updates), .. } => {
                *count += updates.len();
                for update in updates {
                    let (SetUpdate::Add(element) | SetUpdate::Remove(element)) = update;
                    if element.len() > MAX_ELEMENT_LEN {
                        return Err(MapError::ElementTooLong(element.len()));
                    }
                }
            }
            MapOp::Update { op: FieldOp::Map(inner), .. } => {
                if depth >= MAX_DEPTH {
                    return Err(MapError::TooDeep);
                }
                check_ops(inner, depth + 1, count)?;
            }
            _ => {}
        }
        if *count > MAX_OPS {
            return Err(MapError::TooManyOps);
        }
    }
    Ok(())
}

/// The delta content `content` at `path`, wrapped in its nested maps.
fn wrap(path: &[FieldKey], content: Field) -> Fields {
    let Some((last, outer)) = path.split_last() else { return Fields::new() };
    let mut fields = Fields::from([(last.clone(), content)]);
    for key in outer.iter().rev() {
        fields = Fields::from([(key.clone(), Field::Map(fields))]);
    }
    fields
}

/// Drops the dots `observed` saw of the field at `path` (or of its
/// `element`), pruning what empties on the way back up.
fn remove_observed(
    fields: &mut Fields,
    path: &[FieldKey],
    element: Option<&Bytes>,
    observed: &CausalContext,
    removed: &mut Vec<Dot>,
) {
    let Some((key, rest)) = path.split_first() else { return };
    let Some(field) = fields.get_mut(key) else { return };
    match (rest.is_empty(), element, &mut *field) {
        (true, None, field) => field.retain_dots(&|dot| !observed.contains(dot), removed),
        (true, Some(element), Field::Set(elements)) => remove_element(elements, element, observed, removed),
        (false, _, Field::Map(inner)) => remove_observed(inner, rest, element, observed, removed),
        _ => {}
    }
    if field.is_empty() {
        fields.remove(key);
    }
}

/// Drops the dots `observed` saw of `element`.
fn remove_element(
    elements: &mut BTreeMap<Bytes, BTreeSet<Dot>>,
    element: &[u8],
    observed: &CausalContext,
    removed: &mut Vec<Dot>,
) {
    let Some(dots) = elements.get_mut(element) else { return };
    dots.retain(|dot| {
        let seen = observed.contains(*dot);
        if seen {
            removed.push(*dot);
        }
        !seen
    });
    if dots.is_empty() {
        elements.remove(element);
    }
}

/// The join of two levels (the dot-store join of the module doc): a field
/// one side lacks keeps the dots the other never saw; one both hold joins
/// kind by kind. Uses the contexts from before the merge.
fn join_fields(ours: &mut Fields, our_context: &CausalContext, theirs: &Fields, their_context: &CausalContext) {
    let mut added = Vec::new();
    for (key, field) in theirs {
        if !ours.contains_key(key) {
            let mut field = field.clone();
            field.retain_dots(&|dot| !our_context.contains(dot), &mut Vec::new());
            if !field.is_empty() {
                added.push((key.clone(), field));
            }
        }
    }
    ours.retain(|key, field| {
        match theirs.get(key) {
            Some(other) => join_field(field, our_context, other, their_context),
            None => field.retain_dots(&|dot| !their_context.contains(dot), &mut Vec::new()),
        }
        !field.is_empty()
    });
    ours.extend(added);
}

fn join_field(ours: &mut Field, our_context: &CausalContext, theirs: &Field, their_context: &CausalContext) {
    match (ours, theirs) {
        (Field::Register(ours), Field::Register(theirs)) => {
            // Two copies of one dot are one write; the maximum only keeps
            // the merge deterministic should they ever differ.
            join_dot_fun(ours, our_context, theirs, their_context, |a, b| a.max(b).clone());
        }
        (Field::Flag(ours), Field::Flag(theirs)) => join_dot_set(ours, our_context, theirs, their_context),
        (Field::Counter(ours), Field::Counter(theirs)) => {
            join_dot_fun(ours, our_context, theirs, their_context, |a, b| a.max(*b));
        }
        (Field::Set(ours), Field::Set(theirs)) => {
            let mut added = Vec::new();
            for (element, dots) in theirs {
                if !ours.contains_key(element) {
                    let kept: BTreeSet<Dot> = dots.iter().copied().filter(|dot| !our_context.contains(*dot)).collect();
                    if !kept.is_empty() {
                        added.push((element.clone(), kept));
                    }
                }
            }
            ours.retain(|element, dots| {
                match theirs.get(element) {
                    Some(other) => join_dot_set(dots, our_context, other, their_context),
                    None => dots.retain(|dot| !their_context.contains(*dot)),
                }
                !dots.is_empty()
            });
            ours.extend(added);
        }
        (Field::Map(ours), Field::Map(theirs)) => join_fields(ours, our_context, theirs, their_context),
        // A key names one kind, and each side built its field from the key.
        _ => debug_assert!(false, "two fields of one key hold different kinds"),
    }
}

fn join_dot_set(
    ours: &mut BTreeSet<Dot>,
    our_context: &CausalContext,
    theirs: &BTreeSet<Dot>,
    their_context: &CausalContext,
) {
    ours.retain(|dot| theirs.contains(dot) || !their_context.contains(*dot));
    ours.extend(theirs.iter().filter(|dot| !our_context.contains(**dot)));
}

fn join_dot_fun<V: Clone>(
    ours: &mut BTreeMap<Dot, V>,
    our_context: &CausalContext,
    theirs: &BTreeMap<Dot, V>,
    their_context: &CausalContext,
    both: impl Fn(&V, &V) -> V,
) {
    ours.retain(|dot, _| theirs.contains_key(dot) || !their_context.contains(*dot));
    for (dot, value) in ours.iter_mut() {
        if let Some(other) = theirs.get(dot) {
            *value = both(value, other);
        }
    }
    for (dot, value) in theirs {
        if !our_context.contains(*dot) {
            ours.entry(*dot).or_insert_with(|| value.clone());
        }
    }
}

fn view(fields: &Fields) -> BTreeMap<FieldKey, FieldValue> {
    fields.iter().map(|(key, field)| (key.clone(), field.value())).collect()
}

/// A path as `outer_map.inner_register`.
fn path_label(path: &[FieldKey]) -> String {
    path.iter().map(FieldKey::label).collect::<Vec<_>>().join(".")
}

/// The map level at `prefix`, for an error.
fn level_label(prefix: &[FieldKey]) -> String {
    match prefix.is_empty() {
        true => "the map".to_string(),
        false => path_label(prefix),
    }
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode_key(key: &FieldKey, out: &mut Vec<u8>) {
    out.push(key.kind.tag());
    out.extend_from_slice(&clamped_u16(key.name.len()).to_be_bytes());
    out.extend_from_slice(&key.name);
}

fn encode_fields(fields: &Fields, out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u16(fields.len()).to_be_bytes());
    for (key, field) in fields {
        encode_key(key, out);
        encode_field(field, out);
    }
}

fn encode_field(field: &Field, out: &mut Vec<u8>) {
    match field {
        Field::Register(writes) => {
            out.extend_from_slice(&clamped_u16(writes.len()).to_be_bytes());
            for (dot, write) in writes {
                encode_dot(*dot, out);
                out.extend_from_slice(&write.timestamp.0.to_be_bytes());
                encode_bytes(&write.value, out);
            }
        }
        Field::Flag(dots) => encode_dots(dots, out),
        Field::Counter(entries) => {
            out.extend_from_slice(&clamped_u16(entries.len()).to_be_bytes());
            for (dot, totals) in entries {
                encode_dot(*dot, out);
                out.extend_from_slice(&totals.increments.to_be_bytes());
                out.extend_from_slice(&totals.decrements.to_be_bytes());
            }
        }
        Field::Set(elements) => {
            out.extend_from_slice(&clamped_u32(elements.len()).to_be_bytes());
            for (element, dots) in elements {
                encode_bytes(element, out);
                encode_dots(dots, out);
            }
        }
        Field::Map(fields) => encode_fields(fields, out),
    }
}

fn encode_dots(dots: &BTreeSet<Dot>, out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u16(dots.len()).to_be_bytes());
    dots.iter().for_each(|dot| encode_dot(*dot, out));
}

/// Reads a field key, refusing an unknown kind or an over-long name.
fn decode_key(reader: &mut Reader<'_>) -> Result<FieldKey, CodecError> {
    let tag = reader.u8("map field kind")?;
    let kind = FieldKind::from_tag(tag).ok_or(CodecError::Invalid("unknown map field kind"))?;
    let len = usize::from(reader.u16("map field name length")?);
    if len > MAX_NAME_LEN {
        return Err(CodecError::Invalid("a map field name longer than allowed"));
    }
    let name = Bytes::copy_from_slice(reader.take(len, "map field name")?);
    Ok(FieldKey { name, kind })
}

/// Reads `length u32 | bytes`, refusing a length above `max`.
fn decode_bytes(reader: &mut Reader<'_>, max: usize, what: &'static str) -> Result<Bytes, CodecError> {
    let len = usize::try_from(reader.u32(what)?).unwrap_or(usize::MAX);
    if len > max {
        return Err(CodecError::Invalid("map bytes longer than allowed"));
    }
    Ok(Bytes::copy_from_slice(reader.take(len, what)?))
}

/// Reads one map level at `depth` (the top level is 1 and may be empty).
fn decode_fields(reader: &mut Reader<'_>, context: &CausalContext, depth: usize) -> Result<Fields, CodecError> {
    let count = usize::from(reader.u16("map field count")?);
    if count > MAX_FIELDS * MERGE_HEADROOM {
        return Err(CodecError::Invalid("a map level with more fields than allowed"));
    }
    if count == 0 && depth > 1 {
        return Err(CodecError::Invalid("an empty nested map"));
    }
    let mut fields = Fields::new();
    for _ in 0..count {
        let key = decode_key(reader)?;
        if fields.last_key_value().is_some_and(|(last, _)| *last >= key) {
            return Err(CodecError::Invalid("map fields out of order or repeated"));
        }
        let field = decode_field(reader, key.kind, context, depth)?;
        fields.insert(key, field);
    }
    Ok(fields)
}

/// Reads a field body of `kind`, in a level at `depth`.
fn decode_field(
    reader: &mut Reader<'_>,
    kind: FieldKind,
    context: &CausalContext,
    depth: usize,
) -> Result<Field, CodecError> {
    let field = match kind {
        FieldKind::Register => {
            let count = usize::from(reader.u16("register dot count")?);
            let mut writes = BTreeMap::new();
            for _ in 0..count {
                let dot = decode_field_dot(reader, context, writes.last_key_value().map(|(dot, _)| *dot))?;
                let timestamp = Hlc(reader.u64("register timestamp")?);
                let value = decode_bytes(reader, MAX_REGISTER_LEN, "register value")?;
                writes.insert(dot, Write { timestamp, value });
            }
            Field::Register(writes)
        }
        FieldKind::Flag => Field::Flag(decode_dots(reader, context)?),
        FieldKind::Counter => {
            let count = usize::from(reader.u16("counter dot count")?);
            let mut entries = BTreeMap::new();
            for _ in 0..count {
                let dot = decode_field_dot(reader, context, entries.last_key_value().map(|(dot, _)| *dot))?;
                let increments = reader.u64("counter increments")?;
                let decrements = reader.u64("counter decrements")?;
                entries.insert(dot, Totals { increments, decrements });
            }
            Field::Counter(entries)
        }
        FieldKind::Set => {
            let count = usize::try_from(reader.u32("set element count")?).unwrap_or(usize::MAX);
            let mut elements: BTreeMap<Bytes, BTreeSet<Dot>> = BTreeMap::new();
            for _ in 0..count {
                let element = decode_bytes(reader, MAX_ELEMENT_LEN, "set element")?;
                if elements.last_key_value().is_some_and(|(last, _)| *last >= element) {
                    return Err(CodecError::Invalid("set elements out of order or repeated"));
                }
                let dots = decode_dots(reader, context)?;
                if dots.is_empty() {
                    return Err(CodecError::Invalid("a set element without dots"));
                }
                elements.insert(element, dots);
            }
            Field::Set(elements)
        }
        FieldKind::Map if depth >= MAX_DEPTH => return Err(CodecError::Invalid("maps nested deeper than allowed")),
        FieldKind::Map => Field::Map(decode_fields(reader, context, depth + 1)?),
    };
    if field.is_empty() {
        return Err(CodecError::Invalid("an empty map field"));
    }
    Ok(field)
}

/// Reads a dot, which the context must have seen and which must sort
/// after `previous`.
fn decode_field_dot(
    reader: &mut Reader<'_>,
    context: &CausalContext,
    previous: Option<Dot>,
) -> Result<Dot, CodecError> {
    let dot = decode_dot(reader, "map field dot")?;
    if !context.contains(dot) || previous.is_some_and(|previous| previous >= dot) {
        return Err(CodecError::Invalid("map field dots out of order or not in the context"));
    }
    Ok(dot)
}

fn decode_dots(reader: &mut Reader<'_>, context: &CausalContext) -> Result<BTreeSet<Dot>, CodecError> {
    let count = usize::from(reader.u16("map dot count")?);
    let mut dots = BTreeSet::new();
    for _ in 0..count {
        let dot = decode_field_dot(reader, context, dots.last().copied())?;
        dots.insert(dot);
    }
    Ok(dots)
}

/// Reads a deferred remove's target: a path through nested maps, ending
/// at a set when it names an element.
fn decode_target(reader: &mut Reader<'_>) -> Result<Target, CodecError> {
    let len = usize::from(reader.u8("deferred target path length")?);
    if len == 0 || len > MAX_DEPTH {
        return Err(CodecError::Invalid("a deferred target path empty or deeper than allowed"));
    }
    let mut path = Vec::with_capacity(len);
    for _ in 0..len {
        path.push(decode_key(reader)?);
    }
    if path[..len - 1].iter().any(|key| key.kind != FieldKind::Map) {
        return Err(CodecError::Invalid("a deferred target path through a field that is not a map"));
    }
    let element = match reader.flag("deferred target element flag")? {
        true if path[len - 1].kind != FieldKind::Set => {
            return Err(CodecError::Invalid("a deferred element remove of a field that is not a set"));
        }
        true => Some(decode_bytes(reader, MAX_ELEMENT_LEN, "deferred target element")?),
        false => None,
    };
    Ok(Target { path, element })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const A: ActorId = ActorId(1);
    const B: ActorId = ActorId(2);

    fn merged(a: &Map, b: &Map) -> Map {
        let mut out = a.clone();
        out.merge(b);
        out
    }

    fn key(name: &str, kind: FieldKind) -> FieldKey {
        FieldKey::new(Bytes::copy_from_slice(name.as_bytes()), kind)
    }

    fn update(name: &str, op: FieldOp) -> MapOp {
        MapOp::update(Bytes::copy_from_slice(name.as_bytes()), op)
    }

    fn remove(name: &str, kind: FieldKind) -> MapOp {
        MapOp::Remove(key(name, kind))
    }

    fn assign(value: &str, timestamp: u64) -> FieldOp {
        FieldOp::Assign { value: Bytes::copy_from_slice(value.as_bytes()), timestamp: Hlc(timestamp) }
    }

    fn adds(elements: &[&str]) -> FieldOp {
        FieldOp::Set(elements.iter().map(|e| SetUpdate::Add(Bytes::copy_from_slice(e.as_bytes()))).collect())
    }

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn get<'a>(value: &'a BTreeMap<FieldKey, FieldValue>, name: &str, kind: FieldKind) -> Option<&'a FieldValue> {
        value.get(&key(name, kind))
    }

    /// Applies `ops` with no client context and checks the delta law on the way.
    fn apply(map: &mut Map, ops: &[MapOp], actor: ActorId) -> Map {
        let before = map.clone();
        let delta = map.apply(ops, actor, None).expect("accepted");
        assert_eq!(merged(&before, &delta), *map, "the old state merged with the delta is the new state");
        delta
    }

    // ----- Generated histories -----

    /// One step of a history over three replicas.
    #[derive(Clone, Debug)]
    enum Step {
        /// A batch at `replica`, with the context of a read of `read_from`
        /// (or none: the replica's own).
        Update { replica: usize, ops: Vec<MapOp>, read_from: Option<usize> },
        /// `to` merges `from`'s whole state.
        Sync { from: usize, to: usize },
        /// `to` merges one delta shipped earlier (so replicas miss some).
        Deliver { delta: prop::sample::Index, to: usize },
    }

    /// Mostly one name, so replicas often touch the same fields.
    fn name() -> impl Strategy<Value = Bytes> {
        prop_oneof![3 => Just(Bytes::from_static(b"a")), 1 => Just(Bytes::from_static(b"b"))]
    }

    fn kind() -> impl Strategy<Value = FieldKind> {
        prop::sample::select(FieldKind::ALL.to_vec())
    }

    fn element() -> impl Strategy<Value = Bytes> {
        prop_oneof![Just(Bytes::from_static(b"x")), Just(Bytes::from_static(b"y"))]
    }

    fn leaf_op() -> impl Strategy<Value = FieldOp> {
        prop_oneof![
            2 => (0u8..3, 0u64..4).prop_map(|(v, ts)| FieldOp::Assign { value: Bytes::from(vec![b'v', v]), timestamp: Hlc(ts) }),
            1 => Just(FieldOp::Enable),
            1 => Just(FieldOp::Disable),
            // Often enough that an actor folds its counter window.
            4 => (-3i64..4).prop_map(FieldOp::Increment),
            2 => prop::collection::vec(
                prop_oneof![element().prop_map(SetUpdate::Add), element().prop_map(SetUpdate::Remove)],
                1..3
            )
            .prop_map(FieldOp::Set),
        ]
    }

    fn map_op() -> impl Strategy<Value = MapOp> {
        let leaf = prop_oneof![
            3 => (name(), leaf_op()).prop_map(|(name, op)| MapOp::Update { name, op }),
            1 => (name(), kind()).prop_map(|(name, kind)| MapOp::Remove(FieldKey { name, kind })),
            1 => Just(MapOp::Clear),
            1 => prop_oneof![
                Just(Condition::Empty),
                Just(Condition::NotEmpty),
                (name(), kind()).prop_map(|(name, kind)| Condition::Absent(FieldKey { name, kind })),
                name().prop_map(Condition::Integer),
            ]
            .prop_map(MapOp::Require),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop_oneof![
                inner.clone(),
                (name(), prop::collection::vec(inner, 1..3))
                    .prop_map(|(name, ops)| MapOp::Update { name, op: FieldOp::Map(ops) }),
            ]
        })
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            5 => (0usize..3, prop::collection::vec(map_op(), 1..4), prop::option::of(0usize..3))
                .prop_map(|(replica, ops, read_from)| Step::Update { replica, ops, read_from }),
            1 => (0usize..3, 0usize..3).prop_map(|(from, to)| Step::Sync { from, to }),
            2 => (any::<prop::sample::Index>(), 0usize..3).prop_map(|(delta, to)| Step::Deliver { delta, to }),
        ];
        prop::collection::vec(step, 0..32)
    }

    /// The three replicas' states and every delta shipped, in order. Each
    /// accepted update is checked to leave the old state merged with its
    /// delta, and a refused one to change nothing.
    fn run(steps: &[Step]) -> (Vec<Map>, Vec<Map>) {
        let mut replicas = vec![Map::new(); 3];
        let mut deltas: Vec<Map> = Vec::new();
        for step in steps {
            match step {
                Step::Update { replica, ops, read_from } => {
                    let observed = read_from.map(|from| replicas[from].context().clone());
                    let before = replicas[*replica].clone();
                    match replicas[*replica].apply(ops, ActorId(*replica as u64), observed.as_ref()) {
                        Ok(delta) => {
                            assert_eq!(merged(&before, &delta), replicas[*replica], "delta law for {ops:?}");
                            deltas.push(delta);
                        }
                        Err(_) => assert_eq!(before, replicas[*replica], "a refused update changed the map"),
                    }
                }
                Step::Sync { from, to } => {
                    let state = replicas[*from].clone();
                    replicas[*to].merge(&state);
                }
                Step::Deliver { delta, to } => {
                    if !deltas.is_empty() {
                        let delta = deltas[delta.index(deltas.len())].clone();
                        replicas[*to].merge(&delta);
                    }
                }
            }
        }
        (replicas, deltas)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        #[test]
        fn merge_is_commutative_associative_and_idempotent(steps in steps()) {
            let (replicas, _) = run(&steps);
            let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(&merged(a, a), a);
            prop_assert_eq!(merged(a, b).encode(), merged(b, a).encode());
        }

        /// Every delta, delivered to a fresh replica in any order and some
        /// twice, gives what merging the three replicas' states gives.
        #[test]
        fn deltas_in_any_order_and_duplicated_give_the_merged_state(
            steps in steps(),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..48),
        ) {
            let (replicas, deltas) = run(&steps);
            let everything = merged(&merged(&replicas[0], &replicas[1]), &replicas[2]);
            let mut receiver = Map::new();
            for index in &order {
                if !deltas.is_empty() {
                    receiver.merge(&deltas[index.index(deltas.len())]);
                }
            }
            for delta in deltas.iter().rev() {
                receiver.merge(delta);
            }
            prop_assert_eq!(&receiver, &everything);
            prop_assert_eq!(everything.deferred_len(), 0, "a fully merged state applies every deferred remove");
        }

        #[test]
        fn encoding_round_trips(steps in steps()) {
            let (replicas, deltas) = run(&steps);
            for map in replicas.into_iter().chain(deltas) {
                prop_assert_eq!(Map::decode(&map.encode()), Ok(map));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(map) = Map::decode(&bytes) {
                prop_assert_eq!(map.encode(), bytes);
            }
        }

        /// Valid encodings with bytes changed, cut or inserted: still no
        /// panic, and anything accepted re-encodes to the same bytes.
        #[test]
        fn decoding_damaged_encodings_never_panics(
            steps in steps(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let (replicas, _) = run(&steps);
            let mut bytes = replicas[0].encode();
            for (at, byte, how) in edits {
                let at = at.index(bytes.len() + 1);
                match how {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 if at < bytes.len() => { bytes.remove(at); }
                    _ => bytes.insert(at, byte),
                }
            }
            if let Ok(map) = Map::decode(&bytes) {
                prop_assert_eq!(map.encode(), bytes);
            }
        }
    }

    // ----- Reset-remove, kind by kind -----

    /// `a` builds with `setup`, `b` merges it and removes with what it saw
    /// while `a` concurrently applies `concurrent`; returns the merge both
    /// ways (checked equal).
    fn remove_concurrent_with(setup: &[MapOp], removal: &[MapOp], concurrent: &[MapOp]) -> Map {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, setup, A);
        b.merge(&a);
        let observed = b.context().clone();
        let removed = b.apply(removal, B, Some(&observed)).expect("observed");
        let updated = apply(&mut a, concurrent, A);
        let (left, right) = (merged(&a, &b), merged(&b, &a));
        assert_eq!(left, right);
        // The deltas alone, delivered to a third replica that had the base.
        let mut third = Map::new();
        third.merge(&b);
        third.merge(&removed);
        third.merge(&updated);
        assert_eq!(third, left, "the deltas give what the states give");
        left
    }

    #[test]
    fn a_counter_removed_during_a_concurrent_increment_keeps_only_that_increment() {
        let map = remove_concurrent_with(
            &[update("n", FieldOp::Increment(5))],
            &[remove("n", FieldKind::Counter)],
            &[update("n", FieldOp::Increment(3))],
        );
        assert_eq!(get(&map.value(), "n", FieldKind::Counter), Some(&FieldValue::Counter(3)));
        // Several increments before and during: still exact.
        let before: Vec<MapOp> = (0..7).map(|_| update("n", FieldOp::Increment(10))).collect();
        let during: Vec<MapOp> =
            (0..COUNTER_DOTS_PER_ACTOR as i64 - 1).map(|i| update("n", FieldOp::Increment(-i - 1))).collect();
        let map = remove_concurrent_with(&before, &[remove("n", FieldKind::Counter)], &during);
        assert_eq!(get(&map.value(), "n", FieldKind::Counter), Some(&FieldValue::Counter(-6)));
    }

    #[test]
    fn beyond_the_counter_window_the_folded_observed_amount_survives_too() {
        // The documented limit: COUNTER_DOTS_PER_ACTOR concurrent
        // increments fold the observed 5 into a dot the remover never saw.
        let during: Vec<MapOp> = (0..COUNTER_DOTS_PER_ACTOR).map(|_| update("n", FieldOp::Increment(1))).collect();
        let map =
            remove_concurrent_with(&[update("n", FieldOp::Increment(5))], &[remove("n", FieldKind::Counter)], &during);
        let expected = 5 + COUNTER_DOTS_PER_ACTOR as i64;
        assert_eq!(get(&map.value(), "n", FieldKind::Counter), Some(&FieldValue::Counter(expected)));
    }

    #[test]
    fn a_set_removed_during_a_concurrent_add_keeps_only_that_element() {
        let map = remove_concurrent_with(
            &[update("tags", adds(&["a", "b", "c"]))],
            &[remove("tags", FieldKind::Set)],
            &[update("tags", adds(&["d"]))],
        );
        assert_eq!(get(&map.value(), "tags", FieldKind::Set), Some(&FieldValue::Set(vec![bytes("d")])));
        // Re-adding an element the remover saw counts as concurrent too.
        let map = remove_concurrent_with(
            &[update("tags", adds(&["a", "b"]))],
            &[remove("tags", FieldKind::Set)],
            &[update("tags", adds(&["a"]))],
        );
        assert_eq!(get(&map.value(), "tags", FieldKind::Set), Some(&FieldValue::Set(vec![bytes("a")])));
    }

    #[test]
    fn a_register_removed_during_a_concurrent_write_keeps_that_write() {
        let map = remove_concurrent_with(
            &[update("name", assign("old", 5))],
            &[remove("name", FieldKind::Register)],
            &[update("name", assign("new", 1))],
        );
        assert_eq!(get(&map.value(), "name", FieldKind::Register), Some(&FieldValue::Register(bytes("new"))));
        let gone =
            remove_concurrent_with(&[update("name", assign("old", 5))], &[remove("name", FieldKind::Register)], &[]);
        assert!(gone.is_empty());
    }

    #[test]
    fn a_flag_removed_or_disabled_during_a_concurrent_enable_stays_enabled() {
        for removal in [remove("seen", FieldKind::Flag), update("seen", FieldOp::Disable)] {
            let map = remove_concurrent_with(
                &[update("seen", FieldOp::Enable)],
                &[removal],
                &[update("seen", FieldOp::Enable)],
            );
            assert_eq!(get(&map.value(), "seen", FieldKind::Flag), Some(&FieldValue::Flag(true)), "enable wins");
        }
        let disabled =
            remove_concurrent_with(&[update("seen", FieldOp::Enable)], &[update("seen", FieldOp::Disable)], &[]);
        assert!(disabled.is_empty(), "a disabled flag is absent");
    }

    #[test]
    fn a_nested_map_removed_during_a_concurrent_update_keeps_only_that_update() {
        let setup = [update(
            "addr",
            FieldOp::Map(vec![
                update("street", assign("1 Main St", 5)),
                update("city", assign("Springfield", 5)),
                update("visits", FieldOp::Increment(4)),
                update("geo", FieldOp::Map(vec![update("lat", assign("1", 5))])),
            ]),
        )];
        let concurrent = [update(
            "addr",
            FieldOp::Map(vec![
                update("city", assign("Shelbyville", 6)),
                update("visits", FieldOp::Increment(2)),
                update("geo", FieldOp::Map(vec![update("lon", assign("2", 6))])),
            ]),
        )];
        let map = remove_concurrent_with(&setup, &[remove("addr", FieldKind::Map)], &concurrent);
        let expected = BTreeMap::from([(
            key("addr", FieldKind::Map),
            FieldValue::Map(BTreeMap::from([
                (key("city", FieldKind::Register), FieldValue::Register(bytes("Shelbyville"))),
                (
                    key("geo", FieldKind::Map),
                    FieldValue::Map(BTreeMap::from([(
                        key("lon", FieldKind::Register),
                        FieldValue::Register(bytes("2")),
                    )])),
                ),
                (key("visits", FieldKind::Counter), FieldValue::Counter(2)),
            ])),
        )]);
        assert_eq!(map.value(), expected);
    }

    #[test]
    fn a_nested_field_removed_by_path_resets_only_that_field() {
        let setup = [update("addr", FieldOp::Map(vec![update("tags", adds(&["a"])), update("zip", assign("1", 1))]))];
        let removal = [update("addr", FieldOp::Map(vec![remove("tags", FieldKind::Set)]))];
        let concurrent = [update("addr", FieldOp::Map(vec![update("tags", adds(&["b"]))]))];
        let map = remove_concurrent_with(&setup, &removal, &concurrent);
        let FieldValue::Map(addr) = &map.value()[&key("addr", FieldKind::Map)] else { panic!("a map") };
        assert_eq!(get(addr, "tags", FieldKind::Set), Some(&FieldValue::Set(vec![bytes("b")])));
        assert_eq!(get(addr, "zip", FieldKind::Register), Some(&FieldValue::Register(bytes("1"))));
    }

    // ----- Registers, flags, kinds -----

    #[test]
    fn concurrent_register_writes_resolve_by_timestamp_then_actor() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, &[update("r", assign("from a", 7))], A);
        apply(&mut b, &[update("r", assign("from b", 5))], B);
        let value = merged(&a, &b).value();
        assert_eq!(
            get(&value, "r", FieldKind::Register),
            Some(&FieldValue::Register(bytes("from a"))),
            "later timestamp"
        );
        assert_eq!(merged(&b, &a).value(), value);
        apply(&mut a, &[update("r", assign("tie a", 9))], A);
        apply(&mut b, &[update("r", assign("tie b", 9))], B);
        let value = merged(&a, &b).value();
        assert_eq!(get(&value, "r", FieldKind::Register), Some(&FieldValue::Register(bytes("tie b"))), "greater actor");
        assert_eq!(merged(&b, &a).value(), value);
    }

    #[test]
    fn a_write_after_reading_replaces_the_value_whatever_its_timestamp() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, &[update("r", assign("fast clock", 1000))], A);
        b.merge(&a);
        let delta = apply(&mut b, &[update("r", assign("slow clock", 10))], B);
        a.merge(&delta);
        assert_eq!(get(&a.value(), "r", FieldKind::Register), Some(&FieldValue::Register(bytes("slow clock"))));
        assert_eq!(a, b);
    }

    #[test]
    fn a_disable_observes_only_what_it_saw_so_a_concurrent_enable_wins() {
        let (mut a, mut b) = (Map::new(), Map::new());
        apply(&mut a, &[update("f", FieldOp::Enable)], A);
        b.merge(&a);
        apply(&mut b, &[update("f", FieldOp::Disable)], B);
        apply(&mut a, &[update("f", FieldOp::Enable)], A);
        assert_eq!(get(&merged(&a, &b).value(), "f", FieldKind::Flag), Some(&FieldValue::Flag(true)));
        // Disabling a flag that is not enabled is accepted and does nothing.
        let mut empty = Map::new();
        assert!(apply(&mut empty, &[update("f", FieldOp::Disable)], A).is_empty());
        assert_eq!(empty, Map::new());
    }

    #[test]
    fn one_name_of_two_kinds_is_two_fields() {
        let mut map = Map::new();
        apply(&mut map, &[update("x", assign("text", 1)), update("x", FieldOp::Increment(2))], A);
        assert_eq!(map.len(), 2);
        apply(&mut map, &[remove("x", FieldKind::Register)], A);
        assert_eq!(map.value(), BTreeMap::from([(key("x", FieldKind::Counter), FieldValue::Counter(2))]));
        assert_eq!(FieldKind::from_name("counter"), Some(FieldKind::Counter));
        assert_eq!(key("x", FieldKind::Counter).label(), "x_counter");
    }

    #[test]
    fn counters_fold_their_window_and_saturate_instead_of_wrapping() {
        let mut map = Map::new();
        for _ in 0..10 {
            apply(&mut map, &[update("n", FieldOp::Increment(i64::MAX))], A);
        }
        apply(&mut map, &[update("n", FieldOp::Increment(i64::MAX))], B);
        assert_eq!(get(&map.value(), "n", FieldKind::Counter), Some(&FieldValue::Counter(i64::MAX)));
        let Some(Field::Counter(entries)) = map.fields.get(&key("n", FieldKind::Counter)) else { panic!("a counter") };
        assert_eq!(entries.keys().filter(|dot| dot.actor == A).count(), COUNTER_DOTS_PER_ACTOR);
        for _ in 0..30 {
            apply(&mut map, &[update("n", FieldOp::Increment(i64::MIN))], A);
        }
        assert_eq!(get(&map.value(), "n", FieldKind::Counter), Some(&FieldValue::Counter(i64::MIN)));
    }

    // ----- Clear and conditions -----

    #[test]
    fn a_clear_resets_every_field_and_keeps_only_concurrent_updates() {
        let setup = [update("s", assign("v", 1)), update("n", FieldOp::Increment(5)), update("tags", adds(&["a"]))];
        let map = remove_concurrent_with(&setup, &[MapOp::Clear], &[update("n", FieldOp::Increment(2))]);
        let value = map.value();
        assert_eq!(value.len(), 1, "only the concurrently updated field survives: {value:?}");
        assert_eq!(get(&value, "n", FieldKind::Counter), Some(&FieldValue::Counter(2)));
        // A clear of an empty map is not refused, and a clear then a write
        // in one batch leaves just the write.
        let mut map = Map::new();
        apply(&mut map, &[MapOp::Clear], A);
        apply(&mut map, &setup, A);
        apply(&mut map, &[MapOp::Clear, update("s", assign("w", 2))], A);
        assert_eq!(map.value(), BTreeMap::from([(key("s", FieldKind::Register), FieldValue::Register(bytes("w")))]));
    }

    #[test]
    fn a_clear_with_a_context_this_replica_has_not_caught_up_with_is_refused() {
        let mut ahead = Map::new();
        apply(&mut ahead, &[update("n", FieldOp::Increment(1))], A);
        let mut behind = Map::new();
        assert_eq!(behind.apply(&[MapOp::Clear], B, Some(ahead.context())), Err(MapError::ClearNotJudged));
        assert_eq!(behind, Map::new());
    }

    #[test]
    fn a_condition_that_does_not_hold_refuses_the_whole_batch() {
        let mut map = Map::new();
        let empty = MapOp::Require(Condition::Empty);
        apply(&mut map, &[empty.clone(), update("s", assign("12", 1))], A);
        let before = map.clone();
        let again = map.apply(&[empty, update("s", assign("13", 2))], A, None);
        assert_eq!(again, Err(MapError::Unmet(Condition::Empty)));
        assert_eq!(map, before);
        let no_set = MapOp::Require(Condition::Absent(key("tags", FieldKind::Set)));
        let integer = MapOp::Require(Condition::Integer(bytes("s")));
        apply(&mut map, &[no_set, integer.clone(), update("s", FieldOp::Increment(1))], A);
        apply(&mut map, &[MapOp::Require(Condition::NotEmpty), update("s", assign("x1", 3))], A);
        let refused = map.apply(&[update("s", FieldOp::Increment(1)), integer], A, None);
        assert_eq!(refused, Err(MapError::Unmet(Condition::Integer(bytes("s")))));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "refused: the update requires that s_register holds an integer, and it does not"
        );
        let present = MapOp::Require(Condition::Absent(key("s", FieldKind::Register)));
        assert_eq!(
            map.apply(&[present], A, None),
            Err(MapError::Unmet(Condition::Absent(key("s", FieldKind::Register))))
        );
        apply(&mut map, &[MapOp::Clear], A);
        assert_eq!(
            map.apply(&[MapOp::Require(Condition::NotEmpty)], A, None),
            Err(MapError::Unmet(Condition::NotEmpty))
        );
        // Conditions look at the level they are in.
        let nested = update("h", FieldOp::Map(vec![MapOp::Require(Condition::Empty), update("f", assign("1", 4))]));
        apply(&mut map, std::slice::from_ref(&nested), A);
        assert!(matches!(map.apply(&[nested], A, None), Err(MapError::Unmet(Condition::Empty))));
    }

    #[test]
    fn integers_parse_as_redis_parses_them() {
        for (text, expected) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("007", None),
            ("-0", None),
            ("+1", None),
            (" 1", None),
            ("1.5", None),
            ("", None),
            ("-", None),
        ] {
            assert_eq!(parse_integer(text.as_bytes()), expected, "{text:?}");
        }
    }

    // ----- Observed removes and refusals -----

    #[test]
    fn a_remove_of_what_the_context_never_saw_is_refused_and_changes_nothing() {
        let mut map = Map::new();
        apply(&mut map, &[update("tags", adds(&["a"])), update("n", FieldOp::Increment(1))], A);
        let before = map.clone();
        let error = map.apply(&[remove("ghost", FieldKind::Counter)], A, None).unwrap_err();
        assert_eq!(error, MapError::NotObserved("ghost_counter".to_string()));
        assert_eq!(
            error.to_string(),
            "cannot remove ghost_counter: it is not in the map as the given context saw it (read the map again)"
        );
        // The client saw nothing, so it cannot remove what is there.
        let nothing = CausalContext::new();
        assert_eq!(
            map.apply(&[remove("n", FieldKind::Counter)], A, Some(&nothing)),
            Err(MapError::NotObserved("n_counter".to_string()))
        );
        let element = map.apply(&[update("tags", FieldOp::Set(vec![SetUpdate::Remove(bytes("z"))]))], A, None);
        assert_eq!(
            element,
            Err(MapError::ElementNotObserved { field: "tags_set".to_string(), element: "z".to_string() })
        );
        let nested = map.apply(&[update("m", FieldOp::Map(vec![remove("deep", FieldKind::Flag)]))], A, None);
        assert_eq!(nested, Err(MapError::NotObserved("m_map.deep_flag".to_string())));
        assert_eq!(map, before);
    }

    #[test]
    fn a_batch_applies_all_or_nothing() {
        let mut map = Map::new();
        apply(&mut map, &[update("a", assign("1", 1))], A);
        let before = map.clone();
        let batch = [update("b", assign("2", 2)), update("n", FieldOp::Increment(3)), remove("ghost", FieldKind::Set)];
        assert!(map.apply(&batch, A, None).is_err());
        // A field written earlier in the batch holds only a dot the client
        // cannot have observed.
        let written_then_removed = [update("c", assign("3", 3)), remove("c", FieldKind::Register)];
        assert!(map.apply(&written_then_removed, A, None).is_err());
        assert_eq!(map, before, "a refused batch changes nothing");
        let good = [update("b", assign("2", 2)), remove("a", FieldKind::Register), update("n", FieldOp::Increment(3))];
        let delta = apply(&mut map, &good, A);
        assert_eq!(map.len(), 2);
        assert_eq!(merged(&before, &delta), map, "the batch's delta carries every update");
    }

    #[test]
    fn a_remove_from_a_context_ahead_of_the_replica_waits_then_applies() {
        let (mut ahead, mut behind) = (Map::new(), Map::new());
        apply(&mut ahead, &[update("n", FieldOp::Increment(5)), update("tags", adds(&["a", "b"]))], A);
        let observed = ahead.context().clone();
        let ops = [remove("n", FieldKind::Counter), update("tags", FieldOp::Set(vec![SetUpdate::Remove(bytes("a"))]))];
        let delta = behind.apply(&ops, B, Some(&observed)).expect("deferred, not refused");
        assert_eq!(behind.deferred_len(), 1);
        assert_eq!(Map::decode(&behind.encode()), Ok(behind.clone()));
        behind.merge(&ahead);
        assert_eq!(behind.deferred_len(), 0);
        assert_eq!(behind.value(), BTreeMap::from([(key("tags", FieldKind::Set), FieldValue::Set(vec![bytes("b")]))]));
        ahead.merge(&delta);
        assert_eq!(ahead, behind);
    }

    // ----- Limits -----

    fn refused(map: &mut Map, ops: &[MapOp], actor: ActorId, error: MapError) {
        let before = map.clone();
        assert_eq!(map.apply(ops, actor, None), Err(error));
        assert_eq!(*map, before, "a refused update changes nothing");
    }

    #[test]
    fn oversized_names_values_elements_and_batches_are_refused() {
        let mut map = Map::new();
        let long_name = MapOp::update(vec![b'n'; MAX_NAME_LEN + 1], FieldOp::Enable);
        refused(&mut map, &[long_name], A, MapError::NameTooLong(MAX_NAME_LEN + 1));
        let long_value =
            update("r", FieldOp::Assign { value: Bytes::from(vec![0; MAX_REGISTER_LEN + 1]), timestamp: Hlc(1) });
        refused(&mut map, &[long_value], A, MapError::RegisterTooLong(MAX_REGISTER_LEN + 1));
        let long_element = update("s", FieldOp::Set(vec![SetUpdate::Add(Bytes::from(vec![0; MAX_ELEMENT_LEN + 1]))]));
        refused(&mut map, &[long_element], A, MapError::ElementTooLong(MAX_ELEMENT_LEN + 1));
        let many: Vec<MapOp> = (0..=MAX_OPS).map(|_| update("n", FieldOp::Increment(1))).collect();
        refused(&mut map, &many, A, MapError::TooManyOps);
        let elements = (0..MAX_OPS).map(|i| SetUpdate::Add(Bytes::from(i.to_string()))).collect();
        refused(&mut map, &[update("s", FieldOp::Set(elements))], A, MapError::TooManyOps);
        assert!(map.apply(&many[..MAX_OPS], A, None).is_ok());
    }

    #[test]
    fn maps_deeper_than_the_limit_are_refused() {
        let mut map = Map::new();
        let nest = |depth: usize| {
            let mut op = update("leaf", FieldOp::Enable);
            for _ in 1..depth {
                op = update("m", FieldOp::Map(vec![op]));
            }
            op
        };
        refused(&mut map, &[nest(MAX_DEPTH + 1)], A, MapError::TooDeep);
        apply(&mut map, &[nest(MAX_DEPTH)], A);
        assert_eq!(Map::decode(&map.encode()), Ok(map.clone()));
        // Built past the limit by hand, it encodes to bytes the decoder refuses.
        let mut deep = map.clone();
        let mut level = &mut deep.fields;
        for _ in 1..MAX_DEPTH {
            let Some(Field::Map(inner)) = level.get_mut(&key("m", FieldKind::Map)) else { panic!("nested") };
            level = inner;
        }
        let leaf = level.remove(&key("leaf", FieldKind::Flag)).expect("the leaf");
        level.insert(key("m", FieldKind::Map), Field::Map(Fields::from([(key("leaf", FieldKind::Flag), leaf)])));
        assert_eq!(Map::decode(&deep.encode()), Err(CodecError::Invalid("maps nested deeper than allowed")));
    }

    #[test]
    fn fields_past_the_limit_are_refused_at_every_level() {
        // MAX_FIELDS is above MAX_OPS, so a level fills in several batches.
        let fill = |map: &mut Map, wrap: &dyn Fn(Vec<MapOp>) -> Vec<MapOp>| {
            for chunk in (0..MAX_FIELDS).collect::<Vec<_>>().chunks(MAX_OPS / 2) {
                let ops = chunk.iter().map(|i| update(&format!("f{i}"), FieldOp::Enable)).collect();
                apply(map, &wrap(ops), A);
            }
        };
        let mut map = Map::new();
        fill(&mut map, &|ops| ops);
        assert_eq!(map.len(), MAX_FIELDS);
        refused(&mut map, &[update("one more", FieldOp::Enable)], A, MapError::TooManyFields("the map".to_string()));
        // Updating a field that exists, or replacing one in the same batch, is fine.
        apply(&mut map, &[update("f0", FieldOp::Enable)], A);
        apply(&mut map, &[remove("f0", FieldKind::Flag), update("one more", FieldOp::Enable)], A);
        let mut nested = Map::new();
        fill(&mut nested, &|ops| vec![update("m", FieldOp::Map(ops))]);
        let one_more = [update("m", FieldOp::Map(vec![update("one more", FieldOp::Enable)]))];
        refused(&mut nested, &one_more, A, MapError::TooManyFields("m_map".to_string()));
    }

    #[test]
    fn a_counter_past_its_actors_and_a_deferred_flood_are_refused() {
        let mut map = Map::new();
        let mut replica = Map::new();
        for actor in 0..MAX_ACTORS as u64 {
            let delta = replica.apply(&[update("n", FieldOp::Increment(1))], ActorId(actor), None).unwrap();
            map.merge(&delta);
            replica = Map::new();
        }
        refused(
            &mut map,
            &[update("n", FieldOp::Increment(1))],
            ActorId(u64::MAX),
            MapError::TooManyActors("n_counter".to_string()),
        );
        assert!(map.apply(&[update("n", FieldOp::Increment(1))], ActorId(0), None).is_ok(), "a known actor may");

        let mut behind = Map::new();
        for counter in 1..=MAX_DEFERRED as u64 {
            let mut observed = CausalContext::new();
            observed.insert(Dot { actor: ActorId(9), counter: counter * 2 });
            behind.apply(&[remove("x", FieldKind::Flag)], A, Some(&observed)).expect("deferred");
        }
        let mut one_more = CausalContext::new();
        one_more.insert(Dot { actor: ActorId(8), counter: 1 });
        let before = behind.clone();
        assert_eq!(behind.apply(&[remove("x", FieldKind::Flag)], A, Some(&one_more)), Err(MapError::TooManyDeferred));
        assert_eq!(behind, before);
        assert_eq!(Map::decode(&behind.encode()), Ok(behind));
    }

    #[test]
    fn an_update_delta_is_small_whatever_the_size_of_the_map() {
        let mut map = Map::new();
        for start in [0, 500] {
            let ops: Vec<MapOp> =
                (start..start + 500).map(|i| update(&format!("field-{i}"), assign(&"x".repeat(100), 1))).collect();
            apply(&mut map, &ops, A);
        }
        let delta = apply(&mut map, &[update("field-7", assign("y", 2))], B);
        assert!(delta.encode().len() < 100, "delta is {} bytes", delta.encode().len());
        assert!(map.encode().len() > 100_000);
    }

    // ----- The strict decoder -----

    #[test]
    fn malformed_encodings_are_refused() {
        let mut map = Map::new();
        apply(&mut map, &[update("a", assign("1", 1)), update("b", assign("2", 1))], A);
        let good = map.encode();
        assert_eq!(Map::decode(&good), Ok(map.clone()));
        assert_eq!(Map::decode(&[2]), Err(CodecError::UnknownFormat(2)));
        for len in 0..good.len() {
            assert!(Map::decode(&good[..len]).is_err(), "a prefix of {len} bytes was accepted");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Map::decode(&trailing), Err(CodecError::TrailingBytes(1)));

        // The two fields swapped: out of order.
        let mut head = vec![FORMAT];
        map.context.encode(&mut head);
        let field_bytes = |name: &str| {
            let mut out = Vec::new();
            encode_key(&key(name, FieldKind::Register), &mut out);
            encode_field(&map.fields[&key(name, FieldKind::Register)], &mut out);
            out
        };
        let swapped = [head.clone(), vec![0, 2], field_bytes("b"), field_bytes("a"), vec![0, 0]].concat();
        assert_eq!(Map::decode(&swapped), Err(CodecError::Invalid("map fields out of order or repeated")));
        let repeated = [head.clone(), vec![0, 2], field_bytes("a"), field_bytes("a"), vec![0, 0]].concat();
        assert_eq!(Map::decode(&repeated), Err(CodecError::Invalid("map fields out of order or repeated")));
        let unknown_kind = [head.clone(), vec![0, 1, 9, 0, 0], vec![0, 0]].concat();
        assert_eq!(Map::decode(&unknown_kind), Err(CodecError::Invalid("unknown map field kind")));
        let too_many = [head, ((MAX_FIELDS * MERGE_HEADROOM + 1) as u16).to_be_bytes().to_vec()].concat();
        assert_eq!(Map::decode(&too_many), Err(CodecError::Invalid("a map level with more fields than allowed")));

        // States the map never reaches, built by hand.
        let mut empty_nested = map.clone();
        empty_nested.fields.insert(key("m", FieldKind::Map), Field::Map(Fields::new()));
        assert_eq!(Map::decode(&empty_nested.encode()), Err(CodecError::Invalid("an empty nested map")));
        let mut empty_flag = map.clone();
        empty_flag.fields.insert(key("f", FieldKind::Flag), Field::Flag(BTreeSet::new()));
        assert_eq!(Map::decode(&empty_flag.encode()), Err(CodecError::Invalid("an empty map field")));
        let mut unseen = map.clone();
        unseen.fields.insert(key("f", FieldKind::Flag), Field::Flag(BTreeSet::from([Dot { actor: B, counter: 1 }])));
        assert_eq!(
            Map::decode(&unseen.encode()),
            Err(CodecError::Invalid("map field dots out of order or not in the context"))
        );
        let mut applicable = map.clone();
        applicable.deferred.insert(
            CausalContext::new(),
            BTreeSet::from([Target { path: vec![key("a", FieldKind::Register)], element: None }]),
        );
        assert_eq!(
            Map::decode(&applicable.encode()),
            Err(CodecError::Invalid("deferred map removes out of order or already applicable"))
        );
        let mut not_a_set = map.clone();
        let mut ahead = CausalContext::new();
        ahead.insert(Dot { actor: B, counter: 1 });
        let target = Target { path: vec![key("a", FieldKind::Register)], element: Some(bytes("e")) };
        not_a_set.deferred.insert(ahead, BTreeSet::from([target]));
        assert_eq!(
            Map::decode(&not_a_set.encode()),
            Err(CodecError::Invalid("a deferred element remove of a field that is not a set"))
        );
    }

    // ----- Expiry -----

    fn expire(expires_ms: u64, timestamp: u64) -> MapOp {
        MapOp::update(
            Bytes::new(),
            FieldOp::Assign { value: Bytes::from(expires_ms.to_string()), timestamp: Hlc(timestamp) },
        )
    }

    #[test]
    fn the_last_expiry_written_wins_and_persist_or_clear_removes_it() {
        let mut map = Map::new();
        apply(&mut map, &[update("s", adds(&["a"]))], A);
        assert_eq!(map.expires_ms(), None);
        apply(&mut map, &[expire(5_000, 10)], A);
        apply(&mut map, &[expire(9_000, 20)], A);
        assert_eq!(map.expires_ms(), Some(9_000));
        assert!(!map.is_expired_at(8_999) && map.is_expired_at(9_000));
        apply(&mut map, &[MapOp::persist()], A);
        assert_eq!(map.expires_ms(), None, "persist removes the expiry");
        assert!(get(&map.value(), "s", FieldKind::Set).is_some(), "and keeps the value");
        apply(&mut map, &[expire(5_000, 30)], A);
        apply(&mut map, &[MapOp::Clear, update("s", adds(&["b"]))], A);
        assert_eq!(map.expires_ms(), None, "a clear (Redis SET) drops the expiry");
    }

    #[test]
    fn an_update_after_expiry_starts_from_empty_everywhere_but_a_concurrent_update_survives() {
        let mut here = Map::new();
        apply(&mut here, &[update("s", adds(&["old"])), expire(1_000, 1)], A);
        let mut there = here.clone();
        // `there` adds concurrently, without seeing the expiry pass.
        let concurrent = there.apply(&[update("s", adds(&["racing"]))], B, None).expect("accepted");
        let before = here.clone();
        let delta = here.apply_after_expiry(&[update("s", adds(&["new"]))], A, None).expect("accepted");
        assert_eq!(merged(&before, &delta), here, "the delta carries the reset and the update");
        assert_eq!(here.expires_ms(), None, "the fresh value has no expiry");
        let value = here.value();
        assert_eq!(get(&value, "s", FieldKind::Set), Some(&FieldValue::Set(vec![bytes("new")])));
        // Every replica converges on the fresh value plus the concurrent add.
        let mut everywhere = merged(&there, &delta);
        let mut acting = merged(&here, &concurrent);
        assert_eq!(everywhere, acting);
        let members = vec![bytes("new"), bytes("racing")];
        assert_eq!(get(&everywhere.value(), "s", FieldKind::Set), Some(&FieldValue::Set(members)));
        everywhere.merge(&before);
        acting.merge(&before);
        assert_eq!(everywhere, acting, "the expired contents do not come back from an old copy");
        assert!(!everywhere.value().values().any(|v| matches!(v, FieldValue::Set(m) if m.contains(&bytes("old")))));
    }

    #[test]
    fn a_refused_update_after_expiry_changes_nothing() {
        let mut map = Map::new();
        apply(&mut map, &[update("s", adds(&["old"])), expire(1_000, 1)], A);
        let before = map.clone();
        let refused = map.apply_after_expiry(&[MapOp::Require(Condition::NotEmpty)], A, None);
        assert_eq!(refused, Err(MapError::Unmet(Condition::NotEmpty)), "the expired map counts as empty");
        assert_eq!(map, before);
    }
}
