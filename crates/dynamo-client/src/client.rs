//! The partition-aware client (paper section 6.4): a [`Client`] learns the
//! ring from a seed node and coordinates by itself, so no request takes a
//! detour through a node that does not hold the key.
//!
//! - **Ring.** [`ClientBuilder::build`] fetches `GET /ring` from the seeds
//!   in order. Every answer carries the node's ring epoch
//!   ([`crate::ring::RING_EPOCH_HEADER`]); one newer than the client's, or
//!   a `421 Misdirected Request` from a replica endpoint, starts a refresh
//!   in the background (at most one at a time). While no node answers a
//!   refresh the client keeps routing by its last ring.
//! - **Writes and deletes** ([`Client::put`], [`Client::delete`]) go to the
//!   first reachable node of the key's preference list, which coordinates
//!   them (it is a replica, so it forwards nothing). *Resending rule:* the
//!   next replica is tried only when the write provably never left the
//!   client: the TCP connect failed or timed out. Any error after the
//!   request may have been sent (a timeout waiting for the answer, a
//!   connection reset, an error status) is returned as is, never resent,
//!   since the first node may have applied it.
//! - **Reads** ([`Client::get`]) are coordinated here, with the nodes' own
//!   pure quorum ([`ReadQuorum`]): `GET /replica/{b}/{k}` to the key's read
//!   list in parallel, an answer once R replied, merged with
//!   [`dynamo_core::object::VersionedObject::merge`] in the bucket's
//!   conflict mode, and turned into a [`GetResult`] the way the node's own
//!   `GET` renders the object (siblings, vtags, context from
//!   [`dynamo_core::context::encode_client_context`]). A spawned task then
//!   waits (bounded) for the other replicas and sends the merge of all with
//!   `PUT /replica` to those whose copy lacked it (read repair), without
//!   delaying the answer.
//! - **Failures.** A node whose connect failed (or whose connection broke
//!   mid-request) is marked down for [`ClientBuilder::down_interval`]:
//!   writes try it last. After the interval it is tried in its place
//!   again, which is the probe: a failed connect marks it down once more,
//!   any answer clears the mark. Reads still ask it in parallel (they are
//!   idempotent and wait only for R), and an answer there clears it too.
//! - **Deadlines.** Each request to one node has
//!   [`ClientBuilder::request_timeout`] (a connect,
//!   [`ClientBuilder::connect_timeout`]); a write that moves on after
//!   refused connects can take up to one connect timeout per replica more.
//!   A read waits at most the request timeout for R answers.
//! - **Bucket props** (`n`, `r`, conflict mode) are fetched once per bucket
//!   with `GET /buckets/{b}/props` and cached for the client's lifetime.
//!
//! Connections are kept alive, at most [`ClientBuilder::pool_size`] idle
//! ones per node; concurrent requests beyond that open (and then close)
//! extra connections rather than queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynamo_core::codec::{decode_object, encode_object};
use dynamo_core::context::encode_client_context;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::BucketProps;
use dynamo_core::quorum::{Progress, QuorumReport, ReadQuorum};
use dynamo_core::ring::NodeId;
use hyper::Method;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connection::{ClientError, Connection, GetResult, RawResponse, Sibling, WriteOptions, connect};
use crate::encode::path_segment;
use crate::ring::{RingView, RingViewError, ring_epoch};

/// Default deadline of one request to one node.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on a TCP connect: a node that does not accept within it
/// is treated as unreachable (nothing was sent, so the next may be tried).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default idle connections kept per node: enough for a few concurrent
/// requests without reconnecting, few enough that a client does not hold
/// hundreds of sockets on each node.
pub const DEFAULT_POOL_SIZE: usize = 4;
/// Default time a node whose connect failed is routed around: about the
/// nodes' own failure-detection interval.
pub const DEFAULT_DOWN_INTERVAL: Duration = Duration::from_secs(2);
/// How long read repair waits for the replicas that had not answered when
/// the client was answered.
const READ_REPAIR_WAIT: Duration = Duration::from_secs(1);
/// Content type of values stored without one (what the nodes answer).
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// Seeds a client accepts: a bound on what `build` retries.
const MAX_SEEDS: usize = 64;

