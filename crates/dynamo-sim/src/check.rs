//! The invariants, checked at the end of a run, after healing and repair.
//!
//! 1. **Convergence**: the N replicas of every key hold the same state
//!    (same versions, same causal context; for data types the same value,
//!    deferred removes included), read from each replica directly, not
//!    through a reconciling coordinator.
//! 2. **No acknowledged write is lost** (set keys): the element of every
//!    acknowledged write is in the final value. The durability rule:
//!    - a write acknowledged with `dw >= 1` must never be lost: at least one
//!      of its acknowledgements was fsynced, and crashes only drop unsynced
//!      data;
//!    - a write acknowledged with `dw = 0` sat in memory buffers on its W
//!      acknowledging nodes, so losing it is allowed only if at least W
//!      nodes crashed after it was sent (all of its acknowledging nodes may
//!      then have lost it; any node, since under the sloppy quorum a
//!      fallback holding a hint may acknowledge). Such losses are counted,
//!      not failed. Fewer crashes than that and a loss is a bug.
//! 3. **No causally superseded value wins** (LWW keys): last-write-wins may
//!    drop a concurrent write, but the final value must never be one that
//!    an acknowledged write causally superseded (its context had seen it),
//!    with the same durability excuse for the superseding write. Every
//!    LWW key ends with at most one version, and every value read is one
//!    that was written.
//! 4. **A counter counts what it was sent** (issue 12): its final value
//!    lies between what the increments certainly applied make and what
//!    all that may have been applied make. An acknowledged increment was
//!    applied (unless the durability rule excuses its loss); one whose
//!    outcome the client never learned (an error, a timeout) may or may
//!    not have been, but never more than once: not when a forwarding node
//!    sent it to several replicas in turn (the forwarder gives it an
//!    operation id), and not when the client retried it with its id
//!    through other nodes.
//! 5. **A set keeps what was not removed** (issue 12): the element of
//!    every acknowledged add is in the final set unless some remove of it
//!    was sent (acknowledged or not; a remove of an element only follows a
//!    read that showed it), with the durability excuse; every element in
//!    it was added by some client; an acknowledged remove took effect
//!    (excused when a replica of the key crashed after the remove's read,
//!    which may have lost what it observed, or when the element was added
//!    twice, by a forwarder's retry: the add the remove never observed
//!    rightly wins); and no remove is still deferred at the end unless a
//!    replica crashed.

use std::collections::BTreeSet;
use std::sync::Arc;

use dynamo_core::crdt::value::{DataOp, DataValue};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::VersionedObject;
use dynamo_core::props::{ConflictMode, DataType};

use crate::datatypes::{forwarded_adds, forwarded_increments, parse_elements};
use crate::log::Log;
use crate::node::SimNode;
use crate::workload::{KeyKind, Keyspace, describe, set_elements, value_id};

/// One replica's own state of a key: its node index and the state (`None`:
/// the node was not running; `Err`: it could not read it).
pub type ReplicaState = (usize, Option<Result<VersionedObject, String>>);

/// Every replica's own state of every key, as the checker last read it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per key (in the order of [`Keyspace::all`]): each replica's node
    /// index and state (`None`: the node was not running).
    pub states: Vec<Vec<ReplicaState>>,
    /// Rounds of R=N reads done before this snapshot.
    pub rounds: u32,
    /// Hints still held by the running nodes. A write can be acknowledged
    /// by a replica and a fallback holding a hint; if the replica then
    /// loses it (a power loss of `dw=0` data), the hint is its only copy,
    /// so the check waits for hints to be delivered before it judges a
    /// write lost.
    pub hints_pending: u64,
}

impl Snapshot {
    /// Reads the state of every key on each of its replicas.
    pub fn take(machines: &[Arc<SimNode>], keys: &[&ObjectKey], replicas: &[Vec<usize>], rounds: u32) -> Snapshot {
        let states = keys
            .iter()
            .zip(replicas)
            .map(|(key, nodes)| nodes.iter().map(|&node| (node, machines[node].replica_state(key))).collect())
            .collect();
        let hints_pending = machines.iter().filter_map(|machine| machine.hints_pending()).sum();
        Snapshot { states, rounds, hints_pending }
    }

