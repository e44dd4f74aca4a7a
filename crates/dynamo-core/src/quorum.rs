//! Quorum counting for one request (paper section 4.5), as pure state
//! machines: the coordinator feeds in each replica's answer as it arrives and
//! learns when the request has succeeded, when it can no longer succeed, and
//! (for reads) what the reconciled result is and which replicas need repair.
//!
//! Why a module of its own, with no I/O: the counting rules are where quorum
//! systems go wrong quietly (a duplicate answer counted twice, a request
//! failed while enough replicas could still answer, a durable write
//! acknowledged with too few fsyncs). Kept pure, they are property-tested
//! here and shared verbatim by the node and the deterministic simulation.
//!
//! The rules:
//! - A write succeeds once at least `w` replicas acknowledged, at least `dw`
//!   of them durably (fsynced). A read succeeds once `r` replicas replied.
//! - A request fails as soon as success is out of reach: even if every
//!   replica that has not answered yet answered well (and durably), the
//!   counts could not be reached. It never fails earlier.
//! - Only the members of the replica set count, and each of them once: its
//!   first answer is final, later ones (retries, duplicates) are ignored.
//!   Both outcomes are therefore permanent: answers only ever add up.
//! - A read keeps accepting replies after it succeeded: read repair (paper
//!   section 5) waits a bounded time for the remaining replicas, then sends
//!   the merged result to the ones whose state does not contain it.
//!
//! When a request fails, [`QuorumReport`] is the diagnosis the `503` carries:
//! how many replicas answered and why each of the others did not (as
//! Garage's quorum errors do).

use std::fmt;

use crate::codec::truncate_at_char;
use crate::object::VersionedObject;
use crate::props::ConflictMode;
use crate::ring::NodeId;

/// Longest failure reason kept per replica, in bytes (longer ones are cut at
/// a character boundary): a report names up to N replicas and ends up in an
/// HTTP body and in logs, so each reason is bounded.
pub const MAX_REASON_LEN: usize = 1024;

/// The reason given to the replicas that had not answered when the
/// coordinator gave up waiting ([`WriteQuorum::timed_out`]).
pub const TIMEOUT_REASON: &str = "no answer within the timeout";

/// Where a quorum request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not decided yet: success is still possible but not reached.
    Pending,
    /// Enough replicas answered well. Permanent.
    Succeeded,
    /// Success is out of reach. Permanent.
    Failed,
}

/// What one replica answered, as a report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// No answer yet.
    Pending,
    /// Acknowledged a write or replied to a read. `durable` says whether a
    /// write acknowledgement was fsynced; it is always false for reads.
    Ok {
        /// Whether the write is on disk at that replica.
        durable: bool,
    },
    /// Could not serve the request, and why (an error it sent, a refused
    /// connection, [`TIMEOUT_REASON`]).
    Failed(String),
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaState::Pending => f.write_str("no answer yet"),
            ReplicaState::Ok { durable: false } => f.write_str("ok"),
            ReplicaState::Ok { durable: true } => f.write_str("ok (durable)"),
            ReplicaState::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

/// One replica's line in a [`QuorumReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// The replica.
    pub node: NodeId,
    /// What it answered.
    pub state: ReplicaState,
    /// For a fallback node of a sloppy quorum: the replica whose write it
    /// holds as a hint.
    pub stands_in_for: Option<NodeId>,
}

/// The diagnostics of a quorum request: what was needed, what was reached,
/// and every replica's answer, in the order of the replica list (the
/// preference list order). This is what a `503` tells the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumReport {
    /// Good answers needed (`w` for writes, `r` for reads).
    pub needed: u8,
    /// Durable acknowledgements needed among them (`dw`; 0 for reads).
    pub needed_durable: u8,
    /// Good answers received (saturating at 255; replica sets are at most
    /// [`crate::props::MAX_N`] in practice).
    pub answered_ok: u8,
    /// Durable acknowledgements received (0 for reads).
    pub durable_ok: u8,
    /// Every replica and its answer.
    pub replicas: Vec<ReplicaStatus>,
}

/// Reads as "1 of 3 replicas answered, 2 needed; node0: ok, node1: failed:
/// disk full, node2: failed: no answer within the timeout", for logs and
/// error messages.
impl fmt::Display for QuorumReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} replicas answered, {} needed", self.answered_ok, self.replicas.len(), self.needed)?;
        if self.needed_durable > 0 {
            write!(f, " ({} durable, {} needed)", self.durable_ok, self.needed_durable)?;
        }
        for (index, replica) in self.replicas.iter().enumerate() {
            let separator = if index == 0 { "; " } else { ", " };
            write!(f, "{separator}{}: {}", replica.node, replica.state)?;
        }
        Ok(())
    }
}

/// Counts the acknowledgements of one write (put or delete) to its replicas.
///
/// ```
/// use dynamo_core::quorum::{Progress, WriteQuorum};
/// use dynamo_core::ring::NodeId;
///
/// let nodes: Vec<NodeId> = ["a", "b", "c"].map(NodeId::new).to_vec();
/// let mut write = WriteQuorum::new(nodes.clone(), 2, 1);
/// assert_eq!(write.ack(nodes[0].clone(), false), Progress::Pending);
/// assert_eq!(write.fail(nodes[1].clone(), "disk full"), Progress::Pending);
/// assert_eq!(write.ack(nodes[2].clone(), true), Progress::Succeeded);
/// ```
#[derive(Clone, Debug)]
pub struct WriteQuorum {
    /// Each replica's first answer; `true` = durable acknowledgement.
    answers: Answers<bool>,
    /// Acknowledgements needed.
    w: u8,
    /// Durable acknowledgements needed among them.
    dw: u8,
    /// The replica lists that must each reach `w` and `dw`; empty means the
    /// whole set is one list (see [`WriteQuorum::spanning`]).
    lists: Vec<Vec<NodeId>>,
}

impl WriteQuorum {
    /// A write sent to `replicas` (a repeated node counts once), needing `w`
    /// acknowledgements of which `dw` durable. More than the replicas can
    /// give fails at once; `w = 0` and `dw = 0` succeed at once (bucket
    /// props validation keeps `w` at least 1).
    pub fn new(replicas: Vec<NodeId>, w: u8, dw: u8) -> Self {
        Self { answers: Answers::new(replicas), w, dw, lists: Vec::new() }
    }

