//! The nemesis: a schedule of fault *episodes*, a pure function of the
//! seed (so a failing run's faults can be replayed), and the thread that
//! applies it. An episode applies its faults, holds them, heals exactly
//! them, then leaves the cluster alone for a quiet interval. At most one
//! node is killed and one paused at a time, and a partition always leaves
//! every node running, so the final heal (restart, SIGCONT, flush the
//! rules) is always possible.
//!
//! The first episodes use each enabled kind once, in a seeded order, so
//! even the short form exercises kill, pause, partition and join; later
//! ones are random, a quarter of them combining a partition with a kill or
//! a pause.
//!
//! **Join.** Garage's Jepsen runs lost acknowledged writes when a network
//! partition coincided with a membership change, so the join episode makes
//! them coincide: it cuts the network like a partition episode, with the
//! spare node (index `nodes`, held back by the cluster) on the majority
//! side, starts the spare with `--join` to a majority node and commits the
//! plan through a majority node ([`crate::membership`]); the partition
//! then holds while the partition transfers start. There is one join per
//! run, as the first or second episode, so that the short form has it
//! early and the nemesis keeps faulting one more node (the joiner
//! included) while the transfers run. Without partitions (not root) the
//! spare joins on a whole network.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::firewall::Firewall;
use crate::membership;
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
    /// A spare node joins, during a partition, and the plan is committed.
    Join,
}

impl NemesisKind {
    /// Every kind.
    pub const ALL: [NemesisKind; 4] =
        [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition, NemesisKind::Join];

    /// Its name in `DYNAMO_CHAOS_NEMESES` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Join => "join",
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
    /// Start the spare `node` with `--join` to `seed`, then commit the plan
    /// through `committer`. Never undone: the node stays a member.
    Join {
        /// The spare node.
        node: usize,
        /// The node whose RPC address it joins through.
        seed: usize,
        /// The node that gets `POST /admin/commit`.
        committer: usize,
    },
}

