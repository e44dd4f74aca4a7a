//! [`SimCluster`]: one simulated run, from a seed to a verdict.
//!
//! A run has three phases, on simulated time:
//! 1. **Chaos** (`chaos_ms`): the clients run their workload while the
//!    fault injector applies the seed's schedule.
//! 2. **Heal** (at `chaos_ms`): every link is released, loss stops, crashed
//!    nodes restart; the clients finish their last operation. The cluster
//!    then settles for `settle_ms` (dead connections time out and are
//!    replaced).
//! 3. **Check**: the checker reads every key with R=N until the replicas
//!    agree (or `max_rounds` pass), then the invariants of
//!    [`crate::check`] are checked against the history in the log.
//!
//! Everything random is drawn from the seed, in a fixed order: the fault
//! profile, the schedule, the clock skews, each client's stream, turmoil's
//! own seed (latency, loss, host order). Nodes take nonces and actor ids
//! from the seed too, so one seed is one run.

use std::cell::Cell;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, UNIX_EPOCH};

use dynamo_core::keys::ObjectKey;
use dynamo_node::cluster::Cluster;
use dynamo_node::config::{EngineKind, MemberSpec, NodeConfig, Settings};
use dynamo_rpc::{ClusterSecret, RpcConfig};
use turmoil::Sim;

use crate::check::{Snapshot, Verdict, check};
use crate::clock::{SIM_EPOCH_MS, SeededNonces};
use crate::datatypes::{DATATYPE_HOST, datatype_clients};
use crate::faults::{Episode, FaultInjector, FaultProfile, schedule};
use crate::log::{Counters, SharedLog};
use crate::node::{COUNTER_BUCKET, LWW_BUCKET, ORSET_BUCKET, RPC_PORT, SimNode, node_index};
use crate::protocol::SimClient;
use crate::rng::{SplitMix64, mix};
use crate::workload::{
    CheckerSetup, ClientSetup, Convergence, KeyKind, Keyspace, OperatorSetup, THINK_MS_MAX, checker, lww_client,
    operator, set_client,
};

/// The shared cluster secret of simulated clusters (and their clients).
const SECRET: &str = "dynamo-simulation-secret";

/// Bucket of the set keys (siblings mode, the default).
pub const SET_BUCKET: &str = "sets";

/// Shape and length of a run. The defaults are what CI runs.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// N of every bucket (R and W default to a majority of it).
    pub n: u8,
    /// Clients of the set workload.
    pub set_clients: usize,
    /// Clients of the LWW workload.
    pub lww_clients: usize,
    /// Keys of the set workload.
    pub set_keys: usize,
    /// Keys each LWW client owns.
    pub lww_keys_per_client: usize,
    /// Clients of the counter workload (issue 12).
    pub counter_clients: usize,
    /// Clients of the data-type set workload (issue 12).
    pub orset_clients: usize,
    /// Keys of the counter workload.
    pub counter_keys: usize,
    /// Keys of the data-type set workload.
    pub orset_keys: usize,
    /// Longest pause between two operations of a data-type client, in
    /// milliseconds (the other clients pause up to
    /// [`crate::workload::THINK_MS_MAX`]). The default keeps what the
    /// data-type workloads add to a run to about a quarter, since CI runs
    /// them in every seed of every simulation test; a soak may ask for
    /// more.
    pub datatype_think_ms_max: u64,
    /// Length of the chaos phase, in simulated milliseconds.
    pub chaos_ms: u64,
    /// Pause between healing and checking.
    pub settle_ms: u64,
    /// Rounds before convergence is declared failed: of R=N reads, or of
    /// waiting without reads (see `convergence`).
    pub max_rounds: u32,
    /// How replicas converge after healing: through R=N reads (read
    /// repair), or through hinted handoff and anti-entropy alone.
    pub convergence: Convergence,
    /// The nodes' default request timeout.
    pub request_timeout_ms: u64,
    /// The clients' timeout per call (above the request timeout, so a
    /// client normally hears the coordinator's verdict).
    pub client_timeout_ms: u64,
    /// Simulated time per simulation step.
    pub tick_ms: u64,
    /// The nodes' anti-entropy interval (0: no scheduled exchanges). Short,
    /// with few partitions, so that a run's few simulated seconds after
    /// healing are enough for a full pass over every partition.
    pub anti_entropy_interval_ms: u64,
    /// Ring partitions (Q).
    pub partitions: u32,
    /// The fault profile; `None`: drawn from the seed.
    pub profile: Option<FaultProfile>,
    /// A membership change during the chaos: at this simulated time one
    /// more node (`node<nodes>`) starts empty and asks `node0` to join, and
    /// from [`COMMIT_DELAY_MS`] later an operator commits the plan through
    /// one node after another until a commit succeeds (at the latest when
    /// the checker starts). Faults hit the new
    /// node too, so partitions and crashes overlap the join and its
    /// transfers (the case Garage's tests found data loss in). `None`: the
    /// membership never changes.
    pub join_at_ms: Option<u64>,
}

