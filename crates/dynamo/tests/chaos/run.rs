//! One chaos run, start to verdict: start the cluster, set the buckets'
//! props, run the clients (read-merge-write, counter and data-type set)
//! and the nemesis (which may add a node) for the configured time, heal
//! everything, stop the clients, wait for the partition transfers to end
//! and the replicas of every key of every bucket to converge, read every
//! key with R=N and check the histories against it. Everything after the
//! heal goes through every started node, a joined one included, and
//! follows the ring they route by (the new one, once transfers are done).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_client::GetResult;
use hyper::Method;

use crate::checker::{self, CounterReport, OrSetReport, Report, parse_counter, parse_orset, parse_set, replicas_agree};
use crate::config::ChaosConfig;
use crate::datatypes::{
    self, COUNTER_BUCKET, COUNTER_PROPS, DatatypeHistory, DatatypeStats, SET_BUCKET, SET_PROPS, datatype_path,
};
use crate::firewall::Firewall;
use crate::membership;
use crate::nemesis::{self, NemesisCounts, NemesisKind};
use crate::procs::ChaosCluster;
use crate::rng::Rng;
use crate::workload::{self, BUCKET, ClientSetup, ClientStats, History, key_name};

/// The bucket's props: siblings mode (clients merge), three replicas,
/// quorums of two.
const BUCKET_PROPS: &str = r#"{"n":3,"r":2,"w":2,"dw":0,"conflict":"siblings"}"#;
/// How long setting the props and the final reads may keep failing.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one admin or checker request.
const CHECK_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two convergence polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// An increment answered later than this is listed when its counter ends
/// out of its bounds (a forwarder that retried the next replica waited out
/// an RPC timeout first).
const SLOW_ANSWER: Duration = Duration::from_millis(500);

/// What a run found.
#[derive(Debug)]
pub struct RunResult {
    /// The checker's verdict on the read-merge-write bucket.
    pub report: Report,
    /// Its verdict on the counter bucket.
    pub counters: CounterReport,
    /// Its verdict on the data-type set bucket.
    pub orsets: OrSetReport,
    /// Values that were not sets, tombstones nobody wrote (from the
    /// clients' reads and the final reads).
    pub anomalies: Vec<String>,
    /// Time from the moment everything was healed until every node saw
    /// the partition transfers done.
    pub heal_to_transfers_done: Duration,
    /// The ring epoch every node had then (1 + the commits).
    pub epoch: u64,
    /// Time from the moment everything was healed until every replica of
    /// every key agreed.
    pub heal_to_convergence: Duration,
    /// Time from healing until the last client had stopped (part of
    /// `heal_to_convergence`); `None` if they stopped before the heal.
    pub heal_to_quiet: Option<Duration>,
    /// Faults applied.
    pub nemeses: NemesisCounts,
    /// What the read-merge-write clients saw.
    pub clients: ClientStats,
    /// What the data-type clients saw.
    pub datatype_clients: DatatypeStats,
}

impl RunResult {
    /// No lost or unexpected element, every counter within its bounds, no
    /// lost or unexpected set element, and no anomaly.
    pub fn passed(&self) -> bool {
        self.report.passed() && self.counters.passed() && self.orsets.passed() && self.anomalies.is_empty()
    }
}

/// Everything a run is given.
pub struct RunSpec<'a> {
    /// The settings.
    pub config: &'a ChaosConfig,
    /// The seed of this run (nemesis schedule and client choices).
    pub seed: u64,
    /// The faults the nemesis may use (partition only with a firewall).
    pub kinds: &'a [NemesisKind],
    /// One loopback address per node: the founders', then the spare's.
    pub ips: &'a [Ipv4Addr],
    /// Where data and node logs go.
    pub dir: &'a Path,
    /// The iptables chain, when partitions are possible.
    pub firewall: Option<&'a mut Firewall>,
    /// Set by SIGINT/SIGTERM: end the run early, cleaning up.
    pub interrupted: &'a dyn Fn() -> bool,
}