    /// A write during a ring change (see [`crate::transition`]): sent to
    /// every node of `lists` (the key's replicas under the old and the new
    /// ring), it succeeds only once *each* list has `w` acknowledgements of
    /// which `dw` durable. A node in several lists counts in each, and so
    /// does a fallback standing in for it. It fails as soon as any list can
    /// no longer reach its counts.
    pub fn spanning(lists: Vec<Vec<NodeId>>, w: u8, dw: u8) -> Self {
        let replicas: Vec<NodeId> = lists.iter().flatten().cloned().collect();
        let lists = if lists.len() > 1 { lists } else { Vec::new() };
        Self { answers: Answers::new(replicas), w, dw, lists }
    }

    /// `node` acknowledged the write, fsynced if `durable`. Ignored if `node`
    /// is not a replica or already answered.
    pub fn ack(&mut self, node: NodeId, durable: bool) -> Progress {
        if let Some(slot) = self.answers.unanswered(&node) {
            *slot = Answer::Ok(durable);
        }
        self.progress()
    }

    /// `node` could not apply the write, because of `reason` (kept up to
    /// [`MAX_REASON_LEN`] bytes). Ignored if `node` is not a replica or
    /// already answered.
    pub fn fail(&mut self, node: NodeId, reason: impl Into<String>) -> Progress {
        self.answers.fail(&node, reason.into());
        self.progress()
    }

    /// The coordinator stops waiting: every replica that has not answered
    /// failed with [`TIMEOUT_REASON`], and later answers are ignored. The
    /// result is decided (never [`Progress::Pending`]).
    pub fn timed_out(&mut self) -> Progress {
        self.answers.time_out();
        self.progress()
    }

    /// Sloppy quorum (paper section 4.6): `failed` (a replica, or a fallback
    /// that itself stood in for one) will not take the write, because of
    /// `reason`, and `fallback`, a node not yet in the set, takes its place
    /// holding the write as a hint for the replica; its acknowledgement
    /// counts toward W and DW like the replica's would have.
    ///
    /// Refused (returns `None`, nothing changes) when the write is already
    /// decided (so outcomes stay permanent), when `failed` is not in the set,
    /// already acknowledged or already handed off, or when `fallback` is in
    /// the set. Otherwise returns the replica the fallback's hint is for.
    pub fn hand_off(&mut self, failed: &NodeId, fallback: NodeId, reason: impl Into<String>) -> Option<NodeId> {
        if self.progress() != Progress::Pending || self.answers.contains(&fallback) {
            return None;
        }
        let owner = self.answers.hand_off(failed, reason.into())?;
        self.answers.slots.push(Slot {
            node: fallback,
            answer: Answer::Pending,
            stands_in_for: Some(owner.clone()),
            handed_off: false,
        });
        Some(owner)
    }

    /// Whether `node` is in the set (a replica, or a fallback taken in).
    pub fn includes(&self, node: &NodeId) -> bool {
        self.answers.contains(node)
    }

    /// The nodes of the set that have not answered and were not handed off,
    /// with the replica each stands in for (`None` for a replica itself).
    pub fn awaited(&self) -> Vec<(NodeId, Option<NodeId>)> {
        self.answers
            .slots
            .iter()
            .filter(|slot| matches!(slot.answer, Answer::Pending) && !slot.handed_off)
            .map(|slot| (slot.node.clone(), slot.stands_in_for.clone()))
            .collect()
    }

    /// The replicas (never fallbacks) whose copy of the write is not
    /// acknowledged, by themselves or by a fallback holding a hint for
    /// them: the ones the coordinator keeps a hint for itself.
    pub fn unacknowledged_replicas(&self) -> Vec<NodeId> {
        let covered = |owner: &NodeId| {
            self.answers.slots.iter().any(|slot| {
                matches!(slot.answer, Answer::Ok(_))
                    && (slot.node == *owner || slot.stands_in_for.as_ref() == Some(owner))
            })
        };
        self.answers
            .slots
            .iter()
            .filter(|slot| slot.stands_in_for.is_none() && !covered(&slot.node))
            .map(|slot| slot.node.clone())
            .collect()
    }

    /// Whether every replica (not a fallback for it) acknowledged the write
    /// itself: the write is then visible on all of them, what the PBS
    /// t-visibility measures (issue 16).
    pub fn every_replica_acknowledged(&self) -> bool {
        self.answers
            .slots
            .iter()
            .filter(|slot| slot.stands_in_for.is_none())
            .all(|slot| matches!(slot.answer, Answer::Ok(_)))
    }

    /// Where the write stands.
    pub fn progress(&self) -> Progress {
        if self.lists.is_empty() {
            return self.progress_of(|_| true);
        }
        let mut outcome = Progress::Succeeded;
        for list in &self.lists {
            match self.progress_of(|owner| list.contains(owner)) {
                Progress::Failed => return Progress::Failed,
                Progress::Pending => outcome = Progress::Pending,
                Progress::Succeeded => {}
            }
        }
        outcome
    }

    /// Where the write stands among the slots whose replica (the node, or
    /// the one it stands in for) `counts`.
    fn progress_of(&self, counts: impl Fn(&NodeId) -> bool) -> Progress {
        self.answers.assert_counted_once(&counts);
        let slots = || self.answers.slots.iter().filter(|slot| counts(slot.owner()));
        let acked = slots().filter(|slot| matches!(slot.answer, Answer::Ok(_))).count();
        let durable = slots().filter(|slot| matches!(slot.answer, Answer::Ok(true))).count();
        let unanswered = slots().filter(|slot| matches!(slot.answer, Answer::Pending)).count();
        let (w, dw) = (usize::from(self.w), usize::from(self.dw));
        // Best case for the replicas still out: all acknowledge durably.
        decide(acked >= w && durable >= dw, acked + unanswered >= w && durable + unanswered >= dw)
    }

