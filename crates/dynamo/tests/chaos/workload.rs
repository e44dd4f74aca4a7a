//! The clients: each repeatedly picks one of a few set-valued keys and a
//! random node, reads the key, merges the siblings as a set union, adds an
//! element no one else ever writes (`c<client>-<seq>`), and writes the
//! result with the read's context — the read → merge → write cycle a
//! `siblings` bucket asks of its clients. Read and write go to two nodes
//! chosen independently at random among the started nodes (a spare joins
//! the choice once started). A value is a JSON array of
//! strings (`["c0-1","c3-7"]`, see [`crate::checker::encode_set`]).
//!
//! Every element is recorded as attempted *before* its write is sent and
//! as acknowledged only on a 2xx. Requests have short deadlines; on any
//! error the client drops that node's connection and carries on.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dynamo_client::{ClientError, Connection, GetResult, WriteOptions};

use crate::checker::{KeyHistory, encode_set, parse_set};
use crate::rng::Rng;

/// The bucket every run uses (props set by the harness: siblings, n=3,
/// r=2, w=2).
pub const BUCKET: &str = "chaos";

/// Everything the clients did, per key.
pub struct History {
    keys: Mutex<Vec<KeyHistory>>,
    /// Values read during the run that were not a set of strings: the
    /// store returned something nobody wrote.
    anomalies: Mutex<Vec<String>>,
}

impl History {
    /// An empty history of `keys` keys named `k0`, `k1`, ...
    pub fn new(keys: usize) -> History {
        History {
            keys: Mutex::new(
                (0..keys).map(|index| KeyHistory { key: key_name(index), ..KeyHistory::default() }).collect(),
            ),
            anomalies: Mutex::new(Vec::new()),
        }
    }

    fn attempt(&self, key: usize, element: &str) {
        self.lock()[key].attempted.insert(element.to_string());
    }

    fn acknowledge(&self, key: usize, element: &str) {
        self.lock()[key].acknowledged.insert(element.to_string());
    }

    fn anomaly(&self, what: String) {
        self.anomalies.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(what);
    }

    /// A copy of every key's history.
    pub fn snapshot(&self) -> Vec<KeyHistory> {
        self.lock().clone()
    }

