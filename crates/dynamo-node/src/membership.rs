//! The node's membership service (paper section 4.8): the one owner of
//! this node's cluster state ([`dynamo_core::membership`]) and of every
//! operation that changes it.
//!
//! **Persistence.** The state lives in the `meta` namespace under
//! [`STATE_KEY`]. Every change is written durably (fsync) *before* it is
//! published to the [`Cluster`] view, so nothing acts on a state the node
//! could forget in a crash; changes are serialized by one lock, so two
//! merges cannot lose each other. At start-up ([`startup_state`]):
//! - a node with a persisted state starts from it, whatever its static
//!   configuration says (the configured member list only *founds* a
//!   cluster; later changes come by gossip, join and commit). A configured
//!   list that differs is logged and its addresses still serve as gossip
//!   seeds. A persisted ring of another partition count refuses to start
//!   (Q is fixed at creation: the data layout depends on it);
//! - a brand-new node starts from the state its configuration founds
//!   ([`crate::cluster::initial_state`]): the static members, or itself
//!   alone;
//! - in both cases the node then announces its own current settings
//!   (addresses, capacity, zone) in its record, at the next version.
//!
//! **Joining** ([`Membership::join`]). A node that is alone in its own
//! cluster and holds no data sends `Join` to a seed over the authenticated
//! RPC (a node without the cluster secret is refused by the handshake
//! before any message). The seed ([`Membership::admit`]) adds it as
//! `joining`, persists, answers with the whole state, and sends it the
//! bucket props it stores. The joiner adopts that state (it has no data
//! the old one could strand) and gossip spreads the new member. Until the
//! join completes, a node started with `--join` serves no data requests.
//!
//! **Committing** ([`Membership::commit`]). The plan (the ring the current
//! members would have) is installed as the next epoch, with a transition
//! from the current ring ([`dynamo_core::transition`]): the partitions
//! whose replicas change are copied to their new replicas by partition
//! transfers ([`crate::transfers`]) while reads stay on the old replicas
//! and writes go to both. A commit is refused while the previous one's
//! transfers are pending, so at most two rings are ever in use.
//!
//! **Leave and remove** ([`Membership::leave`], [`Membership::remove`]).
//! Leaving marks the node `leaving` and commits a plan without it: its
//! partitions are pulled from it (and the other old replicas) by their new
//! owners; once nothing is left to pull from it, the node marks itself
//! `removed` and stops ([`crate::transfers::Transfers::left`]). Removing marks a
//! (dead) node `removed` and commits: the new replicas of its partitions
//! copy them from the surviving replicas, and no transfer waits for it.
//!
//! After a commit the node pushes the new state to every member at once
//! (gossip would get there within seconds anyway), so the window in which
//! nodes route by different rings is short.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dynamo_core::membership::{
    Announcement, ClusterState, MemberStatus, MembershipError, ReplicaLoss, StateDecodeError, replicas_lost,
};
use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::{NodeId, PartitionMove, Ring, RingError};
use dynamo_core::transition::Transition;
use dynamo_storage::{Durability, Namespace, StorageError, Store};
use serde::Serialize;
use thiserror::Error;
use tracing::{info, warn};

use crate::buckets::PropsStoreError;
use crate::cluster::{Cluster, ClusterView, announcement, initial_state};
use crate::config::NodeConfig;
use crate::services::NodeServices;

/// Key of the persisted state in the `meta` namespace.
pub const STATE_KEY: &[u8] = b"cluster/state";
/// Most partitions a refused plan names in its error (the count is always
/// given).
const LOSSES_SHOWN: usize = 8;
/// Longest wait between two attempts of a start-up join.
const JOIN_RETRY_MAX: Duration = Duration::from_secs(5);
/// First wait between two attempts of a start-up join.
const JOIN_RETRY_FIRST: Duration = Duration::from_millis(250);

