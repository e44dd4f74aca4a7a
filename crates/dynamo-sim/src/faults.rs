//! The fault model: what can go wrong, how often, and the injector that
//! makes it happen at the scheduled simulated times.
//!
//! Each seed first draws a [`FaultProfile`] (which kinds of faults this run
//! has and how rough they are, from calm to stormy), then a schedule of
//! fault *episodes*, each with a start and (for lasting faults) an end:
//! - **partition** of two nodes, either dropping their messages (a black
//!   hole: connections stall and are only noticed by timeouts) or holding
//!   them until the partition heals (TCP retransmitting through an outage);
//! - **isolation** of one node from every other node (clients still reach
//!   it, so it coordinates requests it cannot replicate);
//! - **crash** of a node (power loss: every write it had not synced is
//!   lost), restarted at the episode's end with a fresh actor id; at most
//!   [`MAX_NODES_DOWN`] nodes are down at once;
//! - **clock jump** of a node's wall clock, mostly backwards (an NTP step),
//!   on top of each node's fixed skew;
//! - **slow link** between two nodes (latency up to a second).
//!
//! Throughout the chaos phase, every link also randomly fails with the
//! profile's message-loss rate (turmoil's `fail_rate`: a failed link drops
//! what is in flight and everything sent until it is repaired) and
//! delivers with random latency between 0 and the profile's maximum.
//!
//! At the end of the chaos phase [`FaultInjector::heal`] ends everything:
//! links released, crashed nodes restarted, loss off, latency back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use turmoil::Sim;

use crate::log::{Crash, SharedLog};
use crate::node::SimNode;
use crate::rng::SplitMix64;

/// Most nodes down at the same time (of 5, with N=3: some keys lose their
/// write quorum, none loses all replicas... unless the crashes line up,
/// which the durability rule accounts for).
pub const MAX_NODES_DOWN: usize = 2;

/// Which faults a run has, and how rough they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultProfile {
    /// Partitions and isolations.
    pub partitions: bool,
    /// Crashes and restarts.
    pub crashes: bool,
    /// Clock jumps.
    pub clock_jumps: bool,
    /// Slow links.
    pub slow_links: bool,
    /// Largest per-node clock skew, in milliseconds (each node's skew is
    /// drawn in `-max..=max`).
    pub max_skew_ms: u64,
    /// Chance per message that a healthy link fails, in millionths.
    pub loss_per_million: u32,
    /// Largest message latency, in milliseconds.
    pub max_latency_ms: u64,
    /// Mean time between two fault episodes, in milliseconds.
    pub mean_gap_ms: u64,
}

impl FaultProfile {
    /// Draws a profile.
    pub fn draw(rng: &mut SplitMix64) -> Self {
        Self {
            partitions: rng.percent(75),
            crashes: rng.percent(75),
            clock_jumps: rng.percent(50),
            slow_links: rng.percent(40),
            max_skew_ms: [0, 200, 2_000, 8_000][rng.index(4)],
            loss_per_million: [0, 0, 200, 1_000, 3_000][rng.index(5)],
            max_latency_ms: [2, 10, 40][rng.index(3)],
            mean_gap_ms: [300, 800, 2_000][rng.index(3)],
        }
    }

    /// A run with no faults at all (for tests of the harness itself).
    pub fn calm() -> Self {
        Self {
            partitions: false,
            crashes: false,
            clock_jumps: false,
            slow_links: false,
            max_skew_ms: 0,
            loss_per_million: 0,
            max_latency_ms: 2,
            mean_gap_ms: u64::MAX / 4,
        }
    }
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nodes `a` and `b` cannot talk; `hold`: their messages wait instead
    /// of being dropped.
    Partition {
        /// One node.
        a: usize,
        /// The other.
        b: usize,
        /// Hold instead of drop.
        hold: bool,
    },
    /// `node` cannot talk to any other node.
    Isolate {
        /// The node.
        node: usize,
        /// Hold instead of drop.
        hold: bool,
    },
    /// `node` loses power; it restarts when the episode ends.
    Crash {
        /// The node.
        node: usize,
    },
    /// `node`'s clock steps by `delta_ms` (no end).
    ClockJump {
        /// The node.
        node: usize,
        /// The step, negative for backwards.
        delta_ms: i64,
    },
    /// Messages between `a` and `b` take up to `latency_ms`.
    SlowLink {
        /// One node.
        a: usize,
        /// The other.
        b: usize,
        /// Largest latency.
        latency_ms: u64,
    },
}

/// A fault lasting from `start_ms` to `end_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// When it starts (simulated milliseconds).
    pub start_ms: u64,
    /// When it ends.
    pub end_ms: u64,
    /// What it is.
    pub fault: Fault,
}