    /// Whether every replica of every key is up and holds the same state,
    /// and no hint is waiting for delivery.
    pub fn converged(&self) -> bool {
        self.hints_pending == 0 && self.states.iter().all(|replicas| converged(replicas))
    }
}

fn converged(replicas: &[ReplicaState]) -> bool {
    let mut states = replicas.iter().map(|(_, state)| state.as_ref().and_then(|state| state.as_ref().ok()));
    let Some(Some(first)) = states.next() else { return false };
    states.all(|state| state == Some(first))
}

/// The merge of every replica's state of one key.
fn merged(replicas: &[ReplicaState], mode: ConflictMode) -> VersionedObject {
    let mut merged = VersionedObject::new();
    for state in replicas.iter().filter_map(|(_, state)| state.as_ref().and_then(|state| state.as_ref().ok())) {
        merged.merge(state, mode);
    }
    merged
}

/// What the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Broken invariants, one line each.
    pub violations: Vec<String>,
    /// Acknowledged `dw = 0` writes lost while enough of their replicas
    /// crashed (allowed; see the module docs).
    pub excused_losses: u64,
    /// Acknowledged set writes whose element was found.
    pub set_writes_kept: u64,
}

/// Checks the invariants of the module docs. `replicas[k]` is the
/// preference list of key `k` (in the order of [`Keyspace::all`]).
pub fn check(log: &Log, snapshot: &Snapshot, keys: &Keyspace, replicas: &[Vec<usize>]) -> Verdict {
    let mut verdict = Verdict::default();
    if snapshot.hints_pending > 0 {
        verdict.violations.push(format!(
            "{} hints were still waiting for delivery after {} rounds",
            snapshot.hints_pending, snapshot.rounds
        ));
    }
    for (index, states) in snapshot.states.iter().enumerate() {
        if !converged(states) {
            verdict.violations.push(format!(
                "replicas of {} did not converge after {} rounds: {}",
                keys.name(index),
                snapshot.rounds,
                describe_replicas(states)
            ));
        }
    }
    check_sets(log, snapshot, keys, replicas, &mut verdict);
    check_lww(log, snapshot, keys, replicas, &mut verdict);
    check_counters(log, snapshot, keys, &mut verdict);
    check_orsets(log, snapshot, keys, replicas, &mut verdict);
    verdict
}

fn check_sets(log: &Log, snapshot: &Snapshot, keys: &Keyspace, replicas: &[Vec<usize>], verdict: &mut Verdict) {
    let finals: Vec<BTreeSet<u64>> = snapshot.states[keys.range(KeyKind::Set)]
        .iter()
        .enumerate()
        .map(|(key, states)| {
            let (elements, bad) = set_elements(&merged(states, ConflictMode::Siblings));
            if let Some(bad) = bad {
                verdict.violations.push(format!("set key k{key} ends with an unreadable value: {bad}"));
            }
            elements
        })
        .collect();
    for write in log.set_writes.iter().filter(|write| write.acked) {
        if finals.get(write.key).is_some_and(|elements| elements.contains(&write.element)) {
            verdict.set_writes_kept += 1;
            continue;
        }
        let crashed = log.crashed_since(write.start_ms);
        if write.dw == 0 && crashed >= usize::from(write.w) {
            verdict.excused_losses += 1;
            continue;
        }
        verdict.violations.push(format!(
            "lost acknowledged write: element {} of set key k{} (client set{}, w={} dw={} blind={}, sent at {} ms, \
             acknowledged at {} ms; replicas {:?}, {} nodes crashed since)",
            write.element,
            write.key,
            write.client,
            write.w,
            write.dw,
            write.blind,
            write.start_ms,
            write.end_ms,
            replicas[write.key],
            crashed
        ));
    }
}

