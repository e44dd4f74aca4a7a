//! This node's live view of the cluster: who the members are, where their
//! RPC listeners are, and the committed ring (paper sections 4.2, 4.3 and
//! 4.8).
//!
//! [`Cluster`] is a cheap handle (an `Arc`) that every part of the node
//! holds (coordinator, anti-entropy, hints, tombstones, RPC peers, HTTP).
//! Behind it is the current [`ClusterView`], replaced as a whole when the
//! membership state changes (gossip, a join, a commit; see
//! [`crate::membership`]): a reader takes the view once and sees one
//! consistent state, never half of a change. Each view has a version, one
//! more than the view it replaced, so a caller can tell whether anything
//! changed.
//!
//! **During a ring change** ([`dynamo_core::transition`]) the view routes
//! each partition that is still moving by both rings: reads go to its
//! replicas under the ring being left ([`Cluster::read_list`]), writes to
//! the replicas under both ([`Cluster::write_lists`]). Settled partitions
//! use the committed ring alone. The set of moving partitions is computed
//! once per view, not per request. The rules themselves are
//! [`dynamo_core::routing`]'s, the same the partition-aware client routes
//! by once it has learned the ring from `GET /ring`.
//!
//! With a static member list and no membership change, the view is the
//! first state computed from the configuration and never changes: the ring
//! is the same deterministic function of the member list as before
//! membership was gossiped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError, RwLock};

use dynamo_core::keys::ObjectKey;
use dynamo_core::membership::{Announcement, ClusterState, MemberStatus, MembershipError, StateDigest};
use dynamo_core::ring::{NodeId, NodeSpec, Ring};
use dynamo_core::routing::Routing;

use crate::config::NodeConfig;

/// One consistent view of the cluster.
#[derive(Debug)]
pub struct ClusterView {
    version: u64,
    state: ClusterState,
    /// The committed ring and, while partitions move, the ring being left
    /// (the same rules the partition-aware client routes by).
    routing: Routing,
    rpc_addrs: BTreeMap<NodeId, String>,
    digest: StateDigest,
}

impl ClusterView {
    fn new(version: u64, state: ClusterState) -> Self {
        let ring = Arc::new(state.ring().clone());
        let mut rpc_addrs = state.rpc_addrs();
        let digest = state.digest();
        let routing = match state.transition() {
            Some(transition) => {
                Routing::in_transition(ring, transition.from_ring().clone(), state.unsettled_partitions())
            }
            None => Routing::settled(ring),
        };
        // Nodes of the ring being left stay reachable while data moves off
        // them, whatever their status.
        if let Some((from, _)) = routing.moving() {
            for spec in from.nodes() {
                if let Some(member) = state.member(&spec.id)
                    && member.status != MemberStatus::Removed
                {
                    rpc_addrs.entry(spec.id.clone()).or_insert_with(|| member.rpc_addr.clone());
                }
            }
        }
        Self { version, state, routing, rpc_addrs, digest }
    }

    /// The ring being left and the partitions still moving off it, while
    /// a ring change is in progress.
    pub fn moving(&self) -> Option<(&Ring, &BTreeSet<u32>)> {
        self.routing.moving()
    }

    /// The routing rules of this view: what `GET /ring` hands a
    /// partition-aware client, so it computes the same lists.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Where reads of `partition` go (see [`Routing::read_list`]).
    pub fn read_list(&self, partition: u32, n: u8) -> Vec<NodeId> {
        self.routing.read_list(partition, n)
    }

    /// Where writes of `partition` go (see [`Routing::write_lists`]).
    pub fn write_lists(&self, partition: u32, n: u8) -> Vec<Vec<NodeId>> {
        self.routing.write_lists(partition, n)
    }

    /// Version of this view on this node: 1 for the first, one more on
    /// each change (local to the node; not the ring's epoch).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The membership state.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The committed ring.
    pub fn ring(&self) -> &Arc<Ring> {
        self.routing.ring()
    }

    /// Digest of the state (what gossip compares).
    pub fn digest(&self) -> StateDigest {
        self.digest
    }

    /// Where `node`'s RPC listener is reached.
    pub fn rpc_addr(&self, node: &NodeId) -> Option<&str> {
        self.rpc_addrs.get(node).map(String::as_str)
    }
}

/// Handle to this node's view of the cluster (see the module
/// documentation). Clones share the view.
#[derive(Clone, Debug)]
pub struct Cluster {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    local: NodeId,
    current: RwLock<Arc<ClusterView>>,
}

impl Cluster {
    /// A cluster handle for node `local`, starting from `state`.
    pub fn new(local: NodeId, state: ClusterState) -> Cluster {
        let view = Arc::new(ClusterView::new(1, state));
        Cluster { shared: Arc::new(Shared { local, current: RwLock::new(view) }) }
    }

