//! Starting and stopping a node: open storage, load the cluster state
//! (persisted, or founded from the configuration), build the anti-entropy
//! trees (one scan), the replica, coordinator, membership and API, accept
//! HTTP connections, run the anti-entropy scheduler and gossip, and on
//! shutdown stop
//! accepting, let in-flight requests finish (up to a grace period), stop
//! the scheduler, then fsync and close storage. The process-level signal
//! handling lives in the binary; this module takes a shutdown future so
//! tests can drive it.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use dynamo_core::failure_detector::LivenessPolicy;
use dynamo_core::props::{BucketProps, DataType};
use dynamo_core::ring::NodeId;
use dynamo_core::version::ActorId;
use dynamo_storage::{MemoryEngine, StorageError, Store};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use dynamo_rpc::{ClusterSecret, NonceSource, OsNonce, RpcClient, RpcConfig, TcpRpcListener, TcpTransport, Transport};

use crate::accept::next_connection;
use crate::anti_entropy::{AntiEntropy, AntiEntropyConfig};
use crate::buckets::BucketRegistry;
use crate::clock::{SystemClock, WallClock};
use crate::cluster::{Cluster, announcement};
use crate::config::{EngineKind, NodeConfig};
use crate::coordinator::Coordinator;
use crate::failure_detector::{FailureDetector, probes};
use crate::gossip::{Gossip, GossipParts};
use crate::handler::NodeHandler;
use crate::hint_delivery::HintDelivery;
use crate::hints::HintStore;
use crate::http::{Api, ApiParts};
use crate::membership::{Membership, MembershipParts, STATE_KEY, StartupError, startup_state};
use crate::merkle_index::MerkleIndex;
use crate::metrics::Metrics;
use crate::peers::{Peers, RpcPeers};
use crate::replica::Replica;
use crate::resp;
use crate::resp::commands::Commands;
use crate::services::NodeServices;
use crate::tombstone_collector::TombstoneCollector;
use crate::transfers::{TransferConfig, TransferParts, Transfers};

/// How often a node looks for partition transfers to do.
const TRANSFER_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
/// Gossip rounds a settled ring change must stay unchanged before a node
/// deletes the partitions that moved away from it.
const PURGE_QUIET_ROUNDS: u32 = 10;
/// The quiet period when gossip is off (changes then spread only by the
/// committing node's push).
const PURGE_QUIET_WITHOUT_GOSSIP: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a node waits, after a ring change settled, before deleting
/// what moved away: [`PURGE_QUIET_ROUNDS`] gossip rounds.
fn purge_quiet(gossip_interval: std::time::Duration) -> std::time::Duration {
    if gossip_interval.is_zero() { PURGE_QUIET_WITHOUT_GOSSIP } else { gossip_interval * PURGE_QUIET_ROUNDS }
}

/// A client that sends headers slower than this is disconnected.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a node could not start or stop cleanly.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Storage could not be opened or closed.
    #[error("storage in {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// The storage error.
        source: StorageError,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The anti-entropy trees could not be built from storage.
    #[error("building the anti-entropy trees from {dir}: {detail}")]
    Index {
        /// The data directory.
        dir: String,
        /// What failed.
        detail: String,
    },
    /// The cluster configuration is unusable (ring, secret, names).
    #[error("cluster configuration: {0}")]
    Cluster(String),
    /// The cluster state could not be loaded or founded.
    #[error("cluster state in {dir}: {source}")]
    Membership {
        /// The data directory.
        dir: String,
        /// What failed.
        source: StartupError,
    },
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another node using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The parts of a node that do not depend on how it talks to the world:
/// what the HTTP front end and the RPC server serve, and what the
/// deterministic simulation drives directly.
pub struct NodeParts {
    /// The node's shared services (replica, cluster view, peers, failure
    /// detector, bucket props, hints).
    pub services: NodeServices,
    /// The coordinator (client requests).
    pub coordinator: Arc<Coordinator>,
    /// The RPC handler (requests from other nodes).
    pub handler: Arc<NodeHandler>,
    /// The RPC identity and limits of this node.
    pub rpc_config: RpcConfig,
    /// The node's storage.
    pub store: Store,
    /// This incarnation's actor id.
    pub actor: ActorId,
    /// The anti-entropy service; its scheduler ([`AntiEntropy::run`]) is
    /// started by whoever runs the node ([`Node::run`], the simulation).
    pub anti_entropy: Arc<AntiEntropy>,
    /// The membership service (cluster state, join, plan, commit).
    pub membership: Arc<Membership>,
    /// Gossip; its rounds run with the background tasks.
    pub gossip: Arc<Gossip>,
    /// Partition transfers; its rounds run with the background tasks.
    pub transfers: Arc<Transfers>,
    /// The background work of the node (probing down peers, delivering
    /// hints), not yet started: see [`NodeParts::spawn_background`].
    pub background: Option<Background>,
}