    /// Every replica's answer so far, with the counts.
    pub fn report(&self) -> QuorumReport {
        self.answers.report(self.w, self.dw, |durable| *durable)
    }
}

/// Collects the replies of one read, merges them, and finds the replicas to
/// repair.
///
/// Replies keep being accepted after [`Progress::Succeeded`]: the coordinator
/// answers the client at `r` replies, then waits a bounded time for the rest
/// so that read repair reaches every stale replica.
#[derive(Clone, Debug)]
pub struct ReadQuorum {
    /// Each replica's first answer: its (unreconciled) state of the key.
    answers: Answers<VersionedObject>,
    /// Replies needed.
    r: u8,
    /// How the bucket reconciles concurrent versions.
    mode: ConflictMode,
    /// The merge of every reply so far (merge is commutative, associative
    /// and idempotent, so folding replies in as they come is order-free).
    merged: VersionedObject,
    /// Replicas whose stored state of the key failed its integrity check:
    /// failed answers, but ones a good copy repairs.
    unreadable: Vec<NodeId>,
}

impl ReadQuorum {
    /// A read sent to `replicas` (a repeated node counts once), needing `r`
    /// replies, reconciling in `mode`.
    pub fn new(replicas: Vec<NodeId>, r: u8, mode: ConflictMode) -> Self {
        Self { answers: Answers::new(replicas), r, mode, merged: VersionedObject::new(), unreadable: Vec::new() }
    }

    /// `node` replied with its state of the key (empty if it has none).
    /// Ignored if `node` is not a replica or already answered.
    pub fn reply(&mut self, node: NodeId, object: VersionedObject) -> Progress {
        if let Some(slot) = self.answers.unanswered(&node) {
            self.merged.merge(&object, self.mode);
            *slot = Answer::Ok(object);
        }
        self.progress()
    }

    /// `node` could not serve the read, because of `reason` (kept up to
    /// [`MAX_REASON_LEN`] bytes). Ignored if `node` is not a replica or
    /// already answered.
    pub fn fail(&mut self, node: NodeId, reason: impl Into<String>) -> Progress {
        self.answers.fail(&node, reason.into());
        self.progress()
    }

    /// `node` could not serve the read because its stored state of the key
    /// is corrupt (`reason` says where). It counts as failed, like
    /// [`ReadQuorum::fail`], but it is a repair target: overwriting the
    /// unreadable record with the merged result heals it. Ignored if `node`
    /// is not a replica or already answered.
    pub fn unreadable(&mut self, node: NodeId, reason: impl Into<String>) -> Progress {
        if self.answers.unanswered(&node).is_some() {
            self.answers.fail(&node, reason.into());
            self.unreadable.push(node);
        }
        self.progress()
    }

    /// The coordinator stops waiting (for the client, or for read repair):
    /// every replica that has not answered failed with [`TIMEOUT_REASON`],
    /// and later replies are ignored. The result is decided.
    pub fn timed_out(&mut self) -> Progress {
        self.answers.time_out();
        self.progress()
    }

    /// Where the read stands.
    pub fn progress(&self) -> Progress {
        self.answers.assert_counted_once(|_| true);
        let replied = self.answers.ok().count();
        let r = usize::from(self.r);
        decide(replied >= r, replied + self.answers.unanswered_count() >= r)
    }

    /// The reconciled result: the merge, in the bucket's mode, of every reply
    /// so far. It descends every reply. A copy, so that the quorum can move on
    /// to read repair while the result goes to the client.
    pub fn merged(&self) -> VersionedObject {
        self.merged.clone()
    }

    /// The replicas to send [`ReadQuorum::merged`] to: those that replied
    /// with a state that does not contain it (stale, or missing: an empty
    /// reply), and those whose state was unreadable
    /// ([`ReadQuorum::unreadable`]) when there is something to send.
    /// Replicas that failed otherwise or never answered are not listed;
    /// hinted handoff and anti-entropy cover them.
    pub fn repair_targets(&self) -> Vec<NodeId> {
        let has_versions = !self.merged.is_empty();
        self.answers
            .slots
            .iter()
            .filter(|slot| match &slot.answer {
                Answer::Ok(object) => !object.descends_in(&self.merged, self.mode),
                Answer::Failed(_) => has_versions && self.unreadable.contains(&slot.node),
                Answer::Pending => false,
            })
            .map(|slot| slot.node.clone())
            .collect()
    }

    /// Every replica's answer so far, with the counts.
    pub fn report(&self) -> QuorumReport {
        self.answers.report(self.r, 0, |_| false)
    }
}

/// The outcome from "has it succeeded" and "can it still succeed".
fn decide(succeeded: bool, possible: bool) -> Progress {
    if succeeded {
        Progress::Succeeded
    } else if possible {
        Progress::Pending
    } else {
        Progress::Failed
    }
}

/// One replica's answer; `T` is what a good answer carries.
#[derive(Clone, Debug)]
enum Answer<T> {
    Pending,
    Ok(T),
    Failed(String),
}

#[derive(Clone, Debug)]
struct Slot<T> {
    node: NodeId,
    answer: Answer<T>,
    /// The replica this node stands in for, holding the write as a hint
    /// (sloppy quorum); `None` for the replicas themselves.
    stands_in_for: Option<NodeId>,
    /// Whether another node already took over this slot's write.
    handed_off: bool,
}

impl<T> Slot<T> {
    /// The replica whose copy this slot holds.
    fn owner(&self) -> &NodeId {
        self.stands_in_for.as_ref().unwrap_or(&self.node)
    }
}

/// The answers of a replica set, first answer final. A linear scan finds a
/// node: replica sets are at most [`crate::props::MAX_N`] long.
#[derive(Clone, Debug)]
struct Answers<T> {
    slots: Vec<Slot<T>>,
}

impl<T> Answers<T> {
    fn new(replicas: Vec<NodeId>) -> Self {
        let mut slots: Vec<Slot<T>> = Vec::with_capacity(replicas.len());
        for node in replicas {
            if !slots.iter().any(|slot| slot.node == node) {
                slots.push(Slot { node, answer: Answer::Pending, stands_in_for: None, handed_off: false });
            }
        }
        Self { slots }
    }

