//! The invariants, checked at the end of a run, after healing and repair.
//!
//! 1. **Convergence**: the N replicas of every key hold the same state
//!    (same versions, same causal context), read from each replica
//!    directly, not through a reconciling coordinator.
//! 2. **No acknowledged write is lost** (set keys): the element of every
//!    acknowledged write is in the final value. The durability rule:
//!    - a write acknowledged with `dw >= 1` must never be lost: at least one
//!      of its acknowledgements was fsynced, and crashes only drop unsynced
//!      data;
//!    - a write acknowledged with `dw = 0` sat in memory buffers on its W
//!      acknowledging replicas, so losing it is allowed only if at least W
//!      of the key's replicas crashed after it was sent (all of its
//!      acknowledging replicas may then have lost it). Such losses are
//!      counted, not failed. Fewer crashes than that and a loss is a bug.
//! 3. **No causally superseded value wins** (LWW keys): last-write-wins may
//!    drop a concurrent write, but the final value must never be one that
//!    an acknowledged write causally superseded (its context had seen it),
//!    with the same durability excuse for the superseding write. Every
//!    LWW key ends with at most one version, and every value read is one
//!    that was written.

use std::collections::BTreeSet;
use std::sync::Arc;

use dynamo_core::keys::ObjectKey;
use dynamo_core::object::VersionedObject;
use dynamo_core::props::ConflictMode;

use crate::log::Log;
use crate::node::SimNode;
use crate::workload::{Keyspace, describe, set_elements, value_id};

/// One replica's own state of a key: its node index and the state (`None`:
/// the node was not running; `Err`: it could not read it).
pub type ReplicaState = (usize, Option<Result<VersionedObject, String>>);

/// Every replica's own state of every key, as the checker last read it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per key (set keys first, then LWW keys): each replica's node index
    /// and state (`None`: the node was not running).
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
/// preference list of key `k` (set keys first, then LWW keys).
pub fn check(log: &Log, snapshot: &Snapshot, keys: &Keyspace, replicas: &[Vec<usize>]) -> Verdict {
    let mut verdict = Verdict::default();
    let set_count = keys.set_keys.len();
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
                key_name(index, set_count),
                snapshot.rounds,
                describe_replicas(states)
            ));
        }
    }
    check_sets(log, snapshot, set_count, replicas, &mut verdict);
    check_lww(log, snapshot, set_count, replicas, &mut verdict);
    verdict
}

fn check_sets(log: &Log, snapshot: &Snapshot, set_count: usize, replicas: &[Vec<usize>], verdict: &mut Verdict) {
    let finals: Vec<BTreeSet<u64>> = snapshot.states[..set_count]
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
        let crashed = log.crashed_since(&replicas[write.key], write.start_ms);
        if write.dw == 0 && crashed >= usize::from(write.w) {
            verdict.excused_losses += 1;
            continue;
        }
        verdict.violations.push(format!(
            "lost acknowledged write: element {} of set key k{} (client set{}, w={} dw={} blind={}, sent at {} ms, \
             acknowledged at {} ms; replicas {:?}, {} of them crashed since)",
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

fn check_lww(log: &Log, snapshot: &Snapshot, set_count: usize, replicas: &[Vec<usize>], verdict: &mut Verdict) {
    for (index, states) in snapshot.states.iter().enumerate().skip(set_count) {
        let key = index - set_count;
        let name = key_name(index, set_count);
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
            let crashed = log.crashed_since(&replicas[index], write.start_ms);
            if write.dw == 0 && crashed >= usize::from(write.w) {
                verdict.excused_losses += 1;
                continue;
            }
            verdict.violations.push(format!(
                "lost acknowledged write: {name} ends with {} although acknowledged write {} (w={} dw={}, sent at {} \
                 ms) causally superseded it; replicas {:?}, {} of them crashed since",
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

fn key_name(index: usize, set_count: usize) -> String {
    if index < set_count { format!("set key k{index}") } else { format!("lww key l{}", index - set_count) }
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