/// The node's background tasks, ready to start.
pub struct Background {
    detector: Arc<FailureDetector>,
    peers: Arc<dyn Peers>,
    delivery: HintDelivery,
    collector: TombstoneCollector,
    probe_interval: std::time::Duration,
    hint_delivery_interval: std::time::Duration,
    tombstone_gc_interval: std::time::Duration,
    gossip: Arc<Gossip>,
    membership: Arc<Membership>,
    transfers: Arc<Transfers>,
    join: Option<String>,
}

impl NodeParts {
    /// Starts the background tasks on the current runtime (once; later
    /// calls start nothing). They run until their handles are aborted or
    /// the runtime ends.
    pub fn spawn_background(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(background) = self.background.take() else {
            return Vec::new();
        };
        let mut tasks = vec![
            tokio::spawn(probes::run(background.detector, background.peers, background.probe_interval)),
            tokio::spawn(background.delivery.run(background.hint_delivery_interval)),
            tokio::spawn(background.collector.run(background.tombstone_gc_interval)),
            tokio::spawn(background.gossip.run()),
            tokio::spawn(background.transfers.run()),
        ];
        if let Some(seed) = background.join {
            tasks.push(tokio::spawn(background.membership.run_join(seed)));
        }
        tasks
    }
}

/// Wires a node together over `store` and `transport`. Everything from
/// outside is a parameter: clock, network, randomness (nonces and the
/// actor id), storage. Scans the whole `objects` namespace once, to build
/// the anti-entropy trees before anything can write.
pub fn assemble<T: Transport>(
    config: &NodeConfig,
    store: Store,
    wall: Arc<dyn WallClock>,
    transport: T,
    nonces: Arc<dyn NonceSource>,
    actor: ActorId,
) -> Result<NodeParts, ServerError> {
    let dir = config.data_dir.display().to_string();
    let startup =
        startup_state(config, &store).map_err(|source| ServerError::Membership { dir: dir.clone(), source })?;
    if startup.changed {
        // Buffered: what is written here is the configuration's founding
        // state or this node's own announcement, both recomputed from the
        // configuration at the next start if a power loss drops them.
        // Changes learned from others are written durably (membership).
        store
            .put_buffered(dynamo_storage::Namespace::Meta, STATE_KEY, &startup.state.encode())
            .map_err(|source| ServerError::Storage { dir: dir.clone(), source })?;
    }
    info!(cluster = %startup.state.cluster_id(), epoch = startup.state.epoch(),
          members = startup.state.members().count(), persisted = startup.persisted, "cluster state loaded");
    let cluster = Cluster::new(NodeId::new(config.node_id.clone()), startup.state);
    // A cluster of one needs no secret; it gets a random one nobody knows,
    // so its RPC port refuses everyone.
    let secret_bytes = config.cluster_secret.clone().unwrap_or_else(|| nonces.nonce().to_vec());
    let secret = ClusterSecret::new(secret_bytes).map_err(|error| ServerError::Cluster(error.to_string()))?;
    // Gossip picks its peers with bits from the injected source, so the
    // simulation replays them.
    let gossip_seed = u64::from_be_bytes(nonces.nonce()[..8].try_into().unwrap_or([0; 8]));
    let rpc_config = RpcConfig::new(config.node_id.clone(), secret, nonces)
        .map_err(|error| ServerError::Cluster(error.to_string()))?;
    let others = cluster.others();
    let policy = LivenessPolicy {
        probe_interval_ms: u64::try_from(config.probe_interval.as_millis()).unwrap_or(u64::MAX),
        ..LivenessPolicy::default()
    };
    let detector = Arc::new(FailureDetector::new(policy, others));
    let client = RpcClient::new(transport, rpc_config.clone());
    let peers: Arc<dyn Peers> = Arc::new(RpcPeers::new(client, cluster.clone(), detector.clone()));
    let hints = HintStore::open(store.clone(), config.partitions, config.max_hint_bytes)
        .map_err(|source| ServerError::Storage { dir: config.data_dir.display().to_string(), source })?;
    let hints = Arc::new(hints);
    let (index, built) = MerkleIndex::build(store.clone(), config.partitions).map_err(|error| ServerError::Index {
        dir: config.data_dir.display().to_string(),
        detail: error.to_string(),
    })?;
    info!(keys = built.keys, partitions = built.partitions, skipped = built.skipped, "anti-entropy trees built");
    let replica = Arc::new(
        Replica::new(store.clone(), config.partitions, actor, wall.clone(), Arc::new(index))
            .with_max_value_bytes(config.max_value_bytes),
    );
    // The Redis front end keeps each key as a map (issue 13, resp::model).
    let resp_props = BucketProps { datatype: DataType::Map, ..config.default_props };
    let buckets = Arc::new(
        BucketRegistry::new(store.clone(), config.default_props).with_bucket_default(&config.resp_bucket, resp_props),
    );
    let background = Arc::new(crate::pacer::BackgroundBudget::default());
    let services = NodeServices { replica, cluster, peers, detector, buckets, hints, background };
    let coordinator = Arc::new(
        Coordinator::new(services.clone(), config.request_timeout).with_listing_rate(config.listing_max_keys_per_sec),
    );
    let membership = Arc::new(Membership::new(MembershipParts {
        services: services.clone(),
        announcement: announcement(config),
        call_timeout: config.request_timeout,
    }));
    if let Some(seed) = &config.join {
        // Refuse data requests from the start, not once the join task runs.
        membership.expect_join(seed);
    }
    let own_addr = announcement(config).rpc_addr;
    let seeds = config.members.iter().map(|member| member.rpc_addr.clone()).chain(config.seeds.iter().cloned());
    let gossip = Arc::new(Gossip::new(GossipParts {
        membership: membership.clone(),
        peers: services.peers.clone(),
        detector: services.detector.clone(),
        seeds: seeds.chain(config.join.iter().cloned()).collect(),
        own_addr,
        interval: config.gossip_interval,
        call_timeout: config.request_timeout,
        random_seed: gossip_seed,
    }));
    let handler = Arc::new(NodeHandler::new(services.clone(), coordinator.clone()).with_gossip(gossip.clone()));
    let transfers = Arc::new(Transfers::new(TransferParts {
        services: services.clone(),
        membership: membership.clone(),
        config: TransferConfig {
            max_bytes_per_sec: config.transfer_max_bytes_per_sec,
            poll_interval: TRANSFER_POLL_INTERVAL,
            purge_quiet: purge_quiet(config.gossip_interval),
            call_timeout: config.request_timeout,
        },
    }));
    let anti_entropy = Arc::new(AntiEntropy::new(
        services.clone(),
        wall.clone(),
        AntiEntropyConfig {
            interval: config.anti_entropy_interval,
            max_keys_per_sec: config.anti_entropy_max_keys_per_sec,
            call_timeout: config.request_timeout,
        },
    ));
    let background = Background {
        delivery: HintDelivery::new(services.clone(), wall.clone(), config.tombstone_grace),
        collector: TombstoneCollector::new(services.clone(), wall, config.tombstone_grace),
        detector: services.detector.clone(),
        peers: services.peers.clone(),
        probe_interval: config.probe_interval,
        hint_delivery_interval: config.hint_delivery_interval,
        tombstone_gc_interval: config.tombstone_gc_interval,
        gossip: gossip.clone(),
        membership: membership.clone(),
        transfers: transfers.clone(),
        join: config.join.clone(),
    };
    Ok(NodeParts {
        services,
        coordinator,
        handler,
        rpc_config,
        store,
        actor,
        anti_entropy,
        membership,
        gossip,
        transfers,
        background: Some(background),
    })
}