    /// The answer slot of `node` if it is a replica that has not answered.
    fn unanswered(&mut self, node: &NodeId) -> Option<&mut Answer<T>> {
        let slot = self.slots.iter_mut().find(|slot| slot.node == *node)?;
        matches!(slot.answer, Answer::Pending).then_some(&mut slot.answer)
    }

    fn fail(&mut self, node: &NodeId, mut reason: String) {
        if let Some(slot) = self.unanswered(node) {
            let kept = truncate_at_char(&reason, MAX_REASON_LEN).len();
            reason.truncate(kept);
            *slot = Answer::Failed(reason);
        }
    }

    fn contains(&self, node: &NodeId) -> bool {
        self.slots.iter().any(|slot| slot.node == *node)
    }

    /// Marks `node`'s slot failed (if pending) and handed off; returns the
    /// replica its write belongs to. `None` if the slot cannot be handed
    /// off.
    fn hand_off(&mut self, node: &NodeId, reason: String) -> Option<NodeId> {
        let slot = self.slots.iter_mut().find(|slot| slot.node == *node)?;
        if slot.handed_off || matches!(slot.answer, Answer::Ok(_)) {
            return None;
        }
        if matches!(slot.answer, Answer::Pending) {
            let mut reason = reason;
            let kept = truncate_at_char(&reason, MAX_REASON_LEN).len();
            reason.truncate(kept);
            slot.answer = Answer::Failed(reason);
        }
        slot.handed_off = true;
        Some(slot.stands_in_for.clone().unwrap_or_else(|| slot.node.clone()))
    }

    fn time_out(&mut self) {
        for slot in &mut self.slots {
            if matches!(slot.answer, Answer::Pending) {
                slot.answer = Answer::Failed(TIMEOUT_REASON.to_string());
            }
        }
    }

