//! This node's view of the cluster: who the members are, where their RPC
//! listeners are, and the ring computed from them (paper sections 4.2 and
//! 4.3). For now membership is static configuration, identical on every
//! node, and the ring is a deterministic function of it, so every node
//! computes the same preference lists without exchanging anything. The
//! membership issue replaces the static list with a gossiped, versioned one.

use std::collections::BTreeMap;

use dynamo_core::keys::ObjectKey;
use dynamo_core::ring::{NodeId, NodeSpec, Ring, RingError};

use crate::config::NodeConfig;

/// The members, their addresses and the ring.
#[derive(Clone, Debug)]
pub struct Cluster {
    local: NodeId,
    ring: Ring,
    rpc_addrs: BTreeMap<NodeId, String>,
}

impl Cluster {
    /// Builds the cluster view from the configuration.
    pub fn from_config(config: &NodeConfig) -> Result<Cluster, RingError> {
        let specs = config.members.iter().map(|member| {
            let spec = NodeSpec::new(member.id.clone(), member.capacity.unwrap_or(1));
            match &member.zone {
                Some(zone) => spec.in_zone(zone.clone()),
                None => spec,
            }
        });
        let ring = Ring::new(config.partitions, specs)?;
        let rpc_addrs =
            config.members.iter().map(|member| (NodeId::new(member.id.clone()), member.rpc_addr.clone())).collect();
        Ok(Cluster { local: NodeId::new(config.node_id.clone()), ring, rpc_addrs })
    }

    /// This node's id.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.rpc_addrs.len()
    }

    /// Where `node`'s RPC listener is reached.
    pub fn rpc_addr(&self, node: &NodeId) -> Option<&str> {
        self.rpc_addrs.get(node).map(String::as_str)
    }

    /// The first `n` distinct nodes for `key` (fewer when the cluster is
    /// smaller than `n`).
    pub fn preference_list(&self, key: &ObjectKey, n: u8) -> Vec<NodeId> {
        self.ring.key_preference_list(key, usize::from(n))
    }
}