/// Why a [`Client`] call failed.
#[derive(Debug, Error)]
pub enum Error {
    /// No seed answered `GET /ring` with a usable ring.
    #[error("no seed answered GET /ring: {}", .failures.join("; "))]
    NoSeed {
        /// Each seed's failure, in the order tried.
        failures: Vec<String>,
    },
    /// The builder was given no seed, or more than the bound.
    #[error("a client needs between 1 and {MAX_SEEDS} seed addresses, got {0}")]
    Seeds(usize),
    /// The ring or the bucket/key is unusable.
    #[error(transparent)]
    Ring(#[from] RingViewError),
    /// No node of the key's list could be reached (or none has an HTTP
    /// address yet); nothing was sent.
    #[error("{operation} {bucket}/{key}: no replica reachable: {}", .failures.join("; "))]
    Unreachable {
        /// `put`, `delete`, `props`.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key, lossily printed.
        key: String,
        /// Why each node was not reached.
        failures: Vec<String>,
    },
    /// A read did not get R answers; the report names every replica and
    /// why it failed.
    #[error("get {bucket}/{key}: {report}")]
    ReadQuorum {
        /// The bucket.
        bucket: String,
        /// The key, lossily printed.
        key: String,
        /// Every replica's answer, with the counts.
        report: QuorumReport,
    },
    /// A node's answer (an error status, or a failure after the request
    /// may have been sent: a write is not retried then).
    #[error(transparent)]
    Node(#[from] ClientError),
    /// A per-request quorum the bucket cannot meet (as the nodes refuse
    /// it with `400`).
    #[error("bad quorum: {0}")]
    Quorum(String),
    /// [`Client::update`] merged and wrote `attempts` times and concurrent
    /// writes still left siblings beside its own.
    #[error("update {bucket}/{key}: still {siblings} siblings after {attempts} read-merge-write rounds")]
    StillConcurrent {
        /// The bucket.
        bucket: String,
        /// The key, lossily printed.
        key: String,
        /// Rounds made.
        attempts: usize,
        /// Versions the last read found.
        siblings: usize,
    },
    /// The key holds a data type, which has its own endpoint.
    #[error("{0}/{1} holds a data type; this client reads opaque values only")]
    DataType(String, String),
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    seeds: Vec<String>,
    request_timeout: Duration,
    connect_timeout: Duration,
    pool_size: usize,
    down_interval: Duration,
}

impl ClientBuilder {
    /// Deadline of each request to one node (default
    /// [`DEFAULT_REQUEST_TIMEOUT`]); a read waits at most this for R.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bound on a TCP connect (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Idle connections kept per node (default [`DEFAULT_POOL_SIZE`]).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long an unreachable node is routed around (default
    /// [`DEFAULT_DOWN_INTERVAL`]).
    pub fn down_interval(mut self, interval: Duration) -> Self {
        self.down_interval = interval;
        self
    }

    /// Fetches the ring from the seeds, in order, and returns the client.
    pub async fn build(self) -> Result<Client, Error> {
        if self.seeds.is_empty() || self.seeds.len() > MAX_SEEDS {
            return Err(Error::Seeds(self.seeds.len()));
        }
        let inner = Inner {
            seeds: self.seeds.clone(),
            config: self,
            ring: RwLock::new(None),
            refreshing: AtomicBool::new(false),
            pools: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            props: Mutex::new(HashMap::new()),
        };
        let client = Client { inner: Arc::new(inner) };
        let seeds = client.inner.seeds.clone();
        let mut failures = Vec::new();
        for seed in &seeds {
            match client.fetch_ring(seed).await {
                Ok(view) => {
                    client.install(view);
                    return Ok(client);
                }
                Err(problem) => failures.push(format!("{seed}: {problem}")),
            }
        }
        Err(Error::NoSeed { failures })
    }
}

/// A partition-aware client: a cheap-to-clone handle (see the module
/// documentation for how it routes and what it retries).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the ring is fetched from when no member answers.
    seeds: Vec<String>,
    config: ClientBuilder,
    /// The newest ring seen; `None` only inside `build`.
    ring: RwLock<Option<Arc<RingView>>>,
    /// Whether a background refresh runs (at most one at a time).
    refreshing: AtomicBool,
    /// Idle kept-alive connections per HTTP address.
    pools: Mutex<HashMap<String, Vec<Connection>>>,
    /// Nodes whose connect failed, until when they are routed around.
    down: Mutex<HashMap<String, Instant>>,
    /// Bucket props, fetched once per bucket.
    props: Mutex<HashMap<String, BucketProps>>,
}

/// One request's fate at one node, for the resending rule.
enum Attempt {
    /// The node answered.
    Answered(RawResponse),
    /// Nothing was sent: the connect failed. Safe to try another node.
    NotSent(ClientError),
    /// The request may have reached the node.
    MaybeSent(ClientError),
}

impl Client {
    /// A builder over one or more seed HTTP addresses (`host:port`).
    pub fn builder<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientBuilder {
        ClientBuilder {
            seeds: seeds.into_iter().map(Into::into).collect(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            down_interval: DEFAULT_DOWN_INTERVAL,
        }
    }

    /// The ring the client routes by.
    pub fn ring(&self) -> Arc<RingView> {
        let ring = self.inner.ring.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        ring.clone().expect("a built client always has a ring")
    }

    /// The epoch of the ring in use; `None` while `build` fetches the first.
    fn epoch_in_use(&self) -> Option<u64> {
        let ring = self.inner.ring.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        ring.as_ref().map(|view| view.epoch())
    }

    /// Fetches the ring now from its members (then the seeds) and installs
    /// it if newer; the old ring stays when none answers.
    pub async fn refresh_ring(&self) -> Result<(), Error> {
        let mut addrs: Vec<String> = self.ring().members().filter_map(|m| m.http_addr.clone()).collect();
        addrs.extend(self.inner.seeds.iter().cloned());
        let mut failures = Vec::new();
        for addr in addrs {
            match self.fetch_ring(&addr).await {
                Ok(view) => {
                    self.install(view);
                    return Ok(());
                }
                Err(problem) => failures.push(format!("{addr}: {problem}")),
            }
        }
        Err(Error::NoSeed { failures })
    }

    /// Whether `addr` is currently routed around.
    pub fn is_marked_down(&self, addr: &str) -> bool {
        let down = self.inner.down.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        down.get(addr).is_some_and(|until| *until > Instant::now())
    }

    /// Writes `value` under `bucket`/`key` through the first reachable
    /// replica; returns the context the node answered. `options` carries
    /// the context of an earlier read, the content type and `w`/`dw`.
    pub async fn put(
        &self,
        bucket: &str,
        key: &[u8],
        value: Bytes,
        options: &WriteOptions,
    ) -> Result<Option<String>, Error> {
        self.write("put", Method::PUT, bucket, key, value, options).await
    }

    /// Deletes `bucket`/`key` (writes a tombstone) through the first
    /// reachable replica.
    pub async fn delete(&self, bucket: &str, key: &[u8], options: &WriteOptions) -> Result<Option<String>, Error> {
        self.write("delete", Method::DELETE, bucket, key, Bytes::new(), options).await
    }

    /// Read, merge, write: reads `bucket`/`key`, hands its live values (none
    /// when it is absent or deleted) to `merge`, which returns the value to
    /// store, and writes that with the read's context, so the write
    /// supersedes every version it merged. A write that raced it leaves a
    /// sibling beside it, so `update` reads again and, while siblings
    /// remain, merges them again, at most `attempts` rounds in all (then
    /// [`Error::StillConcurrent`]). Each round is a new write with a new
    /// context, never a resend of the last one. `options` carries `w`,
    /// `dw` and the content type; its context is replaced by each read's.
    /// Returns the context of the last write.
    ///
    /// ```no_run
    /// # async fn cart(client: &dynamo_client::Client) -> Result<(), dynamo_client::client::Error> {
    /// use std::collections::BTreeSet;
    /// let options = dynamo_client::WriteOptions::default();
    /// client
    ///     .update("carts", b"alice", &options, 5, |versions| {
    ///         // A cart is a set of items: the merge of versions is their union.
    ///         let mut items = BTreeSet::new();
    ///         for version in versions {
    ///             items.extend(version.value.split(|byte| *byte == b',').map(<[u8]>::to_vec));
    ///         }
    ///         items.insert(b"fig".to_vec());
    ///         bytes::Bytes::from(items.into_iter().collect::<Vec<_>>().join(&b','))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn update<F>(
        &self,
        bucket: &str,
        key: &[u8],
        options: &WriteOptions,
        attempts: usize,
        mut merge: F,
    ) -> Result<Option<String>, Error>
    where
        F: FnMut(&[Sibling]) -> Bytes,
    {
        let mut read = self.get(bucket, key, None).await?;
        for _ in 0..attempts.max(1) {
            let versions = live_versions(&read);
            let value = merge(&versions);
            let write = WriteOptions { context: read.context().map(str::to_string), ..options.clone() };
            let written = self.put(bucket, key, value, &write).await?;
            read = self.get(bucket, key, None).await?;
            if !matches!(read, GetResult::Siblings { .. }) {
                return Ok(written);
            }
        }
        let siblings = live_versions(&read).len();
        Err(Error::StillConcurrent {
            bucket: bucket.to_string(),
            key: String::from_utf8_lossy(key).into_owned(),
            attempts: attempts.max(1),
            siblings,
        })
    }

