//! The data-type clients: beside the read → merge → write clients of
//! [`crate::workload`], in the same run and under the same nemesis, clients
//! of two data-type buckets (n=3, r=2, w=2 like `chaos`) whose replicas
//! merge concurrent updates themselves. Each request goes to a node chosen
//! at random among the started ones (a spare joins the choice once
//! started), as the other clients' do.
//!
//! - **Counter clients** (bucket [`COUNTER_BUCKET`], datatype `counter`)
//!   send `{"increment":N}` to a random key. Every amount is distinct and
//!   positive: `1000·seq + client` ([`increment_amount`]), so the final
//!   value is bounded by sums of known amounts, and an excess or deficit
//!   equal to one amount names the increment (client, sequence number).
//! - **Set clients** (bucket [`SET_BUCKET`], datatype `set`) mostly send
//!   `{"add":"c<client>-<seq>"}`, an element no one else ever adds; one
//!   time in [`REMOVE_ONE_IN`] they instead read a key from a random node,
//!   pick one element the read returned and send
//!   `{"remove":e,"context":<the read's context>}` to another random node.
//!   An element is thus only removed after a read showed it.
//!
//! Every increment, add and remove is recorded as attempted *before* it is
//! sent, and as acknowledged only on a 2xx; anything else (a timeout, a
//! 503, a connection cut by a kill) leaves it indeterminate. Clients never
//! retry: a retried increment may count twice (see the README's "Counters
//! and sets"). [`crate::checker::check_counters`] and
//! [`crate::checker::check_orsets`] judge the final values.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_client::Connection;
use hyper::Method;

use crate::checker::{
    CounterHistory, CounterOutcome, CounterVerdict, OrSetHistory, describe_amount, increment_amount, parse_orset,
};
use crate::rng::Rng;
use crate::workload::{Client, ClientSetup, key_name};

/// The counter bucket.
pub const COUNTER_BUCKET: &str = "chaos-counter";
/// The data-type set bucket.
pub const SET_BUCKET: &str = "chaos-set";
/// The props of [`COUNTER_BUCKET`].
pub const COUNTER_PROPS: &str = r#"{"n":3,"r":2,"w":2,"dw":0,"datatype":"counter"}"#;
/// The props of [`SET_BUCKET`].
pub const SET_PROPS: &str = r#"{"n":3,"r":2,"w":2,"dw":0,"datatype":"set"}"#;
/// A set client reads and removes instead of adding one time in this many.
pub const REMOVE_ONE_IN: u64 = 5;
/// Most increments [`DatatypeHistory::explain`] lists.
const MAX_SUSPECTS: usize = 30;

/// Everything the data-type clients did, per key.
pub struct DatatypeHistory {
    counters: Mutex<Vec<CounterHistory>>,
    sets: Mutex<Vec<OrSetHistory>>,
    /// Where and when each increment went, by amount (to explain a counter
    /// out of its bounds; the verdict does not use it).
    traces: Mutex<HashMap<i64, IncrementTrace>>,
    /// Reads that returned something nobody wrote.
    anomalies: Mutex<Vec<String>>,
    /// The run's start, for the traces' times.
    start: Instant,
}

/// Where and when one increment went.
#[derive(Clone, Copy, Debug)]
struct IncrementTrace {
    key: usize,
    node: usize,
    sent: Duration,
    /// When the answer came and its status; `None`: no answer.
    answered: Option<(Duration, u16)>,
}

impl DatatypeHistory {
    /// An empty history of `keys` counter keys and `keys` set keys, named
    /// like the other bucket's; trace times count from `start`.
    pub fn new(keys: usize, start: Instant) -> DatatypeHistory {
        DatatypeHistory {
            counters: Mutex::new(
                (0..keys).map(|i| CounterHistory { key: key_name(i), ..Default::default() }).collect(),
            ),
            sets: Mutex::new((0..keys).map(|i| OrSetHistory { key: key_name(i), ..Default::default() }).collect()),
            traces: Mutex::new(HashMap::new()),
            anomalies: Mutex::new(Vec::new()),
            start,
        }
    }

