//! The nemesis: a schedule of fault *episodes*, a pure function of the
//! seed (so a failing run's faults can be replayed), and the thread that
//! applies it. An episode applies its faults, holds them, heals exactly
//! them, then leaves the cluster alone for a quiet interval. At most one
//! node is killed and one paused at a time, and a partition always leaves
//! every node running, so the final heal (restart, SIGCONT, flush the
//! rules) is always possible.
//!
//! The first episodes use each enabled kind once, in a seeded order, so
//! even the short form exercises kill, pause and partition; later ones
//! are random, a quarter of them combining a partition with a kill or a
//! pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::firewall::Firewall;
use crate::procs::ChaosCluster;
use crate::rng::Rng;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NemesisKind {
    /// `kill -9` a node, restart it after the hold.
    Kill,
    /// SIGSTOP a node, SIGCONT it after the hold.
    Pause,
    /// Drop traffic between groups of nodes.
    Partition,
}

impl NemesisKind {
    /// Every kind.
    pub const ALL: [NemesisKind; 3] = [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition];

    /// Its name in `DYNAMO_CHAOS_NEMESES` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
        }
    }
}

/// One fault, on node indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` the node; restart it when the episode heals.
    Kill(usize),
    /// SIGSTOP the node; SIGCONT it when the episode heals.
    Pause(usize),
    /// No traffic between nodes of different sides.
    Partition(Vec<Vec<usize>>),
}

impl Fault {
    fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill(_) => NemesisKind::Kill,
            Fault::Pause(_) => NemesisKind::Pause,
            Fault::Partition(_) => NemesisKind::Partition,
        }
    }

    fn describe(&self) -> String {
        let side = |nodes: &Vec<usize>| nodes.iter().map(|node| format!("n{node}")).collect::<Vec<_>>().join(",");
        match self {
            Fault::Kill(node) => format!("kill -9 n{node}"),
            Fault::Pause(node) => format!("SIGSTOP n{node}"),
            Fault::Partition(sides) => {
                format!("partition {}", sides.iter().map(|nodes| format!("[{}]", side(nodes))).collect::<String>())
            }
        }
    }
}

/// Faults applied together, held, then healed together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// The faults.
    pub faults: Vec<Fault>,
    /// How long they last.
    pub hold: Duration,
    /// Fault-free time after healing them.
    pub quiet: Duration,
}

impl Episode {
    /// `kill -9 n2 + partition [n0,n1][n2,n3,n4] for 2.1 s`.
    pub fn describe(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(Fault::describe).collect();
        format!("{} for {:.1} s", faults.join(" + "), self.hold.as_secs_f64())
    }
}

/// Fault durations, in ms: long enough for requests to time out and
/// coordinators to route around, short enough for several episodes in the
/// short form.
const HOLD_MS: (u64, u64) = (1_500, 4_000);
/// Quiet time between episodes, in ms.
const QUIET_MS: (u64, u64) = (500, 2_000);

/// Episodes covering at least `total` for a cluster of `nodes`, using only
/// `kinds`. Empty if `kinds` is.
pub fn schedule(seed: u64, nodes: usize, kinds: &[NemesisKind], total: Duration) -> Vec<Episode> {
    let mut rng = Rng::new(seed);
    let mut episodes = Vec::new();
    if kinds.is_empty() {
        return episodes;
    }
    let mut first = kinds.to_vec();
    rng.shuffle(&mut first);
    let mut covered = Duration::ZERO;
    while covered < total || episodes.len() < first.len() {
        let faults = match first.get(episodes.len()) {
            Some(kind) => vec![single(&mut rng, *kind, nodes)],
            None => random_faults(&mut rng, kinds, nodes),
        };
        let episode = Episode {
            faults,
            hold: rng.millis_between(HOLD_MS.0, HOLD_MS.1),
            quiet: rng.millis_between(QUIET_MS.0, QUIET_MS.1),
        };
        covered += episode.hold + episode.quiet;
        episodes.push(episode);
    }
    episodes
}

fn single(rng: &mut Rng, kind: NemesisKind, nodes: usize) -> Fault {
    match kind {
        NemesisKind::Kill => Fault::Kill(rng.below(nodes)),
        NemesisKind::Pause => Fault::Pause(rng.below(nodes)),
        NemesisKind::Partition => {
            let mut order: Vec<usize> = (0..nodes).collect();
            rng.shuffle(&mut order);
            // Isolate one node, or split off a minority (2 of 5).
            let minority = if rng.chance(1, 2) { 1 } else { (nodes - 1) / 2 };
            let (small, large) = order.split_at(minority);
            let mut sides = vec![small.to_vec(), large.to_vec()];
            for side in &mut sides {
                side.sort_unstable();
            }
            Fault::Partition(sides)
        }
    }
}

fn random_faults(rng: &mut Rng, kinds: &[NemesisKind], nodes: usize) -> Vec<Fault> {
    let kind = kinds[rng.below(kinds.len())];
    let mut faults = vec![single(rng, kind, nodes)];
    let process_kinds: Vec<NemesisKind> =
        kinds.iter().copied().filter(|kind| *kind != NemesisKind::Partition).collect();
    if kind == NemesisKind::Partition && !process_kinds.is_empty() && rng.chance(1, 2) {
        let extra = process_kinds[rng.below(process_kinds.len())];
        faults.push(single(rng, extra, nodes));
    }
    faults
}