    /// Reads `bucket`/`key`, coordinated by the client: waits for `r`
    /// replicas (the bucket's R when `None`), answers their merge as the
    /// node's own `GET` would, and repairs stale replicas afterwards.
    pub async fn get(&self, bucket: &str, key: &[u8], r: Option<u8>) -> Result<GetResult, Error> {
        let props = self.props(bucket, key).await?;
        let ring = self.ring();
        let replicas = ring.read_list(bucket, key, props.n)?;
        let r = r.unwrap_or(props.r);
        if r == 0 || r > props.n {
            return Err(Error::Quorum(format!("r={r}: bucket {bucket} has n={}; use 1..={}", props.n, props.n)));
        }
        let mut quorum = ReadQuorum::new(replicas.clone(), r, props.conflict);
        let path = replica_path(bucket, key);
        let (sender, mut replies) = mpsc::channel(replicas.len().max(1));
        for node in order_by_health(self, &ring, &replicas) {
            let client = self.clone();
            let sender = sender.clone();
            let path = path.clone();
            let addr = ring.http_addr(&node).map(str::to_string);
            tokio::spawn(async move {
                let outcome = match addr {
                    Some(addr) => client.read_replica(&addr, &path).await,
                    None => Err(format!("{node} has no HTTP address yet")),
                };
                let _ = sender.send((node, outcome)).await;
            });
        }
        drop(sender);
        let deadline = Instant::now() + self.inner.config.request_timeout;
        let mut progress = quorum.progress();
        while progress == Progress::Pending {
            match tokio::time::timeout_at(deadline, replies.recv()).await {
                Ok(Some((node, Ok(object)))) => progress = quorum.reply(node, object),
                Ok(Some((node, Err(reason)))) => progress = quorum.fail(node, reason),
                Ok(None) | Err(_) => progress = quorum.timed_out(),
            }
        }
        if progress == Progress::Failed {
            return Err(Error::ReadQuorum {
                bucket: bucket.to_string(),
                key: String::from_utf8_lossy(key).into_owned(),
                report: quorum.report(),
            });
        }
        let merged = quorum.merged();
        self.spawn_read_repair(ring, quorum, replies, path);
        render_read(bucket, key, &merged, wall_ms())
    }

