//! One simulated machine running a dynamo node, across crashes and
//! restarts.
//!
//! What survives a crash is what survives on a real machine: the storage
//! engine's synced data ([`MemoryEngine::crash`] drops the rest), the
//! machine's clock (skew and jumps), and the nonce generator (so nonces
//! never repeat). What does not: every task, connection and in-memory
//! structure, and the actor id: each incarnation takes a fresh one, derived
//! from the seed, the node and the incarnation number (a restarted node
//! must never issue a dot its previous incarnation may have issued with a
//! different value, see [`dynamo_core::version::ActorId`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dynamo_core::keys::ObjectKey;
use dynamo_core::object::VersionedObject;
use dynamo_core::props::{BucketProps, ConflictMode, DataType};
use dynamo_core::version::ActorId;
use dynamo_node::buckets::BucketRegistry;
use dynamo_node::cluster::ClusterView;
use dynamo_node::config::NodeConfig;
use dynamo_node::membership::Membership;
use dynamo_node::server::assemble;
use dynamo_node::services::NodeServices;
use dynamo_rpc::Transport;
use dynamo_storage::{MemoryEngine, Store};

use crate::clock::{SeededNonces, SimClock};
use crate::log::{SharedLog, now_ms};
use crate::protocol::SimHandler;
use crate::rng::mix;
use crate::transport::TurmoilTransport;

/// The RPC port every simulated node listens on.
pub const RPC_PORT: u16 = 9000;

/// Bucket whose keys use last-write-wins (every other bucket: siblings).
pub const LWW_BUCKET: &str = "lww";

/// Bucket of counters (datatype `counter`, issue 12).
pub const COUNTER_BUCKET: &str = "counters";

/// Bucket of data-type sets (datatype `set`, issue 12).
pub const ORSET_BUCKET: &str = "orsets";

/// A simulated machine and its node process.
pub struct SimNode {
    /// Index in the cluster (node `i` is host `node{i}`).
    pub index: usize,
    /// Host name, also the node id.
    pub name: String,
    config: NodeConfig,
    /// The machine's "disk": shared with every incarnation.
    engine: MemoryEngine,
    /// The machine's clock.
    clock: Arc<SimClock>,
    nonces: Arc<SeededNonces>,
    /// Seed of this node's actor ids.
    actor_seed: u64,
    /// Incarnations started so far.
    incarnations: AtomicU64,
    /// Simulated time before which the node process does not start (a
    /// node that joins the cluster later), if any.
    start_at_ms: Option<u64>,
    /// The running incarnation, while it runs: how the checker reads each
    /// replica's own state and its view of the cluster.
    live: Mutex<Option<Live>>,
    /// Where the node's RPC handler records the forwarded data-type updates
    /// it receives, if anywhere (see [`SimHandler::witnessing`]).
    witness_log: Option<SharedLog>,
}

/// The parts of a running incarnation the checker looks into.
#[derive(Clone)]
struct Live {
    services: NodeServices,
    membership: Arc<Membership>,
}

impl SimNode {
    /// A machine for node `index` with `config`, a clock `skew_ms` off, and
    /// randomness derived from `seed`.
    pub fn new(index: usize, config: NodeConfig, skew_ms: i64, seed: u64) -> Self {
        Self {
            index,
            name: config.node_id.clone(),
            config,
            engine: MemoryEngine::new(),
            clock: Arc::new(SimClock::new(skew_ms)),
            nonces: Arc::new(SeededNonces::new(mix(seed, 2 * index as u64))),
            actor_seed: mix(seed, 2 * index as u64 + 1),
            incarnations: AtomicU64::new(0),
            start_at_ms: None,
            live: Mutex::new(None),
            witness_log: None,
        }
    }

    /// This machine, recording the forwarded data-type updates its node
    /// receives in `log`.
    pub fn witnessing(mut self, log: SharedLog) -> Self {
        self.witness_log = Some(log);
        self
    }

    /// This machine, whose node process starts only at `at_ms` of
    /// simulated time (restarts after that start at once).
    pub fn starting_at(mut self, at_ms: u64) -> Self {
        self.start_at_ms = Some(at_ms);
        self
    }

