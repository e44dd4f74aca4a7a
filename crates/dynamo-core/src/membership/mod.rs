//! Cluster membership (paper section 4.8): who the members are, where they
//! are reached, and which ring is committed, as one versioned state that
//! every node holds, persists, and merges with its peers' by gossip.
//!
//! One file per concern, all pure:
//! - `model`: the data model ([`ClusterState`], [`Member`],
//!   [`Announcement`]), the changes a node may take (join, announce, status)
//!   and the merge, a semilattice join (commutative, associative,
//!   idempotent), so gossip needs nothing more than "send your state, merge
//!   what you get";
//! - `plan`: the next ring for the current members, committing it as a
//!   transition, and which replicas a change drops ([`replicas_lost`]);
//! - `codec`: the versioned, canonical, bounded encoding that is both
//!   persisted and gossiped, and the digests derived from it;
//! - `gossip`: whom a node exchanges with each round
//!   ([`gossip_targets`]).
//!
//! Every item is re-exported here, so a path is `dynamo_core::membership::X`
//! whichever file it lives in.

mod codec;
mod gossip;
mod model;
mod plan;
#[cfg(test)]
mod testing;

pub use self::codec::{MAX_STATE_BYTES, StateDecodeError, ring_digest};
pub use self::gossip::{GossipTargets, SEED_ROUND_INTERVAL, gossip_targets};
pub use self::model::{
    Announcement, ClusterId, ClusterState, MAX_FIELD_LEN, MAX_MEMBERS, Member, MemberStatus, MembershipError,
    StateDigest,
};
pub use self::plan::{Plan, ReplicaLoss, replicas_lost};