    /// `GET /replica` at one node: its copy (empty on 404).
    async fn read_replica(&self, addr: &str, path: &str) -> Result<VersionedObject, String> {
        let response = match self.send(addr, Method::GET, path, &[], Bytes::new()).await {
            Attempt::Answered(response) => response,
            Attempt::NotSent(problem) | Attempt::MaybeSent(problem) => return Err(problem.to_string()),
        };
        match response.status {
            200 => decode_object(&response.body).map_err(|problem| format!("{addr}: undecodable copy: {problem}")),
            404 => Ok(VersionedObject::new()),
            421 => {
                self.refresh_in_background();
                Err(format!("{addr} no longer replicates the key (421); refreshing the ring"))
            }
            status => Err(format!("{addr} answered {status}: {}", String::from_utf8_lossy(&response.body))),
        }
    }

    /// After the answer: waits (bounded) for the replicas still out, then
    /// sends the merge of every reply to the replicas that lacked it.
    fn spawn_read_repair(
        &self,
        ring: Arc<RingView>,
        mut quorum: ReadQuorum,
        mut replies: mpsc::Receiver<(NodeId, Result<VersionedObject, String>)>,
        path: String,
    ) {
        let client = self.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + READ_REPAIR_WAIT.min(client.inner.config.request_timeout);
            while let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, replies.recv()).await {
                match outcome {
                    Ok(object) => quorum.reply(node, object),
                    Err(reason) => quorum.fail(node, reason),
                };
            }
            let targets = quorum.repair_targets();
            if targets.is_empty() {
                return;
            }
            let body = Bytes::from(encode_object(&quorum.merged()));
            let headers = [("content-type", DEFAULT_CONTENT_TYPE)];
            for node in targets {
                if let Some(addr) = ring.http_addr(&node) {
                    // Best effort: anti-entropy repairs what this misses.
                    let _ = client.send(addr, Method::PUT, &path, &headers, body.clone()).await;
                }
            }
        });
    }

    /// A write through the first reachable replica of the key (see the
    /// module documentation for the resending rule).
    async fn write(
        &self,
        operation: &'static str,
        method: Method,
        bucket: &str,
        key: &[u8],
        value: Bytes,
        options: &WriteOptions,
    ) -> Result<Option<String>, Error> {
        let props = self.props(bucket, key).await?;
        let ring = self.ring();
        let replicas = ring.preference_list(bucket, key, props.n)?;
        let path = crate::connection::object_path(bucket, key, &options.query);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(context) = &options.context {
            headers.push((crate::connection::CONTEXT_HEADER, context));
        }
        if let Some(content_type) = &options.content_type {
            headers.push(("content-type", content_type));
        }
        let mut failures = Vec::new();
        for node in order_by_health(self, &ring, &replicas) {
            let Some(addr) = ring.http_addr(&node) else {
                failures.push(format!("{node} has no HTTP address yet"));
                continue;
            };
            match self.send(addr, method.clone(), &path, &headers, value.clone()).await {
                Attempt::Answered(response) if matches!(response.status, 200 | 204) => {
                    return Ok(response.header(crate::connection::CONTEXT_HEADER).map(str::to_string));
                }
                Attempt::Answered(response) => {
                    return Err(Error::Node(ClientError::Status {
                        addr: addr.to_string(),
                        status: response.status,
                        body: String::from_utf8_lossy(&response.body).into_owned(),
                    }));
                }
                Attempt::NotSent(problem) => failures.push(problem.to_string()),
                Attempt::MaybeSent(problem) => return Err(Error::Node(problem)),
            }
        }
        Err(Error::Unreachable {
            operation,
            bucket: bucket.to_string(),
            key: String::from_utf8_lossy(key).into_owned(),
            failures,
        })
    }

    /// The bucket's props, fetched once (from the key's replicas first,
    /// then any member) and cached.
    async fn props(&self, bucket: &str, key: &[u8]) -> Result<BucketProps, Error> {
        if let Some(props) = self.inner.props.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(bucket) {
            return Ok(*props);
        }
        let ring = self.ring();
        let mut nodes = ring.preference_list(bucket, key, 3)?;
        for member in ring.members() {
            if !nodes.contains(&member.id) {
                nodes.push(member.id.clone());
            }
        }
        let path = format!("/buckets/{}/props", path_segment(bucket.as_bytes()));
        let mut failures = Vec::new();
        for node in order_by_health(self, &ring, &nodes) {
            let Some(addr) = ring.http_addr(&node) else { continue };
            let response = match self.send(addr, Method::GET, &path, &[], Bytes::new()).await {
                Attempt::Answered(response) => response,
                Attempt::NotSent(problem) | Attempt::MaybeSent(problem) => {
                    failures.push(problem.to_string());
                    continue;
                }
            };
            if response.status != 200 {
                return Err(Error::Node(ClientError::Status {
                    addr: addr.to_string(),
                    status: response.status,
                    body: String::from_utf8_lossy(&response.body).into_owned(),
                }));
            }
            let props: BucketProps = serde_json::from_slice(&response.body).map_err(|problem| {
                ClientError::Protocol { addr: addr.to_string(), detail: format!("bucket props: {problem}") }
            })?;
            self.inner.props.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(bucket.to_string(), props);
            return Ok(props);
        }
        Err(Error::Unreachable {
            operation: "props",
            bucket: bucket.to_string(),
            key: String::from_utf8_lossy(key).into_owned(),
            failures,
        })
    }

    /// One request to `addr` on a pooled connection. Marks the node down
    /// when the connect fails, and starts a ring refresh when the answer
    /// carries a newer epoch.
    async fn send(&self, addr: &str, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> Attempt {
        let mut connection = match self.checkout(addr).await {
            Ok(connection) => connection,
            Err(problem) => {
                self.mark_down(addr);
                return Attempt::NotSent(problem);
            }
        };
        match connection.request(method, path, headers, body).await {
            Ok(response) => {
                self.checkin(connection);
                // An answer is the probe succeeding: no longer routed around.
                self.mark_up(addr);
                if let Some(epoch) = ring_epoch(&response)
                    && self.epoch_in_use().is_some_and(|current| epoch > current)
                {
                    self.refresh_in_background();
                }
                Attempt::Answered(response)
            }
            // A pooled connection the node had closed is reopened inside
            // `request` before anything is sent; a refused reopen proves
            // the request never left.
            Err(problem @ ClientError::Connect { .. }) => {
                self.mark_down(addr);
                Attempt::NotSent(problem)
            }
            // The node may have the request: not resent, but routed
            // around for the next ones if the connection itself broke.
            Err(problem @ ClientError::Http { .. }) => {
                self.mark_down(addr);
                Attempt::MaybeSent(problem)
            }
            Err(problem) => Attempt::MaybeSent(problem),
        }
    }

    /// An idle connection to `addr`, or a new one within the connect
    /// timeout.
    async fn checkout(&self, addr: &str) -> Result<Connection, ClientError> {
        let pooled = {
            let mut pools = self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pools.get_mut(addr).and_then(Vec::pop)
        };
        if let Some(connection) = pooled {
            // Lets the connection's task run once, so a close the node
            // sent while the connection sat idle (it restarted, or was
            // killed) is seen now: `request` then reopens, and a refused
            // reopen proves nothing was sent. Without this the request
            // could be written into the dead socket, an ambiguous failure
            // that a write may not retry. (It narrows that race; a close
            // arriving during the request stays ambiguous.)
            tokio::task::yield_now().await;
            return Ok(connection);
        }
        let timeout = self.inner.config.connect_timeout;
        let mut connection =
            tokio::time::timeout(timeout, connect(addr)).await.map_err(|_| ClientError::Connect {
                addr: addr.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })??;
        connection.set_timeout(self.inner.config.request_timeout);
        Ok(connection)
    }

    /// Returns a connection to its node's pool, unless the pool is full.
    fn checkin(&self, connection: Connection) {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pool = pools.entry(connection.addr().to_string()).or_default();
        if pool.len() < self.inner.config.pool_size {
            pool.push(connection);
        }
    }

    fn mark_down(&self, addr: &str) {
        let until = Instant::now() + self.inner.config.down_interval;
        self.inner.down.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(addr.to_string(), until);
        // Its idle connections are dead too.
        self.inner.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(addr);
    }

    fn mark_up(&self, addr: &str) {
        let mut down = self.inner.down.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !down.is_empty() {
            down.remove(addr);
        }
    }

    /// Starts a background ring refresh unless one is running.
    fn refresh_in_background(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            // On failure the last ring stays in use.
            let _ = client.refresh_ring().await;
            client.inner.refreshing.store(false, Ordering::Release);
        });
    }

    /// `GET /ring` at `addr`, parsed.
    async fn fetch_ring(&self, addr: &str) -> Result<RingView, Error> {
        match self.send(addr, Method::GET, "/ring", &[], Bytes::new()).await {
            Attempt::Answered(response) if response.status == 200 => Ok(RingView::from_json(&response.body)?),
            Attempt::Answered(response) => Err(Error::Node(ClientError::Status {
                addr: addr.to_string(),
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            })),
            Attempt::NotSent(problem) | Attempt::MaybeSent(problem) => Err(Error::Node(problem)),
        }
    }

    /// Installs `view` if it is newer than the ring in use (or the first).
    fn install(&self, view: RingView) {
        let mut ring = self.inner.ring.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if ring.as_ref().is_none_or(|current| view.epoch() > current.epoch()) {
            *ring = Some(Arc::new(view));
        }
    }
}

