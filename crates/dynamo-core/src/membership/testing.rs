//! Generated cluster histories for the property tests of membership: every
//! state they produce is one that nodes can reach (joins, commits,
//! announcements, status changes, pull completions and merges, in any
//! order), so the laws are proven on what nodes hold, not on arbitrary
//! values.

use proptest::prelude::*;
use proptest::sample::Index;

use super::{Announcement, ClusterState, MemberStatus};
use crate::ring::{NodeId, NodeSpec};

/// The partition count of every generated state.
pub(super) const Q: u32 = 16;

/// What node `index` announces: a distinct address, a capacity of 1 to 3,
/// a zone for every other node.
pub(super) fn announcement(index: usize) -> Announcement {
    Announcement {
        id: NodeId::new(format!("n{index}")),
        rpc_addr: format!("10.0.0.{index}:9000"),
        http_addr: Some(format!("10.0.0.{index}:8000")),
        capacity: 1 + (index % 3) as u32,
        zone: index.is_multiple_of(2).then(|| format!("z{}", index % 4)),
    }
}

/// A cluster founded from a static list of `nodes` nodes.
pub(super) fn static_state(nodes: usize) -> ClusterState {
    let members: Vec<(NodeSpec, String)> = (0..nodes)
        .map(|index| {
            let announced = announcement(index);
            (NodeSpec { id: announced.id, capacity: 1, zone: None }, announced.rpc_addr)
        })
        .collect();
    ClusterState::from_static(Q, &members).expect("valid static cluster")
}

/// One step of a generated history of a cluster (every replica starts
/// from the same static state of two nodes).
#[derive(Clone, Debug)]
enum Step {
    /// Node `node` (0..8) asks replica `at` to join it.
    Join { at: Index, node: usize },
    /// Replica `at` commits its plan.
    Commit { at: Index },
    /// Node `node` announces other fields (a restart with new settings),
    /// at replica `at`.
    Announce { at: Index, node: usize, port: u16 },
    /// An operator moves a member forward, at replica `at`.
    Status { at: Index, node: usize, status: MemberStatus },
    /// Gossip: replica `from`'s state merged into replica `into`.
    Merge { from: Index, into: Index },
    /// A node finishes one of the pending pulls, at replica `at`.
    PullDone { at: Index, pull: Index },
}

fn step() -> impl Strategy<Value = Step> {
    let status = prop_oneof![Just(MemberStatus::Member), Just(MemberStatus::Leaving), Just(MemberStatus::Removed)];
    prop_oneof![
        3 => (any::<Index>(), 0..8usize).prop_map(|(at, node)| Step::Join { at, node }),
        2 => any::<Index>().prop_map(|at| Step::Commit { at }),
        1 => (any::<Index>(), 0..8usize, 1..4u16).prop_map(|(at, node, port)| Step::Announce { at, node, port }),
        1 => (any::<Index>(), 0..8usize, status).prop_map(|(at, node, status)| Step::Status { at, node, status }),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(from, into)| Step::Merge { from, into }),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(at, pull)| Step::PullDone { at, pull }),
    ]
}

/// The replicas' states after `steps`, from `replicas` copies of a
/// two-node static state. Only reachable states: what nodes can produce.
fn replay(replicas: usize, steps: &[Step]) -> Vec<ClusterState> {
    let mut states = vec![static_state(2); replicas];
    for step in steps {
        match step {
            Step::Join { at, node } => {
                let state = &mut states[at.index(replicas)];
                if let Ok(next) = state.with_joining(&announcement(*node), Q) {
                    *state = next;
                }
            }
            Step::Commit { at } => {
                let state = &mut states[at.index(replicas)];
                if let Ok(plan) = state.plan()
                    && let Ok(next) = state.commit(&plan, &[2])
                {
                    *state = next;
                }
            }
            Step::Announce { at, node, port } => {
                let state = &mut states[at.index(replicas)];
                let mut announced = announcement(*node);
                announced.http_addr = Some(format!("10.0.0.{node}:{port}"));
                if let Some(member) = state.member(&announced.id) {
                    announced.rpc_addr = member.rpc_addr.clone();
                }
                if let Some(next) = state.with_announcement(&announced) {
                    *state = next;
                }
            }
            Step::Status { at, node, status } => {
                let state = &mut states[at.index(replicas)];
                if let Some(next) = state.with_status(&NodeId::new(format!("n{node}")), *status) {
                    *state = next;
                }
            }
            Step::Merge { from, into } => {
                let from = states[from.index(replicas)].clone();
                states[into.index(replicas)].merge_in(&from).expect("one cluster");
            }
            Step::PullDone { at, pull } => {
                let state = &mut states[at.index(replicas)];
                let pending = state.pending_pulls();
                if !pending.is_empty() {
                    *state = state.with_pull_done(&pending[pull.index(pending.len())]).expect("a pending pull");
                }
            }
        }
    }
    states
}

/// The states of 1 to 4 replicas after a random history of up to 40 steps.
pub(super) fn history() -> impl Strategy<Value = Vec<ClusterState>> {
    (1..=4usize, prop::collection::vec(step(), 0..40)).prop_map(|(replicas, steps)| replay(replicas, &steps))
}

/// One of `states`.
pub(super) fn pick(states: &[ClusterState], index: &Index) -> ClusterState {
    states[index.index(states.len())].clone()
}