    /// The good answers, in replica order.
    fn ok(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|slot| match &slot.answer {
            Answer::Ok(value) => Some(value),
            Answer::Pending | Answer::Failed(_) => None,
        })
    }

    /// Asserts the counting rule among the slots whose replica `counts`: no
    /// replica counts twice, so there is at most one good answer per replica,
    /// its own or that of the fallback standing in for it (a replica is
    /// handed off only before it acknowledged, and its answers are ignored
    /// after), and the good answers never exceed the replicas, n. Costs a
    /// quadratic scan of the good answers of one replica set (at most
    /// [`crate::props::MAX_N`] of them) per answer.
    fn assert_counted_once(&self, counts: impl Fn(&NodeId) -> bool) {
        let good = || self.slots.iter().filter(|slot| counts(slot.owner()) && matches!(slot.answer, Answer::Ok(_)));
        for (index, slot) in good().enumerate() {
            let owner = slot.owner();
            assert!(
                !good().take(index).any(|earlier| earlier.owner() == owner),
                "replica {owner} has two good answers: an answer was counted twice"
            );
        }
    }

    fn unanswered_count(&self) -> usize {
        self.slots.iter().filter(|slot| matches!(slot.answer, Answer::Pending)).count()
    }

    fn report(&self, needed: u8, needed_durable: u8, durable: impl Fn(&T) -> bool) -> QuorumReport {
        let replicas: Vec<ReplicaStatus> = self
            .slots
            .iter()
            .map(|slot| {
                let state = match &slot.answer {
                    Answer::Pending => ReplicaState::Pending,
                    Answer::Ok(value) => ReplicaState::Ok { durable: durable(value) },
                    Answer::Failed(reason) => ReplicaState::Failed(reason.clone()),
                };
                ReplicaStatus { node: slot.node.clone(), state, stands_in_for: slot.stands_in_for.clone() }
            })
            .collect();
        let count = |wanted: fn(&ReplicaState) -> bool| {
            u8::try_from(replicas.iter().filter(|replica| wanted(&replica.state)).count()).unwrap_or(u8::MAX)
        };
        let answered_ok = count(|state| matches!(state, ReplicaState::Ok { .. }));
        let durable_ok = count(|state| matches!(state, ReplicaState::Ok { durable: true }));
        QuorumReport { needed, needed_durable, answered_ok, durable_ok, replicas }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::hlc::Hlc;
    use crate::testing::{World, history, value_payload};
    use crate::version::{ActorId, VersionVector};

    const SIBLINGS: ConflictMode = ConflictMode::Siblings;

    /// A slot for `node` that already acknowledged (durably), as a broken
    /// dedupe would leave one beside the node's own slot.
    fn acknowledged_slot<T>(node: NodeId, answer: T) -> Slot<T> {
        Slot { node, answer: Answer::Ok(answer), stands_in_for: None, handed_off: false }
    }

    #[test]
    #[should_panic(expected = "an answer was counted twice")]
    fn a_write_acknowledgement_counted_twice_is_caught() {
        let mut write = WriteQuorum::new(nodes(3), 2, 0);
        write.ack(node(0), true);
        // The API ignores a second answer; only a broken slot table can hold
        // two acknowledgements of node0, which would reach w = 2 alone.
        write.answers.slots.push(acknowledged_slot(node(0), true));
        write.progress();
    }

    #[test]
    #[should_panic(expected = "an answer was counted twice")]
    fn a_read_reply_counted_twice_is_caught() {
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        read.reply(node(1), VersionedObject::new());
        read.answers.slots.push(acknowledged_slot(node(1), VersionedObject::new()));
        read.progress();
    }

    #[test]
    #[should_panic(expected = "an answer was counted twice")]
    fn a_replica_and_its_fallback_both_counted_is_caught() {
        let mut write = WriteQuorum::new(nodes(3), 2, 0);
        assert_eq!(write.hand_off(&node(2), node(3), "marked down"), Some(node(2)));
        write.ack(node(3), true);
        // hand_off marks the replica failed; a replica acknowledged beside
        // the fallback holding its hint would count its copy twice.
        write.answers.slots[2].answer = Answer::Ok(true);
        write.progress();
    }

    fn node(index: usize) -> NodeId {
        NodeId::new(format!("node{index}"))
    }

    fn nodes(count: usize) -> Vec<NodeId> {
        (0..count).map(node).collect()
    }

    /// One write of value `value` by `actor` on top of `base`.
    fn written(base: &VersionedObject, actor: u64, value: u32) -> VersionedObject {
        let mut object = base.clone();
        object.put(base.context(), ActorId(actor), Hlc(u64::from(value)), value_payload(value), SIBLINGS);
        object
    }

    #[test]
    fn write_succeeds_at_w_acks_with_dw_durable() {
        let mut write = WriteQuorum::new(nodes(3), 2, 1);
        assert_eq!(write.progress(), Progress::Pending);
        assert_eq!(write.ack(node(0), false), Progress::Pending);
        assert_eq!(write.ack(node(1), false), Progress::Pending, "two acks, none durable");
        assert_eq!(write.ack(node(2), true), Progress::Succeeded);
        let report = write.report();
        assert_eq!((report.answered_ok, report.durable_ok, report.needed, report.needed_durable), (3, 1, 2, 1));
    }

    #[test]
    fn write_fails_as_soon_as_the_unanswered_replicas_cannot_reach_w() {
        let mut write = WriteQuorum::new(nodes(3), 2, 0);
        assert_eq!(write.fail(node(0), "connection refused"), Progress::Pending);
        assert_eq!(write.fail(node(2), "disk full"), Progress::Failed, "one replica left, two acks needed");
        assert_eq!(write.ack(node(1), true), Progress::Failed, "failure is permanent");
    }

    #[test]
    fn write_fails_when_too_few_replicas_are_left_to_ack_durably() {
        let mut write = WriteQuorum::new(nodes(3), 2, 2);
        assert_eq!(write.ack(node(0), false), Progress::Pending);
        assert_eq!(write.ack(node(1), false), Progress::Failed, "w reached, but only one replica left for dw=2");
    }

    #[test]
    fn write_asking_more_than_the_replicas_can_give_fails_at_once() {
        assert_eq!(WriteQuorum::new(nodes(2), 3, 0).progress(), Progress::Failed);
        assert_eq!(WriteQuorum::new(nodes(2), 1, 3).progress(), Progress::Failed);
        assert_eq!(WriteQuorum::new(Vec::new(), 1, 0).progress(), Progress::Failed);
    }

    #[test]
    fn duplicate_answers_and_strangers_do_not_count() {
        let mut write = WriteQuorum::new(vec![node(0), node(1), node(0)], 2, 0);
        assert_eq!(write.report().replicas.len(), 2, "a repeated replica is one replica");
        assert_eq!(write.ack(node(0), false), Progress::Pending);
        assert_eq!(write.ack(node(0), true), Progress::Pending, "a second answer is ignored");
        assert_eq!(write.ack(node(9), true), Progress::Pending, "not a replica");
        assert_eq!(write.report().durable_ok, 0, "the first answer stays final");
        assert_eq!(write.fail(node(0), "late error"), Progress::Pending);
        assert_eq!(write.report().replicas[0].state, ReplicaState::Ok { durable: false });
        assert_eq!(write.ack(node(1), false), Progress::Succeeded);
    }

    #[test]
    fn timeout_fails_every_unanswered_replica_and_ignores_later_answers() {
        let mut write = WriteQuorum::new(nodes(3), 2, 0);
        write.ack(node(0), true);
        write.fail(node(1), "storage error: corrupt record");
        assert_eq!(write.timed_out(), Progress::Failed);
        assert_eq!(write.ack(node(2), true), Progress::Failed);
        let report = write.report();
        let states: Vec<ReplicaState> = report.replicas.iter().map(|replica| replica.state.clone()).collect();
        assert_eq!(
            states,
            [
                ReplicaState::Ok { durable: true },
                ReplicaState::Failed("storage error: corrupt record".to_string()),
                ReplicaState::Failed(TIMEOUT_REASON.to_string()),
            ]
        );
        assert_eq!(
            report.to_string(),
            "1 of 3 replicas answered, 2 needed; node0: ok (durable), \
             node1: failed: storage error: corrupt record, node2: failed: no answer within the timeout"
        );
    }

    #[test]
    fn timeout_after_success_keeps_the_success() {
        let mut write = WriteQuorum::new(nodes(3), 1, 0);
        write.ack(node(2), false);
        assert_eq!(write.timed_out(), Progress::Succeeded);
    }

    #[test]
    fn a_fallback_standing_in_for_a_failed_replica_counts_toward_w() {
        let mut write = WriteQuorum::new(nodes(3), 3, 1);
        assert_eq!(write.ack(node(0), true), Progress::Pending);
        assert_eq!(write.hand_off(&node(2), node(3), "marked down"), Some(node(2)));
        assert_eq!(write.awaited(), [(node(1), None), (node(3), Some(node(2)))]);
        assert_eq!(write.ack(node(2), true), Progress::Pending, "a handed-off replica's late answer is ignored");
        assert_eq!(write.ack(node(1), false), Progress::Pending);
        assert_eq!(write.unacknowledged_replicas(), [node(2)]);
        assert_eq!(write.ack(node(3), false), Progress::Succeeded);
        assert!(write.unacknowledged_replicas().is_empty(), "the fallback's hint covers node2");
        assert!(!write.every_replica_acknowledged(), "a hint is not the replica holding the write");
        let report = write.report();
        assert_eq!(report.replicas[3].stands_in_for, Some(node(2)));
        assert_eq!(report.replicas[2].state, ReplicaState::Failed("marked down".to_string()));
    }

    #[test]
    fn a_write_is_visible_everywhere_once_every_replica_itself_acknowledged() {
        let mut write = WriteQuorum::new(nodes(3), 2, 0);
        write.ack(node(0), false);
        assert_eq!(write.ack(node(1), false), Progress::Succeeded);
        assert!(!write.every_replica_acknowledged(), "node2 has not answered");
        write.ack(node(2), false);
        assert!(write.every_replica_acknowledged());
    }

    #[test]
    fn a_failed_fallback_hands_its_hint_on_for_the_same_replica() {
        let mut write = WriteQuorum::new(nodes(2), 2, 0);
        write.ack(node(0), false);
        assert_eq!(write.hand_off(&node(1), node(2), "refused"), Some(node(1)));
        assert_eq!(write.hand_off(&node(2), node(3), "timed out"), Some(node(1)), "still node1's write");
        assert_eq!(write.hand_off(&node(2), node(4), "again"), None, "already handed off");
        assert_eq!(write.ack(node(3), false), Progress::Succeeded);
    }

    #[test]
    fn hand_off_is_refused_once_decided_or_to_a_member_of_the_set() {
        let mut write = WriteQuorum::new(nodes(3), 1, 0);
        assert_eq!(write.hand_off(&node(1), node(2), "x"), None, "node2 is a replica");
        assert_eq!(write.hand_off(&node(7), node(8), "x"), None, "node7 is a stranger");
        write.ack(node(0), false);
        assert_eq!(write.hand_off(&node(1), node(3), "x"), None, "already succeeded");
        let mut failed = WriteQuorum::new(nodes(1), 1, 0);
        failed.fail(node(0), "disk full");
        assert_eq!(failed.hand_off(&node(0), node(1), "x"), None, "already failed");
    }

    #[test]
    fn a_write_spanning_two_rings_needs_w_in_each_and_a_shared_node_counts_in_both() {
        // Old replicas 0 1 2, new replicas 1 2 3: node 0 dropped, 3 added.
        let old = vec![node(0), node(1), node(2)];
        let new = vec![node(1), node(2), node(3)];
        let mut write = WriteQuorum::spanning(vec![old.clone(), new.clone()], 2, 0);
        assert_eq!(write.ack(node(0), false), Progress::Pending);
        assert_eq!(write.ack(node(3), false), Progress::Pending, "one ack in each list");
        assert_eq!(write.ack(node(1), false), Progress::Succeeded, "node1 counts in both");
        assert_eq!(write.report().replicas.len(), 4, "the union, each node once");
        let mut failing = WriteQuorum::spanning(vec![old, new], 2, 0);
        failing.fail(node(1), "down");
        assert_eq!(failing.fail(node(2), "down"), Progress::Failed, "the new list can reach only 1");
        let mut sloppy = WriteQuorum::spanning(vec![vec![node(0), node(1)], vec![node(1), node(2)]], 2, 0);
        sloppy.ack(node(0), false);
        sloppy.ack(node(2), false);
        assert_eq!(sloppy.hand_off(&node(1), node(9), "down"), Some(node(1)));
        assert_eq!(sloppy.ack(node(9), false), Progress::Succeeded, "a fallback counts where its replica would");
        let single = WriteQuorum::spanning(vec![vec![node(0), node(1)]], 2, 0);
        assert!(single.lists.is_empty(), "one list is an ordinary write");
    }

    #[test]
    fn report_shows_durable_counts_only_when_durability_was_asked() {
        let mut write = WriteQuorum::new(nodes(2), 2, 1);
        write.ack(node(0), false);
        assert_eq!(
            write.report().to_string(),
            "1 of 2 replicas answered, 2 needed (0 durable, 1 needed); node0: ok, node1: no answer yet"
        );
    }

    #[test]
    fn overlong_failure_reasons_are_cut_at_a_character_boundary() {
        let mut write = WriteQuorum::new(nodes(1), 1, 0);
        write.fail(node(0), "é".repeat(MAX_REASON_LEN));
        let ReplicaState::Failed(reason) = &write.report().replicas[0].state else {
            panic!("expected a failed replica");
        };
        assert_eq!(reason.len(), MAX_REASON_LEN);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn read_succeeds_at_r_replies_and_keeps_collecting_for_read_repair() {
        let base = written(&VersionedObject::new(), 1, 1);
        let fresh = written(&base, 1, 2);
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        assert_eq!(read.reply(node(0), fresh.clone()), Progress::Pending);
        assert_eq!(read.reply(node(1), fresh.clone()), Progress::Succeeded);
        assert_eq!(read.repair_targets(), Vec::<NodeId>::new());
        assert_eq!(read.reply(node(2), base), Progress::Succeeded, "a late reply is still taken");
        assert_eq!(read.merged(), fresh);
        assert_eq!(read.repair_targets(), [node(2)], "the stale replica gets the merged result");
    }

    #[test]
    fn replica_missing_the_key_is_a_repair_target_but_a_failed_one_is_not() {
        let value = written(&VersionedObject::new(), 1, 1);
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        read.reply(node(0), value.clone());
        read.reply(node(1), VersionedObject::new());
        read.fail(node(2), "connection reset");
        assert_eq!(read.progress(), Progress::Succeeded);
        assert_eq!(read.repair_targets(), [node(1)]);
        let report = read.report();
        assert_eq!((report.answered_ok, report.needed, report.needed_durable, report.durable_ok), (2, 2, 0, 0));
    }

    #[test]
    fn an_unreadable_replica_counts_as_failed_and_is_repaired_with_the_merge() {
        let value = written(&VersionedObject::new(), 1, 1);
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        assert_eq!(read.unreadable(node(0), "corruption detected in objects record b/k"), Progress::Pending);
        assert_eq!(read.reply(node(1), value.clone()), Progress::Pending, "the unreadable answer is not a reply");
        assert_eq!(read.reply(node(2), value.clone()), Progress::Succeeded);
        assert_eq!(read.repair_targets(), [node(0)]);
        let report = read.report();
        assert_eq!(report.answered_ok, 2);
        assert!(matches!(&report.replicas[0].state, ReplicaState::Failed(reason) if reason.contains("corruption")));
    }

    #[test]
    fn an_unreadable_answer_after_a_reply_is_ignored_and_nothing_is_sent_when_nothing_was_read() {
        let value = written(&VersionedObject::new(), 1, 1);
        let mut read = ReadQuorum::new(nodes(2), 1, SIBLINGS);
        read.reply(node(0), value);
        read.unreadable(node(0), "late duplicate");
        assert!(read.repair_targets().is_empty(), "node0's first answer stands");
        let mut empty = ReadQuorum::new(nodes(2), 1, SIBLINGS);
        empty.unreadable(node(0), "corrupt");
        empty.reply(node(1), VersionedObject::new());
        assert!(empty.repair_targets().is_empty(), "no versions to overwrite the corrupt record with");
    }

    #[test]
    fn key_missing_everywhere_needs_no_repair() {
        let mut read = ReadQuorum::new(nodes(2), 1, SIBLINGS);
        read.reply(node(0), VersionedObject::new());
        read.reply(node(1), VersionedObject::new());
        assert!(read.merged().is_empty());
        assert!(read.repair_targets().is_empty());
    }

    #[test]
    fn concurrent_replies_merge_into_siblings_and_every_replica_is_repaired() {
        let left = written(&VersionedObject::new(), 1, 1);
        let right = written(&VersionedObject::new(), 2, 2);
        let mut read = ReadQuorum::new(nodes(2), 2, SIBLINGS);
        read.reply(node(0), left);
        read.reply(node(1), right);
        assert_eq!(read.merged().siblings().len(), 2);
        let expected: VersionVector = [(ActorId(1), 1), (ActorId(2), 1)].into_iter().collect();
        assert_eq!(read.merged().context(), &expected);
        assert_eq!(read.repair_targets(), nodes(2));
    }

    #[test]
    fn read_fails_once_too_few_replicas_can_reply() {
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        assert_eq!(read.fail(node(0), "down"), Progress::Pending);
        assert_eq!(read.reply(node(7), VersionedObject::new()), Progress::Pending, "not a replica");
        assert_eq!(read.fail(node(1), "down"), Progress::Failed);
        let mut read = ReadQuorum::new(nodes(3), 2, SIBLINGS);
        read.reply(node(0), VersionedObject::new());
        assert_eq!(read.timed_out(), Progress::Failed);
        assert_eq!(read.report().replicas[2].state, ReplicaState::Failed(TIMEOUT_REASON.to_string()));
    }

    /// A replica's answer in generated write scenarios.
    #[derive(Clone, Copy, Debug)]
    enum WriteAnswer {
        Ack { durable: bool },
        Fail,
    }

    fn write_answer() -> impl Strategy<Value = WriteAnswer> {
        prop_oneof![any::<bool>().prop_map(|durable| WriteAnswer::Ack { durable }), Just(WriteAnswer::Fail),]
    }

    fn give(write: &mut WriteQuorum, node: NodeId, answer: WriteAnswer) -> Progress {
        match answer {
            WriteAnswer::Ack { durable } => write.ack(node, durable),
            WriteAnswer::Fail => write.fail(node, "refused"),
        }
    }

    /// Replica states of generated reads: a history's snapshots (the empty
    /// state included), one picked per replica.
    fn read_replies() -> impl Strategy<Value = (ConflictMode, Vec<VersionedObject>)> {
        (history(30), prop::collection::vec(any::<Index>(), 1..=5), any::<bool>()).prop_map(
            |((replicas, ops), picks, lww)| {
                let mode = if lww { ConflictMode::Lww } else { SIBLINGS };
                let world = World::run(replicas, &ops, mode);
                (mode, picks.iter().map(|pick| pick.get(&world.snapshots).clone()).collect())
            },
        )
    }

    fn read_all(mode: ConflictMode, replies: &[VersionedObject]) -> ReadQuorum {
        let mut read = ReadQuorum::new(nodes(replies.len()), 1, mode);
        for (index, reply) in replies.iter().enumerate() {
            read.reply(node(index), reply.clone());
        }
        read
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn write_never_fails_while_success_is_possible_nor_succeeds_without_enough_acks(
            replicas in 1..=5usize,
            w in 0..=6u8,
            dw in 0..=6u8,
            // Node index `replicas` (and above, modulo) is a stranger.
            events in prop::collection::vec((0..=6usize, write_answer()), 0..20),
        ) {
            let mut write = WriteQuorum::new(nodes(replicas), w, dw);
            // Model: the first answer of each replica.
            let mut first: Vec<Option<WriteAnswer>> = vec![None; replicas];
            for (index, answer) in events {
                let progress = give(&mut write, node(index), answer);
                if index < replicas && first[index].is_none() {
                    first[index] = Some(answer);
                }
                let acks = first.iter().filter(|a| matches!(a, Some(WriteAnswer::Ack { .. }))).count();
                let durable = first.iter().filter(|a| matches!(a, Some(WriteAnswer::Ack { durable: true }))).count();
                let open = first.iter().filter(|a| a.is_none()).count();
                let enough = acks >= usize::from(w) && durable >= usize::from(dw);
                let possible = acks + open >= usize::from(w) && durable + open >= usize::from(dw);
                prop_assert_eq!(progress == Progress::Succeeded, enough, "succeeded exactly when enough");
                prop_assert_eq!(progress == Progress::Failed, !possible, "failed exactly when impossible");
                let report = write.report();
                prop_assert_eq!((usize::from(report.answered_ok), usize::from(report.durable_ok)), (acks, durable));
            }
        }

        /// A write spanning two lists succeeds exactly when each list has
        /// W acknowledgements, and fails exactly when one cannot get them.
        #[test]
        fn spanning_write_decides_on_each_list(
            w in 1..=3u8,
            shift in 0..4usize,
            events in prop::collection::vec((0..7usize, any::<bool>()), 0..20),
        ) {
            let old: Vec<NodeId> = (0..3).map(node).collect();
            let new: Vec<NodeId> = (shift..shift + 3).map(node).collect();
            let mut write = WriteQuorum::spanning(vec![old.clone(), new.clone()], w, 0);
            let mut acked: Vec<NodeId> = Vec::new();
            let mut failed: Vec<NodeId> = Vec::new();
            let mut decided: Option<Progress> = None;
            for (index, ok) in events {
                let target = node(index);
                let answered = acked.contains(&target) || failed.contains(&target);
                let progress = if ok { write.ack(target.clone(), false) } else { write.fail(target.clone(), "x") };
                let member = old.contains(&target) || new.contains(&target);
                if !answered && member {
                    if ok { acked.push(target) } else { failed.push(target) }
                }
                let count = |list: &[NodeId], of: &[NodeId]| list.iter().filter(|n| of.contains(n)).count();
                let w = usize::from(w);
                let reached = count(&old, &acked) >= w && count(&new, &acked) >= w;
                let lost = old.len() - count(&old, &failed) < w || new.len() - count(&new, &failed) < w;
                let expected = if reached { Progress::Succeeded } else if lost { Progress::Failed } else { Progress::Pending };
                match decided {
                    // Once decided, later answers change nothing.
                    Some(first) => prop_assert_eq!(progress, first),
                    None => {
                        prop_assert_eq!(progress, expected);
                        if progress != Progress::Pending {
                            decided = Some(progress);
                        }
                    }
                }
            }
        }

        /// With hand-offs mixed in, the quorum still never decides wrongly:
        /// it succeeds exactly when W slots (replicas or fallbacks) acked,
        /// and fails only when even the open slots could not get there.
        #[test]
        fn sloppy_write_decides_exactly_on_the_acks_of_replicas_and_fallbacks(
            w in 1..=4u8,
            events in prop::collection::vec((0..8usize, 0..3u8), 0..30),
        ) {
            let replicas = 3;
            let mut write = WriteQuorum::new(nodes(replicas), w, 0);
            let mut next_fallback = replicas;
            for (index, kind) in events {
                let before = write.progress();
                let progress = match kind {
                    0 => write.ack(node(index), false),
                    1 => write.fail(node(index), "refused"),
                    _ => {
                        let taken = write.hand_off(&node(index), node(next_fallback), "down").is_some();
                        if taken {
                            next_fallback += 1;
                        }
                        write.progress()
                    }
                };
                if before != Progress::Pending {
                    prop_assert_eq!(progress, before, "decided outcomes are permanent");
                }
                let report = write.report();
                let acks = report.replicas.iter().filter(|r| matches!(r.state, ReplicaState::Ok { .. })).count();
                let open = report.replicas.iter().filter(|r| r.state == ReplicaState::Pending).count();
                if progress == Progress::Succeeded {
                    prop_assert!(acks >= usize::from(w));
                }
                if progress == Progress::Pending {
                    prop_assert!(acks < usize::from(w) && acks + open >= usize::from(w));
                }
                let owners: Vec<&NodeId> = report.replicas.iter().filter_map(|r| r.stands_in_for.as_ref()).collect();
                prop_assert!(owners.iter().all(|owner| nodes(replicas).contains(owner)), "hints name replicas");
            }
        }

        #[test]
        fn write_succeeds_iff_w_acks_with_dw_durable_in_any_order(
            answers in prop::collection::vec(prop::option::of(write_answer()), 1..=5),
            w in 0..=6u8,
            dw in 0..=6u8,
            order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let mut write = WriteQuorum::new(nodes(answers.len()), w, dw);
            let mut ever_failed = false;
            let mut ever_succeeded = false;
            for index in order.into_iter().filter(|index| *index < answers.len()) {
                if let Some(answer) = answers[index] {
                    let progress = give(&mut write, node(index), answer);
                    ever_failed |= progress == Progress::Failed;
                    ever_succeeded |= progress == Progress::Succeeded;
                }
            }
            let acks = answers.iter().filter(|a| matches!(a, Some(WriteAnswer::Ack { .. }))).count();
            let durable = answers.iter().filter(|a| matches!(a, Some(WriteAnswer::Ack { durable: true }))).count();
            let enough = acks >= usize::from(w) && durable >= usize::from(dw);
            let outcome = write.timed_out();
            prop_assert_eq!(outcome, if enough { Progress::Succeeded } else { Progress::Failed });
            prop_assert!(!ever_failed || !enough, "failed although the answers were enough");
            prop_assert!(!ever_succeeded || enough, "succeeded without enough answers");
        }

        #[test]
        fn read_succeeds_at_r_replies_and_fails_only_once_r_is_out_of_reach(
            replicas in 1..=5usize,
            r in 0..=6u8,
            events in prop::collection::vec((0..=6usize, any::<bool>()), 0..20),
        ) {
            let mut read = ReadQuorum::new(nodes(replicas), r, SIBLINGS);
            let mut first: Vec<Option<bool>> = vec![None; replicas];
            for (index, replies) in events {
                let progress = if replies {
                    read.reply(node(index), VersionedObject::new())
                } else {
                    read.fail(node(index), "down")
                };
                if index < replicas && first[index].is_none() {
                    first[index] = Some(replies);
                }
                let replied = first.iter().filter(|a| **a == Some(true)).count();
                let open = first.iter().filter(|a| a.is_none()).count();
                prop_assert_eq!(progress == Progress::Succeeded, replied >= usize::from(r));
                prop_assert_eq!(progress == Progress::Failed, replied + open < usize::from(r));
            }
        }

        #[test]
        fn read_merged_result_descends_every_reply((mode, replies) in read_replies()) {
            let read = read_all(mode, &replies);
            for reply in &replies {
                prop_assert!(read.merged().descends_in(reply, mode));
            }
        }

        #[test]
        fn replicas_outside_repair_targets_already_descend_the_merged_result_and_targets_do_after_repair(
            (mode, replies) in read_replies(),
        ) {
            let read = read_all(mode, &replies);
            let (merged, targets) = (read.merged(), read.repair_targets());
            for (index, reply) in replies.iter().enumerate() {
                if targets.contains(&node(index)) {
                    prop_assert!(!reply.descends_in(&merged, mode));
                    let mut repaired = reply.clone();
                    repaired.merge(&merged, mode);
                    prop_assert_eq!(&repaired, &merged, "a repaired replica holds exactly the merge");
                } else {
                    prop_assert!(reply.descends_in(&merged, mode));
                }
            }
        }

        #[test]
        fn read_merged_result_does_not_depend_on_reply_order(
            (mode, replies) in read_replies(),
            order in Just((0..5usize).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let in_order = read_all(mode, &replies);
            let mut shuffled = ReadQuorum::new(nodes(replies.len()), 1, mode);
            for index in order.into_iter().filter(|index| *index < replies.len()) {
                shuffled.reply(node(index), replies[index].clone());
            }
            prop_assert_eq!(shuffled.merged(), in_order.merged());
            prop_assert_eq!(shuffled.repair_targets(), in_order.repair_targets());
        }
    }
}
