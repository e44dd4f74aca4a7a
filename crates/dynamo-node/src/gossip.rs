//! Gossip (paper section 4.8.1): every `gossip_interval_ms` this node
//! reconciles its cluster state with one member chosen at random and,
//! every few rounds, with a seed ([`dynamo_core::membership::gossip_targets`],
//! the rule the convergence simulator measures too). No node coordinates
//! membership: a change taken anywhere reaches every node through these
//! exchanges, even when the node that took it is gone.
//!
//! **An exchange** is push-pull, at most two round trips, and sends a whole
//! state only when the two differ:
//! 1. the initiator sends its cluster id and state digest ([`Request::Gossip`]);
//!    the peer answers `ClusterSame` when its digest is equal (the common
//!    case: about 40 bytes each way), else its state;
//! 2. the initiator merges that state (persisting it if it learned
//!    something) and, unless the merge equals the peer's state, pushes the
//!    merged state back ([`Request::GossipPush`]); the peer merges it and
//!    answers `ClusterSame`, or its own merge when it had learned something
//!    else meanwhile, which the initiator merges too.
//!
//! States are at most [`dynamo_core::membership::MAX_STATE_BYTES`], and
//! every call has the request timeout. A peer of another cluster is
//! refused (and logged, at most once a minute): never merged.
//!
//! **Seeds** are RPC addresses: the static members, `--seed`, `--join`
//! (this node's own address left out); a node configured with none uses
//! the nodes of the committed ring. A seed that is a known member is
//! called as that member, and skipped while the failure detector marks it
//! down (its probes bring it back): in the simulation, gossip dialling a
//! partitioned seed held up the hint deliveries to it for a whole connect
//! timeout after the partition healed. Randomness comes from the node's
//! injected nonce source, so the simulation replays gossip exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_core::membership::{
    ClusterId, ClusterState, MembershipError, SEED_ROUND_INTERVAL, StateDigest, gossip_targets,
};
use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::NodeId;
use dynamo_core::rng::SplitMix64;
use serde::Serialize;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::failure_detector::FailureDetector;
use crate::lock;
use crate::membership::{ChangeError, Membership};
use crate::peers::Peers;

/// Least time between two warnings about a peer of another cluster.
const FOREIGN_WARNING_GAP: Duration = Duration::from_secs(60);

/// Counters of this node's gossip, for `/admin/cluster`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GossipStats {
    /// Rounds run.
    pub rounds: u64,
    /// Exchanges started.
    pub exchanges: u64,
    /// Exchanges that found both states equal.
    pub in_sync: u64,
    /// Exchanges in which this node learned something.
    pub learned: u64,
    /// Exchanges in which this node pushed its state.
    pub pushed: u64,
    /// Exchanges that failed.
    pub failed: u64,
    /// The last failure: target and reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// Whom one exchange is with.
#[derive(Clone, Debug)]
enum Target {
    Member(NodeId),
    Seed(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Member(node) => write!(f, "{node}"),
            Target::Seed(addr) => write!(f, "seed {addr}"),
        }
    }
}

/// What the gossip service works with.
pub struct GossipParts {
    /// The state it reconciles.
    pub membership: Arc<Membership>,
    /// How other nodes are reached.
    pub peers: Arc<dyn Peers>,
    /// Which members are reachable (members marked down are not picked).
    pub detector: Arc<FailureDetector>,
    /// Seed RPC addresses (this node's own is left out here).
    pub seeds: Vec<String>,
    /// This node's RPC address as others reach it.
    pub own_addr: String,
    /// Time between rounds (zero: no rounds).
    pub interval: Duration,
    /// Timeout of each call.
    pub call_timeout: Duration,
    /// 64 random bits to seed peer selection.
    pub random_seed: u64,
}

/// The gossip service (see the module documentation).
pub struct Gossip {
    membership: Arc<Membership>,
    peers: Arc<dyn Peers>,
    detector: Arc<FailureDetector>,
    seeds: Vec<String>,
    own_addr: String,
    interval: Duration,
    call_timeout: Duration,
    /// SplitMix64 state: the peer choices.
    random: Mutex<SplitMix64>,
    round: AtomicU64,
    stats: Mutex<GossipStats>,
    last_foreign_warning: Mutex<Option<Instant>>,
}

impl Gossip {
    /// The service over `parts`.
    pub fn new(parts: GossipParts) -> Self {
        let GossipParts { membership, peers, detector, seeds, own_addr, interval, call_timeout, random_seed } = parts;
        let mut seeds: Vec<String> = seeds.into_iter().filter(|seed| *seed != own_addr).collect();
        seeds.sort();
        seeds.dedup();
        Self {
            membership,
            peers,
            detector,
            seeds,
            own_addr,
            interval,
            call_timeout,
            random: Mutex::new(SplitMix64::new(random_seed)),
            // A random phase, so that nodes started together do not all
            // call the seeds in the same round.
            round: AtomicU64::new(random_seed % SEED_ROUND_INTERVAL),
            stats: Mutex::new(GossipStats::default()),
            last_foreign_warning: Mutex::new(None),
        }
    }

    /// The membership service.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Counters so far.
    pub fn stats(&self) -> GossipStats {
        lock(&self.stats).clone()
    }

    /// Time between rounds.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The seeds this round would use.
    pub fn seeds(&self) -> Vec<String> {
        if !self.seeds.is_empty() {
            return self.seeds.clone();
        }
        let view = self.membership.cluster().view();
        view.ring()
            .nodes()
            .filter_map(|spec| view.rpc_addr(&spec.id))
            .filter(|addr| *addr != self.own_addr)
            .map(str::to_string)
            .collect()
    }

