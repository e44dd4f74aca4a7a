//! Test support: generates *reachable* object states by replaying random
//! histories of puts (with contexts read earlier, possibly from another
//! replica) and merges between replicas. Property tests use these instead of
//! arbitrary structs, because the laws only hold for states the store can
//! actually produce (for one, a dot names exactly one version).

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::hlc::Hlc;
use crate::object::{Payload, VersionedObject};
use crate::props::ConflictMode;
use crate::version::{ActorId, Dot, VersionVector};

/// Most replicas (each with its own actor) a generated history uses.
pub const MAX_REPLICAS: usize = 4;

/// One step of a generated history.
#[derive(Clone, Debug)]
pub enum Op {
    /// A client write coordinated by `replica`, with the context of an
    /// earlier snapshot (or none).
    Put {
        /// Coordinating replica (modulo the replica count).
        replica: Index,
        /// Snapshot whose context the client sends, if any.
        context: Option<Index>,
        /// Coordinator timestamp; small, so ties and clock steps back occur.
        timestamp: u64,
        /// Whether the write is a delete.
        tombstone: bool,
    },
    /// Anti-entropy, read repair or replication: `from`'s state merged into
    /// `into`.
    Merge {
        /// Source replica.
        from: Index,
        /// Destination replica.
        into: Index,
    },
}

/// Random history steps.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<Index>(), any::<Option<Index>>(), 0..16u64, prop::bool::weighted(0.2)).prop_map(
            |(replica, context, timestamp, tombstone)| Op::Put { replica, context, timestamp, tombstone }
        ),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(from, into)| Op::Merge { from, into }),
    ]
}

/// A random history: replica count and steps.
pub fn history(max_ops: usize) -> impl Strategy<Value = (usize, Vec<Op>)> {
    (1..=MAX_REPLICAS, prop::collection::vec(op(), 0..max_ops))
}

/// The actor of replica `index` (not 0-based, to keep actor and index apart).
pub fn actor(index: usize) -> ActorId {
    ActorId(0x100 + index as u64)
}

/// A set of replicas of one key, each writing under its own actor, plus every
/// state they went through.
pub struct World {
    /// Conflict mode of the bucket.
    pub mode: ConflictMode,
    /// Current state of each replica.
    pub replicas: Vec<VersionedObject>,
    /// Every state any replica has been in, oldest first (starts with the
    /// empty state).
    pub snapshots: Vec<VersionedObject>,
    /// Values written so far (each write's value is unique: its number).
    pub writes: u32,
}

impl World {
    /// `replicas` empty replicas.
    pub fn new(replicas: usize, mode: ConflictMode) -> Self {
        Self {
            mode,
            replicas: vec![VersionedObject::new(); replicas],
            snapshots: vec![VersionedObject::new()],
            writes: 0,
        }
    }

    /// Replays a generated history.
    pub fn run(replicas: usize, ops: &[Op], mode: ConflictMode) -> Self {
        let mut world = Self::new(replicas, mode);
        for op in ops {
            world.apply(op);
        }
        world
    }

    /// Applies one step and records the changed replica's new state.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { replica, context, timestamp, tombstone } => {
                let replica = replica.index(self.replicas.len());
                let context = context.map(|index| index.get(&self.snapshots).context().clone()).unwrap_or_default();
                self.put(replica, &context, *timestamp, *tombstone);
            }
            Op::Merge { from, into } => {
                let (from, into) = (from.index(self.replicas.len()), into.index(self.replicas.len()));
                let source = self.replicas[from].clone();
                self.replicas[into].merge(&source, self.mode);
                self.snapshots.push(self.replicas[into].clone());
            }
        }
    }

    /// A write at `replica`; returns its dot and value number.
    pub fn put(&mut self, replica: usize, context: &VersionVector, timestamp: u64, tombstone: bool) -> (Dot, u32) {
        self.writes += 1;
        let value = self.writes;
        let payload = if tombstone { Payload::Tombstone } else { value_payload(value) };
        let dot = self.replicas[replica].put(context, actor(replica), Hlc(timestamp), payload, self.mode);
        self.snapshots.push(self.replicas[replica].clone());
        (dot, value)
    }
}

/// A value carrying its write number (and a content type on odd numbers,
/// and an expiry far in the future on every third, so codecs see every
/// form).
pub fn value_payload(value: u32) -> Payload {
    let content_type = (value % 2 == 1).then(|| "text/plain; charset=utf-8".to_string());
    let expires_ms = (value % 3 == 2).then_some(u64::MAX - u64::from(value));
    Payload::Value { data: Bytes::copy_from_slice(&value.to_be_bytes()), content_type, expires_ms }
}

/// The write number a value payload carries (`None` for tombstones).
pub fn value_of(payload: &Payload) -> Option<u32> {
    match payload {
        Payload::Value { data, .. } => Some(u32::from_be_bytes(data.as_ref().try_into().ok()?)),
        Payload::Tombstone | Payload::Datatype(_) => None,
    }
}

/// Reachable states: a random history, then three of the states it went
/// through.
pub fn three_states(mode: ConflictMode) -> impl Strategy<Value = [VersionedObject; 3]> {
    (history(40), any::<[Index; 3]>()).prop_map(move |((replicas, ops), picks)| {
        let world = World::run(replicas, &ops, mode);
        picks.map(|pick| pick.get(&world.snapshots).clone())
    })
}

/// Any state a replica can reach through some history of puts and merges,
/// in either conflict mode (never an arbitrary, invalid state).
pub fn reachable_object() -> impl Strategy<Value = VersionedObject> {
    (history(30), any::<Index>(), any::<bool>()).prop_map(|((replicas, ops), pick, lww)| {
        let mode = if lww { ConflictMode::Lww } else { ConflictMode::Siblings };
        pick.get(&World::run(replicas, &ops, mode).snapshots).clone()
    })
}
