//! A ring change in progress (paper section 4.9): which nodes must copy
//! which partitions before the new ring alone is trusted, and which of
//! those copies are complete.
//!
//! **Why a transition, not a switch.** A commit changes the owners of some
//! partitions. A node that becomes a replica of a partition (an *added*
//! replica) starts with nothing of it, while the nodes that stop being
//! replicas (the *dropped* ones) may hold the only copies of acknowledged
//! writes. Switching routing at the commit would send reads to nodes that
//! have not seen the data, and writes away from nodes still counted on.
//! Garage's Jepsen runs lost data exactly there, when a network partition
//! coincided with a layout change; its fix, ours too, is to track **both
//! rings at once** until the data has moved:
//! - **reads** of a partition still moving go to its replicas under the old
//!   ring (they hold everything acknowledged so far);
//! - **writes** go to the replicas under both rings and succeed only with W
//!   acknowledgements *in each* list (a node in both counts for both), so
//!   whichever ring a later read uses meets the write;
//! - each added replica **pulls** the partition from every replica of the
//!   old ring that is not removed ([`Transition::sources`]): a write
//!   acknowledged by W old replicas sits on at least one of them, so the
//!   union of their copies holds every acknowledged write. When a list
//!   loses more nodes than it gains (a cluster shrinking below n), every
//!   node of the new list pulls, so no write is left only on dropped nodes
//!   ([`Transition::pullers`]);
//! - when every added replica of a partition has finished its pull, the
//!   partition is *settled*: reads and writes use the new ring alone. When
//!   every partition is settled the transition is over, and only then may
//!   the next commit start another one.
//!
//! A pull is done per (partition, node) and recorded in the gossiped state
//! ([`Transition::mark_done`]), a grow-only set: completions only ever add
//! up, so merging two views of one transition is their union. Pulls whose
//! node was removed are no longer waited for (a dead node pulls nothing; the
//! next plan re-replicates its partitions from the survivors).
//!
//! The added replicas are computed per replication factor in use (the
//! default n and every bucket's n, recorded at the commit): with buckets of
//! n = 3 and n = 5, a node that was the fifth replica of a partition and
//! becomes its third must still pull the n = 3 keys it never held.
//!
//! Pure and deterministic: every node derives the same pulls, sources and
//! settled partitions from the same state.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::props::MAX_N;
use crate::ring::{NodeId, Ring};

/// Most replication factors a transition records (the distinct n of every
/// bucket lies in `1..=MAX_N`).
pub const MAX_FACTORS: usize = MAX_N as usize;

/// One copy an added replica must make.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pull {
    /// The partition.
    pub partition: u32,
    /// The node that copies it (an added replica under the new ring).
    pub node: NodeId,
}

/// The move from one committed ring to the next (see the module
/// documentation). The new ring itself is the state's committed ring; a
/// transition only knows the ring it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The ring committed before the current one.
    from: Ring,
    /// Replication factors in use at the commit: strictly increasing, each
    /// in `1..=MAX_N`, at least one.
    factors: Vec<u8>,
    /// Pulls that completed.
    done: BTreeSet<Pull>,
}

impl Transition {
    /// A transition away from `from`, for data replicated with any of
    /// `factors` (sorted and deduplicated here; out-of-range factors are
    /// clamped into `1..=MAX_N`; none at all means n = 3, the default).
    pub fn new(from: Ring, factors: &[u8]) -> Self {
        let mut factors: Vec<u8> = factors.iter().map(|n| (*n).clamp(1, MAX_N)).collect();
        if factors.is_empty() {
            factors.push(3);
        }
        factors.sort_unstable();
        factors.dedup();
        Transition { from, factors, done: BTreeSet::new() }
    }

    /// Rebuilds a decoded transition; `None` when the factors break their
    /// invariant.
    pub(crate) fn from_parts(from: Ring, factors: Vec<u8>, done: BTreeSet<Pull>) -> Option<Self> {
        let increasing = factors.windows(2).all(|pair| pair[0] < pair[1]);
        let in_range = factors.iter().all(|n| (1..=MAX_N).contains(n));
        (increasing && in_range && !factors.is_empty()).then_some(Transition { from, factors, done })
    }

