//! Starting and stopping a node: open storage, build the replica,
//! coordinator and API, accept HTTP connections, and on shutdown stop
//! accepting, let in-flight requests finish (up to a grace period), then
//! fsync and close storage. The process-level signal handling lives in the
//! binary; this module takes a shutdown future so tests can drive it.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

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

use crate::buckets::BucketRegistry;
use crate::clock::{SystemClock, WallClock};
use crate::config::{EngineKind, NodeConfig};
use crate::coordinator::Coordinator;
use crate::http::Api;
use crate::metrics::Metrics;
use crate::replica::Replica;

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
    /// The HTTP address could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source} (is another node using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A node that has opened its storage and bound its listener.
pub struct Node {
    config: NodeConfig,
    listener: TcpListener,
    api: Arc<Api>,
    store: Store,
    actor: ActorId,
}

impl Node {
    /// Opens storage and binds the HTTP listener, using the system clock.
    pub async fn bind(config: NodeConfig) -> Result<Node, ServerError> {
        Self::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Node::bind`] with an injected wall clock.
    pub async fn bind_with_clock(config: NodeConfig, wall: Arc<dyn WallClock>) -> Result<Node, ServerError> {
        let store = open_store(&config)?;
        let actor = fresh_actor_id();
        let replica = Arc::new(Replica::new(store.clone(), config.partitions, actor, wall));
        let buckets = Arc::new(BucketRegistry::new(store.clone(), config.default_props));
        let coordinator = Arc::new(Coordinator::new(config.node_id.clone(), replica, buckets, config.request_timeout));
        let metrics = Arc::new(Metrics::default());
        let api =
            Arc::new(Api::new(coordinator, metrics, config.node_id.clone(), config.max_value_bytes, config.partitions));
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::Bind { addr: config.http_addr, source })?;
        Ok(Node { config, listener, api, store, actor })
    }

    /// The address the HTTP API listens on (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.http_addr)
    }

    /// Serves until `shutdown` completes, then drains and closes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Node { config, listener, api, store, actor } = self;
        info!(node = %config.node_id, http = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
              engine = store.engine_name(), %actor, "node serving");
        let graceful = GracefulShutdown::new();
        let connection_slots = Arc::new(Semaphore::new(config.max_connections));
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = connection_slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors and similar: back off briefly
                    // instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
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
        let dir = config.data_dir.display().to_string();
        store.close().map_err(|source| ServerError::Storage { dir, source })?;
        info!("storage closed; node stopped");
        Ok(())
    }
}

fn open_store(config: &NodeConfig) -> Result<Store, ServerError> {
    let dir = config.data_dir.display().to_string();
    match config.engine {
        EngineKind::Memory => Ok(Store::memory(MemoryEngine::new())),
        EngineKind::Fjall => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|source| ServerError::DataDir { dir: dir.clone(), source })?;
            Store::open_fjall(&config.data_dir.join("fjall")).map_err(|source| ServerError::Storage { dir, source })
        }
    }
}

/// A random actor id for this process incarnation (see
/// [`dynamo_core::version::ActorId`] for why it must be fresh).
fn fresh_actor_id() -> ActorId {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    ActorId(hasher.finish())
}