fn check_lww(log: &Log, snapshot: &Snapshot, keys: &Keyspace, replicas: &[Vec<usize>], verdict: &mut Verdict) {
    for (key, index) in keys.range(KeyKind::Lww).enumerate() {
        let states = &snapshot.states[index];
        let name = keys.name(index);
        let state = merged(states, ConflictMode::Lww);
        if state.siblings().len() > 1 {
            verdict.violations.push(format!("{name} ends with {} versions", state.siblings().len()));
        }
        let winner = state.latest().map(|sibling| value_id(&sibling.payload));
        let winner = match winner {
            None => None,
            Some(Some(id)) if log.lww_writes.iter().any(|write| write.key == key && write.id == id) => Some(id),
            Some(other) => {
                verdict.violations.push(format!("{name} ends with a value never written: {other:?}"));
                continue;
            }
        };
        for write in log.lww_writes.iter().filter(|write| write.key == key && write.acked) {
            let lost = match winner {
                None => true,
                Some(id) => write.supersedes.contains(&id),
            };
            if !lost {
                continue;
            }
            let crashed = log.crashed_since(write.start_ms);
            if write.dw == 0 && crashed >= usize::from(write.w) {
                verdict.excused_losses += 1;
                continue;
            }
            verdict.violations.push(format!(
                "lost acknowledged write: {name} ends with {} although acknowledged write {} (w={} dw={}, sent at {} \
                 ms) causally superseded it; replicas {:?}, {} nodes crashed since",
                describe(&state),
                write.id,
                write.w,
                write.dw,
                write.start_ms,
                replicas[index],
                crashed
            ));
        }
    }
}

/// The value of `kind` the replicas' final states merge to (the empty one
/// when nothing was written), or `None` after recording in `verdict` why
/// the key holds none.
fn final_value(states: &[ReplicaState], name: &str, kind: DataType, verdict: &mut Verdict) -> Option<DataValue> {
    match merged(states, ConflictMode::Siblings).datatype_value() {
        Ok(None) => DataValue::empty(kind),
        Ok(Some(value)) if value.kind() == kind => Some(value.clone()),
        Ok(Some(other)) => {
            verdict.violations.push(format!("{name} ends holding another data type: {other:?}"));
            None
        }
        Err(problem) => {
            verdict.violations.push(format!("{name} ends with an unreadable value: {problem}"));
            None
        }
    }
}

/// The lowest and highest value a counter may end with.
#[derive(Clone, Copy, Debug, Default)]
struct Bounds {
    low: i64,
    high: i64,
}

impl Bounds {
    /// Counts an increment of `amount` applied at least `least` and at most
    /// `most` times.
    fn add(&mut self, amount: i64, least: i64, most: i64) {
        let (fewest, largest) = (amount.saturating_mul(least), amount.saturating_mul(most));
        self.low = self.low.saturating_add(fewest.min(largest));
        self.high = self.high.saturating_add(fewest.max(largest));
    }

    fn contains(&self, value: i64) -> bool {
        (self.low..=self.high).contains(&value)
    }
}

/// Invariant 4 (see the module docs).
fn check_counters(log: &Log, snapshot: &Snapshot, keys: &Keyspace, verdict: &mut Verdict) {
    for (key, index) in keys.range(KeyKind::Counter).enumerate() {
        let name = keys.name(index);
        let object_key = &keys.counter_keys[key];
        let Some(DataValue::Counter(counter)) = final_value(&snapshot.states[index], &name, DataType::Counter, verdict)
        else {
            continue;
        };
        let value = counter.value();
        // Applied at most once each, however many replicas received it.
        let mut once = Bounds::default();
        let (mut acked, mut unknown, mut excused, mut repeated) = (0i64, 0, 0, Vec::new());
        for update in log.counter_updates.iter().filter(|update| update.key == key) {
            let crashed = log.crashed_since(update.start_ms);
            let may_be_lost = update.dw == 0 && crashed >= usize::from(update.w);
            let least = i64::from(update.acked && !may_be_lost);
            once.add(update.amount, least, 1);
            match (update.acked, may_be_lost) {
                (true, false) => acked = acked.saturating_add(update.amount),
                (true, true) => excused += 1,
                (false, _) => unknown += 1,
            }
            let received = forwarded_increments(log, object_key, update.amount);
            if received > 1 || update.attempts > 1 {
                let outcome = if update.acked { "acknowledged" } else { "outcome unknown" };
                repeated.push(format!(
                    "{:+} ({outcome}, via n{}, {} client attempts, received from forwarders by {received} replicas)",
                    update.amount, update.node, update.attempts
                ));
            }
        }
        for copy in log.forwarded_updates.iter().filter(|copy| copy.key == *object_key) {
            let sent =
                |amount: i64| log.counter_updates.iter().any(|update| update.key == key && update.amount == amount);
            if let DataOp::Increment { amount, id } = copy.op {
                if !sent(amount) {
                    verdict.violations.push(format!(
                        "n{} received a forwarded increment {amount:+} of {name} from {} that no client sent",
                        copy.node, copy.from
                    ));
                }
                if id.is_none() {
                    verdict.violations.push(format!(
                        "n{} received a forwarded increment {amount:+} of {name} from {} without an operation id",
                        copy.node, copy.from
                    ));
                }
            }
        }
        if !once.contains(value) {
            verdict.violations.push(format!(
                "{name} ends at {value}; acknowledged increments sum to {acked}, {unknown} more of unknown outcome and \
                 {excused} acknowledged ones the durability rule lets be lost allow {}..={} (each counted once); \
                 increments sent more than once: [{}]",
                once.low,
                once.high,
                repeated.join(", ")
            ));
        }
    }
}