/// Why the persisted state could not be used at start-up.
#[derive(Debug, Error)]
pub enum StartupError {
    /// Storage failed.
    #[error("reading the cluster state: {0}")]
    Storage(#[from] StorageError),
    /// The persisted state does not decode.
    #[error(
        "the persisted cluster state is unreadable ({0}); the node will not guess its membership. Restore the data \
         directory, or remove the node from the cluster and start it afresh"
    )]
    Unreadable(StateDecodeError),
    /// The persisted ring has another Q than configured.
    #[error(
        "the persisted ring has {persisted} partitions but partitions = {configured} is configured; Q is fixed at \
         cluster creation: start the node with --partitions {persisted}"
    )]
    PartitionMismatch {
        /// Q of the persisted ring.
        persisted: u32,
        /// Q configured.
        configured: u32,
    },
    /// The configuration founds no valid cluster.
    #[error(transparent)]
    Membership(#[from] MembershipError),
}

/// The state a node starts from, and whether it must be written.
pub struct Startup {
    /// The state.
    pub state: ClusterState,
    /// Whether it differs from what is persisted (a new node, or new
    /// settings announced).
    pub changed: bool,
    /// Whether a persisted state was found.
    pub persisted: bool,
}

/// The state this node starts from (see the module documentation).
pub fn startup_state(config: &NodeConfig, store: &Store) -> Result<Startup, StartupError> {
    let announced = announcement(config);
    let Some(bytes) = store.get(Namespace::Meta, STATE_KEY)? else {
        return Ok(Startup { state: initial_state(config)?, changed: true, persisted: false });
    };
    let state = ClusterState::decode(&bytes).map_err(StartupError::Unreadable)?;
    if state.ring().partitions() != config.partitions {
        return Err(StartupError::PartitionMismatch {
            persisted: state.ring().partitions(),
            configured: config.partitions,
        });
    }
    warn_if_configured_members_differ(config, &state);
    Ok(match state.with_announcement(&announced) {
        Some(next) => Startup { state: next, changed: true, persisted: true },
        None => Startup { state, changed: false, persisted: true },
    })
}

fn warn_if_configured_members_differ(config: &NodeConfig, state: &ClusterState) {
    if config.members.len() <= 1 {
        return;
    }
    let differ = config.members.iter().any(|configured| {
        state.member(&NodeId::new(configured.id.clone())).is_none_or(|member| member.rpc_addr != configured.rpc_addr)
    });
    if differ {
        let configured: Vec<&str> = config.members.iter().map(|member| member.id.as_str()).collect();
        let known: Vec<&str> = state.members().map(|member| member.id.as_str()).collect();
        warn!(
            ?configured,
            ?known,
            "the configured member list differs from this node's persisted cluster state; the persisted state \
               wins (a member list only founds a new cluster; add nodes with `dynamo admin join` and `commit`). \
               The configured addresses still serve as gossip seeds"
        );
    }
}

/// Why a change of the state was not made.
#[derive(Debug, Error)]
pub enum ChangeError {
    /// The membership rules refuse it.
    #[error(transparent)]
    Refused(#[from] MembershipError),
    /// The state changed while the change was prepared.
    #[error("{0}")]
    Conflict(String),
    /// The new state could not be persisted (and was not published).
    #[error("persisting the cluster state: {0}")]
    Storage(#[from] StorageError),
}

/// Where a join of this node stands, as `/admin/cluster` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JoinStatus {
    /// `none`, `pending` (trying), `joined` or `failed` (gave up).
    pub state: &'static str,
    /// The seed asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Why this node could not join a cluster.
#[derive(Debug, Error)]
pub enum JoinError {
    /// It already belongs to a cluster with other members.
    #[error("this node already belongs to cluster {cluster} with {members} member records; it joins nothing else")]
    AlreadyMember {
        /// The cluster id.
        cluster: String,
        /// How many records it has.
        members: usize,
    },
    /// It holds data, which the new cluster's ring would strand.
    #[error(
        "this node holds {keys} keys; joining would make them unreachable (the cluster's ring decides who owns \
         them). Join with an empty data directory"
    )]
    HasData {
        /// Keys held.
        keys: u64,
    },
    /// The seed could not be reached or refused the connection.
    #[error("cannot reach seed {seed}: {reason}")]
    Unreachable {
        /// The seed.
        seed: String,
        /// Why (a wrong cluster secret shows here).
        reason: String,
    },
    /// The seed refused the join.
    #[error("seed {seed} refused the join: {reason}")]
    Refused {
        /// The seed.
        seed: String,
        /// Its reason.
        reason: String,
    },
    /// The seed answered something that is not a usable state.
    #[error("seed {seed} answered the join with {what}")]
    BadAnswer {
        /// The seed.
        seed: String,
        /// What came back.
        what: String,
    },
    /// Adopting the state failed.
    #[error(transparent)]
    Change(#[from] ChangeError),
}

impl JoinError {
    /// Whether trying again later cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, JoinError::AlreadyMember { .. } | JoinError::HasData { .. })
    }
}