    /// The node process: assemble the node over this machine's storage,
    /// clock and the simulated network, configure the buckets, start the
    /// anti-entropy scheduler, serve RPC until the host is crashed. Runs as
    /// a turmoil host's software, once per incarnation (a crash drops the
    /// scheduler with every other task of the host).
    pub async fn run(self: Arc<Self>) -> turmoil::Result {
        if let Some(at_ms) = self.start_at_ms {
            tokio::time::sleep(std::time::Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
        }
        let incarnation = self.incarnations.fetch_add(1, Ordering::Relaxed);
        let actor = ActorId(mix(self.actor_seed, incarnation));
        let store = Store::memory(self.engine.clone());
        let mut parts =
            assemble(&self.config, store, self.clock.clone(), TurmoilTransport, self.nonces.clone(), actor)?;
        configure_buckets(&parts.services.buckets).await?;
        // Probing and hint delivery run on this host's runtime and die with
        // it when the host crashes.
        let _background = parts.spawn_background();
        let listener = TurmoilTransport.bind(&format!("0.0.0.0:{RPC_PORT}")).await?;
        *self.lock_live() = Some(Live { services: parts.services.clone(), membership: parts.membership.clone() });
        tokio::spawn(parts.anti_entropy.clone().run(std::future::pending::<()>()));
        let mut handler = SimHandler::new(parts.handler, parts.coordinator, parts.membership);
        if let Some(log) = &self.witness_log {
            handler = handler.witnessing(self.index, log.clone());
        }
        let handler = Arc::new(handler);
        dynamo_rpc::serve(listener, parts.rpc_config, handler, std::future::pending::<()>()).await;
        Ok(())
    }

    /// Forgets the running incarnation and drops every write it had not
    /// synced. Call together with crashing the host.
    pub fn crash(&self) {
        self.lock_live().take();
        self.engine.crash();
    }

    /// The machine's clock (to inject jumps).
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// This replica's own state of `key` (not reconciled with others), or
    /// `None` while the node is down or starting.
    pub fn replica_state(&self, key: &ObjectKey) -> Option<Result<VersionedObject, String>> {
        let live = self.lock_live().clone()?;
        Some(live.services.replica.read(key).map_err(|error| error.to_string()))
    }

    /// Hints this node holds for others, or `None` while it is down.
    pub fn hints_pending(&self) -> Option<u64> {
        let live = self.lock_live().clone()?;
        Some(live.services.hints.stats().stored)
    }

    /// Partition copies still to be made after a ring change, as this node
    /// sees the cluster, or `None` while it is down.
    pub fn pending_pulls(&self) -> Option<usize> {
        Some(self.cluster_view()?.state().pending_pulls().len())
    }

    /// Epoch of the committed ring this node knows, or `None` while it is
    /// down.
    pub fn epoch(&self) -> Option<u64> {
        Some(self.cluster_view()?.state().epoch())
    }

    /// Node indexes of the first `n` replicas of `key` under the committed
    /// ring this node knows, or `None` while it is down.
    pub fn preference_list(&self, key: &ObjectKey, n: u8) -> Option<Vec<usize>> {
        let live = self.lock_live().clone()?;
        Some(live.membership.cluster().preference_list(key, n).iter().map(|node| node_index(node.as_str())).collect())
    }

    /// The cluster as the running incarnation sees it.
    fn cluster_view(&self) -> Option<Arc<ClusterView>> {
        Some(self.lock_live().as_ref()?.membership.cluster().view())
    }

    fn lock_live(&self) -> MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The index of simulated node `node<index>`.
pub fn node_index(id: &str) -> usize {
    id.strip_prefix("node").and_then(|index| index.parse().ok()).expect("simulated node ids are node<index>")
}

/// Gives [`LWW_BUCKET`] last-write-wins props, [`COUNTER_BUCKET`] and
/// [`ORSET_BUCKET`] their datatypes, on this node (the props of the other
/// buckets are the configured defaults). Every node does it at every
/// start, before it serves anything, so all agree before any client
/// request, a node that joins later included: no data-type update is ever
/// refused for a datatype a node has not heard of yet (which a broadcast
/// `set_props` during the faults could not promise).
async fn configure_buckets(buckets: &BucketRegistry) -> turmoil::Result {
    let configured = [
        (LWW_BUCKET, ConflictMode::Lww, DataType::None),
        (COUNTER_BUCKET, ConflictMode::Siblings, DataType::Counter),
        (ORSET_BUCKET, ConflictMode::Siblings, DataType::Set),
    ];
    for (bucket, conflict, datatype) in configured {
        let props = BucketProps { conflict, datatype, ..buckets.get(bucket)? };
        // Version 1 of the bucket's props, the same on every node and at
        // every start: applying it again changes nothing.
        buckets.apply(bucket, props, 1).await?;
    }
    Ok(())
}
