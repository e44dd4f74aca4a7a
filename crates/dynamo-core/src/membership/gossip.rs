//! Gossip peer choice (paper section 4.8.2): each round a node exchanges
//! its state with one member chosen at random and, every
//! [`SEED_ROUND_INTERVAL`] rounds (or when it knows no other member), also
//! with a seed: nodes introduced to the cluster through different members
//! still meet at the seeds, so the cluster cannot split into logically
//! separate rings. The rule is pure (the randomness is passed in), shared
//! by the node and the convergence simulator.

use super::model::{ClusterState, Member, MemberStatus};
use crate::ring::NodeId;

/// A gossip round includes a seed every this many rounds (and every round
/// while a node knows no other member).
pub const SEED_ROUND_INTERVAL: u64 = 4;

impl ClusterState {
    /// The members other than `local` that gossip may contact: every
    /// record not removed, in id order.
    pub fn gossip_peers(&self, local: &NodeId) -> Vec<&Member> {
        self.members.values().filter(|member| member.id != *local && member.status != MemberStatus::Removed).collect()
    }
}

/// Whom a node gossips with in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipTargets {
    /// Index of the member to exchange with, among the peers given.
    pub peer: Option<usize>,
    /// Index of the seed to exchange with as well, among the seeds given.
    pub seed: Option<usize>,
}

/// The peer-selection rule, shared by the node and the convergence
/// simulator: in round `round`, with `peers` other members and `seeds`
/// seed addresses (this node's own left out), and 64 random bits: one
/// member uniformly at random, and a seed every [`SEED_ROUND_INTERVAL`]
/// rounds or whenever no other member is known.
pub fn gossip_targets(round: u64, peers: usize, seeds: usize, random: u64) -> GossipTargets {
    let peer = (peers > 0).then(|| (random % peers as u64) as usize);
    let seed_due = seeds > 0 && (peers == 0 || round.is_multiple_of(SEED_ROUND_INTERVAL));
    // The high half: independent enough of the low half's choice.
    let seed = seed_due.then(|| ((random >> 32) % seeds as u64) as usize);
    GossipTargets { peer, seed }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn gossip_targets_stay_in_range_and_include_a_seed_every_few_rounds(
            round in any::<u64>(), peers in 0..50usize, seeds in 0..5usize, random in any::<u64>(),
        ) {
            let targets = gossip_targets(round, peers, seeds, random);
            prop_assert_eq!(targets.peer.is_some(), peers > 0);
            prop_assert!(targets.peer.is_none_or(|peer| peer < peers));
            prop_assert!(targets.seed.is_none_or(|seed| seed < seeds));
            let due = seeds > 0 && (peers == 0 || round.is_multiple_of(SEED_ROUND_INTERVAL));
            prop_assert_eq!(targets.seed.is_some(), due);
        }
    }

    #[test]
    fn seeds_are_contacted_every_few_rounds_and_always_when_alone() {
        let rounds_with_seed = (0..100).filter(|round| gossip_targets(*round, 5, 2, 7).seed.is_some()).count();
        assert_eq!(rounds_with_seed, 100 / SEED_ROUND_INTERVAL as usize);
        assert!((0..10).all(|round| gossip_targets(round, 0, 1, 7).seed == Some(0)));
        assert_eq!(gossip_targets(3, 0, 0, 7), GossipTargets { peer: None, seed: None });
    }
}