/// A node that has opened its storage and bound its listeners.
pub struct Node {
    config: NodeConfig,
    listener: TcpListener,
    /// The Redis-protocol listener, when the config names an address.
    resp_listener: Option<TcpListener>,
    rpc_listener: TcpRpcListener,
    api: Arc<Api>,
    parts: NodeParts,
    /// The request metrics admission control reads the foreground from.
    foreground: Arc<Metrics>,
    /// The dashboard's history, sampled while the node runs.
    series: Arc<crate::series::Series>,
    /// The node's wall clock.
    wall: Arc<dyn WallClock>,
}

impl Node {
    /// Opens storage and binds the HTTP and RPC listeners, using the
    /// system clock, real TCP and OS randomness.
    pub async fn bind(config: NodeConfig) -> Result<Node, ServerError> {
        Self::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Node::bind`] with an injected wall clock.
    pub async fn bind_with_clock(config: NodeConfig, wall: Arc<dyn WallClock>) -> Result<Node, ServerError> {
        OsNonce::check().map_err(|error| ServerError::Cluster(format!("cannot read /dev/urandom: {error}")))?;
        let store = open_store(&config)?;
        // Outgoing RPC leaves from the node's own RPC IP when it has one, so
        // peers (and firewall rules) see one address per node.
        let transport = match config.rpc_outgoing_ip() {
            Some(ip) => TcpTransport::with_outgoing_ip(ip),
            None => TcpTransport::new(),
        };
        let clock = wall.clone();
        let parts = assemble(&config, store, wall, transport, Arc::new(OsNonce), fresh_actor_id())?;
        let metrics = Arc::new(Metrics::default());
        let foreground = metrics.clone();
        let series = Arc::new(crate::series::Series::default());
        let api_parts = ApiParts {
            coordinator: parts.coordinator.clone(),
            services: parts.services.clone(),
            anti_entropy: parts.anti_entropy.clone(),
            gossip: parts.gossip.clone(),
            transfers: parts.transfers.clone(),
            series: series.clone(),
        };
        let api =
            Arc::new(Api::new(api_parts, metrics, config.node_id.clone(), config.max_value_bytes, config.partitions));
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind { addr: config.http_addr, source })?;
        let rpc_listener = TcpListener::bind(config.rpc_addr)
            .await
            .map_err(|source| ServerError::Bind { addr: config.rpc_addr, source })?;
        let resp_listener = match config.resp_addr {
            None => None,
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?),
        };
        Ok(Node {
            config,
            listener,
            resp_listener,
            rpc_listener: TcpRpcListener::from(rpc_listener),
            api,
            parts,
            foreground,
            series,
            wall: clock,
        })
    }

    /// The address the HTTP API listens on (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.http_addr)
    }

    /// The address the Redis protocol listens on, if it does.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains and closes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Node { config, listener, resp_listener, rpc_listener, api, parts, foreground, series, wall } = self;
        let mut parts = parts;
        let sources = crate::series::Sources {
            metrics: foreground.clone(),
            services: parts.services.clone(),
            anti_entropy: parts.anti_entropy.clone(),
            staleness: parts.coordinator.staleness(),
        };
        let (stop_series, series_stopped) = tokio::sync::watch::channel(false);
        let series_task = tokio::spawn(series.run(sources, move || wall.now_ms(), stopped(series_stopped)));
        let (stop_admission, admission_stopped) = tokio::sync::watch::channel(false);
        let admission_task = (config.foreground_p99_target_ms > 0).then(|| {
            tokio::spawn(crate::admission::run(
                foreground,
                parts.services.background.clone(),
                config.foreground_p99_target_ms,
                crate::config::ADMISSION_WINDOW,
                stopped(admission_stopped),
            ))
        });
        let background = parts.spawn_background();
        let NodeParts { handler, rpc_config, store, actor, anti_entropy, membership, transfers, coordinator, .. } =
            parts;
        info!(node = %config.node_id, http = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
              rpc = %config.rpc_addr, members = membership.cluster().view().state().members().count(), engine = store.engine_name(), %actor,
              "node serving");
        let (stop_rpc, rpc_stopped) = tokio::sync::watch::channel(false);
        let rpc_task = tokio::spawn(dynamo_rpc::serve(rpc_listener, rpc_config, handler, stopped(rpc_stopped)));
        let anti_entropy_task = tokio::spawn(anti_entropy.run(stopped(stop_rpc.subscribe())));
        // The client front ends stop taking requests at the same moment.
        let (stop_clients, clients_stopped) = tokio::sync::watch::channel(false);
        let resp_task = resp_listener.map(|listener| {
            let commands = Arc::new(Commands::new(
                coordinator.clone(),
                config.resp_bucket.clone(),
                config.node_id.clone(),
                config.max_value_bytes,
            ));
            let limits = resp::limits(config.max_value_bytes);
            tokio::spawn(resp::server::serve(
                listener,
                commands,
                limits,
                config.max_connections,
                stopped(clients_stopped),
            ))
        });
        // A node that finished leaving the cluster stops as if told to.
        let left = transfers.left();
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                () = left => {}
            }
            let _ = stop_clients.send(true);
        };
        serve_http(&config, listener, api, shutdown).await;
        let _ = stop_rpc.send(true);
        let _ = rpc_task.await;
        if let Some(task) = resp_task {
            let _ = task.await;
        }
        for task in background {
            task.abort();
        }
        let _ = anti_entropy_task.await;
        let _ = stop_admission.send(true);
        let _ = stop_series.send(true);
        let _ = series_task.await;
        if let Some(task) = admission_task {
            let _ = task.await;
        }
        let dir = config.data_dir.display().to_string();
        store.close().map_err(|source| ServerError::Storage { dir, source })?;
        info!("storage closed; node stopped");
        Ok(())
    }
}

/// Completes once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The HTTP accept loop, until `shutdown`; then a graceful drain.
async fn serve_http(config: &NodeConfig, listener: TcpListener, api: Arc<Api>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let connection_slots = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    while let Some((stream, slot)) = next_connection(&listener, &connection_slots, &mut shutdown, "http").await {
        let api = api.clone();
        let service = service_fn(move |request| {
            let api = api.clone();
            async move { Ok::<_, std::convert::Infallible>(api.handle(request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    info!(
        in_flight_connections = graceful.count(),
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "shutting down: finishing in-flight requests"
    );
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await.is_err() {
        warn!("grace period over; closing remaining connections");
    }
}

fn open_store(config: &NodeConfig) -> Result<Store, ServerError> {
    let dir = config.data_dir.display().to_string();
    match config.engine {
        EngineKind::Memory => Ok(Store::memory(MemoryEngine::new())),
        EngineKind::Fjall => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|source| ServerError::DataDir { dir: dir.clone(), source })?;
            let memtable_bytes = staggered_memtable_bytes(&config.node_id);
            info!(memtable_mib = memtable_bytes >> 20, "opening fjall storage");
            Store::open_fjall_with(&config.data_dir.join("fjall"), memtable_bytes)
                .map_err(|source| ServerError::Storage { dir, source })
        }
    }
}

/// The memtable size of node `node_id`: 16 to 48 MiB, fixed per node id.
/// Replicas take the same writes, so with one size their memtables fill
/// and flush at the same moment, and each flush stalls that node's writes
/// for tens of milliseconds: every quorum then waits on a stalled node.
/// Sizes that differ by node spread the flushes apart, so a quorum of two
/// out of three almost always has two nodes that are not flushing.
/// Measured at half of peak on three local nodes: p99.9 99-137 ms with
/// 64 MiB everywhere, 36-44 ms staggered (`docs/benchmarks.md`).
pub fn staggered_memtable_bytes(node_id: &str) -> u64 {
    const BASE_MIB: u64 = 16;
    const SPREAD_MIB: u64 = 33;
    // FNV-1a: stable across builds and platforms (unlike std's hasher).
    let hash = node_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    (BASE_MIB + hash % SPREAD_MIB) << 20
}

/// A random actor id for this process incarnation (see
/// [`dynamo_core::version::ActorId`] for why it must be fresh).
pub fn fresh_actor_id() -> ActorId {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    ActorId(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_sizes_are_fixed_per_node_within_16_to_48_mib_and_spread_apart() {
        let sizes: Vec<u64> = ["node0", "node1", "node2"].iter().map(|id| staggered_memtable_bytes(id) >> 20).collect();
        assert_eq!(sizes, [16, 42, 30], "stable across builds: the FNV-1a of the node id");
        for index in 0..1000 {
            let mib = staggered_memtable_bytes(&format!("n{index}")) >> 20;
            assert!((16..=48).contains(&mib), "{mib}");
        }
    }
}
