//! Planning the next ring (paper section 4.9): the ring that the current
//! members (`joining` and `member`, not `leaving` or `removed`) would have,
//! from the committed one by [`Ring::rebalance`] (capacity-weighted,
//! zone-aware, fewest moves), and its moves ([`Ring::diff`]); committing it
//! as a [`Transition`] whose pulls copy the moved partitions; and what a
//! change costs in replicas ([`replicas_lost`]).
//!
//! Pure and deterministic: every node computes the same plan from the same
//! state, so an operator may commit on any node.

use std::collections::BTreeSet;

use serde::Serialize;

use super::model::{ClusterState, Member, MemberStatus, MembershipError};
use crate::ring::{NodeId, PartitionMove, Ring, RingError};
use crate::transition::{Pull, Transition};

/// The next ring and what it moves.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The planned ring (its version is the next epoch, or the committed
    /// one when nothing changes).
    pub ring: Ring,
    /// Partitions that change owner, in partition order.
    pub moves: Vec<PartitionMove>,
}

impl Plan {
    /// Whether committing it would change anything.
    pub fn is_empty(&self, committed: &Ring) -> bool {
        self.ring == *committed
    }
}

/// A partition some of whose replicas would stop being replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaLoss {
    /// The partition.
    pub partition: u32,
    /// The nodes in one of its preference lists under the old ring that
    /// are not in the list of the same length under the new ring.
    pub dropped: Vec<NodeId>,
}

/// The partitions whose preference list of any length in `replication`
/// (the replication factors in use) loses a node from `old` to `new`.
///
/// Empty means the change is *replica-preserving*: every copy of every key
/// stays on a node that still replicates its partition, so nothing needs
/// to move for data to stay reachable, and a write acknowledged by W nodes
/// of the old list meets a read of R nodes of the new list (R + W > n, and
/// the old list is inside the new one). Growing a cluster of fewer than n
/// nodes is always replica-preserving; nearly every other change is not.
pub fn replicas_lost(old: &Ring, new: &Ring, replication: &[usize]) -> Vec<ReplicaLoss> {
    let mut losses = Vec::new();
    for partition in 0..old.partitions() {
        let mut dropped: Vec<NodeId> = Vec::new();
        for &n in replication {
            let kept = new.preference_list(partition, n);
            for node in old.preference_list(partition, n) {
                if !kept.contains(&node) && !dropped.contains(&node) {
                    dropped.push(node);
                }
            }
        }
        if !dropped.is_empty() {
            dropped.sort();
            losses.push(ReplicaLoss { partition, dropped });
        }
    }
    losses
}

impl ClusterState {
    /// The next ring for the current members (`joining` and `member`) and
    /// its moves; the committed ring itself when nothing would change.
    pub fn plan(&self) -> Result<Plan, RingError> {
        let specs = self.members.values().filter(|member| member.status.in_plan()).map(Member::spec);
        let ring = self.ring.rebalance(specs)?;
        let moves = self.ring.diff(&ring)?;
        Ok(Plan { ring, moves })
    }

    /// This state with `plan` committed: its ring installed as the next
    /// epoch, every `joining` node it includes promoted to `member`, and a
    /// new [`Transition`] from the current ring, whose pulls are computed
    /// for the replication `factors` in use. Refused while the current
    /// transition has pulls pending.
    pub fn commit(&self, plan: &Plan, factors: &[u8]) -> Result<ClusterState, MembershipError> {
        if plan.ring.version() <= self.ring.version() {
            return Err(MembershipError::StalePlan { plan: plan.ring.version(), committed: self.ring.version() });
        }
        let pending = self.pending_pulls().len();
        if pending > 0 {
            return Err(MembershipError::TransfersPending { epoch: self.epoch(), pending });
        }
        let mut next = self.clone();
        next.transition = Some(Transition::new(self.ring.clone(), factors));
        for spec in plan.ring.nodes() {
            match next.members.get_mut(&spec.id) {
                None => return Err(MembershipError::UnknownRingNode(spec.id.clone())),
                Some(record) if record.status == MemberStatus::Joining => {
                    record.status = MemberStatus::Member;
                    record.version = record.version.saturating_add(1);
                }
                Some(_) => {}
            }
        }
        next.ring = plan.ring.clone();
        Ok(next)
    }