impl Fault {
    fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill(_) => NemesisKind::Kill,
            Fault::Pause(_) => NemesisKind::Pause,
            Fault::Partition(_) => NemesisKind::Partition,
            Fault::Join { .. } => NemesisKind::Join,
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
            Fault::Join { node, seed, committer } => format!("join n{node} through n{seed}, commit on n{committer}"),
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
/// `kinds`. Empty if `kinds` is. With [`NemesisKind::Join`], the join
/// episode starts the spare, node `nodes`, and the episodes after it fault
/// `nodes + 1` nodes.
pub fn schedule(seed: u64, nodes: usize, kinds: &[NemesisKind], total: Duration) -> Vec<Episode> {
    let mut rng = Rng::new(seed);
    let mut episodes = Vec::new();
    if kinds.is_empty() {
        return episodes;
    }
    let repeatable: Vec<NemesisKind> = kinds.iter().copied().filter(|kind| *kind != NemesisKind::Join).collect();
    let mut first = repeatable.clone();
    rng.shuffle(&mut first);
    if kinds.contains(&NemesisKind::Join) {
        // First or second: early enough that the short form has it, with
        // faults and transfers after it.
        let position = rng.below(2).min(first.len());
        first.insert(position, NemesisKind::Join);
    }
    let partitions = kinds.contains(&NemesisKind::Partition);
    let mut members = nodes;
    let mut covered = Duration::ZERO;
    while episodes.len() < first.len() || (covered < total && !repeatable.is_empty()) {
        let faults = match first.get(episodes.len()) {
            Some(NemesisKind::Join) => {
                let faults = join_during_partition(&mut rng, members, partitions);
                members += 1;
                faults
            }
            Some(kind) => vec![single(&mut rng, *kind, members)],
            None => random_faults(&mut rng, &repeatable, members),
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

/// One fault of a kind that can repeat (not a join).
fn single(rng: &mut Rng, kind: NemesisKind, nodes: usize) -> Fault {
    match kind {
        NemesisKind::Kill => Fault::Kill(rng.below(nodes)),
        NemesisKind::Pause => Fault::Pause(rng.below(nodes)),
        NemesisKind::Partition => Fault::Partition(split(rng, nodes).to_vec()),
        NemesisKind::Join => unreachable!("a join is scheduled by join_during_partition"),
    }
}

/// Two sides, `[minority, majority]`, each sorted: one node isolated, or a
/// minority of (nodes - 1) / 2 (2 of 5) split off.
fn split(rng: &mut Rng, nodes: usize) -> [Vec<usize>; 2] {
    let mut order: Vec<usize> = (0..nodes).collect();
    rng.shuffle(&mut order);
    let minority = if rng.chance(1, 2) { 1 } else { (nodes - 1) / 2 };
    let (small, large) = order.split_at(minority);
    let mut sides = [small.to_vec(), large.to_vec()];
    for side in &mut sides {
        side.sort_unstable();
    }
    sides
}

/// The join of the spare (node `members`): a partition with the spare on
/// the majority side, the join through a majority node and the commit on
/// one (the test must be able to reach the joiner through the committer's
/// side). Without partitions, the join alone.
fn join_during_partition(rng: &mut Rng, members: usize, partitions: bool) -> Vec<Fault> {
    let spare = members;
    let mut faults = Vec::new();
    let mut majority: Vec<usize> = (0..members).collect();
    if partitions {
        let [minority, larger] = split(rng, members);
        majority = larger;
        let mut with_spare = majority.clone();
        with_spare.push(spare);
        faults.push(Fault::Partition(vec![minority, with_spare]));
    }
    let seed = majority[rng.below(majority.len())];
    let committer = majority[rng.below(majority.len())];
    faults.push(Fault::Join { node: spare, seed, committer });
    faults
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
    /// Joins (each committed).
    pub join: u32,
}

impl NemesisCounts {
    fn add(&mut self, kind: NemesisKind) {
        match kind {
            NemesisKind::Kill => self.kill += 1,
            NemesisKind::Pause => self.pause += 1,
            NemesisKind::Partition => self.partition += 1,
            NemesisKind::Join => self.join += 1,
        }
    }

    /// `kill=2 pause=1 partition=3 join=1`.
    pub fn describe(&self) -> String {
        format!("kill={} pause={} partition={} join={}", self.kill, self.pause, self.partition, self.join)
    }
}

/// Applies `episodes` until they run out or `stop` is set, healing each
/// episode's faults before the next. Prints every action with the time
/// since `started`. When `stop` comes during an episode, its faults stay in
/// force; on an error (a node that crashed by itself or would not restart,
/// an iptables failure, a join that was not committed in time) the nemesis
/// ends at once. Either way the caller
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
            if let Some(outcome) = apply(cluster, firewall.as_deref_mut(), fault)? {
                say(outcome);
            }
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

/// Applies one fault; what it has to say (a join's outcome), if anything.
fn apply(cluster: &ChaosCluster, firewall: Option<&mut Firewall>, fault: &Fault) -> Result<Option<String>, String> {
    match fault {
        Fault::Kill(node) => cluster.kill(*node).map(|()| None),
        Fault::Pause(node) => cluster.pause(*node).map(|()| None),
        Fault::Partition(sides) => {
            let firewall = firewall.ok_or("a partition was scheduled but partitions are disabled")?;
            let specs = cluster.specs();
            let sides: Vec<Vec<_>> =
                sides.iter().map(|side| side.iter().map(|node| specs[*node].ip).collect()).collect();
            firewall.partition(&sides).map(|()| None)
        }
        Fault::Join { node, seed, committer } => {
            cluster.start_spare(*node, *seed)?;
            membership::commit_join(cluster, *node, *committer).map(Some)
        }
    }
}

fn undo(cluster: &ChaosCluster, firewall: Option<&mut Firewall>, fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Kill(node) => cluster.restart(*node),
        Fault::Pause(node) => cluster.resume(*node),
        Fault::Partition(_) => firewall.map_or(Ok(()), Firewall::heal),
        // A member is not un-joined; the episode's partition heals.
        Fault::Join { .. } => Ok(()),
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

    /// Every kind of `episode`'s faults.
    fn kinds_of(episode: &Episode) -> Vec<NemesisKind> {
        episode.faults.iter().map(Fault::kind).collect()
    }

    #[test]
    fn the_first_episodes_use_every_enabled_kind_once() {
        for seed in 0..50 {
            let episodes = schedule(seed, 5, &NemesisKind::ALL, Duration::from_secs(1));
            let mut kinds: Vec<&str> = episodes
                .iter()
                .take(4)
                .map(|episode| kinds_of(episode).last().copied().expect("a fault").name())
                .collect();
            kinds.sort_unstable();
            assert_eq!(kinds, ["join", "kill", "partition", "pause"], "seed {seed}");
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
    fn one_early_join_happens_during_a_partition_that_puts_the_spare_seed_and_committer_on_the_majority_side() {
        for seed in 0..200 {
            let episodes = schedule(seed, 5, &NemesisKind::ALL, Duration::from_secs(120));
            let joins: Vec<usize> =
                (0..episodes.len()).filter(|index| kinds_of(&episodes[*index]).contains(&NemesisKind::Join)).collect();
            assert!(matches!(joins[..], [0] | [1]), "seed {seed}: one join, first or second: {joins:?}");
            let faults = &episodes[joins[0]].faults;
            let [Fault::Partition(sides), Fault::Join { node: 5, seed: through, committer }] = &faults[..] else {
                panic!("seed {seed}: a partition, then the join of the spare n5: {faults:?}");
            };
            let majority = sides.iter().find(|side| side.contains(&5)).expect("the spare is on a side");
            assert!(majority.len() > 3, "seed {seed}: the spare joins the majority: {sides:?}");
            assert!(majority.contains(through) && majority.contains(committer), "seed {seed}: {faults:?}");
        }
        // Without partitions the spare joins a whole network; join alone
        // is one episode.
        let whole = schedule(3, 5, &[NemesisKind::Kill, NemesisKind::Join], Duration::from_secs(60));
        assert!(whole.iter().flat_map(|episode| &episode.faults).all(|fault| fault.kind() != NemesisKind::Partition));
        assert_eq!(whole.iter().filter(|episode| kinds_of(episode) == [NemesisKind::Join]).count(), 1);
        assert_eq!(schedule(3, 5, &[NemesisKind::Join], Duration::from_secs(60)).len(), 1);
    }

    #[test]
    fn partitions_split_every_node_into_exactly_one_side_and_leave_a_majority() {
        for seed in 0..200 {
            // Five nodes, and six from the join on.
            let mut nodes = 5;
            for episode in schedule(seed, 5, &NemesisKind::ALL, Duration::from_secs(120)) {
                if kinds_of(&episode).contains(&NemesisKind::Join) {
                    nodes = 6;
                }
                for fault in &episode.faults {
                    match fault {
                        Fault::Partition(sides) => {
                            let mut all: Vec<usize> = sides.concat();
                            all.sort_unstable();
                            assert_eq!(all, (0..nodes).collect::<Vec<_>>(), "seed {seed}: {sides:?}");
                            assert!(sides.iter().any(|side| side.len() * 2 > nodes), "seed {seed}: {sides:?}");
                        }
                        Fault::Kill(node) | Fault::Pause(node) => assert!(*node < nodes, "seed {seed}: {fault:?}"),
                        Fault::Join { .. } => {}
                    }
                }
                let killed_or_paused = episode
                    .faults
                    .iter()
                    .filter(|fault| matches!(fault.kind(), NemesisKind::Kill | NemesisKind::Pause))
                    .count();
                assert!(killed_or_paused <= 1, "seed {seed}: {episode:?}");
            }
        }
    }
}