/// `nodes` with the ones marked down moved to the end (still tried last:
/// the mark may be out of date), order otherwise kept.
fn order_by_health(client: &Client, ring: &RingView, nodes: &[NodeId]) -> Vec<NodeId> {
    let mut ordered = nodes.to_vec();
    ordered.sort_by_key(|node| ring.http_addr(node).is_some_and(|addr| client.is_marked_down(addr)));
    ordered
}

/// `/replica/{bucket}/{key}`, percent-encoded.
fn replica_path(bucket: &str, key: &[u8]) -> String {
    format!("/replica/{}/{}", path_segment(bucket.as_bytes()), path_segment(key))
}

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0)
}

/// The vtag the nodes give a sibling: its dot, `actor-counter`.
fn vtag(sibling: &dynamo_core::object::Sibling) -> String {
    format!("{}-{}", sibling.dot.actor, sibling.dot.counter)
}

/// A merged object as the node's own `GET` answers it (its
/// `object_response`), at wall time `now_ms`: nothing stored is a 404
/// without context; a dead object (deleted or expired) a 404 with one;
/// one live value a 200; otherwise every sibling, dead ones marked deleted
/// The values of a read that are not deletes, as `update` merges them.
fn live_versions(read: &GetResult) -> Vec<Sibling> {
    match read {
        GetResult::Found { sibling, .. } if !sibling.deleted => vec![sibling.clone()],
        GetResult::Found { .. } => Vec::new(),
        GetResult::Siblings { siblings, .. } => siblings.iter().filter(|sibling| !sibling.deleted).cloned().collect(),
        GetResult::NotFound { .. } => Vec::new(),
    }
}