/// Draws the episodes of a run whose chaos phase lasts `chaos_ms`.
pub fn schedule(rng: &mut SplitMix64, profile: &FaultProfile, nodes: usize, chaos_ms: u64) -> Vec<Episode> {
    let mut kinds = Vec::new();
    if profile.partitions {
        kinds.extend([0, 0, 0, 1]);
    }
    if profile.crashes {
        kinds.extend([2, 2]);
    }
    if profile.clock_jumps {
        kinds.push(3);
    }
    if profile.slow_links {
        kinds.push(4);
    }
    let mut episodes = Vec::new();
    if kinds.is_empty() || nodes < 2 {
        return episodes;
    }
    let gap_max = profile.mean_gap_ms.saturating_mul(2).min(chaos_ms);
    let mut at_ms = rng.between(100, gap_max.max(100));
    while at_ms < chaos_ms {
        let (a, b) = two_nodes(rng, nodes);
        let fault = match kinds[rng.index(kinds.len())] {
            0 => Fault::Partition { a, b, hold: rng.percent(50) },
            1 => Fault::Isolate { node: a, hold: rng.percent(50) },
            2 => Fault::Crash { node: a },
            3 => Fault::ClockJump { node: a, delta_ms: rng.between(0, 4_000) as i64 - 3_000 },
            _ => Fault::SlowLink { a, b, latency_ms: rng.between(100, 1_000) },
        };
        let end_ms = at_ms + rng.between(100, 4_000);
        episodes.push(Episode { start_ms: at_ms, end_ms, fault });
        at_ms += rng.between(1, gap_max.max(1));
    }
    episodes
}

fn two_nodes(rng: &mut SplitMix64, nodes: usize) -> (usize, usize) {
    let a = rng.index(nodes);
    let b = (a + 1 + rng.index(nodes - 1)) % nodes;
    (a, b)
}

/// Applies a schedule to a running simulation.
pub struct FaultInjector {
    /// Start and end events, by time: `(time, episode, is_end)`.
    events: BTreeSet<(u64, usize, bool)>,
    episodes: Vec<Episode>,
    /// Episodes whose start was applied (an end only undoes those).
    applied: BTreeSet<usize>,
    /// Node pairs currently cut: how many episodes cut them, and whether
    /// the cut holds messages (rather than dropping them).
    cuts: BTreeMap<(usize, usize), (u32, bool)>,
    /// Nodes currently down.
    down: BTreeSet<usize>,
    profile: FaultProfile,
    nodes: Vec<Arc<SimNode>>,
    /// Every host of the simulation (nodes and clients).
    hosts: Vec<String>,
    log: SharedLog,
}

impl FaultInjector {
    /// An injector for `episodes` on `nodes`; `hosts` names every host of
    /// the simulation (nodes and clients).
    pub fn new(
        episodes: Vec<Episode>,
        profile: FaultProfile,
        nodes: Vec<Arc<SimNode>>,
        hosts: Vec<String>,
        log: SharedLog,
    ) -> Self {
        let mut events = BTreeSet::new();
        for (index, episode) in episodes.iter().enumerate() {
            events.insert((episode.start_ms, index, false));
            events.insert((episode.end_ms, index, true));
        }
        Self {
            events,
            episodes,
            applied: BTreeSet::new(),
            cuts: BTreeMap::new(),
            down: BTreeSet::new(),
            profile,
            nodes,
            hosts,
            log,
        }
    }

    /// Applies every event due at or before `now_ms`.
    pub fn apply_due(&mut self, sim: &mut Sim<'_>, now_ms: u64) {
        while let Some(&(at_ms, index, is_end)) = self.events.first() {
            if at_ms > now_ms {
                break;
            }
            self.events.pop_first();
            if is_end {
                if self.applied.remove(&index) {
                    self.end(sim, index, now_ms);
                }
            } else if self.start(sim, index, now_ms) {
                self.applied.insert(index);
            }
        }
    }

    /// Starts episode `index`; false when it does not apply now (the node
    /// is already down, or too many are).
    fn start(&mut self, sim: &mut Sim<'_>, index: usize, now_ms: u64) -> bool {
        let fault = self.episodes[index].fault.clone();
        match fault {
            Fault::Partition { a, b, hold } => self.cut(sim, a, b, hold),
            Fault::Isolate { node, hold } => {
                for other in (0..self.nodes.len()).filter(|&other| other != node) {
                    self.cut(sim, node, other, hold);
                }
            }
            Fault::Crash { node } => {
                if self.down.contains(&node) || self.down.len() >= MAX_NODES_DOWN {
                    return false;
                }
                self.crash(sim, node);
                self.down.insert(node);
                self.log.lock().crashes.push(Crash { node, at_ms: now_ms });
            }
            Fault::ClockJump { node, delta_ms } => self.nodes[node].clock().jump(delta_ms),
            Fault::SlowLink { a, b, latency_ms } => {
                sim.set_link_max_message_latency(self.name(a), self.name(b), Duration::from_millis(latency_ms));
            }
        }
        let mut log = self.log.lock();
        log.counters.faults += 1;
        log.event(now_ms, format!("fault start #{index}: {fault:?}"));
        true
    }

