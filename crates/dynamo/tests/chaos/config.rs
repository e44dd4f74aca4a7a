//! Settings of the chaos test, all from environment variables so that one
//! test serves both the short form (the defaults, run by
//! `cargo test --workspace` in CI) and the long form (`bench/chaos.sh`,
//! e.g. `DYNAMO_CHAOS_RUNS=5 DYNAMO_CHAOS_SECS=120`).

use std::time::Duration;

use crate::nemesis::NemesisKind;

/// Everything a run needs to know; see [`ChaosConfig::from_env`] for the
/// variables and their defaults.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Runs, each on a fresh cluster; the test stops at the first failure.
    pub runs: u32,
    /// How long the workload and the nemesis run, per run.
    pub workload: Duration,
    /// Node processes that found the cluster (each bucket has n=3, so at
    /// least 3); the join nemesis adds a spare.
    pub nodes: usize,
    /// Concurrent read-merge-write clients.
    pub clients: usize,
    /// Concurrent clients of the counter bucket (0: none).
    pub counter_clients: usize,
    /// Concurrent clients of the data-type set bucket (0: none).
    pub set_clients: usize,
    /// Keys per bucket the clients share (few, so that writes collide).
    pub keys: usize,
    /// Seed of the nemesis schedule (and of the clients' choices); run `i`
    /// uses `seed + i`. Printed at start so a run can be replayed.
    pub seed: u64,
    /// Which faults the nemesis may inject.
    pub nemeses: Vec<NemesisKind>,
    /// Do one round of R=N reads of every key after healing, before the
    /// convergence wait, so read repair can bring replicas together. Off by
    /// default: replicas must converge through hinted handoff and
    /// anti-entropy on their own, and the wait measures exactly that.
    pub repair_by_reads: bool,
    /// Stop the clients before the final heal instead of after it, so that
    /// writes stop while the last faults are in force and convergence must
    /// come from the store's own repair (hinted handoff and anti-entropy,
    /// and read repair if `repair_by_reads`) rather than from writes after
    /// the heal, which carry the whole merged state
    /// to every replica.
    pub stop_before_heal: bool,
    /// Fail instead of warning when partitions are impossible (no root, no
    /// iptables).
    pub require_partitions: bool,
    /// Longest wait, after healing, for the partition transfers of a join
    /// to be done on every node.
    pub transfer_timeout: Duration,
    /// Longest wait for replicas to converge once the transfers are done.
    pub converge_timeout: Duration,
    /// Pause of each client between two updates (keeps the two cores from
    /// drowning, so request timeouts come from faults, not from load).
    pub think: Duration,
    /// Client-side deadline of one HTTP request (the server is asked to
    /// answer within `request_timeout - 500 ms`).
    pub request_timeout: Duration,
    /// `--log-level` of the nodes (their logs go to files in the run dir).
    pub log_level: String,
    /// Keep the run directory (data and node logs) even when the run passes.
    pub keep_dir: bool,
}

/// Most nodes, spare included: each needs its own loopback address and
/// two ports.
const MAX_NODES: usize = 32;
/// Most clients and keys: bounds on threads of work and on the checker's
/// output, far above what two cores use well.
const MAX_CLIENTS: usize = 256;
const MAX_KEYS: usize = 1024;