    /// The move to the committed ring, while known.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Whether `id` has a removed record.
    pub fn is_removed(&self, id: &NodeId) -> bool {
        self.members.get(id).is_some_and(|member| member.status == MemberStatus::Removed)
    }

    /// The pulls of the current transition that are neither done nor
    /// assigned to a removed node.
    pub fn pending_pulls(&self) -> Vec<Pull> {
        match &self.transition {
            None => Vec::new(),
            Some(transition) => transition.pending(&self.ring, |node| self.is_removed(node)),
        }
    }

    /// The partitions with a pull pending: those whose reads still go to
    /// the old ring's replicas and whose writes go to both rings'.
    pub fn unsettled_partitions(&self) -> BTreeSet<u32> {
        self.pending_pulls().into_iter().map(|pull| pull.partition).collect()
    }

    /// Where `partition`'s added replicas copy it from (see
    /// [`Transition::sources`]); empty without a transition.
    pub fn pull_sources(&self, partition: u32) -> Vec<NodeId> {
        match &self.transition {
            None => Vec::new(),
            Some(transition) => transition.sources(partition, |node| self.is_removed(node)),
        }
    }

    /// This state with `pull` recorded as complete; `None` when it is not a
    /// pull of the current transition or is already recorded.
    pub fn with_pull_done(&self, pull: &Pull) -> Option<ClusterState> {
        let transition = self.transition.as_ref()?;
        if transition.done().contains(pull) || !transition.pullers(&self.ring, pull.partition).contains(&pull.node) {
            return None;
        }
        let mut next = self.clone();
        if let Some(transition) = next.transition.as_mut() {
            transition.mark_done(pull.clone());
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::testing::{Q, announcement, history, pick, static_state};
    use super::*;
    use crate::membership::Announcement;

    proptest! {
        #[test]
        fn the_plan_is_deterministic_and_its_moves_lead_to_its_ring(states in history(), a in any::<Index>()) {
            let state = pick(&states, &a);
            let Ok(plan) = state.plan() else { return Ok(()) };
            prop_assert_eq!(&state.clone().plan().unwrap(), &plan);
            let mut owners = state.ring().owners().to_vec();
            for step in &plan.moves {
                prop_assert_eq!(&owners[step.partition as usize], &step.from);
                owners[step.partition as usize] = step.to.clone();
            }
            prop_assert_eq!(owners, plan.ring.owners().to_vec());
            for spec in plan.ring.nodes() {
                prop_assert!(state.member(&spec.id).unwrap().status.in_plan());
            }
        }

        #[test]
        fn growing_a_cluster_below_n_nodes_keeps_every_replica(nodes in 1..3usize, joining in 1..3usize) {
            let mut state = static_state(nodes);
            for index in nodes..nodes + joining {
                state = state.with_joining(&announcement(index), Q).unwrap();
            }
            let plan = state.plan().unwrap();
            let n = nodes + joining;
            prop_assert!(replicas_lost(state.ring(), &plan.ring, &[n, n + 1]).is_empty());
            prop_assert!(replicas_lost(state.ring(), state.ring(), &[1, 2, 3]).is_empty());
        }
    }

    #[test]
    fn a_joining_node_owns_nothing_until_a_commit_promotes_it() {
        let base = static_state(3);
        let joining = Announcement { capacity: 1, ..announcement(7) };
        let joined = base.with_joining(&joining, Q).unwrap();
        let id = NodeId::new("n7");
        assert_eq!(joined.member(&id).unwrap().status, MemberStatus::Joining);
        assert_eq!(joined.ring(), base.ring());
        assert!(joined.rpc_addrs().contains_key(&id), "reachable for gossip before it owns anything");
        let plan = joined.plan().unwrap();
        assert!(plan.moves.iter().all(|step| step.to == id));
        assert_eq!(plan.moves.len(), 4, "Q/(S+1) = 16/4 partitions move, all to the new node");
        let committed = joined.commit(&plan, &[3]).unwrap();
        assert_eq!(committed.member(&id).unwrap().status, MemberStatus::Member);
        assert_eq!(committed.epoch(), 2);
        assert!(committed.plan().unwrap().is_empty(committed.ring()));
        assert_eq!(
            committed.commit(&committed.plan().unwrap(), &[3]).unwrap_err(),
            MembershipError::StalePlan { plan: 2, committed: 2 }
        );
    }

    #[test]
    fn adding_a_fourth_node_at_n3_drops_a_replica_of_the_partitions_it_takes() {
        let base = static_state(3);
        let joined = base.with_joining(&Announcement { capacity: 1, ..announcement(3) }, Q).unwrap();
        let plan = joined.plan().unwrap();
        let losses = replicas_lost(base.ring(), &plan.ring, &[3]);
        assert!(!losses.is_empty());
        assert!(plan.moves.iter().all(|step| losses.iter().any(|loss| loss.partition == step.partition)));
        assert!(losses.iter().all(|loss| !loss.dropped.contains(&NodeId::new("n3"))));
        // At n = 4 every node replicates everything, before and after.
        assert!(replicas_lost(base.ring(), &plan.ring, &[4]).is_empty());
    }

    #[test]
    fn a_commit_waits_for_the_previous_transfers_and_removed_pullers_are_not_waited_for() {
        let joined = static_state(3).with_joining(&Announcement { capacity: 1, ..announcement(3) }, Q).unwrap();
        let committed = joined.commit(&joined.plan().unwrap(), &[3]).unwrap();
        let pending = committed.pending_pulls();
        assert!(!pending.is_empty());
        assert!(pending.iter().all(|pull| pull.node == NodeId::new("n3")), "only the new node gains replicas");
        assert_eq!(
            committed.unsettled_partitions(),
            pending.iter().map(|pull| pull.partition).collect::<BTreeSet<u32>>()
        );
        for pull in &pending {
            let sources = committed.pull_sources(pull.partition);
            assert_eq!(sources.len(), 3);
            assert!(!sources.contains(&pull.node));
        }
        // Another join cannot be committed while data still moves.
        let again = committed.with_joining(&Announcement { capacity: 1, ..announcement(5) }, Q).unwrap();
        let refused = again.commit(&again.plan().unwrap(), &[3]).unwrap_err();
        assert!(matches!(refused, MembershipError::TransfersPending { epoch: 2, .. }), "{refused}");
        assert!(refused.to_string().contains("dynamo admin transfers"), "{refused}");
        // Each completion is recorded once and spreads by merge.
        let first = committed.with_pull_done(&pending[0]).unwrap();
        assert!(first.with_pull_done(&pending[0]).is_none());
        let mut merged = committed.clone();
        assert!(merged.merge_in(&first).unwrap());
        assert_eq!(merged.pending_pulls().len(), pending.len() - 1);
        let not_a_pull = Pull { partition: pending[0].partition, node: NodeId::new("n0") };
        assert!(committed.with_pull_done(&not_a_pull).is_none());
        // Once the new node is removed, nothing is waited for.
        let removed = again.with_status(&NodeId::new("n3"), MemberStatus::Removed).unwrap();
        assert!(removed.pending_pulls().is_empty() && removed.unsettled_partitions().is_empty());
        let settled = pending.iter().fold(again.clone(), |state, pull| state.with_pull_done(pull).unwrap());
        let next = settled.commit(&settled.plan().unwrap(), &[3]).unwrap();
        assert_eq!(next.epoch(), 3);
        assert_eq!(next.transition().unwrap().from_ring(), settled.ring());
        assert_eq!(ClusterState::decode(&next.encode()).unwrap(), next);
    }
}