/// How long after the new node starts the operator first tries to commit.
pub const COMMIT_DELAY_MS: u64 = 1_500;

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 5,
            n: 3,
            set_clients: 3,
            lww_clients: 1,
            set_keys: 6,
            lww_keys_per_client: 2,
            counter_clients: 1,
            orset_clients: 1,
            counter_keys: 2,
            orset_keys: 2,
            datatype_think_ms_max: 100,
            chaos_ms: 20_000,
            settle_ms: 3_000,
            max_rounds: 8,
            convergence: Convergence::ReadRepair,
            request_timeout_ms: 1_500,
            client_timeout_ms: 4_000,
            tick_ms: 1,
            anti_entropy_interval_ms: 100,
            partitions: 16,
            profile: None,
            join_at_ms: None,
        }
    }
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The profile it drew.
    pub profile: FaultProfile,
    /// Fault episodes scheduled.
    pub episodes: usize,
    /// Hash of the trace (equal for equal seeds: the determinism check).
    pub trace_hash: u64,
    /// Operation counts.
    pub counters: Counters,
    /// The check's findings.
    pub verdict: Verdict,
    /// Rounds of R=N reads the replicas needed to converge.
    pub rounds: u32,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Real time it took.
    pub wall: Duration,
    /// The trace, line by line.
    pub trace: Vec<String>,
}

impl RunReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.verdict.violations.is_empty()
    }

    /// One line: seed, outcome and counts.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} | {} violations, {} writes acked, {} failed, {} data-type updates acked, {} failed, \
             {} reads, {} faults of {} scheduled, {} excused dw=0 losses, \
             converged after {} rounds, {:.1} s simulated in {:.2} s, trace {:016x}",
            self.seed,
            if self.passed() { "ok" } else { "FAILED" },
            self.verdict.violations.len(),
            self.counters.writes_acked,
            self.counters.writes_failed,
            self.counters.updates_acked,
            self.counters.updates_failed,
            self.counters.reads_ok + self.counters.reads_failed,
            self.counters.faults,
            self.episodes,
            self.verdict.excused_losses,
            self.rounds,
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64(),
            self.trace_hash,
        )
    }

    /// How to replay this run.
    pub fn replay_command(&self) -> String {
        format!("DYNAMO_SIM_SEED={} cargo test -p dynamo-sim --test simulation -- --nocapture", self.seed)
    }
}

/// A simulated cluster, ready to run one seed.
pub struct SimCluster {
    seed: u64,
    options: SimOptions,
    profile: FaultProfile,
    episodes: Vec<Episode>,
    skews_ms: Vec<i64>,
    turmoil_seed: u64,
    client_rngs: Vec<SplitMix64>,
}

impl SimCluster {
    /// Draws everything a run of `seed` needs.
    pub fn new(seed: u64, options: SimOptions) -> Self {
        let mut root = SplitMix64::new(seed);
        let mut profile_rng = root.fork();
        let mut schedule_rng = root.fork();
        let mut skew_rng = root.fork();
        let turmoil_seed = root.next_u64();
        let client_rngs = roster(&options).iter().map(|_| root.fork()).collect();
        let profile = options.profile.clone().unwrap_or_else(|| FaultProfile::draw(&mut profile_rng));
        let machines = machine_count(&options);
        let episodes = schedule(&mut schedule_rng, &profile, machines, options.chaos_ms);
        let skews_ms = (0..machines)
            .map(|_| skew_rng.between(0, 2 * profile.max_skew_ms) as i64 - profile.max_skew_ms as i64)
            .collect();
        Self { seed, options, profile, episodes, skews_ms, turmoil_seed, client_rngs }
    }

    /// The fault profile of this run.
    pub fn profile(&self) -> &FaultProfile {
        &self.profile
    }