    fn end(&mut self, sim: &mut Sim<'_>, index: usize, now_ms: u64) {
        let fault = self.episodes[index].fault.clone();
        match fault {
            Fault::Partition { a, b, .. } => self.uncut(sim, a, b),
            Fault::Isolate { node, .. } => {
                for other in (0..self.nodes.len()).filter(|&other| other != node) {
                    self.uncut(sim, node, other);
                }
            }
            Fault::Crash { node } => self.restart(sim, node),
            Fault::ClockJump { .. } => return,
            Fault::SlowLink { a, b, .. } => {
                let latency = Duration::from_millis(self.profile.max_latency_ms);
                sim.set_link_max_message_latency(self.name(a), self.name(b), latency);
            }
        }
        self.log.lock().event(now_ms, format!("fault end #{index}"));
    }

    fn cut(&mut self, sim: &mut Sim<'_>, a: usize, b: usize, hold: bool) {
        let (count, held) = self.cuts.entry((a.min(b), a.max(b))).or_insert((0, hold));
        *count += 1;
        if *count == 1 {
            if *held {
                sim.hold(self.name(a), self.name(b));
            } else {
                sim.partition(self.name(a), self.name(b));
            }
        }
    }

    fn uncut(&mut self, sim: &mut Sim<'_>, a: usize, b: usize) {
        let pair = (a.min(b), a.max(b));
        let Some((count, _)) = self.cuts.get_mut(&pair) else { return };
        *count -= 1;
        if *count == 0 {
            self.cuts.remove(&pair);
            // Release also repairs a dropping partition, and delivers what
            // a holding one kept.
            sim.release(self.name(a), self.name(b));
        }
    }

    /// Crashes `node` like a power cut: its process and every unsynced
    /// write vanish, and it sends nothing more.
    ///
    /// The node's links are cut while its runtime is dropped. Without that,
    /// each of its connections would send a FIN as tokio drops its task,
    /// and tokio drops tasks in an order that depends on process-wide task
    /// ids (so on whatever ran before in the process): the FINs, and the
    /// random latencies turmoil draws for them, would come in a different
    /// order in two runs of one seed. Cut, they are dropped unsent (one
    /// draw each when random loss is on, whatever the order). Peers notice
    /// the crash as a real power cut shows: by timeouts, or by a reset when
    /// they write to the restarted host.
    fn crash(&mut self, sim: &mut Sim<'_>, node: usize) {
        let name = self.nodes[node].name.clone();
        let others: Vec<String> = self.hosts.iter().filter(|host| **host != name).cloned().collect();
        for other in &others {
            sim.partition(name.as_str(), other.as_str());
        }
        sim.crash(name.as_str());
        self.nodes[node].crash();
        for other in &others {
            let cut = self
                .nodes
                .iter()
                .position(|machine| machine.name == *other)
                .and_then(|other| self.cuts.get(&(node.min(other), node.max(other))).map(|(_, hold)| *hold));
            match cut {
                // Still partitioned by an episode: restore its kind.
                Some(true) => sim.hold(name.as_str(), other.as_str()),
                Some(false) => {}
                None => sim.repair(name.as_str(), other.as_str()),
            }
        }
    }

    fn restart(&mut self, sim: &mut Sim<'_>, node: usize) {
        if self.down.remove(&node) {
            sim.bounce(self.nodes[node].name.as_str());
        }
    }

    /// Ends every fault: pending episodes are dropped, every link between
    /// `hosts` (nodes and clients) is released and back to normal latency,
    /// random link failures stop, crashed nodes restart.
    pub fn heal(&mut self, sim: &mut Sim<'_>, hosts: &[String], now_ms: u64) {
        self.events.clear();
        self.applied.clear();
        self.cuts.clear();
        sim.set_fail_rate(0.0);
        let latency = Duration::from_millis(self.profile.max_latency_ms);
        for (index, a) in hosts.iter().enumerate() {
            for b in &hosts[index + 1..] {
                sim.release(a.as_str(), b.as_str());
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), latency);
            }
        }
        let down: Vec<usize> = self.down.iter().copied().collect();
        for node in down {
            self.restart(sim, node);
        }
        self.log.lock().event(now_ms, "heal: links released, loss off, crashed nodes restarted");
    }

    fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }
}