    /// Anomalies seen by the clients.
    pub fn anomalies(&self) -> Vec<String> {
        self.anomalies.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<KeyHistory>> {
        self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The name of key `index`.
pub fn key_name(index: usize) -> String {
    format!("k{index}")
}

/// What one client saw (for the summary).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStats {
    /// Reads answered 200/300/404.
    pub reads_ok: u64,
    /// Reads that failed (timeout, 503, connection refused...).
    pub reads_failed: u64,
    /// Writes acknowledged.
    pub writes_ok: u64,
    /// Writes sent and not acknowledged (their element is indeterminate).
    pub writes_failed: u64,
    /// Reads that returned siblings.
    pub reads_with_siblings: u64,
    /// Most siblings one read returned.
    pub max_siblings: usize,
}

impl ClientStats {
    /// Adds another client's counts.
    pub fn add(&mut self, other: &ClientStats) {
        self.reads_ok += other.reads_ok;
        self.reads_failed += other.reads_failed;
        self.writes_ok += other.writes_ok;
        self.writes_failed += other.writes_failed;
        self.reads_with_siblings += other.reads_with_siblings;
        self.max_siblings = self.max_siblings.max(other.max_siblings);
    }
}

/// What every client needs.
#[derive(Clone)]
pub struct ClientSetup {
    /// HTTP addresses of all nodes, spares included.
    pub nodes: Arc<Vec<String>>,
    /// How many of `nodes`, the first ones, are started.
    pub started: Arc<AtomicUsize>,
    /// Number of keys.
    pub keys: usize,
    /// Shared history.
    pub history: Arc<History>,
    /// Set when the workload must end.
    pub stop: Arc<AtomicBool>,
    /// Client-side deadline per request.
    pub request_timeout: Duration,
    /// `timeout_ms` asked of the server.
    pub server_timeout_ms: u64,
    /// Pause between updates.
    pub think: Duration,
}

impl ClientSetup {
    /// How many nodes the clients may use now.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst).min(self.nodes.len())
    }
}

/// One client until `setup.stop`.
pub async fn client(setup: ClientSetup, index: usize, seed: u64) -> ClientStats {
    let mut client = Client { rng: Rng::new(seed), stats: ClientStats::default(), connections: HashMap::new() };
    let query = vec![("timeout_ms".to_string(), setup.server_timeout_ms.to_string())];
    let failure_pause = setup.think.max(Duration::from_millis(20));
    let mut sequence = 0u64;
    while !setup.stop.load(Ordering::SeqCst) {
        let key = client.rng.below(setup.keys);
        let key_name = key_name(key);
        // Read and write go to independently chosen nodes, so that a fault
        // can hit a write as often as a read.
        let node = client.rng.below(setup.started());
        let Some(mut connection) = client.connection(&setup, node).await else {
            client.stats.reads_failed += 1;
            tokio::time::sleep(failure_pause).await;
            continue;
        };
        let read = match connection.get(BUCKET, key_name.as_bytes(), &query).await {
            Ok(read) => read,
            Err(error) => {
                client.stats.reads_failed += 1;
                client.keep_if_usable(node, connection, &error);
                tokio::time::sleep(failure_pause).await;
                continue;
            }
        };
        client.connections.insert(node, connection);
        client.stats.reads_ok += 1;
        let (mut elements, context) = merge(&read, &key_name, &setup.history, &mut client.stats);
        sequence += 1;
        let element = format!("c{index}-{sequence}");
        elements.insert(element.clone());
        let node = client.rng.below(setup.started());
        let Some(mut connection) = client.connection(&setup, node).await else {
            tokio::time::sleep(failure_pause).await;
            continue;
        };
        setup.history.attempt(key, &element);
        let options =
            WriteOptions { query: query.clone(), context, content_type: Some("application/json".to_string()) };
        match connection.put(BUCKET, key_name.as_bytes(), Bytes::from(encode_set(&elements)), &options).await {
            Ok(_) => {
                setup.history.acknowledge(key, &element);
                client.stats.writes_ok += 1;
                client.connections.insert(node, connection);
                tokio::time::sleep(setup.think).await;
            }
            Err(error) => {
                client.stats.writes_failed += 1;
                client.keep_if_usable(node, connection, &error);
                tokio::time::sleep(failure_pause).await;
            }
        }
    }
    client.stats
}

/// One client's state between requests (the data-type clients use it too,
/// with their own stats).
pub struct Client<S = ClientStats> {
    pub rng: Rng,
    pub stats: S,
    /// A kept-alive connection per node, taken out while in use.
    pub connections: HashMap<usize, Connection>,
}

impl<S> Client<S> {
    /// The kept connection to `node`, or a new one (`None` if the node
    /// cannot be reached in time).
    pub async fn connection(&mut self, setup: &ClientSetup, node: usize) -> Option<Connection> {
        if let Some(connection) = self.connections.remove(&node) {
            return Some(connection);
        }
        let addr = &setup.nodes[node];
        let mut connection =
            tokio::time::timeout(setup.request_timeout, dynamo_client::connect(addr)).await.ok()?.ok()?;
        connection.set_timeout(setup.request_timeout);
        Some(connection)
    }

    /// A connection that got an HTTP error status is still in sync and
    /// kept; after a timeout or a transport error it may have a request in
    /// flight or be dead, so it is dropped.
    pub fn keep_if_usable(&mut self, node: usize, connection: Connection, error: &ClientError) {
        if matches!(error, ClientError::Status { .. }) {
            self.connections.insert(node, connection);
        }
    }
}

/// The union of the siblings' elements and the context to write with.
/// Tombstones (nobody deletes) and values that are not sets are anomalies.
fn merge(
    read: &GetResult,
    key: &str,
    history: &History,
    stats: &mut ClientStats,
) -> (BTreeSet<String>, Option<String>) {
    let siblings = match read {
        GetResult::Found { sibling, .. } => std::slice::from_ref(sibling),
        GetResult::Siblings { siblings, .. } => {
            stats.reads_with_siblings += 1;
            stats.max_siblings = stats.max_siblings.max(siblings.len());
            siblings.as_slice()
        }
        GetResult::NotFound { .. } => &[],
    };
    let mut elements = BTreeSet::new();
    for sibling in siblings {
        if sibling.deleted {
            history.anomaly(format!("{key}: a read returned a tombstone, but nothing deletes"));
            continue;
        }
        match parse_set(&sibling.value) {
            Some(set) => elements.extend(set),
            None => history.anomaly(format!(
                "{key}: a read returned a value that is not a set: {:?}",
                String::from_utf8_lossy(&sibling.value.slice(..sibling.value.len().min(80)))
            )),
        }
    }
    (elements, read.context().map(str::to_string))
}