/// and emptied, as a 300.
pub fn render_read(bucket: &str, key: &[u8], object: &VersionedObject, now_ms: u64) -> Result<GetResult, Error> {
    if object.is_convergent() {
        return Err(Error::DataType(bucket.to_string(), String::from_utf8_lossy(key).into_owned()));
    }
    if object.is_empty() {
        return Ok(GetResult::NotFound { context: None });
    }
    let context = encode_client_context(object.context(), object.latest_timestamp());
    if object.is_dead_at(now_ms) {
        return Ok(GetResult::NotFound { context: Some(context) });
    }
    let siblings: Vec<Sibling> = object
        .siblings()
        .iter()
        .map(|sibling| {
            let dead = sibling.is_dead_at(now_ms);
            let (value, content_type) = match &sibling.payload {
                Payload::Value { data, content_type, .. } if !dead => {
                    (data.clone(), content_type.clone().unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()))
                }
                _ => (Bytes::new(), DEFAULT_CONTENT_TYPE.to_string()),
            };
            Sibling {
                value,
                content_type: Some(content_type),
                vtag: Some(vtag(sibling)),
                deleted: dead,
                expires_ms: sibling.expires_ms(),
            }
        })
        .collect();
    match <[Sibling; 1]>::try_from(siblings) {
        Ok([only]) if !only.deleted => Ok(GetResult::Found { sibling: only, context }),
        Ok([only]) => Ok(GetResult::Siblings { siblings: vec![only], context }),
        Err(siblings) => Ok(GetResult::Siblings { siblings, context }),
    }
}

