//! The node's shared services: the handles that the coordinator, the RPC
//! handler, the admin API and every background task (anti-entropy, hint
//! delivery, tombstone collection, transfers, membership) work with.
//!
//! Why a bundle of its own: background work needs the replica, the cluster
//! view, the peers and the bucket props, but none of the coordinating
//! logic. Handing it the [`crate::coordinator::Coordinator`] made every
//! background task depend on the request path, and the request path on
//! the tasks through the replica: an import loop. The bundle sits below
//! both. Cloning it clones handles, never state.

use std::sync::Arc;

use crate::buckets::BucketRegistry;
use crate::cluster::Cluster;
use crate::failure_detector::FailureDetector;
use crate::hints::HintStore;
use crate::peers::Peers;
use crate::replica::Replica;

/// Handles to the parts of a running node that others use.
#[derive(Clone)]
pub struct NodeServices {
    /// This node's copy of its keys (and its Merkle and tombstone indexes).
    pub replica: Arc<Replica>,
    /// The live view of members and ring.
    pub cluster: Cluster,
    /// How other nodes are reached.
    pub peers: Arc<dyn Peers>,
    /// Which of them are reachable (routing asks it; calls feed it).
    pub detector: Arc<FailureDetector>,
    /// Per-bucket props.
    pub buckets: Arc<BucketRegistry>,
    /// Writes held here for unreachable replicas.
    pub hints: Arc<HintStore>,
    /// The share of their rates background work may use now (admission
    /// control, `crate::admission`).
    pub background: Arc<crate::pacer::BackgroundBudget>,
}