    /// For a counter key out of its bounds, where and when its likely
    /// culprits went: the increments whose amount is the excess or deficit,
    /// and those answered late (over `slow`), not 2xx, or not at all (a
    /// forwarder's retry or an apply nobody confirmed hides among them).
    /// Empty for a key within its bounds.
    pub fn explain(&self, key: usize, verdict: &CounterVerdict, slow: Duration) -> Vec<String> {
        if verdict.outcome == CounterOutcome::Within {
            return Vec::new();
        }
        let traces = lock(&self.traces);
        let suspect = |amount: &i64, trace: &IncrementTrace| {
            let late = |(at, status): (Duration, u16)| at - trace.sent > slow || !(200..300).contains(&status);
            trace.key == key && (verdict.culprits.contains(amount) || trace.answered.is_none_or(late))
        };
        let mut suspects: Vec<(i64, IncrementTrace)> = traces
            .iter()
            .filter(|(amount, trace)| suspect(amount, trace))
            .map(|(amount, trace)| (*amount, *trace))
            .collect();
        suspects.sort_by_key(|(_, trace)| trace.sent);
        let mut lines: Vec<String> = suspects
            .iter()
            .take(MAX_SUSPECTS)
            .map(|(amount, trace)| {
                let answer = match trace.answered {
                    Some((at, status)) => format!("answered {status} at t={:.2}s", at.as_secs_f64()),
                    None => "no answer".to_string(),
                };
                let culprit = if verdict.culprits.contains(amount) { " <- its amount is the difference" } else { "" };
                format!(
                    "{} sent at t={:.2}s to node{}, {answer}{culprit}",
                    describe_amount(*amount),
                    trace.sent.as_secs_f64(),
                    trace.node
                )
            })
            .collect();
        if suspects.len() > MAX_SUSPECTS {
            lines.push(format!("... {} more", suspects.len() - MAX_SUSPECTS));
        }
        lines
    }

    /// A copy of every counter key's history.
    pub fn counters(&self) -> Vec<CounterHistory> {
        lock(&self.counters).clone()
    }

    /// A copy of every set key's history.
    pub fn sets(&self) -> Vec<OrSetHistory> {
        lock(&self.sets).clone()
    }

    /// Anomalies seen by the clients.
    pub fn anomalies(&self) -> Vec<String> {
        lock(&self.anomalies).clone()
    }