    /// Runs the simulation and checks the invariants.
    pub fn run(self) -> RunReport {
        install_panic_counter();
        let panics_before = PANICS.with(Cell::get);
        let started = Instant::now();
        let SimCluster { seed, options, profile, episodes, skews_ms, turmoil_seed, mut client_rngs } = self;
        let log = SharedLog::default();
        let configs = node_configs(&options);
        let keys = Arc::new(keyspace(&options));
        let replicas = preference_lists(&configs[0], &keys, options.n);
        // Clients and the checker talk to the founding nodes.
        let addrs: Vec<String> =
            configs[..options.nodes].iter().map(|config| format!("{}:{RPC_PORT}", config.node_id)).collect();

        let mut sim = build_sim(&options, &profile, turmoil_seed);

        let machines: Vec<Arc<SimNode>> = configs
            .into_iter()
            .enumerate()
            .map(|(index, config)| {
                let machine = SimNode::new(index, config, skews_ms[index], seed).witnessing(log.clone());
                match options.join_at_ms {
                    Some(at_ms) if index == options.nodes => Arc::new(machine.starting_at(at_ms)),
                    _ => Arc::new(machine),
                }
            })
            .collect();
        let mut hosts = Vec::new();
        for machine in &machines {
            let software = machine.clone();
            sim.host(machine.name.as_str(), move || software.clone().run());
            hosts.push(machine.name.clone());
        }
        let client_timeout = Duration::from_millis(options.client_timeout_ms);
        // Every client outlives the simulation (see `ClientSetup::client`).
        let mut clients = Vec::new();
        let mut new_client = |name: &str, index: u64| {
            let client = Arc::new(sim_client(name, mix(seed, 1_000 + index), client_timeout));
            clients.push(client.clone());
            client
        };
        let mut client_rngs = client_rngs.drain(..);
        let mut datatype_setups = Vec::new();
        for (number, (kind, id)) in roster(&options).into_iter().enumerate() {
            let name = client_name(kind, id);
            let setup = ClientSetup {
                id,
                client: new_client(&name, number as u64),
                rng: client_rngs.next().expect("one generator per client"),
                nodes: addrs.clone(),
                keys: keys.clone(),
                stop_ms: options.chaos_ms,
                think_ms_max: match kind {
                    KeyKind::Set | KeyKind::Lww => THINK_MS_MAX,
                    KeyKind::Counter | KeyKind::OrSet => options.datatype_think_ms_max,
                },
                log: log.clone(),
            };
            match kind {
                KeyKind::Set => sim.client(name.as_str(), set_client(setup)),
                KeyKind::Lww => sim.client(name.as_str(), lww_client(setup)),
                KeyKind::Counter | KeyKind::OrSet => {
                    datatype_setups.push((kind, setup));
                    continue;
                }
            }
            hosts.push(name);
        }
        if !datatype_setups.is_empty() {
            sim.client(DATATYPE_HOST, datatype_clients(datatype_setups));
            hosts.push(DATATYPE_HOST.to_string());
        }
        if let Some(join_at_ms) = options.join_at_ms {
            sim.client(
                "operator",
                operator(OperatorSetup {
                    client: new_client("operator", 998),
                    nodes: addrs.clone(),
                    start_ms: join_at_ms + COMMIT_DELAY_MS,
                    stop_ms: options.chaos_ms + options.settle_ms,
                    rng: SplitMix64::new(mix(seed, 997)),
                    log: log.clone(),
                }),
            );
            hosts.push("operator".to_string());
        }
        let snapshot = Arc::new(Mutex::new(None));
        sim.client(
            "checker",
            checker(CheckerSetup {
                client: new_client("checker", 999),
                nodes: addrs.clone(),
                machines: machines.clone(),
                keys: keys.clone(),
                replicas: replicas.clone(),
                ring_may_change: options.join_at_ms.is_some(),
                n: options.n,
                start_ms: options.chaos_ms + options.settle_ms,
                max_rounds: options.max_rounds,
                convergence: options.convergence,
                result: snapshot.clone(),
                log: log.clone(),
            }),
        );
        hosts.push("checker".to_string());

        let episode_count = episodes.len();
        let mut injector = FaultInjector::new(episodes, profile.clone(), machines.clone(), hosts.clone(), log.clone());
        let sim_error = drive(&mut sim, &mut injector, &hosts, options.chaos_ms);
        let simulated = sim.elapsed();
        drop(sim);
        drop(clients);

        let snapshot = snapshot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let log = log.lock();
        let mut verdict = match &snapshot {
            Some(snapshot) => check(&log, snapshot, &keys, &replicas_ever(&replicas, snapshot)),
            None => Verdict::default(),
        };
        verdict.violations.extend(log.violations.iter().cloned());
        if let Some(error) = sim_error {
            verdict.violations.push(format!("the simulation stopped: {error}"));
        } else if snapshot.is_none() {
            verdict.violations.push("the checker never finished".to_string());
        }
        let panics = PANICS.with(Cell::get) - panics_before;
        if panics > 0 {
            verdict.violations.push(format!("{panics} task(s) panicked during the run (see the output above)"));
        }
        RunReport {
            seed,
            profile,
            episodes: episode_count,
            trace_hash: log.trace_hash(),
            counters: log.counters,
            verdict,
            rounds: snapshot.as_ref().map_or(0, |snapshot: &Snapshot| snapshot.rounds),
            simulated,
            wall: started.elapsed(),
            trace: log.trace().to_vec(),
        }
    }
}