    /// The ring being left.
    pub fn from_ring(&self) -> &Ring {
        &self.from
    }

    /// The replication factors the pulls were computed for.
    pub fn factors(&self) -> &[u8] {
        &self.factors
    }

    /// The completed pulls.
    pub fn done(&self) -> &BTreeSet<Pull> {
        &self.done
    }

    /// The largest replication factor in use.
    fn widest(&self) -> usize {
        usize::from(self.factors.last().copied().unwrap_or(1))
    }

    /// The nodes that must pull `partition` when moving to `to`. For each
    /// factor n: the nodes in its first n under `to` but not under the old
    /// ring (added); and when fewer are added than dropped (the cluster
    /// shrinks below n), every node of the new list, because a write
    /// acknowledged only by dropped replicas must still end on as many new
    /// ones.
    pub fn pullers(&self, to: &Ring, partition: u32) -> Vec<NodeId> {
        let mut pullers: Vec<NodeId> = Vec::new();
        for &n in &self.factors {
            let old = self.from.preference_list(partition, usize::from(n));
            let new = to.preference_list(partition, usize::from(n));
            let added = new.iter().filter(|node| !old.contains(node)).count();
            let dropped = old.iter().filter(|node| !new.contains(node)).count();
            for node in new {
                if (added < dropped || !old.contains(&node)) && !pullers.contains(&node) {
                    pullers.push(node);
                }
            }
        }
        pullers.sort();
        pullers
    }

    /// Every pull of the transition to `to`, in (partition, node) order.
    pub fn pulls(&self, to: &Ring) -> Vec<Pull> {
        (0..to.partitions())
            .flat_map(|partition| self.pullers(to, partition).into_iter().map(move |node| Pull { partition, node }))
            .collect()
    }

    /// The pulls not yet done whose node `is_removed` does not exclude.
    pub fn pending(&self, to: &Ring, is_removed: impl Fn(&NodeId) -> bool) -> Vec<Pull> {
        self.pulls(to).into_iter().filter(|pull| !is_removed(&pull.node) && !self.done.contains(pull)).collect()
    }

    /// Where a puller copies `partition` from: every replica under the old
    /// ring, for the widest factor, that `is_removed` does not exclude (the
    /// puller itself, when it was one, skips itself). Empty when all of them
    /// were removed (nothing is left to copy).
    pub fn sources(&self, partition: u32, is_removed: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
        self.from.preference_list(partition, self.widest()).into_iter().filter(|node| !is_removed(node)).collect()
    }

    /// Records `pull` as complete; returns whether it was new.
    pub fn mark_done(&mut self, pull: Pull) -> bool {
        self.done.insert(pull)
    }

    /// Which of two transitions to the same ring a merge keeps: the one
    /// from the greater ring (by epoch, then digest), then the greater
    /// factors; `Equal` means the same move, whose completions merge.
    pub(crate) fn precedence(&self, other: &Transition, ring_order: impl Fn(&Ring, &Ring) -> Ordering) -> Ordering {
        ring_order(&self.from, &other.from).then_with(|| self.factors.cmp(&other.factors))
    }