/// Invariant 5 (see the module docs).
fn check_orsets(log: &Log, snapshot: &Snapshot, keys: &Keyspace, replicas: &[Vec<usize>], verdict: &mut Verdict) {
    for (key, index) in keys.range(KeyKind::OrSet).enumerate() {
        let name = keys.name(index);
        let object_key = &keys.orset_keys[key];
        let Some(DataValue::Set(set)) = final_value(&snapshot.states[index], &name, DataType::Set, verdict) else {
            continue;
        };
        let (elements, bad) = parse_elements(&set);
        if let Some(bad) = bad {
            verdict.violations.push(format!("{name} ends with an element no client writes: {bad:?}"));
        }
        let changes: Vec<_> = log.set_changes.iter().filter(|change| change.key == key).collect();
        let added: BTreeSet<u64> = changes.iter().filter(|change| change.add).map(|change| change.element).collect();
        let removed: BTreeSet<u64> = changes.iter().filter(|change| !change.add).map(|change| change.element).collect();
        for element in elements.difference(&added) {
            verdict.violations.push(format!("{name} ends with element {element}, which no client added"));
        }
        let crashed_since = |since_ms: u64| log.crashed_since(since_ms);
        for change in changes.iter().filter(|change| change.acked) {
            let present = elements.contains(&change.element);
            if change.add && !present && !removed.contains(&change.element) {
                let crashed = crashed_since(change.start_ms);
                if change.dw == 0 && crashed >= usize::from(change.w) {
                    verdict.excused_losses += 1;
                    continue;
                }
                verdict.violations.push(format!(
                    "lost acknowledged add: element {} of {name} (client orset{}, w={} dw={}, sent at {} ms), never \
                     removed; replicas {:?}, {crashed} nodes crashed since",
                    change.element, change.client, change.w, change.dw, change.start_ms, replicas[index]
                ));
            }
            let added_twice = || forwarded_adds(log, object_key, change.element) > 1;
            if !change.add && present && crashed_since(change.start_ms) == 0 && !added_twice() {
                verdict.violations.push(format!(
                    "{name} ends with element {}, although an acknowledged remove of it (client orset{}, context {}, \
                     read at {} ms) observed its add and no node crashed since",
                    change.element,
                    change.client,
                    if change.with_context { "of its read" } else { "of the acting replica" },
                    change.start_ms
                ));
            }
        }
        if set.deferred_len() > 0 && crashed_since(0) == 0 {
            verdict.violations.push(format!(
                "{name} ends with {} removes still deferred, although no node crashed (every context a client \
                 read should be included by now)",
                set.deferred_len()
            ));
        }
    }
}

fn describe_replicas(states: &[ReplicaState]) -> String {
    let parts: Vec<String> = states
        .iter()
        .map(|(node, state)| match state {
            None => format!("n{node}: down"),
            Some(Err(error)) => format!("n{node}: error {error}"),
            Some(Ok(object)) => format!(
                "n{node}: {} versions, dots {:?}, clock {:?}",
                object.siblings().len(),
                object.siblings().iter().map(|sibling| (sibling.dot, sibling.timestamp)).collect::<Vec<_>>(),
                object.context()
            ),
        })
        .collect();
    parts.join("; ")
}