/// A turmoil simulation shaped by `options` and `profile`: its length (a
/// generous backstop; runs end when the checker does), latency, loss, and
/// seed. Hosts run in a random (seeded) order each step, to explore more
/// interleavings.
fn build_sim<'a>(options: &SimOptions, profile: &FaultProfile, turmoil_seed: u64) -> Sim<'a> {
    let backstop_ms = options.chaos_ms + options.settle_ms + u64::from(options.max_rounds + 2) * 30_000;
    turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(backstop_ms))
        .tick_duration(Duration::from_millis(options.tick_ms))
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::from_millis(profile.max_latency_ms))
        .fail_rate(f64::from(profile.loss_per_million) / 1e6)
        .repair_rate(LINK_REPAIR_RATE)
        .epoch(UNIX_EPOCH + Duration::from_millis(SIM_EPOCH_MS))
        .enable_random_order()
        .rng_seed(turmoil_seed)
        .build()
}

/// Chance that a randomly failed link comes back with each message sent
/// over it (turmoil's `repair_rate`): a failure lasts a few messages.
const LINK_REPAIR_RATE: f64 = 0.2;

/// Steps the simulation until every client is done: faults during the
/// chaos phase, then healing. Returns why the simulation stopped early, if
/// it did (a host failed, or the backstop ran out).
fn drive(sim: &mut Sim<'_>, injector: &mut FaultInjector, hosts: &[String], chaos_ms: u64) -> Option<String> {
    let mut healed = false;
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        if !healed && now_ms >= chaos_ms {
            injector.heal(sim, hosts, now_ms);
            healed = true;
        }
        if !healed {
            injector.apply_due(sim, now_ms);
        }
        match sim.step() {
            Ok(true) => return None,
            Ok(false) => {}
            Err(error) => return Some(error.to_string()),
        }
    }
}

/// Each key's replicas under the first ring and under the last one (the
/// snapshot's): the nodes that may have acknowledged its writes, whose
/// crashes excuse the loss of a `dw = 0` write.
fn replicas_ever(first: &[Vec<usize>], snapshot: &Snapshot) -> Vec<Vec<usize>> {
    first
        .iter()
        .zip(&snapshot.states)
        .map(|(first, last)| {
            let mut nodes = first.clone();
            nodes.extend(last.iter().map(|(node, _)| *node).filter(|node| !first.contains(node)));
            nodes
        })
        .collect()
}

/// Every client of a run, as (the kind of key it drives, its number
/// within its kind), in the order their generators are forked and their
/// RPC clients numbered: the clients of the older workloads first, so
/// their streams do not depend on how many data-type clients there are.
fn roster(options: &SimOptions) -> Vec<(KeyKind, usize)> {
    let counts = [
        (KeyKind::Set, options.set_clients),
        (KeyKind::Lww, options.lww_clients),
        (KeyKind::Counter, options.counter_clients),
        (KeyKind::OrSet, options.orset_clients),
    ];
    counts.into_iter().flat_map(|(kind, count)| (0..count).map(move |id| (kind, id))).collect()
}

/// The name of client `id` of `kind`: its host (but the data-type
/// clients share [`DATATYPE_HOST`]) and its RPC identity.
fn client_name(kind: KeyKind, id: usize) -> String {
    match kind {
        KeyKind::Set => format!("set{id}"),
        KeyKind::Lww => format!("lww{id}"),
        KeyKind::Counter => format!("counter{id}"),
        KeyKind::OrSet => format!("orset{id}"),
    }
}

