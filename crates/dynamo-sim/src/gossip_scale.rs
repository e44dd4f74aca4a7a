//! Gossip convergence at scale, and what a join moves: a pure simulator
//! (no network, no clock) over the real membership state and merge
//! ([`dynamo_core::membership`]) and the nodes' own peer-selection rule
//! ([`gossip_targets`]).
//!
//! **Convergence** ([`spread`]). `nodes` nodes hold the same state (a static
//! cluster: every node knows every other). At round 0 one node, chosen from
//! the seed, takes a change (it announces a new capacity, as a restarted
//! node does). Then in synchronous rounds every node picks its targets by
//! [`gossip_targets`] (a random member, and every
//! [`dynamo_core::membership::SEED_ROUND_INTERVAL`] rounds a seed, here the
//! first [`SEEDS`] nodes; each node's round counter starts at a random
//! phase, as nodes started at different times have) and runs a push-pull
//! exchange with each: both end
//! with the merge of the states the two held *at the start of the round*
//! (one hop per exchange per round, the pessimistic reading of
//! asynchronous gossip). It reports the rounds until every node holds the
//! same state, how many exchanges carried a whole state (the others cost a
//! digest), and the most exchanges any one node served in a round (the
//! load on the seeds).
//!
//! **Join moves** ([`join_moves`]): the fraction of partitions a plan
//! moves when one equal node joins a cluster of `nodes` (`Ring::new` then
//! [`Ring::rebalance`], the plan's own path), against the ideal
//! `1 / (nodes + 1)`, and the fraction of partitions whose preference list
//! of 3 changes (what a commit's partition transfers copy).
//!
//! `cargo run --release -p dynamo-sim --example gossip_scale` prints the
//! tables recorded in `docs/benchmarks.md`.

use std::sync::Arc;

use dynamo_core::membership::{
    Announcement, ClusterState, SEED_ROUND_INTERVAL, StateDigest, gossip_targets, replicas_lost,
};
use dynamo_core::ring::{NodeId, NodeSpec, Ring};

use crate::rng::SplitMix64;

/// Seeds of the simulated clusters: the first three nodes (a static list
/// makes every node a seed; a cluster built by joins often has one).
pub const SEEDS: usize = 3;
/// Rounds after which a run gives up (it never should).
const MAX_ROUNDS: u32 = 1_000;

/// One convergence run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpreadRun {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Whether seeds were contacted (the rule) or only random members.
    pub with_seeds: bool,
    /// Rounds until every node held the change.
    pub rounds: u32,
    /// Exchanges in all (each is one digest round trip at least).
    pub exchanges: u64,
    /// Exchanges that carried a whole state (the two digests differed).
    pub full_states: u64,
    /// Most exchanges one node took part in during one round.
    pub busiest_node_exchanges: u64,
}

/// A node's state and its digest (shared between nodes holding the same).
#[derive(Clone)]
struct Held {
    state: Arc<ClusterState>,
    digest: StateDigest,
}

impl Held {
    fn new(state: ClusterState) -> Self {
        let digest = state.digest();
        Held { state: Arc::new(state), digest }
    }

    /// The merge of `self` and `other`, reusing `other`'s allocation when
    /// the merge is `other` (with one change spreading, nearly always).
    fn merged_with(&self, other: &Held) -> Held {
        if self.digest == other.digest {
            return self.clone();
        }
        let merged = self.state.merge(&other.state).expect("one cluster");
        if merged == *other.state {
            return other.clone();
        }
        if merged == *self.state {
            return self.clone();
        }
        Held::new(merged)
    }
}

/// The first state of a static cluster of `nodes` equal nodes.
pub fn static_state(nodes: usize) -> ClusterState {
    let partitions = (nodes.max(2) as u32).next_power_of_two().max(256);
    let members: Vec<(NodeSpec, String)> = (0..nodes)
        .map(|index| (NodeSpec::new(node_name(index), 1), format!("10.0.{}.{}:9000", index / 250, index % 250)))
        .collect();
    ClusterState::from_static(partitions, &members).expect("a valid static cluster")
}

fn node_name(index: usize) -> String {
    format!("node{index:04}")
}

/// Rounds until a change taken at one node reaches all `nodes` (see the
/// module documentation), for one `seed`.
pub fn spread(nodes: usize, seed: u64, with_seeds: bool) -> SpreadRun {
    spread_from(&static_state(nodes), seed, with_seeds)
}