    /// A round every interval, forever (the task is dropped with the
    /// node); nothing when the interval is zero.
    pub async fn run(self: Arc<Self>) {
        if self.interval.is_zero() {
            return;
        }
        loop {
            tokio::time::sleep(self.interval).await;
            self.round().await;
        }
    }

    /// One round: an exchange with a random member, and with a seed when
    /// one is due. A node alone in its own cluster has nobody to tell.
    pub async fn round(&self) {
        let cluster = self.membership.cluster();
        let view = cluster.view();
        if view.state().is_standalone(cluster.local()) {
            return;
        }
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        lock(&self.stats).rounds += 1;
        let members: Vec<NodeId> = view
            .state()
            .gossip_peers(cluster.local())
            .into_iter()
            .map(|member| member.id.clone())
            .filter(|node| self.detector.is_up(node))
            .collect();
        let seeds = self.seeds();
        let targets = gossip_targets(round, members.len(), seeds.len(), self.next_random());
        let member = targets.peer.map(|index| members[index].clone());
        let member_addr = member.as_ref().and_then(|node| view.rpc_addr(node)).map(str::to_string);
        if let Some(node) = member {
            self.exchange(Target::Member(node)).await;
        }
        if let Some(seed) = targets.seed.map(|index| seeds[index].clone())
            && Some(&seed) != member_addr.as_ref()
        {
            // A seed that is a known member is called as that member, so
            // that one the failure detector marks down is left to its
            // probes instead of being dialled every few rounds (a dial into
            // a partition holds up every other call to it until the
            // connect times out).
            match view.state().gossip_peers(cluster.local()).into_iter().find(|member| member.rpc_addr == seed) {
                Some(member) if self.detector.is_up(&member.id) => {
                    self.exchange(Target::Member(member.id.clone())).await
                }
                Some(_) => {}
                None => self.exchange(Target::Seed(seed)).await,
            }
        }
    }

    async fn exchange(&self, target: Target) {
        lock(&self.stats).exchanges += 1;
        if let Err(reason) = self.try_exchange(&target).await {
            debug!(%target, %reason, "gossip exchange failed");
            let mut stats = lock(&self.stats);
            stats.failed += 1;
            stats.last_failure = Some(format!("{target}: {reason}"));
        }
    }

    async fn try_exchange(&self, target: &Target) -> Result<(), String> {
        let view = self.membership.cluster().view();
        let hello = Request::Gossip { cluster: view.state().cluster_id(), digest: view.digest() };
        let theirs = match self.call(target, hello).await? {
            Response::ClusterSame => {
                lock(&self.stats).in_sync += 1;
                return Ok(());
            }
            Response::ClusterState { state } => state,
            Response::Failed { reason } => return Err(reason),
            other => return Err(format!("unexpected answer {other:?}")),
        };
        let (merged, learned) = self.membership.merge(&theirs).await.map_err(|error| error.to_string())?;
        if learned {
            lock(&self.stats).learned += 1;
        }
        if merged.digest() == theirs.digest() {
            return Ok(());
        }
        lock(&self.stats).pushed += 1;
        match self.call(target, Request::GossipPush { state: Box::new(merged.state().clone()) }).await? {
            Response::ClusterSame => Ok(()),
            Response::ClusterState { state } => {
                self.membership.merge(&state).await.map_err(|error| error.to_string())?;
                Ok(())
            }
            Response::Failed { reason } => Err(reason),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn call(&self, target: &Target, request: Request) -> Result<Response, String> {
        match target {
            Target::Member(node) => self.peers.call(node, request, self.call_timeout).await,
            Target::Seed(addr) => self.peers.call_addr(addr, request, self.call_timeout).await,
        }
    }

    /// Serves the first step of a peer's exchange.
    pub fn serve_digest(&self, peer: &str, cluster: ClusterId, digest: StateDigest) -> Response {
        let view = self.membership.cluster().view();
        if cluster != view.state().cluster_id() {
            let error = MembershipError::DifferentCluster { ours: view.state().cluster_id(), theirs: cluster };
            self.warn_foreign(peer, &error);
            return Response::Failed { reason: error.to_string() };
        }
        if digest == view.digest() {
            Response::ClusterSame
        } else {
            Response::ClusterState { state: Box::new(view.state().clone()) }
        }
    }

    /// Serves the second step: merges the peer's state.
    pub async fn serve_push(&self, peer: &str, theirs: &ClusterState) -> Response {
        match self.membership.merge(theirs).await {
            Ok((view, _)) if view.digest() == theirs.digest() => Response::ClusterSame,
            Ok((view, _)) => Response::ClusterState { state: Box::new(view.state().clone()) },
            Err(ChangeError::Refused(error)) => {
                self.warn_foreign(peer, &error);
                Response::Failed { reason: error.to_string() }
            }
            Err(error) => Response::Failed { reason: error.to_string() },
        }
    }

    fn warn_foreign(&self, peer: &str, error: &MembershipError) {
        let mut last = lock(&self.last_foreign_warning);
        if last.is_none_or(|at| at.elapsed() >= FOREIGN_WARNING_GAP) {
            *last = Some(Instant::now());
            warn!(peer, %error, "refused gossip from a node of another cluster (logged at most once a minute)");
        }
    }

    /// The next 64 random bits.
    fn next_random(&self) -> u64 {
        lock(&self.random).next_u64()
    }
}