impl ChaosConfig {
    /// Reads the settings. Variables (defaults in brackets):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `DYNAMO_CHAOS_RUNS` [1] | runs, each on a fresh cluster |
    /// | `DYNAMO_CHAOS_SECS` [20] | workload + nemesis seconds per run |
    /// | `DYNAMO_CHAOS_NODES` [5] | founding nodes (≥ 3); `join` adds one |
    /// | `DYNAMO_CHAOS_CLIENTS` [6] | concurrent read-merge-write clients |
    /// | `DYNAMO_CHAOS_COUNTER_CLIENTS` [3] | concurrent clients of the counter bucket |
    /// | `DYNAMO_CHAOS_SET_CLIENTS` [3] | concurrent clients of the data-type set bucket |
    /// | `DYNAMO_CHAOS_KEYS` [4] | keys per bucket |
    /// | `DYNAMO_CHAOS_SEED` [from the clock] | nemesis schedule seed (decimal or 0x-hex) |
    /// | `DYNAMO_CHAOS_NEMESES` [kill,pause,partition,join] | faults to inject |
    /// | `DYNAMO_CHAOS_REPAIR_BY_READS` [0] | one R=N read round before the convergence wait |
    /// | `DYNAMO_CHAOS_STOP_BEFORE_HEAL` [1] | stop the clients before the final heal |
    /// | `DYNAMO_CHAOS_REQUIRE_PARTITIONS` [0] | fail if partitions are impossible |
    /// | `DYNAMO_CHAOS_TRANSFER_SECS` [60] | timeout of the join's transfers after healing |
    /// | `DYNAMO_CHAOS_CONVERGE_SECS` [30] | convergence timeout |
    /// | `DYNAMO_CHAOS_THINK_MS` [5] | client pause between updates |
    /// | `DYNAMO_CHAOS_REQUEST_TIMEOUT_MS` [3000] | client deadline per request |
    /// | `DYNAMO_CHAOS_LOG_LEVEL` [info] | node log level |
    /// | `DYNAMO_CHAOS_KEEP` [0] | keep the run directory after a pass |
    pub fn from_env() -> Result<ChaosConfig, String> {
        let config = ChaosConfig {
            runs: number("DYNAMO_CHAOS_RUNS", 1)?,
            workload: Duration::from_secs(number("DYNAMO_CHAOS_SECS", 20)?),
            nodes: number("DYNAMO_CHAOS_NODES", 5)?,
            clients: number("DYNAMO_CHAOS_CLIENTS", 6)?,
            counter_clients: number("DYNAMO_CHAOS_COUNTER_CLIENTS", 3)?,
            set_clients: number("DYNAMO_CHAOS_SET_CLIENTS", 3)?,
            keys: number("DYNAMO_CHAOS_KEYS", 4)?,
            seed: seed("DYNAMO_CHAOS_SEED")?,
            nemeses: nemeses("DYNAMO_CHAOS_NEMESES")?,
            repair_by_reads: flag("DYNAMO_CHAOS_REPAIR_BY_READS", false)?,
            stop_before_heal: flag("DYNAMO_CHAOS_STOP_BEFORE_HEAL", true)?,
            require_partitions: flag("DYNAMO_CHAOS_REQUIRE_PARTITIONS", false)?,
            transfer_timeout: Duration::from_secs(number("DYNAMO_CHAOS_TRANSFER_SECS", 60)?),
            converge_timeout: Duration::from_secs(number("DYNAMO_CHAOS_CONVERGE_SECS", 30)?),
            think: Duration::from_millis(number("DYNAMO_CHAOS_THINK_MS", 5)?),
            request_timeout: Duration::from_millis(number("DYNAMO_CHAOS_REQUEST_TIMEOUT_MS", 3000)?),
            log_level: std::env::var("DYNAMO_CHAOS_LOG_LEVEL").unwrap_or_else(|_| "info".to_string()),
            keep_dir: flag("DYNAMO_CHAOS_KEEP", false)?,
        };
        if config.runs == 0 {
            return Err("DYNAMO_CHAOS_RUNS must be at least 1".to_string());
        }
        if !(3..MAX_NODES).contains(&config.nodes) {
            return Err(format!("DYNAMO_CHAOS_NODES must be 3..{MAX_NODES} (buckets have n=3; a spare may join)"));
        }
        if !(1..=MAX_CLIENTS).contains(&config.clients) || !(1..=MAX_KEYS).contains(&config.keys) {
            return Err(format!("DYNAMO_CHAOS_CLIENTS must be 1..={MAX_CLIENTS}, DYNAMO_CHAOS_KEYS 1..={MAX_KEYS}"));
        }
        if config.counter_clients > MAX_CLIENTS || config.set_clients > MAX_CLIENTS {
            return Err(format!("DYNAMO_CHAOS_COUNTER_CLIENTS and DYNAMO_CHAOS_SET_CLIENTS must be 0..={MAX_CLIENTS}"));
        }
        if config.request_timeout < Duration::from_millis(1000) {
            return Err("DYNAMO_CHAOS_REQUEST_TIMEOUT_MS must be at least 1000".to_string());
        }
        Ok(config)
    }

    /// The `timeout_ms` the clients ask the server for: half a second
    /// under their own deadline, so the server's 503 arrives first.
    pub fn server_timeout_ms(&self) -> u64 {
        self.request_timeout.as_millis() as u64 - 500
    }
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().map_err(|_| format!("{name}={text:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

fn flag(name: &str, default: bool) -> Result<bool, String> {
    match std::env::var(name).as_deref() {
        Ok("1" | "true" | "yes" | "on") => Ok(true),
        Ok("0" | "false" | "no" | "off") => Ok(false),
        Ok(other) => Err(format!("{name}={other:?}: use 1 or 0")),
        Err(_) => Ok(default),
    }
}

fn seed(name: &str) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.map_err(|_| format!("{name}={text:?} is not a decimal or 0x-hex u64"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            Ok(now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
        }
    }
}

fn nemeses(name: &str) -> Result<Vec<NemesisKind>, String> {
    let Ok(text) = std::env::var(name) else { return Ok(NemesisKind::ALL.to_vec()) };
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim).filter(|word| !word.is_empty()) {
        let kind = NemesisKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == word)
            .ok_or_else(|| format!("{name}: unknown nemesis {word:?}; use kill, pause, partition, join"))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}