/// Runs once. `Err` is a failure of the cluster or harness (a node crashed
/// or would not restart, no convergence, a key unreadable), `Ok` carries
/// the checker's verdict.
pub fn run_once(spec: RunSpec<'_>) -> Result<RunResult, String> {
    let RunSpec { config, seed, kinds, ips, dir, mut firewall, interrupted } = spec;
    let started = Instant::now();
    let say = |what: String| println!("chaos: t={:>6.2}s {what}", started.elapsed().as_secs_f64());
    let secret_file = dir.join("cluster.secret");
    std::fs::write(&secret_file, format!("chaos-secret-{seed:016x}"))
        .map_err(|error| format!("writing {}: {error}", secret_file.display()))?;
    let cluster = ChaosCluster::start(dir, ips, config.nodes, &secret_file, &config.log_level)?;
    let spares = &cluster.specs()[config.nodes..];
    say(format!(
        "{} nodes up: {}{}",
        config.nodes,
        cluster.specs()[..config.nodes]
            .iter()
            .map(|spec| format!("{}={}", spec.id, spec.http_addr))
            .collect::<Vec<_>>()
            .join(" "),
        spares.iter().map(|spec| format!("; spare {}={}", spec.id, spec.http_addr)).collect::<String>()
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime: {error}"))?;
    for (bucket, props) in [(BUCKET, BUCKET_PROPS), (COUNTER_BUCKET, COUNTER_PROPS), (SET_BUCKET, SET_PROPS)] {
        runtime.block_on(set_props(&cluster.started_http_addrs(), bucket, props))?;
    }

    let history = Arc::new(History::new(config.keys));
    let stop_clients = Arc::new(AtomicBool::new(false));
    let setup = ClientSetup {
        nodes: Arc::new(cluster.http_addrs()),
        started: cluster.started(),
        keys: config.keys,
        history: history.clone(),
        stop: stop_clients.clone(),
        request_timeout: config.request_timeout,
        server_timeout_ms: config.server_timeout_ms(),
        think: config.think,
    };
    let mut seeds = Rng::new(seed ^ 0xc11e_47c1_1e47);
    let clients: Vec<_> = (0..config.clients)
        .map(|index| runtime.spawn(workload::client(setup.clone(), index, seeds.next_u64())))
        .collect();
    // A stream of their own, so the other clients' seeds stay as they were.
    let datatype_history = Arc::new(DatatypeHistory::new(config.keys, started));
    let mut datatype_seeds = Rng::new(seed ^ 0xd47a_7e9e_c11e);
    let mut datatype_clients: Vec<_> = (0..config.counter_clients)
        .map(|index| {
            let client =
                datatypes::counter_client(setup.clone(), datatype_history.clone(), index, datatype_seeds.next_u64());
            runtime.spawn(client)
        })
        .collect();
    datatype_clients.extend((0..config.set_clients).map(|index| {
        let client = datatypes::set_client(setup.clone(), datatype_history.clone(), index, datatype_seeds.next_u64());
        runtime.spawn(client)
    }));
    say(format!(
        "{} clients on {} keys of {BUCKET}, {} on {COUNTER_BUCKET}, {} on {SET_BUCKET}, for {} s",
        config.clients,
        config.keys,
        config.counter_clients,
        config.set_clients,
        config.workload.as_secs()
    ));

    let episodes = nemesis::schedule(seed, config.nodes, kinds, config.workload);
    let stop_nemesis = AtomicBool::new(false);
    let nemesis_failed = AtomicBool::new(false);
    let nemesis_outcome = std::thread::scope(|scope| {
        let nemesis = scope.spawn(|| {
            let outcome = nemesis::run(&cluster, firewall.as_deref_mut(), &episodes, &stop_nemesis, started);
            nemesis_failed.store(outcome.is_err(), Ordering::SeqCst);
            outcome
        });
        // The workload runs its full time even if the schedule ends early
        // (no nemeses enabled); a failing nemesis ends the run at once.
        let deadline = Instant::now() + config.workload;
        while Instant::now() < deadline && !nemesis_failed.load(Ordering::SeqCst) && !interrupted() {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop_nemesis.store(true, Ordering::SeqCst);
        nemesis.join().unwrap_or_else(|_| Err("the nemesis thread panicked".to_string()))
    });

    let crashed = cluster.check_no_crash();
    let nemeses = match (nemesis_outcome, crashed) {
        (Err(error), _) | (Ok(_), Err(error)) => {
            // The processes die with the cluster; the rules go now.
            if let Some(firewall) = firewall {
                let _ = firewall.heal();
            }
            return Err(error);
        }
        (Ok(counts), Ok(())) => counts,
    };
    if interrupted() {
        return Err("interrupted".to_string());
    }
    // Heal everything, whatever the nemesis left; stop the clients after
    // (the default) or before that.
    let drain = config.request_timeout * 2 + config.think + Duration::from_secs(2);
    let stop_all = || -> Result<(ClientStats, DatatypeStats), String> {
        let stats = stop(&runtime, clients, &stop_clients, drain, ClientStats::add)?;
        Ok((stats, stop(&runtime, datatype_clients, &stop_clients, drain, DatatypeStats::add)?))
    };
    let (healed_at, (client_stats, datatype_stats)) = if config.stop_before_heal {
        let stats = stop_all()?;
        say("workload stopped before healing (DYNAMO_CHAOS_STOP_BEFORE_HEAL=1)".to_string());
        say(heal(&cluster, firewall)?);
        (Instant::now(), stats)
    } else {
        say(heal(&cluster, firewall)?);
        let healed_at = Instant::now();
        let stats = stop_all()?;
        say(format!("workload stopped {:.2} s after healing", healed_at.elapsed().as_secs_f64()));
        (healed_at, stats)
    };
    let heal_to_quiet = (!config.stop_before_heal).then(|| healed_at.elapsed());

    let nodes = cluster.started_http_addrs();
    let epoch =
        runtime.block_on(membership::wait_transfers_done(&nodes, healed_at + config.transfer_timeout, interrupted))?;
    let heal_to_transfers_done = healed_at.elapsed();
    say(format!(
        "all {} nodes at ring epoch {epoch} with no partition transfer pending {:.2} s after healing",
        nodes.len(),
        heal_to_transfers_done.as_secs_f64()
    ));
    let converge_deadline = Instant::now() + config.converge_timeout;
    let keys: Vec<String> = (0..config.keys).map(key_name).collect();
    let datatype_buckets = [COUNTER_BUCKET, SET_BUCKET];
    if config.repair_by_reads {
        runtime.block_on(read_all(&nodes, &keys, converge_deadline))?;
        for bucket in datatype_buckets {
            runtime.block_on(read_all_datatypes(&nodes, bucket, &keys, converge_deadline))?;
        }
        say("one round of R=N reads done (DYNAMO_CHAOS_REPAIR_BY_READS=1)".to_string());
    }
    let every_key: Vec<(&str, String)> = [BUCKET]
        .into_iter()
        .chain(datatype_buckets)
        .flat_map(|bucket| keys.iter().map(move |key| (bucket, key.clone())))
        .collect();
    let replicas = runtime.block_on(wait_converged(&nodes, &every_key, converge_deadline, interrupted))?;
    let heal_to_convergence = healed_at.elapsed();
    say(format!(
        "replicas of all {} keys of {} buckets agree {:.2} s after healing: {}",
        keys.len(),
        1 + datatype_buckets.len(),
        heal_to_convergence.as_secs_f64(),
        replicas.iter().map(|(key, nodes)| format!("{key}=[{}]", nodes.join(","))).collect::<Vec<_>>().join(" ")
    ));

    let finals = runtime.block_on(read_all(&nodes, &keys, Instant::now() + SETUP_TIMEOUT))?;
    let counter_finals =
        runtime.block_on(read_all_datatypes(&nodes, COUNTER_BUCKET, &keys, Instant::now() + SETUP_TIMEOUT))?;
    let set_finals = runtime.block_on(read_all_datatypes(&nodes, SET_BUCKET, &keys, Instant::now() + SETUP_TIMEOUT))?;
    cluster.check_no_crash()?;
    let mut anomalies = history.anomalies();
    anomalies.extend(datatype_history.anomalies());
    let mut final_sets = Vec::with_capacity(finals.len());
    for (key, read) in keys.iter().zip(&finals) {
        let (set, problems) = elements_of(key, read);
        anomalies.extend(problems);
        final_sets.push(set);
    }
    let mut final_counters = Vec::with_capacity(keys.len());
    for (key, (status, body)) in keys.iter().zip(&counter_finals) {
        final_counters.push(parse_counter(*status, body).unwrap_or_else(|why| {
            anomalies.push(format!("{COUNTER_BUCKET}/{key}: the final read returned {why}"));
            0
        }));
    }
    let mut final_orsets = Vec::with_capacity(keys.len());
    for (key, (status, body)) in keys.iter().zip(&set_finals) {
        final_orsets.push(parse_orset(*status, body).map(|(elements, _)| elements).unwrap_or_else(|why| {
            anomalies.push(format!("{SET_BUCKET}/{key}: the final read returned {why}"));
            BTreeSet::new()
        }));
    }
    let report = checker::check(&history.snapshot(), &final_sets);
    let counters = checker::check_counters(&datatype_history.counters(), &final_counters);
    say(format!("{COUNTER_BUCKET}: {}", counters.details()));
    for (index, verdict) in counters.keys.iter().enumerate() {
        for line in datatype_history.explain(index, verdict, SLOW_ANSWER) {
            say(format!("{COUNTER_BUCKET}/{}: {line}", verdict.key));
        }
    }
    let orsets = checker::check_orsets(&datatype_history.sets(), &final_orsets);
    Ok(RunResult {
        report,
        counters,
        orsets,
        anomalies,
        heal_to_transfers_done,
        epoch,
        heal_to_convergence,
        heal_to_quiet,
        nemeses,
        clients: client_stats,
        datatype_clients: datatype_stats,
    })
}

/// Flushes the partition rules, resumes paused nodes and restarts killed
/// ones; says what it did.
fn heal(cluster: &ChaosCluster, firewall: Option<&mut Firewall>) -> Result<String, String> {
    if let Some(firewall) = firewall {
        firewall.heal()?;
    }
    let healed = cluster.heal()?;
    Ok(format!("healed: network whole{}", healed.iter().map(|what| format!(", {what}")).collect::<String>()))
}

/// Tells the clients to stop and waits for each (their requests have
/// deadlines, so `drain` is generous); sums what they saw with `add`.
fn stop<S: Default + Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    clients: Vec<tokio::task::JoinHandle<S>>,
    stop: &AtomicBool,
    drain: Duration,
    add: fn(&mut S, &S),
) -> Result<S, String> {
    stop.store(true, Ordering::SeqCst);
    let mut total = S::default();
    for client in clients {
        let stats = runtime
            .block_on(async { tokio::time::timeout(drain, client).await })
            .map_err(|_| format!("a client did not stop within {drain:?}"))?
            .map_err(|error| format!("a client failed: {error}"))?;
        add(&mut total, &stats);
    }
    Ok(total)
}

/// Sets a bucket's props through any node, retrying while members miss
/// them.
async fn set_props(nodes: &[String], bucket: &str, props: &'static str) -> Result<(), String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut last = String::new();
    for attempt in 0.. {
        if Instant::now() > deadline {
            break;
        }
        let node = &nodes[attempt % nodes.len()];
        let headers = [("content-type", "application/json")];
        match request(node, Method::PUT, &format!("/buckets/{bucket}/props"), &headers, Bytes::from(props)).await {
            Ok((204, _)) => return Ok(()),
            Ok((status, body)) => last = format!("{status}: {}", String::from_utf8_lossy(&body)),
            Err(error) => last = error,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("could not set the props of bucket {bucket}: {last}"))
}

/// Reads every key with `r=all` (R=N), each through the next node in turn,
/// retrying until it succeeds or `deadline`.
async fn read_all(nodes: &[String], keys: &[String], deadline: Instant) -> Result<Vec<GetResult>, String> {
    let query = [("r".to_string(), "all".to_string())];
    let mut results = Vec::with_capacity(keys.len());
    let mut attempt = 0;
    for key in keys {
        let mut last = String::new();
        let result = loop {
            if Instant::now() > deadline {
                return Err(format!("no R=N read of {key} succeeded before the deadline; last error: {last}"));
            }
            let node = &nodes[attempt % nodes.len()];
            attempt += 1;
            let outcome = async {
                let mut connection = dynamo_client::connect(node).await.map_err(|error| error.to_string())?;
                connection.set_timeout(CHECK_REQUEST_TIMEOUT);
                connection.get(BUCKET, key.as_bytes(), &query).await.map_err(|error| error.to_string())
            };
            match outcome.await {
                Ok(result) => break result,
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        results.push(result);
    }
    Ok(results)
}

/// Reads every key of a data-type bucket with `r=all` (R=N), each through
/// the next node in turn, retrying until the answer is 200 or 404 or
/// `deadline`. Returns each key's `(status, body)`.
async fn read_all_datatypes(
    nodes: &[String],
    bucket: &str,
    keys: &[String],
    deadline: Instant,
) -> Result<Vec<(u16, Bytes)>, String> {
    let mut results = Vec::with_capacity(keys.len());
    let mut attempt = 0;
    for key in keys {
        let path = datatype_path(bucket, key, "r=all");
        let mut last = String::new();
        let result = loop {
            if Instant::now() > deadline {
                return Err(format!("no R=N read of {bucket}/{key} succeeded before the deadline; last error: {last}"));
            }
            let node = &nodes[attempt % nodes.len()];
            attempt += 1;
            match request(node, Method::GET, &path, &[], Bytes::new()).await {
                Ok((status @ (200 | 404), body)) => break (status, body),
                Ok((status, body)) => last = format!("{status}: {}", String::from_utf8_lossy(&body)),
                Err(error) => last = error,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        results.push(result);
    }
    Ok(results)
}

/// Polls `GET /admin/replicas` of every `(bucket, key)` until the replicas
/// of each hold identical state (context and versions) or `deadline`.
/// Returns each key's replicas (its preference list), by `bucket/key`.
async fn wait_converged(
    nodes: &[String],
    keys: &[(&str, String)],
    deadline: Instant,
    interrupted: &dyn Fn() -> bool,
) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut replicas = BTreeMap::new();
    let mut pending: Vec<&(&str, String)> = keys.iter().collect();
    let mut why: Vec<String> = Vec::new();
    let mut attempt = 0;
    while !pending.is_empty() {
        if Instant::now() > deadline || interrupted() {
            return Err(format!(
                "{} of {} keys did not converge in time: {}",
                pending.len(),
                keys.len(),
                why.join("; ")
            ));
        }
        why.clear();
        let mut still = Vec::new();
        for entry in pending {
            let (bucket, key) = entry;
            let node = &nodes[attempt % nodes.len()];
            attempt += 1;
            let verdict =
                match request(node, Method::GET, &format!("/admin/replicas/{bucket}/{key}"), &[], Bytes::new()).await {
                    Ok((200, body)) => serde_json::from_slice(&body)
                        .map_err(|error| format!("bad JSON: {error}"))
                        .and_then(|admin| replicas_agree(&admin).map(|()| preference_list(&admin))),
                    Ok((status, body)) => Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
                    Err(error) => Err(error),
                };
            match verdict {
                Ok(list) => {
                    replicas.insert(format!("{bucket}/{key}"), list);
                }
                Err(reason) => {
                    why.push(format!("{bucket}/{key}: {reason}"));
                    still.push(entry);
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
    Ok(replicas)
}

/// The `preference_list` of a `GET /admin/replicas` answer.
fn preference_list(admin: &serde_json::Value) -> Vec<String> {
    admin["preference_list"]
        .as_array()
        .map(|nodes| nodes.iter().map(|node| node.as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

/// One request on a fresh connection: `(status, body)`.
async fn request(
    node: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    send(node, method, path, headers, body, CHECK_REQUEST_TIMEOUT).await
}

/// One request without a body on a fresh connection, answered within
/// `timeout`: `(status, body)`.
pub async fn request_within(node: &str, method: Method, path: &str, timeout: Duration) -> Result<(u16, Bytes), String> {
    send(node, method, path, &[], Bytes::new(), timeout).await
}

async fn send(
    node: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let mut connection = dynamo_client::connect(node).await.map_err(|error| error.to_string())?;
    connection.set_timeout(timeout);
    let response = connection.request(method, path, headers, body).await.map_err(|error| error.to_string())?;
    Ok((response.status, response.body))
}

/// The elements of a final read, and what is wrong with it (tombstones,
/// values that are not sets).
fn elements_of(key: &str, read: &GetResult) -> (BTreeSet<String>, Vec<String>) {
    let siblings = match read {
        GetResult::Found { sibling, .. } => std::slice::from_ref(sibling),
        GetResult::Siblings { siblings, .. } => siblings.as_slice(),
        GetResult::NotFound { .. } => &[],
    };
    let mut elements = BTreeSet::new();
    let mut problems = Vec::new();
    for sibling in siblings {
        if sibling.deleted {
            problems.push(format!("{key}: the final read returned a tombstone, but nothing deletes"));
        } else if let Some(set) = parse_set(&sibling.value) {
            elements.extend(set);
        } else {
            problems.push(format!("{key}: the final read returned a value that is not a set"));
        }
    }
    (elements, problems)
}