/// One node's share of a ring, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct ShareReport {
    /// The node.
    pub node: String,
    /// Partitions it owns.
    pub partitions: u32,
    /// Its fraction of the ring.
    pub fraction: f64,
    /// Its capacity-weighted ideal, in partitions.
    pub ideal: f64,
    /// Owned minus ideal.
    pub imbalance: f64,
    /// Its capacity in that ring.
    pub capacity: u32,
    /// Its zone in that ring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

/// Every node's share of `ring`.
pub fn shares(ring: &Ring) -> Vec<ShareReport> {
    ring.shares()
        .into_iter()
        .map(|share| {
            let spec = ring.node(&share.node);
            ShareReport {
                node: share.node.to_string(),
                partitions: share.partitions,
                fraction: f64::from(share.partitions) / f64::from(ring.partitions()),
                ideal: share.ideal,
                imbalance: share.imbalance(),
                capacity: spec.map_or(1, |spec| spec.capacity),
                zone: spec.and_then(|spec| spec.zone.clone()),
            }
        })
        .collect()
}

/// The plan, as `GET /admin/plan` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    /// The node that computed it.
    pub node: String,
    /// The committed epoch.
    pub committed_epoch: u64,
    /// The epoch a commit would install.
    pub planned_epoch: u64,
    /// Whether committing would change anything.
    pub changes: bool,
    /// Q.
    pub partitions: u32,
    /// Partitions that change owner.
    pub moves: Vec<PartitionMove>,
    /// How many.
    pub moved: usize,
    /// Their fraction of the ring.
    pub moved_fraction: f64,
    /// Shares in the planned ring.
    pub shares: Vec<ShareReport>,
    /// Largest |owned - ideal| in the planned ring.
    pub max_imbalance: f64,
    /// The replication factors the transfers are computed for (default n
    /// and every bucket's n).
    pub replication_factors: Vec<u8>,
    /// How many partitions change replicas (and are copied).
    pub replicas_lost: usize,
    /// The first few of them, with the nodes that stop replicating them.
    pub replicas_lost_examples: Vec<ReplicaLoss>,
    /// Partition copies (pulls) the commit would start.
    pub transfers: usize,
    /// What `commit` would do with this plan.
    pub commit: String,
}

/// What a commit did, as `POST /admin/commit` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct CommitReport {
    /// The node that committed.
    pub node: String,
    /// Whether a new ring was installed (false: nothing to commit).
    pub committed: bool,
    /// The epoch before.
    pub previous_epoch: u64,
    /// The epoch now.
    pub epoch: u64,
    /// Partitions that changed owner.
    pub moves: Vec<PartitionMove>,
    /// Shares in the new ring.
    pub shares: Vec<ShareReport>,
    /// Largest |owned - ideal| in the new ring.
    pub max_imbalance: f64,
    /// Partitions whose replicas changed.
    pub replicas_lost: usize,
    /// Partition copies (pulls) the commit started.
    pub transfers: usize,
    /// Members that acknowledged the new state right away.
    pub pushed_to: Vec<String>,
    /// Members that did not (gossip brings it to them), with why.
    pub not_pushed: Vec<(String, String)>,
    /// What an operator should know.
    pub note: String,
}

impl CommitReport {
    /// The report of a commit that installed no ring: `state` as it is.
    fn unchanged(node: String, state: &ClusterState, note: String) -> Self {
        CommitReport {
            node,
            committed: false,
            previous_epoch: state.epoch(),
            epoch: state.epoch(),
            moves: Vec::new(),
            shares: shares(state.ring()),
            max_imbalance: state.ring().max_imbalance(),
            replicas_lost: 0,
            transfers: 0,
            pushed_to: Vec::new(),
            not_pushed: Vec::new(),
            note,
        }
    }
}