    /// The cluster as the static configuration founds it: ring epoch 1 over
    /// the configured members (see [`initial_state`]).
    pub fn from_config(config: &NodeConfig) -> Result<Cluster, MembershipError> {
        Ok(Cluster::new(NodeId::new(config.node_id.clone()), initial_state(config)?))
    }

    /// This node's id.
    pub fn local(&self) -> &NodeId {
        &self.shared.local
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.shared.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The committed ring of the current view.
    pub fn ring(&self) -> Arc<Ring> {
        self.view().ring().clone()
    }

    /// Number of nodes in the committed ring (the nodes that can be
    /// replicas and fallbacks).
    pub fn size(&self) -> usize {
        self.view().ring().nodes().count()
    }

    /// Where `node`'s RPC listener is reached.
    pub fn rpc_addr(&self, node: &NodeId) -> Option<String> {
        self.view().rpc_addr(node).map(str::to_string)
    }

    /// The first `n` distinct nodes for `key` under the committed ring
    /// (fewer when the ring has fewer nodes than `n`).
    pub fn preference_list(&self, key: &ObjectKey, n: u8) -> Vec<NodeId> {
        self.view().ring().key_preference_list(key, usize::from(n))
    }

    /// The nodes that serve reads of `key` (see [`ClusterView::read_list`]).
    pub fn read_list(&self, key: &ObjectKey, n: u8) -> Vec<NodeId> {
        let view = self.view();
        view.read_list(key.partition(view.ring().partitions()), n)
    }

    /// The replica lists writes of `key` must each reach W in (see
    /// [`ClusterView::write_lists`]).
    pub fn write_lists(&self, key: &ObjectKey, n: u8) -> Vec<Vec<NodeId>> {
        let view = self.view();
        view.write_lists(key.partition(view.ring().partitions()), n)
    }

    /// Whether `key`'s partition is moving between rings.
    pub fn is_moving(&self, key: &ObjectKey) -> bool {
        let view = self.view();
        view.routing.moving_from(key.partition(view.ring().partitions())).is_some()
    }

    /// The other nodes this node may call: every member not removed, and
    /// every node of the ring, in id order.
    pub fn others(&self) -> Vec<NodeId> {
        self.view().rpc_addrs.keys().filter(|node| **node != self.shared.local).cloned().collect()
    }

    /// Installs `state` as the next view. Only [`crate::membership`] calls
    /// this, after the state is persisted.
    pub(crate) fn publish(&self, state: ClusterState) -> Arc<ClusterView> {
        let mut current = self.shared.current.write().unwrap_or_else(PoisonError::into_inner);
        let view = Arc::new(ClusterView::new(current.version + 1, state));
        *current = view.clone();
        view
    }
}

/// The nodes of `lists` (see [`Cluster::write_lists`]), each once, in
/// order of first appearance: every node a write goes to.
pub fn nodes_of(lists: &[Vec<NodeId>]) -> Vec<NodeId> {
    let mut nodes: Vec<NodeId> = Vec::with_capacity(lists.first().map_or(0, Vec::len) + 1);
    for node in lists.iter().flatten() {
        if !nodes.contains(node) {
            nodes.push(node.clone());
        }
    }
    nodes
}

/// The state a brand-new node starts from: the configured members (just
/// this node when none are configured), each a `member` of ring epoch 1
/// (the ring [`Ring::new`] computes from them, the same on every node
/// configured with the same list), and this node's own record carrying
/// what it announces ([`announcement`]). A node with a persisted state
/// starts from that instead (see [`crate::membership`]).
pub fn initial_state(config: &NodeConfig) -> Result<ClusterState, MembershipError> {
    let members: Vec<(NodeSpec, String)> = config
        .members
        .iter()
        .map(|member| {
            let spec = NodeSpec::new(member.id.clone(), member.capacity.unwrap_or(1));
            let spec = match &member.zone {
                Some(zone) => spec.in_zone(zone.clone()),
                None => spec,
            };
            (spec, member.rpc_addr.clone())
        })
        .collect();
    let state = ClusterState::from_static(config.partitions, &members)?;
    Ok(state.with_announcement(&announcement(config)).unwrap_or(state))
}

/// What this node says about itself: its RPC address as the member list
/// gives it (the address others reach, which may differ from the one it
/// binds), its HTTP address, capacity and zone.
pub fn announcement(config: &NodeConfig) -> Announcement {
    let me = config.members.iter().find(|member| member.id == config.node_id);
    Announcement {
        id: NodeId::new(config.node_id.clone()),
        rpc_addr: me.map_or_else(|| config.rpc_addr.to_string(), |me| me.rpc_addr.clone()),
        http_addr: Some(config.http_addr.to_string()),
        capacity: me.and_then(|me| me.capacity).unwrap_or(1),
        zone: me.and_then(|me| me.zone.clone()),
    }
}