#[cfg(test)]
mod tests {
    use dynamo_core::hlc::Hlc;
    use dynamo_core::props::ConflictMode;
    use dynamo_core::version::{ActorId, VersionVector};

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn a_client_whose_seeds_all_fail_says_why_for_each() {
        runtime().block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let closed = listener.local_addr().expect("addr").to_string();
            drop(listener);
            let problem = Client::builder([closed.clone(), closed.clone()])
                .connect_timeout(Duration::from_millis(200))
                .build()
                .await
                .err()
                .expect("no seed answers");
            match &problem {
                Error::NoSeed { failures } => assert_eq!(failures.len(), 2, "{problem}"),
                other => panic!("expected NoSeed, got {other}"),
            }
            assert!(matches!(Client::builder(Vec::<String>::new()).build().await, Err(Error::Seeds(0))));
        });
    }

    #[test]
    fn a_read_renders_like_the_nodes_get_nothing_one_value_siblings_and_a_tombstone() {
        assert_eq!(
            render_read("b", b"k", &VersionedObject::new(), 0).expect("empty"),
            GetResult::NotFound { context: None }
        );
        let value = |data: &'static [u8]| Payload::Value {
            data: Bytes::from_static(data),
            content_type: None,
            expires_ms: None,
        };
        let mut object = VersionedObject::new();
        object.put(&VersionVector::new(), ActorId(1), Hlc(10), value(b"a"), ConflictMode::Siblings);
        match render_read("b", b"k", &object, 0).expect("one") {
            GetResult::Found { sibling, context } => {
                assert_eq!(&sibling.value[..], b"a");
                assert_eq!(sibling.content_type.as_deref(), Some(DEFAULT_CONTENT_TYPE));
                assert_eq!(context, encode_client_context(object.context(), object.latest_timestamp()));
            }
            other => panic!("{other:?}"),
        }
        // A concurrent delete: two siblings, the tombstone marked deleted.
        object.put(&VersionVector::new(), ActorId(2), Hlc(11), Payload::Tombstone, ConflictMode::Siblings);
        match render_read("b", b"k", &object, 0).expect("two") {
            GetResult::Siblings { siblings, .. } => {
                assert_eq!(siblings.len(), 2);
                assert_eq!(siblings.iter().filter(|sibling| sibling.deleted).count(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A one-node "cluster" whose ring epoch the test sets: `GET /ring`
    /// answers the ring at that epoch, props the defaults, `GET /replica`
    /// 404, and every answer carries the epoch header.
    async fn fake_node(epoch: Arc<std::sync::atomic::AtomicU64>) -> (String, tokio::task::JoinHandle<()>) {
        use http_body_util::Full;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let http_addr = addr.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (epoch, http_addr) = (epoch.clone(), http_addr.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let current = epoch.load(Ordering::SeqCst);
                        let (status, body) = match request.uri().path() {
                            "/ring" => (
                                200,
                                serde_json::json!({
                                    "epoch": current, "partitions": 8, "owners": vec!["node0"; 8],
                                    "nodes": [{"id": "node0", "capacity": 1, "zone": null}],
                                    "members": [{"id": "node0", "status": "member", "http_addr": http_addr}],
                                    "moving": null,
                                })
                                .to_string(),
                            ),
                            path if path.ends_with("/props") => {
                                (200, serde_json::json!(BucketProps::default()).to_string())
                            }
                            _ => (404, r#"{"error":"nothing"}"#.to_string()),
                        };
                        let response = hyper::Response::builder()
                            .status(status)
                            .header(crate::ring::RING_EPOCH_HEADER, current.to_string())
                            .body(Full::new(Bytes::from(body)));
                        async move { response }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, server)
    }

    #[test]
    fn a_newer_epoch_on_any_answer_refreshes_the_ring_and_the_last_ring_survives_an_unanswered_refresh() {
        runtime().block_on(async {
            let epoch = Arc::new(std::sync::atomic::AtomicU64::new(1));
            let (addr, server) = fake_node(epoch.clone()).await;
            let client = Client::builder([addr]).build().await.expect("client");
            assert_eq!(client.ring().epoch(), 1);
            epoch.store(2, Ordering::SeqCst);
            let read = client.get("b", b"k", Some(1)).await.expect("get");
            assert_eq!(read, GetResult::NotFound { context: None });
            let deadline = Instant::now() + Duration::from_secs(5);
            while client.ring().epoch() < 2 {
                assert!(Instant::now() < deadline, "the newer epoch was not fetched");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // No node answers any more: the refresh fails, the ring stays.
            server.abort();
            let _ = server.await;
            client.inner.pools.lock().expect("pools").clear();
            assert!(client.refresh_ring().await.is_err());
            assert_eq!(client.ring().epoch(), 2);
        });
    }
}