    /// Adds `other`'s completions (the same move); returns whether any was new.
    pub(crate) fn absorb(&mut self, other: &Transition) -> bool {
        let before = self.done.len();
        self.done.extend(other.done.iter().cloned());
        self.done.len() != before
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ring::NodeSpec;

    const Q: u32 = 32;

    fn ring(nodes: &[&str]) -> Ring {
        Ring::new(Q, nodes.iter().map(|id| NodeSpec::new(*id, 1))).unwrap()
    }

    fn grown(from: &Ring, nodes: &[&str]) -> Ring {
        from.rebalance(nodes.iter().map(|id| NodeSpec::new(*id, 1))).unwrap()
    }

    #[test]
    fn a_join_makes_the_new_node_pull_what_it_gains_and_nothing_else() {
        let from = ring(&["a", "b", "c"]);
        let to = grown(&from, &["a", "b", "c", "d"]);
        let transition = Transition::new(from.clone(), &[3]);
        let pulls = transition.pulls(&to);
        assert!(!pulls.is_empty());
        for pull in &pulls {
            let old = from.preference_list(pull.partition, 3);
            let new = to.preference_list(pull.partition, 3);
            assert!(new.contains(&pull.node) && !old.contains(&pull.node), "{pull:?}");
        }
        for partition in 0..Q {
            let gained: Vec<NodeId> = to
                .preference_list(partition, 3)
                .into_iter()
                .filter(|node| !from.preference_list(partition, 3).contains(node))
                .collect();
            assert_eq!(gained, transition.pullers(&to, partition));
            assert_eq!(transition.sources(partition, |_| false), from.preference_list(partition, 3));
        }
    }

    #[test]
    fn removed_nodes_neither_pull_nor_serve() {
        let from = ring(&["a", "b", "c", "d"]);
        let transition = Transition::new(from, &[2]);
        let removed = |node: &NodeId| node.as_str() == "d";
        for partition in 0..Q {
            assert!(!transition.sources(partition, removed).iter().any(|node| node.as_str() == "d"));
        }
        let gone = Transition::new(ring(&["a", "b", "c"]), &[3]);
        let to = grown(gone.from_ring(), &["a", "b", "c", "e"]);
        assert!(gone.pending(&to, |node| node.as_str() == "e").is_empty(), "a removed puller is not waited for");
    }

    #[test]
    fn factors_are_normalised() {
        let transition = Transition::new(ring(&["a"]), &[5, 0, 3, 5, 200]);
        assert_eq!(transition.factors(), &[1, 3, 5, MAX_N]);
        assert_eq!(Transition::new(ring(&["a"]), &[]).factors(), &[3]);
        assert!(Transition::from_parts(ring(&["a"]), vec![3, 3], BTreeSet::new()).is_none());
        assert!(Transition::from_parts(ring(&["a"]), vec![], BTreeSet::new()).is_none());
        assert!(Transition::from_parts(ring(&["a"]), vec![0], BTreeSet::new()).is_none());
    }

    proptest! {
        /// The safety argument of the module documentation, checked: after
        /// every pull, each new replica list holds, for every key, at least
        /// as many nodes with the key's data as any W old replicas did.
        #[test]
        fn after_all_pulls_every_write_acknowledged_by_w_old_replicas_has_w_new_copies(
            nodes in 2..7usize, change in 0..3u8, n in 1..4u8, acked in prop::collection::vec(any::<bool>(), 6),
        ) {
            let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
            let before: Vec<&str> = names.iter().map(String::as_str).collect();
            let from = ring(&before);
            let after: Vec<&str> = match change {
                0 => before.iter().copied().chain(["x"]).collect(),
                1 if nodes > 2 => before[1..].to_vec(),
                _ => before.iter().copied().chain(["x", "y"]).collect(),
            };
            let to = grown(&from, &after);
            let transition = Transition::new(from.clone(), &[n]);
            for partition in 0..Q {
                let old = from.preference_list(partition, usize::from(n));
                // A write acknowledged by the old replicas flagged in `acked`.
                let holders: Vec<&NodeId> =
                    old.iter().zip(&acked).filter(|(_, acked)| **acked).map(|(node, _)| node).collect();
                if holders.is_empty() {
                    continue;
                }
                let pullers = transition.pullers(&to, partition);
                let sources = transition.sources(partition, |_| false);
                prop_assert!(holders.iter().all(|holder| sources.contains(holder)));
                let new = to.preference_list(partition, usize::from(n));
                let copies = new.iter().filter(|node| holders.contains(node) || pullers.contains(node)).count();
                prop_assert!(copies >= holders.len().min(new.len()), "partition {partition}: {copies} copies");
            }
        }
    }
}