/// Machines of a run: the founding nodes and the one that joins, if any.
fn machine_count(options: &SimOptions) -> usize {
    options.nodes + usize::from(options.join_at_ms.is_some())
}

/// Runs one seed with `options`.
pub fn run_seed(seed: u64, options: &SimOptions) -> RunReport {
    SimCluster::new(seed, options.clone()).run()
}

/// A client of simulated clusters named `name`, with nonces from `seed`
/// and `timeout` per call.
pub fn sim_client(name: &str, seed: u64, timeout: Duration) -> SimClient {
    let nonces = Arc::new(SeededNonces::new(seed));
    let secret = ClusterSecret::new(SECRET.as_bytes().to_vec()).expect("the constant secret is long enough");
    let config = RpcConfig::new(name.to_string(), secret, nonces).expect("client names are valid");
    SimClient::new(config, timeout)
}

/// The configuration of every node of a cluster shaped by `options`:
/// nodes `node0`, `node1`... with RPC on [`RPC_PORT`], in-memory storage,
/// N = `options.n`, R = W = a majority, DW = 0.
pub fn node_configs(options: &SimOptions) -> Vec<NodeConfig> {
    let members: Vec<MemberSpec> = (0..options.nodes)
        .map(|index| MemberSpec {
            id: format!("node{index}"),
            rpc_addr: format!("node{index}:{RPC_PORT}"),
            capacity: None,
            zone: None,
        })
        .collect();
    let majority = options.n / 2 + 1;
    (0..machine_count(options))
        .map(|index| {
            // The joining node starts as a cluster of itself (reached at
            // its host name) that asks node0 to let it in.
            let founding = index < options.nodes;
            let alone = || {
                vec![MemberSpec {
                    id: format!("node{index}"),
                    rpc_addr: format!("node{index}:{RPC_PORT}"),
                    capacity: None,
                    zone: None,
                }]
            };
            Settings {
                node_id: Some(format!("node{index}")),
                members: Some(if founding { members.clone() } else { alone() }),
                join: (!founding).then(|| format!("node0:{RPC_PORT}")),
                cluster_secret: Some(SECRET.to_string()),
                engine: Some(EngineKind::Memory),
                default_n: Some(options.n),
                default_r: Some(majority),
                default_w: Some(majority),
                default_dw: Some(0),
                request_timeout_ms: Some(options.request_timeout_ms),
                anti_entropy_interval_ms: Some(options.anti_entropy_interval_ms),
                partitions: Some(options.partitions),
                ..Settings::default()
            }
            .resolve()
            .expect("the simulation's node settings are valid")
        })
        .collect()
}

fn keyspace(options: &SimOptions) -> Keyspace {
    let key = |bucket: &str, name: String| ObjectKey::new(bucket, name.as_bytes()).expect("valid simulation key");
    let keys = |bucket: &str, prefix: &str, count: usize| -> Vec<ObjectKey> {
        (0..count).map(|index| key(bucket, format!("{prefix}{index}"))).collect()
    };
    Keyspace {
        set_keys: keys(SET_BUCKET, "k", options.set_keys),
        lww_keys: keys(LWW_BUCKET, "l", options.lww_clients * options.lww_keys_per_client),
        lww_keys_per_client: options.lww_keys_per_client,
        counter_keys: keys(COUNTER_BUCKET, "c", if options.counter_clients > 0 { options.counter_keys } else { 0 }),
        orset_keys: keys(ORSET_BUCKET, "s", if options.orset_clients > 0 { options.orset_keys } else { 0 }),
    }
}

/// Node indexes of each key's preference list (in the order of
/// [`Keyspace::all`]).
fn preference_lists(config: &NodeConfig, keys: &Keyspace, n: u8) -> Vec<Vec<usize>> {
    let cluster = Cluster::from_config(config).expect("the simulation's ring is valid");
    keys.all()
        .into_iter()
        .map(|key| cluster.preference_list(key, n).iter().map(|node| node_index(node.as_str())).collect())
        .collect()
}

thread_local! {
    /// Panics on this thread so far. A simulation runs on one thread, so a
    /// panic in any node task of a run shows up here, even one that tokio
    /// caught and turned into a failed task.
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

/// Counts panics per thread (then reports them as usual).
fn install_panic_counter() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|count| count.set(count.get() + 1));
            previous(info);
        }));
    });
}
