//! Where a request for a partition goes: the committed ring, and, while a
//! ring change is in progress ([`crate::transition`]), the ring being left
//! and the partitions still moving off it (paper sections 4.3 and 4.9).
//!
//! **Why a type of its own.** Two programs must compute exactly the same
//! replica lists from the same cluster state: the node, which coordinates
//! by them (`dynamo-node`'s cluster view), and the partition-aware client
//! (paper section 6.4), which learns the ring from a node's `GET /ring` and
//! sends each request straight to a replica. A client that disagreed with
//! the nodes would read from a node that has not received a partition yet,
//! or miss a replica a write must reach. So the rules live here once, pure,
//! and both sides build a [`Routing`] and ask it.
//!
//! The rules, for a partition `p` and replication factor `n`:
//! - settled (no ring change, or `p` already copied to its new replicas):
//!   reads and writes go to the first `n` nodes of `p` under the committed
//!   ring;
//! - still moving: **reads** go to its first `n` nodes under the ring being
//!   left (they hold every acknowledged write), **writes** to the first `n`
//!   under both rings, and must reach W in each list
//!   ([`Routing::write_lists`]; one list when both are the same).
//!
//! Laws the tests below prove: without a move, `read_list` is the committed
//! ring's preference list and `write_lists` is that one list; with a move,
//! a settled partition behaves as without one, and a moving partition's
//! read list is the first of its write lists.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::ring::{NodeId, Ring};

/// The committed ring and the ring change in progress, if any (see the
/// module documentation). Cheap to share: the committed ring sits behind
/// an `Arc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    /// The committed ring.
    ring: Arc<Ring>,
    /// The ring being left, while some partition still moves off it.
    moving_from: Option<Ring>,
    /// The partitions still moving (a pull pending); empty when
    /// `moving_from` is `None`.
    unsettled: BTreeSet<u32>,
}

impl Routing {
    /// Routing by the committed `ring` alone.
    pub fn settled(ring: Arc<Ring>) -> Self {
        Self { ring, moving_from: None, unsettled: BTreeSet::new() }
    }

    /// Routing by the committed `ring` while `unsettled` partitions still
    /// move off `from`. With no partition unsettled this is
    /// [`Routing::settled`]: the ring being left no longer matters.
    pub fn in_transition(ring: Arc<Ring>, from: Ring, unsettled: BTreeSet<u32>) -> Self {
        if unsettled.is_empty() {
            return Self::settled(ring);
        }
        Self { ring, moving_from: Some(from), unsettled }
    }

    /// The committed ring.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// The ring being left and the partitions still moving off it, while a
    /// ring change is in progress.
    pub fn moving(&self) -> Option<(&Ring, &BTreeSet<u32>)> {
        self.moving_from.as_ref().map(|from| (from, &self.unsettled))
    }

    /// The ring being left, if `partition` is still moving off it.
    pub fn moving_from(&self, partition: u32) -> Option<&Ring> {
        self.moving_from.as_ref().filter(|_| self.unsettled.contains(&partition))
    }

    /// The first `n` nodes of `partition` under the committed ring (its
    /// replicas once any move has settled).
    pub fn preference_list(&self, partition: u32, n: u8) -> Vec<NodeId> {
        self.ring.preference_list(partition, usize::from(n))
    }

    /// Where reads of `partition` go: its first `n` nodes under the ring
    /// being left while it moves, else under the committed ring.
    pub fn read_list(&self, partition: u32, n: u8) -> Vec<NodeId> {
        self.moving_from(partition).unwrap_or(&self.ring).preference_list(partition, usize::from(n))
    }

    /// Where writes of `partition` go: its first `n` nodes under the ring
    /// being left and under the committed ring while it moves (each list
    /// must reach W), else under the committed ring alone.
    pub fn write_lists(&self, partition: u32, n: u8) -> Vec<Vec<NodeId>> {
        let new = self.preference_list(partition, n);
        match self.moving_from(partition) {
            Some(from) => {
                let old = from.preference_list(partition, usize::from(n));
                if old == new { vec![new] } else { vec![old, new] }
            }
            None => vec![new],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::NodeSpec;

    fn nodes(count: usize) -> Vec<NodeSpec> {
        (0..count).map(|index| NodeSpec::new(format!("node{index}"), 1)).collect()
    }

    #[test]
    fn without_a_move_every_list_is_the_committed_preference_list() {
        let ring = Arc::new(Ring::new(64, nodes(4)).expect("ring"));
        let routing = Routing::settled(ring.clone());
        for partition in 0..64 {
            let expected = ring.preference_list(partition, 3);
            assert_eq!(routing.read_list(partition, 3), expected);
            assert_eq!(routing.write_lists(partition, 3), vec![expected]);
        }
        assert!(routing.moving().is_none());
    }

    #[test]
    fn a_moving_partition_reads_from_the_old_ring_and_writes_to_both() {
        let old = Ring::new(64, nodes(3)).expect("old ring");
        let new = Arc::new(old.rebalance(nodes(4)).expect("new ring"));
        let moved: BTreeSet<u32> = old.diff(&new).expect("diff").iter().map(|step| step.partition).collect();
        let routing = Routing::in_transition(new.clone(), old.clone(), moved.clone());
        for partition in 0..64 {
            let reads = routing.read_list(partition, 3);
            let writes = routing.write_lists(partition, 3);
            if moved.contains(&partition) {
                assert_eq!(reads, old.preference_list(partition, 3));
                assert_eq!(writes[0], reads, "the read list is the first write list");
                assert_eq!(writes.last(), Some(&new.preference_list(partition, 3)));
            } else {
                assert_eq!(reads, new.preference_list(partition, 3));
                assert_eq!(writes, vec![reads]);
            }
        }
    }

    #[test]
    fn a_move_with_nothing_unsettled_is_no_move() {
        let old = Ring::new(16, nodes(3)).expect("old ring");
        let new = Arc::new(old.rebalance(nodes(4)).expect("new ring"));
        assert_eq!(Routing::in_transition(new.clone(), old, BTreeSet::new()), Routing::settled(new));
    }
}