    fn anomaly(&self, what: String) {
        lock(&self.anomalies).push(what);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the data-type clients saw (for the summary).
#[derive(Clone, Copy, Debug, Default)]
pub struct DatatypeStats {
    /// Increments acknowledged.
    pub increments_ok: u64,
    /// Increments sent and not acknowledged.
    pub increments_failed: u64,
    /// Adds acknowledged.
    pub adds_ok: u64,
    /// Adds sent and not acknowledged.
    pub adds_failed: u64,
    /// Removes acknowledged.
    pub removes_ok: u64,
    /// Removes answered 412 (the context never saw the element).
    pub removes_refused: u64,
    /// Removes otherwise not acknowledged.
    pub removes_failed: u64,
    /// Set reads answered (200 or 404).
    pub reads_ok: u64,
    /// Set reads that failed.
    pub reads_failed: u64,
}

impl DatatypeStats {
    /// Adds another client's counts.
    pub fn add(&mut self, other: &DatatypeStats) {
        self.increments_ok += other.increments_ok;
        self.increments_failed += other.increments_failed;
        self.adds_ok += other.adds_ok;
        self.adds_failed += other.adds_failed;
        self.removes_ok += other.removes_ok;
        self.removes_refused += other.removes_refused;
        self.removes_failed += other.removes_failed;
        self.reads_ok += other.reads_ok;
        self.reads_failed += other.reads_failed;
    }
}

/// `/buckets/{bucket}/datatypes/{key}?{query}` (bucket and keys need no
/// escaping).
pub fn datatype_path(bucket: &str, key: &str, query: &str) -> String {
    format!("/buckets/{bucket}/datatypes/{key}?{query}")
}

/// How an update went.
enum Sent {
    /// 2xx (which).
    Acknowledged(u16),
    /// Another status (the connection is kept).
    Status(u16),
    /// No answer (timeout, connection lost): the connection is dropped.
    NoAnswer,
}

/// Sends one JSON operation and keeps the connection if it is still in
/// sync (an answer came).
async fn post(
    client: &mut Client<DatatypeStats>,
    node: usize,
    mut connection: Connection,
    path: &str,
    op: String,
) -> Sent {
    let headers = [("content-type", "application/json")];
    match connection.request(Method::POST, path, &headers, Bytes::from(op)).await {
        Ok(response) => {
            client.connections.insert(node, connection);
            if (200..300).contains(&response.status) {
                Sent::Acknowledged(response.status)
            } else {
                Sent::Status(response.status)
            }
        }
        Err(_) => Sent::NoAnswer,
    }
}

fn new_client(seed: u64) -> Client<DatatypeStats> {
    Client { rng: Rng::new(seed), stats: DatatypeStats::default(), connections: HashMap::new() }
}

/// One counter client until `setup.stop` (see the module docs).
pub async fn counter_client(
    setup: ClientSetup,
    history: Arc<DatatypeHistory>,
    index: usize,
    seed: u64,
) -> DatatypeStats {
    let mut client = new_client(seed);
    let query = format!("timeout_ms={}", setup.server_timeout_ms);
    let failure_pause = setup.think.max(Duration::from_millis(20));
    let mut sequence = 0u64;
    while !setup.stop.load(Ordering::SeqCst) {
        let key = client.rng.below(setup.keys);
        let node = client.rng.below(setup.started());
        let Some(connection) = client.connection(&setup, node).await else {
            tokio::time::sleep(failure_pause).await;
            continue;
        };
        sequence += 1;
        let amount = increment_amount(index, sequence);
        lock(&history.counters)[key].attempted.insert(amount);
        let trace = IncrementTrace { key, node, sent: history.start.elapsed(), answered: None };
        lock(&history.traces).insert(amount, trace);
        let path = datatype_path(COUNTER_BUCKET, &key_name(key), &query);
        let sent =
            post(&mut client, node, connection, &path, serde_json::json!({ "increment": amount }).to_string()).await;
        if let Sent::Acknowledged(status) | Sent::Status(status) = sent
            && let Some(trace) = lock(&history.traces).get_mut(&amount)
        {
            trace.answered = Some((history.start.elapsed(), status));
        }
        match sent {
            Sent::Acknowledged(_) => {
                lock(&history.counters)[key].acknowledged.insert(amount);
                client.stats.increments_ok += 1;
                tokio::time::sleep(setup.think).await;
            }
            Sent::Status(_) | Sent::NoAnswer => {
                client.stats.increments_failed += 1;
                tokio::time::sleep(failure_pause).await;
            }
        }
    }
    client.stats
}

/// One set client until `setup.stop` (see the module docs).
pub async fn set_client(setup: ClientSetup, history: Arc<DatatypeHistory>, index: usize, seed: u64) -> DatatypeStats {
    let mut client = new_client(seed);
    let query = format!("timeout_ms={}", setup.server_timeout_ms);
    let failure_pause = setup.think.max(Duration::from_millis(20));
    let mut sequence = 0u64;
    while !setup.stop.load(Ordering::SeqCst) {
        let key = client.rng.below(setup.keys);
        let path = datatype_path(SET_BUCKET, &key_name(key), &query);
        let pause = if client.rng.chance(1, REMOVE_ONE_IN) {
            remove_one(&mut client, &setup, &history, key, &path).await
        } else {
            sequence += 1;
            add(&mut client, &setup, &history, key, &path, format!("c{index}-{sequence}")).await
        };
        tokio::time::sleep(pause.unwrap_or(failure_pause)).await;
    }
    client.stats
}

/// Adds `element` through a random node. `Some(think)` on success.
async fn add(
    client: &mut Client<DatatypeStats>,
    setup: &ClientSetup,
    history: &DatatypeHistory,
    key: usize,
    path: &str,
    element: String,
) -> Option<Duration> {
    let node = client.rng.below(setup.started());
    let connection = client.connection(setup, node).await?;
    lock(&history.sets)[key].attempted.insert(element.clone());
    match post(client, node, connection, path, serde_json::json!({ "add": element }).to_string()).await {
        Sent::Acknowledged(_) => {
            lock(&history.sets)[key].acknowledged.insert(element);
            client.stats.adds_ok += 1;
            Some(setup.think)
        }
        Sent::Status(_) | Sent::NoAnswer => {
            client.stats.adds_failed += 1;
            None
        }
    }
}

/// Reads the key through a random node and removes one element it
/// returned, with its context, through another. `Some(think)` on success
/// (a read of an empty set included).
async fn remove_one(
    client: &mut Client<DatatypeStats>,
    setup: &ClientSetup,
    history: &DatatypeHistory,
    key: usize,
    path: &str,
) -> Option<Duration> {
    let node = client.rng.below(setup.started());
    let mut connection = client.connection(setup, node).await?;
    let Ok(response) = connection.request(Method::GET, path, &[], Bytes::new()).await else {
        client.stats.reads_failed += 1;
        return None;
    };
    client.connections.insert(node, connection);
    let (elements, context) = match parse_orset(response.status, &response.body) {
        Ok(read) => read,
        Err(why) => {
            if matches!(response.status, 200 | 404) {
                history.anomaly(format!("{SET_BUCKET}/{}: a read returned {why}", key_name(key)));
            }
            client.stats.reads_failed += 1;
            return None;
        }
    };
    client.stats.reads_ok += 1;
    {
        let sets = lock(&history.sets);
        if let Some(never) = elements.iter().find(|element| !sets[key].attempted.contains(*element)) {
            history
                .anomaly(format!("{SET_BUCKET}/{}: a read returned {never:?}, which no client added", key_name(key)));
        }
    }
    let (Some(context), false) = (context, elements.is_empty()) else { return Some(setup.think) };
    let victim = elements.iter().nth(client.rng.below(elements.len())).expect("within the set").clone();
    let node = client.rng.below(setup.started());
    let connection = client.connection(setup, node).await?;
    lock(&history.sets)[key].removed.insert(victim.clone());
    let op = serde_json::json!({ "remove": victim, "context": context }).to_string();
    match post(client, node, connection, path, op).await {
        Sent::Acknowledged(_) => {
            lock(&history.sets)[key].removes_acknowledged.insert(victim);
            client.stats.removes_ok += 1;
            Some(setup.think)
        }
        Sent::Status(412) => {
            client.stats.removes_refused += 1;
            None
        }
        Sent::Status(_) | Sent::NoAnswer => {
            client.stats.removes_failed += 1;
            None
        }
    }
}