/// How many faults of each kind a run applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NemesisCounts {
    /// Kills (each followed by a restart).
    pub kill: u32,
    /// Pauses.
    pub pause: u32,
    /// Partitions.
    pub partition: u32,
}

impl NemesisCounts {
    fn add(&mut self, kind: NemesisKind) {
        match kind {
            NemesisKind::Kill => self.kill += 1,
            NemesisKind::Pause => self.pause += 1,
            NemesisKind::Partition => self.partition += 1,
        }
    }

    /// `kill=2 pause=1 partition=3`.
    pub fn describe(&self) -> String {
        format!("kill={} pause={} partition={}", self.kill, self.pause, self.partition)
    }
}

/// Applies `episodes` until they run out or `stop` is set, healing each
/// episode's faults before the next. Prints every action with the time
/// since `started`. When `stop` comes during an episode, its faults stay in
/// force; on an error (a node that crashed by itself or would not restart,
/// an iptables failure) the nemesis ends at once. Either way the caller
/// heals everything afterwards, which the final heal of a run does anyway.
pub fn run(
    cluster: &ChaosCluster,
    mut firewall: Option<&mut Firewall>,
    episodes: &[Episode],
    stop: &AtomicBool,
    started: Instant,
) -> Result<NemesisCounts, String> {
    let mut counts = NemesisCounts::default();
    let say = |what: String| println!("chaos: t={:>6.2}s nemesis: {what}", started.elapsed().as_secs_f64());
    for episode in episodes {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        say(episode.describe());
        for fault in &episode.faults {
            apply(cluster, firewall.as_deref_mut(), fault)?;
            counts.add(fault.kind());
        }
        hold(cluster, episode.hold, stop)?;
        if stop.load(Ordering::SeqCst) {
            say("stopped; the final heal ends this episode".to_string());
            break;
        }
        for fault in episode.faults.iter().rev() {
            undo(cluster, firewall.as_deref_mut(), fault)?;
        }
        say("healed".to_string());
        hold(cluster, episode.quiet, stop)?;
    }
    Ok(counts)
}

fn apply(cluster: &ChaosCluster, firewall: Option<&mut Firewall>, fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Kill(node) => cluster.kill(*node),
        Fault::Pause(node) => cluster.pause(*node),
        Fault::Partition(sides) => {
            let firewall = firewall.ok_or("a partition was scheduled but partitions are disabled")?;
            let specs = cluster.specs();
            let sides: Vec<Vec<_>> =
                sides.iter().map(|side| side.iter().map(|node| specs[*node].ip).collect()).collect();
            firewall.partition(&sides)
        }
    }
}

fn undo(cluster: &ChaosCluster, firewall: Option<&mut Firewall>, fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Kill(node) => cluster.restart(*node),
        Fault::Pause(node) => cluster.resume(*node),
        Fault::Partition(_) => firewall.map_or(Ok(()), Firewall::heal),
    }
}

/// Sleeps `duration` (less if `stop` is set), watching for nodes that
/// crash by themselves.
fn hold(cluster: &ChaosCluster, duration: Duration, stop: &AtomicBool) -> Result<(), String> {
    let until = Instant::now() + duration;
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        cluster.check_no_crash()?;
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_a_function_of_its_seed_and_covers_the_duration() {
        let total = Duration::from_secs(60);
        let first = schedule(9, 5, &NemesisKind::ALL, total);
        assert_eq!(first, schedule(9, 5, &NemesisKind::ALL, total));
        assert_ne!(first, schedule(10, 5, &NemesisKind::ALL, total));
        let covered: Duration = first.iter().map(|episode| episode.hold + episode.quiet).sum();
        assert!(covered >= total);
    }

    #[test]
    fn the_first_episodes_use_every_enabled_kind_once() {
        for seed in 0..50 {
            let episodes = schedule(seed, 5, &NemesisKind::ALL, Duration::from_secs(1));
            let mut kinds: Vec<&str> = episodes.iter().take(3).map(|episode| episode.faults[0].kind().name()).collect();
            kinds.sort_unstable();
            assert_eq!(kinds, ["kill", "partition", "pause"], "seed {seed}");
        }
        let no_partitions = schedule(1, 5, &[NemesisKind::Kill, NemesisKind::Pause], Duration::from_secs(300));
        assert!(
            no_partitions
                .iter()
                .flat_map(|episode| &episode.faults)
                .all(|fault| fault.kind() != NemesisKind::Partition)
        );
        assert!(schedule(1, 5, &[], Duration::from_secs(300)).is_empty());
    }

    #[test]
    fn partitions_split_every_node_into_exactly_one_side_and_leave_a_majority() {
        for seed in 0..200 {
            for episode in schedule(seed, 5, &NemesisKind::ALL, Duration::from_secs(120)) {
                for fault in &episode.faults {
                    if let Fault::Partition(sides) = fault {
                        let mut all: Vec<usize> = sides.concat();
                        all.sort_unstable();
                        assert_eq!(all, (0..5).collect::<Vec<_>>(), "seed {seed}: {sides:?}");
                        assert!(sides.iter().any(|side| side.len() >= 3), "seed {seed}: {sides:?}");
                    }
                }
                let killed_or_paused =
                    episode.faults.iter().filter(|fault| fault.kind() != NemesisKind::Partition).count();
                assert!(killed_or_paused <= 1, "seed {seed}: {episode:?}");
            }
        }
    }
}