/// [`spread`] from a given first state (every node holds it).
pub fn spread_from(start: &ClusterState, seed: u64, with_seeds: bool) -> SpreadRun {
    let nodes = start.members().count();
    let mut rng = SplitMix64::new(seed);
    let initial = Held::new(start.clone());
    let mut held = vec![initial; nodes];
    let phases: Vec<u64> = (0..nodes).map(|_| rng.below(SEED_ROUND_INTERVAL)).collect();
    let origin = rng.index(nodes);
    let id = NodeId::new(node_name(origin));
    let record = start.member(&id).expect("every node has a record");
    let announced = Announcement {
        id: id.clone(),
        rpc_addr: record.rpc_addr.clone(),
        http_addr: Some("10.9.9.9:8080".to_string()),
        capacity: record.capacity + 1,
        zone: record.zone.clone(),
    };
    held[origin] = Held::new(start.with_announcement(&announced).expect("a change"));
    let target = held[origin].digest;
    let seeds = if with_seeds { SEEDS.min(nodes) } else { 0 };
    let mut run = SpreadRun { nodes, with_seeds, rounds: 0, exchanges: 0, full_states: 0, busiest_node_exchanges: 0 };
    while held.iter().any(|node| node.digest != target) {
        assert!(run.rounds < MAX_ROUNDS, "no convergence after {MAX_ROUNDS} rounds");
        let round = u64::from(run.rounds);
        let before = held.clone();
        let mut load = vec![0u64; nodes];
        for node in 0..nodes {
            // The node's peers: every other node, in index order.
            let targets = gossip_targets(round + phases[node], nodes - 1, seeds, rng.next_u64());
            let peer = targets.peer.map(|index| if index >= node { index + 1 } else { index });
            let seed = targets.seed.filter(|seed| *seed != node && Some(*seed) != peer);
            for other in peer.into_iter().chain(seed) {
                run.exchanges += 1;
                load[node] += 1;
                load[other] += 1;
                if before[node].digest != before[other].digest {
                    run.full_states += 1;
                    held[node] = held[node].merged_with(&before[other]);
                    held[other] = held[other].merged_with(&before[node]);
                }
            }
        }
        run.busiest_node_exchanges = run.busiest_node_exchanges.max(load.into_iter().max().unwrap_or(0));
        run.rounds += 1;
    }
    run
}

/// What one join moves.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinMoves {
    /// Nodes before the join.
    pub nodes: usize,
    /// Q.
    pub partitions: u32,
    /// Partitions that changed owner.
    pub moved: usize,
    /// Of those, the ones that went to the new node.
    pub to_newcomer: usize,
    /// Partitions whose preference list of 3 changed.
    pub replica_sets_changed: usize,
}

impl JoinMoves {
    /// Moved partitions as a fraction of the ring.
    pub fn fraction(&self) -> f64 {
        self.moved as f64 / f64::from(self.partitions)
    }

    /// The least any placement could move: the newcomer's fair share.
    pub fn ideal(&self) -> f64 {
        1.0 / (self.nodes + 1) as f64
    }
}

/// The plan's moves when one equal node joins `nodes` equal nodes on a
/// ring of `partitions`.
pub fn join_moves(nodes: usize, partitions: u32) -> JoinMoves {
    let specs = |count: usize| (0..count).map(|index| NodeSpec::new(node_name(index), 1)).collect::<Vec<_>>();
    let old = Ring::new(partitions, specs(nodes)).expect("valid ring");
    let new = old.rebalance(specs(nodes + 1)).expect("valid ring");
    let moves = old.diff(&new).expect("same Q");
    let newcomer = NodeId::new(node_name(nodes));
    let to_newcomer = moves.iter().filter(|step| step.to == newcomer).count();
    let replica_sets_changed = replicas_lost(&old, &new, &[3]).len();
    JoinMoves { nodes, partitions, moved: moves.len(), to_newcomer, replica_sets_changed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reaches_every_node_in_a_few_rounds_and_the_run_replays_from_its_seed() {
        for nodes in [2, 10, 50] {
            for seed in 0..3 {
                let run = spread(nodes, seed, true);
                assert!(run.rounds >= 1 && run.rounds <= 20, "{run:?}");
                assert_eq!(spread(nodes, seed, true), run, "same seed, same run");
                assert!(run.full_states <= run.exchanges);
            }
        }
    }

    #[test]
    fn without_seeds_a_change_still_spreads_like_an_epidemic() {
        let run = spread(30, 11, false);
        assert!(run.rounds >= 1 && run.rounds <= 30, "{run:?}");
        assert!(run.busiest_node_exchanges >= 2, "{run:?}");
    }

    #[test]
    fn a_join_moves_about_one_share_of_the_ring() {
        for partitions in [256, 1024] {
            for nodes in 3..=20 {
                let moves = join_moves(nodes, partitions);
                assert!((moves.fraction() - moves.ideal()).abs() < 1.0 / f64::from(partitions), "{moves:?}");
                assert_eq!(moves.to_newcomer, moves.moved, "every move goes to the new node: {moves:?}");
                assert!(moves.replica_sets_changed > 0, "{moves:?}");
            }
        }
    }
}