/// Why a commit (or a leave or remove) was refused.
#[derive(Debug, Error)]
pub enum CommitError {
    /// The plan cannot be built.
    #[error("no valid plan: {0}")]
    Plan(#[from] RingError),
    /// No member with that id.
    #[error("{0} is not a member of this cluster (see `dynamo admin members`)")]
    UnknownNode(String),
    /// Leaving the last node.
    #[error("{0} is the only node that owns partitions: a cluster cannot leave itself empty")]
    LastNode(String),
    /// Bucket props could not be read.
    #[error("reading bucket props: {0}")]
    Props(#[from] PropsStoreError),
    /// The change itself failed.
    #[error(transparent)]
    Change(#[from] ChangeError),
}

/// What the membership service works with.
pub struct MembershipParts {
    /// The cluster view it publishes to (`services.cluster`), the failure
    /// detector it tells the peers whenever membership changes, how other
    /// nodes are reached, the replica (is it empty? Merkle roots) and the
    /// bucket props (replication factors, props sent to joiners).
    /// The state is persisted in the replica's store.
    pub services: NodeServices,
    /// What this node says about itself.
    pub announcement: Announcement,
    /// Timeout of every call to another node.
    pub call_timeout: Duration,
}

/// The membership service (see the module documentation).
pub struct Membership {
    services: NodeServices,
    announcement: Announcement,
    call_timeout: Duration,
    /// Serializes changes: compute, persist, publish.
    update_lock: tokio::sync::Mutex<()>,
    /// One commit at a time on this node (a commit calls every member).
    commit_lock: tokio::sync::Mutex<()>,
    join: Mutex<JoinStatus>,
    /// Set while a start-up join (`--join`) is in progress: the node then
    /// refuses data requests, which it would otherwise take as a cluster
    /// of one and strand once it joins.
    joining_at_start: AtomicBool,
    /// Whether this node held no object when its start-up join began (see
    /// [`Membership::try_join`]).
    empty_at_join_start: AtomicBool,
}

impl Membership {
    /// The service over `parts`.
    pub fn new(parts: MembershipParts) -> Self {
        let MembershipParts { services, announcement, call_timeout } = parts;
        services.detector.set_peers(services.cluster.others());
        Self {
            services,
            announcement,
            call_timeout,
            update_lock: tokio::sync::Mutex::new(()),
            commit_lock: tokio::sync::Mutex::new(()),
            join: Mutex::new(JoinStatus { state: "none", ..JoinStatus::default() }),
            joining_at_start: AtomicBool::new(false),
            empty_at_join_start: AtomicBool::new(false),
        }
    }

    /// The cluster view this service publishes.
    pub fn cluster(&self) -> &Cluster {
        &self.services.cluster
    }

    /// Where a join of this node stands.
    pub fn join_status(&self) -> JoinStatus {
        self.lock_join().clone()
    }

    /// Why this node does not serve data yet (a join in progress), if so.
    pub fn not_serving_reason(&self) -> Option<String> {
        if !self.joining_at_start.load(Ordering::Acquire) {
            return None;
        }
        let join = self.lock_join();
        Some({
            format!(
                "this node is joining a cluster through {} and serves no data until it has joined{}; see GET \
                 /admin/cluster",
                join.seed.as_deref().unwrap_or("a seed"),
                join.last_error.as_ref().map(|error| format!(" (last attempt: {error})")).unwrap_or_default()
            )
        })
    }

    /// Marks a start-up join as in progress (data requests refused), before
    /// the node serves anything; [`Membership::run_join`] clears it.
    pub fn expect_join(&self, seed: &str) {
        if self.services.cluster.view().state().is_standalone(self.services.cluster.local()) {
            let empty = self.services.replica.index().keys() == 0;
            self.empty_at_join_start.store(empty, Ordering::Release);
            self.joining_at_start.store(true, Ordering::Release);
            *self.lock_join() =
                JoinStatus { state: "pending", seed: Some(seed.to_string()), attempts: 0, last_error: None };
        }
    }

    /// Applies a change: `change` computes the next state from the current
    /// one (`None`: no change); it is persisted, then published. Returns
    /// the view after, and whether it changed.
    pub async fn update(
        &self,
        change: impl FnOnce(&ClusterState) -> Result<Option<ClusterState>, ChangeError>,
    ) -> Result<(Arc<ClusterView>, bool), ChangeError> {
        let _serialized = self.update_lock.lock().await;
        let current = self.services.cluster.view();
        let Some(next) = change(current.state())? else {
            return Ok((current, false));
        };
        if next == *current.state() {
            return Ok((current, false));
        }
        self.services.replica.store().put(Namespace::Meta, STATE_KEY, &next.encode(), Durability::Durable).await?;
        log_changes(current.state(), &next);
        let view = self.services.cluster.publish(next);
        self.services.detector.set_peers(self.services.cluster.others());
        Ok((view, true))
    }

    /// Merges a peer's state into this node's.
    pub async fn merge(&self, theirs: &ClusterState) -> Result<(Arc<ClusterView>, bool), ChangeError> {
        self.update(|ours| {
            let mut merged = ours.clone();
            Ok(merged.merge_in(theirs)?.then_some(merged))
        })
        .await
    }

    /// Serves a `Join` from `peer` (the name it authenticated with): adds
    /// it as `joining`, answers with the state, and sends it the bucket
    /// props this node stores.
    pub async fn admit(self: &Arc<Self>, peer: &str, node: &Announcement, partitions: u32) -> Response {
        if node.id.as_str() != peer {
            warn!(peer, asked = %node.id, "refused a join: the node authenticated under another name");
            return Response::Failed {
                reason: format!("authenticated as {peer} but asks to join as {}; use one node id", node.id),
            };
        }
        // The joiner learns every bucket's props from this node: one it
        // could not send would leave the joiner on the defaults (a smaller
        // n, say) for that bucket.
        match self.services.buckets.listing() {
            Ok(listing) if listing.unreadable.is_empty() => {}
            Ok(listing) => {
                let reason = format!(
                    "the props of bucket {} are unreadable on {}; set them again (every field), then retry the join",
                    listing.unreadable[0],
                    self.services.cluster.local()
                );
                warn!(node = %node.id, %reason, "refused a join");
                return Response::Failed { reason };
            }
            Err(error) => return Response::Failed { reason: format!("cannot list the bucket props: {error}") },
        }
        let outcome = self.update(|state| Ok(Some(state.with_joining(node, partitions)?))).await;
        match outcome {
            Ok((view, _)) => {
                info!(node = %node.id, rpc = %node.rpc_addr, "admitted a joining node; gossip spreads it");
                let this = self.clone();
                let id = node.id.clone();
                tokio::spawn(async move { this.send_props(&id).await });
                Response::ClusterState { state: Box::new(view.state().clone()) }
            }
            Err(error) => {
                warn!(node = %node.id, %error, "refused a join");
                Response::Failed { reason: error.to_string() }
            }
        }
    }

    /// Sends every bucket's stored props to `node` (a node that just
    /// joined has none), best effort: a failure is logged, and a props
    /// change made later reaches it like any member.
    async fn send_props(&self, node: &NodeId) {
        // `admit` refused the join if any props were unreadable.
        let stored = match self.services.buckets.listing() {
            Ok(listing) => listing.readable,
            Err(error) => {
                warn!(%node, %error, "cannot list bucket props for a joining node");
                return;
            }
        };
        for (bucket, props, version) in stored {
            let request = Request::SetProps { bucket: bucket.clone(), props, version };
            match self.services.peers.call(node, request, self.call_timeout).await {
                Ok(Response::PropsSet) => {}
                Ok(other) => warn!(%node, %bucket, ?other, "joining node did not take bucket props"),
                Err(reason) => warn!(%node, %bucket, %reason, "cannot send bucket props to a joining node"),
            }
        }
    }

    /// Joins the cluster that `seed` (an RPC address) belongs to: this node
    /// must be alone in its own cluster and hold no data (see the module
    /// documentation).
    pub async fn join(&self, seed: &str) -> Result<Arc<ClusterView>, JoinError> {
        let result = self.try_join(seed).await;
        let mut status = self.lock_join();
        status.seed = Some(seed.to_string());
        status.attempts = status.attempts.saturating_add(1);
        match &result {
            Ok(_) => {
                status.state = "joined";
                status.last_error = None;
            }
            Err(error) => {
                let retrying = self.joining_at_start.load(Ordering::Acquire) && !error.is_permanent();
                status.state = if retrying { "pending" } else { "failed" };
                status.last_error = Some(error.to_string());
            }
        }
        result
    }

    async fn try_join(&self, seed: &str) -> Result<Arc<ClusterView>, JoinError> {
        let local = self.services.cluster.local().clone();
        let view = self.services.cluster.view();
        if !view.state().is_standalone(&local) {
            return Err(JoinError::AlreadyMember {
                cluster: view.state().cluster_id().to_string(),
                members: view.state().members().count(),
            });
        }
        // A node with data of its own would mix it into the cluster. But a
        // node that started empty for a start-up join refuses client data
        // until it has joined, so what it holds now came over authenticated
        // RPC from members that already count it in their ring (the join
        // was applied at the seed, its answer lost, and a plan committed):
        // the cluster's own writes for it, which joining keeps where they
        // belong.
        let keys = self.services.replica.index().keys();
        let from_the_cluster =
            self.joining_at_start.load(Ordering::Acquire) && self.empty_at_join_start.load(Ordering::Acquire);
        if keys > 0 && !from_the_cluster {
            return Err(JoinError::HasData { keys });
        }
        let partitions = view.ring().partitions();
        let request = Request::Join { node: self.announcement.clone(), partitions };
        let answer = self
            .services
            .peers
            .call_addr(seed, request, self.call_timeout)
            .await
            .map_err(|reason| JoinError::Unreachable { seed: seed.to_string(), reason })?;
        let state = match answer {
            Response::ClusterState { state } => state,
            Response::Failed { reason } => return Err(JoinError::Refused { seed: seed.to_string(), reason }),
            other => return Err(JoinError::BadAnswer { seed: seed.to_string(), what: format!("{other:?}") }),
        };
        let admitted = state.member(&local).is_some_and(|me| me.rpc_addr == self.announcement.rpc_addr);
        if !admitted || state.ring().partitions() != partitions {
            return Err(JoinError::BadAnswer {
                seed: seed.to_string(),
                what: "a state that does not list this node at its address".to_string(),
            });
        }
        let (view, _) = self
            .update(|current| {
                if !current.is_standalone(&local) {
                    return Err(ChangeError::Conflict("this node joined a cluster meanwhile".to_string()));
                }
                Ok(Some(*state))
            })
            .await?;
        info!(%seed, cluster = %view.state().cluster_id(), members = view.state().members().count(),
              "joined the cluster as a joining member; it owns partitions once a plan is committed");
        Ok(view)
    }

    /// The start-up join of `--join`: tries until it succeeds or cannot
    /// succeed, waiting longer between attempts (up to 5 s). A node that
    /// already belongs to a cluster (a restart) does nothing.
    pub async fn run_join(self: Arc<Self>, seed: String) {
        if !self.services.cluster.view().state().is_standalone(self.services.cluster.local()) {
            info!(%seed, "this node already belongs to a cluster; --join ignored");
            return;
        }
        self.expect_join(&seed);
        let mut wait = JOIN_RETRY_FIRST;
        loop {
            match self.join(&seed).await {
                Ok(_) => {
                    self.joining_at_start.store(false, Ordering::Release);
                    return;
                }
                Err(error) if error.is_permanent() => {
                    warn!(%seed, %error, "cannot join; giving up (the node serves as a cluster of its own)");
                    self.joining_at_start.store(false, Ordering::Release);
                    return;
                }
                Err(error) => warn!(%seed, %error, retry_ms = wait.as_millis() as u64, "join failed; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(JOIN_RETRY_MAX);
        }
    }

    /// The plan as the admin API shows it.
    pub fn plan_report(&self) -> Result<PlanReport, CommitError> {
        let view = self.services.cluster.view();
        let state = view.state();
        let plan = state.plan()?;
        let factors = self.replication_factors()?;
        let losses = losses(state.ring(), &plan.ring, &factors);
        let transfers = Transition::new(state.ring().clone(), &factors).pulls(&plan.ring).len();
        let changes = !plan.is_empty(state.ring());
        let pending = state.pending_pulls().len();
        let commit = if !changes {
            "nothing to commit: the plan is the committed ring".to_string()
        } else if pending > 0 {
            format!("waits: {pending} transfers of the previous change are pending (see `dynamo admin transfers`)")
        } else {
            format!(
                "moves {} partitions: {transfers} partition copies, while reads stay on the current replicas and writes go to both",
                plan.moves.len()
            )
        };
        let partitions = plan.ring.partitions();
        Ok(PlanReport {
            node: self.services.cluster.local().to_string(),
            committed_epoch: state.epoch(),
            planned_epoch: plan.ring.version(),
            changes,
            partitions,
            moved: plan.moves.len(),
            moved_fraction: plan.moves.len() as f64 / f64::from(partitions),
            moves: plan.moves,
            shares: shares(&plan.ring),
            max_imbalance: plan.ring.max_imbalance(),
            replication_factors: factors,
            replicas_lost: losses.len(),
            replicas_lost_examples: losses.into_iter().take(LOSSES_SHOWN).collect(),
            transfers,
            commit,
        })
    }

    /// Commits the plan (see the module documentation).
    pub async fn commit(&self) -> Result<CommitReport, CommitError> {
        let _one_at_a_time = self.commit_lock.lock().await;
        let before = self.services.cluster.view();
        let plan = before.state().plan()?;
        let node = self.services.cluster.local().to_string();
        if plan.is_empty(before.state().ring()) {
            let note = "nothing to commit: the plan is the committed ring".to_string();
            return Ok(CommitReport::unchanged(node, before.state(), note));
        }
        let factors = self.replication_factors()?;
        let lost = losses(before.state().ring(), &plan.ring, &factors);
        let (after, _) = self
            .update(|current| {
                if current.ring() != before.state().ring() || current.plan().ok().as_ref() != Some(&plan) {
                    return Err(ChangeError::Conflict(
                        "the cluster state changed while the commit was checked; look at the plan again and retry"
                            .to_string(),
                    ));
                }
                Ok(Some(current.commit(&plan, &factors)?))
            })
            .await?;
        let transfers = after.state().pending_pulls().len();
        info!(epoch = after.state().epoch(), moved = plan.moves.len(), transfers, "committed a plan");
        let (pushed_to, not_pushed) = self.push_to_members(&after).await;
        let note = if transfers == 0 {
            "no data has to move".to_string()
        } else {
            format!(
                "{transfers} partition copies started; until each partition is copied, its reads stay on the \
                 previous replicas and its writes go to both. Watch them with `dynamo admin transfers`"
            )
        };
        Ok(CommitReport {
            node,
            committed: true,
            previous_epoch: before.state().epoch(),
            epoch: after.state().epoch(),
            moves: plan.moves,
            shares: shares(after.state().ring()),
            max_imbalance: after.state().ring().max_imbalance(),
            replicas_lost: lost.len(),
            transfers,
            pushed_to,
            not_pushed,
            note,
        })
    }

    /// Graceful leave of `node`: marks it `leaving` and commits a plan
    /// without it. Refused while transfers are pending (the commit could
    /// not follow) and for the last node owning partitions.
    pub async fn leave(&self, node: &NodeId) -> Result<CommitReport, CommitError> {
        self.check_can_change_owners(node)?;
        self.update(|state| Ok(state.with_status(node, MemberStatus::Leaving))).await?;
        self.commit().await
    }

    /// Removal of a (dead) node: marks it `removed`, so that no transfer
    /// waits for it or copies from it, and commits a plan without it when
    /// no transfer of an earlier change is pending (otherwise the report
    /// says to commit once they are done).
    pub async fn remove(&self, node: &NodeId) -> Result<CommitReport, CommitError> {
        let view = self.services.cluster.view();
        if view.state().member(node).is_none_or(|member| member.status == MemberStatus::Removed) {
            return Err(CommitError::UnknownNode(node.to_string()));
        }
        let (removed, _) = self.update(|state| Ok(state.with_status(node, MemberStatus::Removed))).await?;
        match self.commit().await {
            // The removal itself took effect (no transfer waits for the node
            // any more); only the re-replication waits for the change in
            // progress.
            Err(CommitError::Change(ChangeError::Refused(MembershipError::TransfersPending { pending, .. }))) => {
                let (pushed_to, not_pushed) = self.push_to_members(&removed).await;
                let note = format!(
                    "{node} is removed: no transfer waits for it or copies from it. The ring without it is not \
                     committed yet: {pending} transfers of the change in progress are pending; run `dynamo admin \
                     commit` once `dynamo admin transfers` shows none"
                );
                let report = CommitReport::unchanged(self.services.cluster.local().to_string(), removed.state(), note);
                Ok(CommitReport { pushed_to, not_pushed, ..report })
            }
            outcome => outcome,
        }
    }

    /// Refuses a leave that could not complete.
    fn check_can_change_owners(&self, node: &NodeId) -> Result<(), CommitError> {
        let view = self.services.cluster.view();
        let state = view.state();
        match state.member(node) {
            Some(member) if member.status != MemberStatus::Removed => {}
            _ => return Err(CommitError::UnknownNode(node.to_string())),
        }
        let others = state.members().filter(|member| member.id != *node && member.status.in_plan()).count();
        if others == 0 {
            return Err(CommitError::LastNode(node.to_string()));
        }
        let pending = state.pending_pulls().len();
        if pending > 0 {
            return Err(ChangeError::from(MembershipError::TransfersPending { epoch: state.epoch(), pending }).into());
        }
        Ok(())
    }

    /// The replication factors in use: the default n and every bucket's.
    fn replication_factors(&self) -> Result<Vec<u8>, PropsStoreError> {
        let buckets = &self.services.buckets;
        let listing = buckets.listing()?;
        if let Some(bucket) = listing.unreadable.first() {
            // Planning without its n could leave its data without replicas.
            return Err(PropsStoreError::Unreadable {
                bucket: bucket.clone(),
                detail: "set the bucket's props again (every field) before changing membership".to_string(),
            });
        }
        let mut factors: BTreeSet<u8> = listing.readable.into_iter().map(|(_, props, _)| props.n).collect();
        factors.insert(buckets.defaults().n);
        Ok(factors.into_iter().collect())
    }

    /// Pushes `view`'s state to every other member, each with the call
    /// timeout; returns who took it and who did not (and why).
    pub(crate) async fn push_to_members(&self, view: &ClusterView) -> (Vec<String>, Vec<(String, String)>) {
        // All at once: a member cut off by a network partition costs the
        // call timeout once, not once per member behind it.
        let mut calls = tokio::task::JoinSet::new();
        for node in self.services.cluster.others() {
            let request = Request::GossipPush { state: Box::new(view.state().clone()) };
            let (peers, timeout) = (self.services.peers.clone(), self.call_timeout);
            calls.spawn(async move {
                let answer = peers.call(&node, request, timeout).await;
                (node, answer)
            });
        }
        let mut pushed = Vec::new();
        let mut missed = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let Ok((node, answer)) = joined else { continue };
            match answer {
                Ok(Response::ClusterSame) => pushed.push(node.to_string()),
                Ok(Response::ClusterState { state }) => {
                    // It knew something we did not: take it too.
                    if let Err(error) = self.merge(&state).await {
                        warn!(%node, %error, "cannot merge the state a member answered a push with");
                    }
                    pushed.push(node.to_string());
                }
                Ok(Response::Failed { reason }) | Err(reason) => missed.push((node.to_string(), reason)),
                Ok(other) => missed.push((node.to_string(), format!("unexpected answer {other:?}"))),
            }
        }
        pushed.sort();
        missed.sort();
        (pushed, missed)
    }

    fn lock_join(&self) -> MutexGuard<'_, JoinStatus> {
        self.join.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn losses(old: &Ring, new: &Ring, factors: &[u8]) -> Vec<ReplicaLoss> {
    let factors: Vec<usize> = factors.iter().map(|n| usize::from(*n)).collect();
    replicas_lost(old, new, &factors)
}

/// Logs what a change brings: new members, status changes, a new epoch.
fn log_changes(before: &ClusterState, after: &ClusterState) {
    if before.cluster_id() != after.cluster_id() {
        // A join: the whole state is new (logged by the join itself).
        return;
    }
    for member in after.members() {
        match before.member(&member.id) {
            None => info!(node = %member.id, status = %member.status, rpc = %member.rpc_addr, "new cluster member"),
            Some(old) if old.status != member.status => {
                info!(node = %member.id, from = %old.status, to = %member.status, "member status changed")
            }
            Some(_) => {}
        }
    }
    if after.epoch() != before.epoch() || after.ring() != before.ring() {
        info!(from = before.epoch(), to = after.epoch(), nodes = after.ring().nodes().count(), "new committed ring");
    }
}
