//! Cluster membership (paper section 4.8): who the members are, where they
//! are reached, and which ring is committed, as one versioned state that
//! every node holds, persists, and merges with its peers' by gossip.
//!
//! **Why a mergeable state.** The paper keeps membership explicit (an
//! operator joins and removes nodes; a failure never changes membership)
//! and spreads it by gossip, with no master. So any node may take a change
//! (a join, a commit) while others take other changes, messages arrive in
//! any order, twice, or late. [`ClusterState::merge`] therefore is a join
//! of a semilattice: **commutative, associative and idempotent**
//! (property-tested below), so every node that has seen the same changes
//! holds the same state, whatever the order, and gossip needs nothing more
//! than "send your state, merge what you get".
//!
//! **Members** ([`Member`]). Each record carries a per-record version, a
//! Lamport counter: whoever changes a record writes it with the version
//! above the one it had. Two records of one node merge to the greater by:
//! 1. *status*, in the order `joining < member < leaving < removed`. Status
//!    only ever moves forward, so a record that went further wins even
//!    against a higher version: a commit's promotion (joining to member)
//!    cannot be undone by a concurrent address change, and **a removed
//!    member stays removed** (a node that was removed comes back under a
//!    new id; removed records are kept as tombstones, counted in
//!    [`MAX_MEMBERS`]);
//! 2. then *version*: the later change;
//! 3. then, for two different changes with the same version (concurrent),
//!    the fields in a fixed order (RPC address, HTTP address, capacity,
//!    zone): an arbitrary but deterministic winner, the same on every node.
//!
//! **The ring** is the committed partition ownership ([`Ring`], strategy 3)
//! and its *epoch*, the ring's version: each commit installs the planned
//! ring at the next epoch. The greater epoch wins. Two commits of the same
//! epoch taken concurrently on two nodes (from different member sets)
//! tie-break by the SHA-256 of the ring's encoding, so all nodes keep the
//! same one; the other is lost, and its plan is simply planned again.
//! Ownership changes only by a commit: a member record (capacity, zone,
//! status) changes what the *next* plan would be, never the committed ring.
//!
//! **The cluster id** is derived from the first ring (the static member
//! list, or the single node that founded the cluster). States of different
//! clusters never merge ([`MembershipError::DifferentCluster`]): two clusters
//! that share a secret, or a node configured with another member list, are
//! refused instead of mixed into one.
//!
//! **The plan** ([`ClusterState::plan`]): the ring that the current members
//! (`joining` and `member`, not `leaving` or `removed`) would have, from the
//! committed one by [`Ring::rebalance`] (capacity-weighted, zone-aware,
//! fewest moves), and its moves ([`Ring::diff`]). Pure and deterministic:
//! every node computes the same plan from the same state.
//!
//! **Gossip peers** ([`gossip_targets`]): each round a node exchanges with
//! one member chosen at random and, every [`SEED_ROUND_INTERVAL`] rounds (or
//! when it knows no other member), also with a seed: nodes introduced to
//! the cluster through different members still meet at the seeds, so the
//! cluster cannot split into logically separate rings (paper section 4.8.2).
//!
//! **Encoding** ([`ClusterState::encode`]): versioned, canonical (one
//! encoding per state, so equal states have equal [`StateDigest`]s) and
//! bounded (at most [`MAX_STATE_BYTES`]); the decoder checks every length,
//! every invariant, and the ring through [`Ring::from_parts`]. The same
//! bytes are persisted and gossiped.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::codec::{CodecError, Reader};
use crate::keys::MAX_PARTITIONS;
use crate::ring::{NodeId, NodeSpec, PartitionMove, Ring, RingError};
use crate::transition::{MAX_FACTORS, Pull, Transition};

/// Most member records a state holds, removed ones included. A limit on
/// everything a peer can make us store; far above the clusters this store
/// is meant for (the paper's ran to a few hundred nodes).
pub const MAX_MEMBERS: usize = 1024;
/// Longest node id, address or zone, in bytes (one length byte).
pub const MAX_FIELD_LEN: usize = 255;
/// Largest encoded state accepted: 1,024 members with every field at its
/// longest, two rings of 1,024 nodes and 65,536 owners each (a transition
/// keeps the previous ring) and a completed pull for each of 65,536
/// partitions times a few replicas take about 3.5 MB.
pub const MAX_STATE_BYTES: usize = 8 << 20;
/// Most completed pulls a transition records: a pull per partition and
/// added replica, at most [`crate::props::MAX_N`] replicas.
const MAX_DONE_PULLS: usize = MAX_PARTITIONS as usize * MAX_FACTORS;
/// A gossip round includes a seed every this many rounds (and every round
/// while a node knows no other member).
pub const SEED_ROUND_INTERVAL: u64 = 4;

/// Format marker of the state layout written: 2 appends the transition.
const FORMAT: u8 = 2;
/// The first layout (no transition), still read: a state persisted by an
/// earlier version decodes as one whose last change has settled.
const FORMAT_WITHOUT_TRANSITION: u8 = 1;
/// Domain separation of the hashes below.
const CLUSTER_ID_DOMAIN: &[u8] = b"dynamo cluster id\0";
const STATE_DIGEST_DOMAIN: &[u8] = b"dynamo cluster state\0";
const RING_DIGEST_DOMAIN: &[u8] = b"dynamo ring\0";

/// Where a member stands. The order is the order of a member's life, and
/// a record never goes back (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Asked to join; owns nothing until a plan that includes it is committed.
    Joining,
    /// In the committed ring (or promoted by a commit).
    Member,
    /// Asked to leave; the next plan gives its partitions away.
    Leaving,
    /// Gone for good; its id is never reused.
    Removed,
}

impl MemberStatus {
    fn byte(self) -> u8 {
        match self {
            MemberStatus::Joining => 0,
            MemberStatus::Member => 1,
            MemberStatus::Leaving => 2,
            MemberStatus::Removed => 3,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(MemberStatus::Joining),
            1 => Some(MemberStatus::Member),
            2 => Some(MemberStatus::Leaving),
            3 => Some(MemberStatus::Removed),
            _ => None,
        }
    }

    /// Whether a member with this status takes part in the next plan.
    pub fn in_plan(self) -> bool {
        matches!(self, MemberStatus::Joining | MemberStatus::Member)
    }

    /// The lowercase name (`joining`, `member`, `leaving`, `removed`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Joining => "joining",
            MemberStatus::Member => "member",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Removed => "removed",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// Where its RPC listener is reached.
    pub rpc_addr: String,
    /// Where its HTTP API is reached, when the node announced it (members
    /// seeded from static configuration know only each other's RPC
    /// addresses until each node's own record arrives).
    pub http_addr: Option<String>,
    /// Ring weight, at least 1: what the next plan gives it.
    pub capacity: u32,
    /// Failure domain, for the next plan.
    pub zone: Option<String>,
    /// Where it stands.
    pub status: MemberStatus,
    /// Lamport counter of this record, at least 1.
    pub version: u64,
}

impl Member {
    /// The ring's view of this member.
    pub fn spec(&self) -> NodeSpec {
        NodeSpec { id: self.id.clone(), capacity: self.capacity, zone: self.zone.clone() }
    }

    /// Which of two records of the same node a merge keeps: the greater by
    /// status, then version, then fields (see the module documentation).
    fn precedence(&self, other: &Member) -> Ordering {
        (self.status, self.version, &self.rpc_addr, &self.http_addr, self.capacity, &self.zone).cmp(&(
            other.status,
            other.version,
            &other.rpc_addr,
            &other.http_addr,
            other.capacity,
            &other.zone,
        ))
    }

    /// Whether the fields a node announces about itself differ.
    fn announces_differently(&self, announced: &Announcement) -> bool {
        self.rpc_addr != announced.rpc_addr
            || self.http_addr != announced.http_addr
            || self.capacity != announced.capacity
            || self.zone != announced.zone
    }

    fn check(&self) -> Result<(), MembershipError> {
        check_announcement(&self.id, &self.rpc_addr, self.http_addr.as_deref(), self.capacity, self.zone.as_deref())?;
        if self.version == 0 {
            return Err(MembershipError::invalid(&self.id, "record version 0"));
        }
        Ok(())
    }
}

/// What a node says about itself: in a join request, and when it starts
/// with settings that differ from its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// Its id.
    pub id: NodeId,
    /// Its RPC address as others reach it.
    pub rpc_addr: String,
    /// Its HTTP address.
    pub http_addr: Option<String>,
    /// Its capacity (at least 1).
    pub capacity: u32,
    /// Its zone.
    pub zone: Option<String>,
}

impl Announcement {
    /// Checks every field against its bound.
    pub fn check(&self) -> Result<(), MembershipError> {
        check_announcement(&self.id, &self.rpc_addr, self.http_addr.as_deref(), self.capacity, self.zone.as_deref())
    }
}

fn check_announcement(
    id: &NodeId,
    rpc_addr: &str,
    http_addr: Option<&str>,
    capacity: u32,
    zone: Option<&str>,
) -> Result<(), MembershipError> {
    let fields = [("node id", Some(id.as_str())), ("RPC address", Some(rpc_addr)), ("HTTP address", http_addr)];
    for (what, value) in fields.into_iter().chain([("zone", zone)]) {
        if let Some(value) = value
            && (value.is_empty() || value.len() > MAX_FIELD_LEN)
        {
            return Err(MembershipError::Invalid {
                node: id.to_string(),
                reason: format!("{what} must be 1 to {MAX_FIELD_LEN} bytes, not {}", value.len()),
            });
        }
    }
    if capacity == 0 {
        return Err(MembershipError::invalid(id, "capacity 0 (capacity is a weight of at least 1)"));
    }
    Ok(())
}

/// Identity of a cluster: a hash of its first ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub [u8; 16]);

/// Digest of a whole state: equal states, equal digests (the encoding is
/// canonical). What gossip compares before sending anything larger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateDigest(pub [u8; 16]);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for StateDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

/// Why a membership change or a merge was refused, or a state did not
/// decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// The two states belong to different clusters.
    #[error(
        "the peer belongs to another cluster (id {theirs}, ours {ours}): it was started with another member list or \
         joined another cluster"
    )]
    DifferentCluster {
        /// This state's cluster.
        ours: ClusterId,
        /// The other's.
        theirs: ClusterId,
    },
    /// A join would exceed [`MAX_MEMBERS`].
    #[error("the cluster already has {0} member records, the most it can hold")]
    TooManyMembers(usize),
    /// A join under an id that was removed.
    #[error("node id {0} was removed from this cluster and cannot come back; start the node under a new id")]
    Removed(NodeId),
    /// A join under an id that another address already uses.
    #[error("node id {id} is already a member at {addr}; give the new node another id")]
    IdTaken {
        /// The id.
        id: NodeId,
        /// The address registered for it.
        addr: String,
    },
    /// A join from an address another member already uses.
    #[error("RPC address {addr} already belongs to member {id}; every node needs its own address")]
    AddressTaken {
        /// The address.
        addr: String,
        /// The member using it.
        id: NodeId,
    },
    /// A join with another Q.
    #[error(
        "this cluster has {ours} partitions and the joining node was configured with {theirs}; start it with \
         --partitions {ours}"
    )]
    PartitionMismatch {
        /// This cluster's Q.
        ours: u32,
        /// The joiner's.
        theirs: u32,
    },
    /// A record breaks a bound or an invariant.
    #[error("member {node}: {reason}")]
    Invalid {
        /// The member.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// A ring names a node that has no member record.
    #[error("the ring names {0}, which has no member record")]
    UnknownRingNode(NodeId),
    /// A plan that is not newer than the committed ring.
    #[error("the plan (epoch {plan}) is not newer than the committed ring (epoch {committed})")]
    StalePlan {
        /// The plan's epoch.
        plan: u64,
        /// The committed epoch.
        committed: u64,
    },
    /// A commit while the previous one's partitions are still moving.
    #[error(
        "the previous ring change (epoch {epoch}) still has {pending} partition transfers to finish; commit again \
         when `dynamo admin transfers` shows none (or remove the nodes that cannot finish them)"
    )]
    TransfersPending {
        /// The committed epoch.
        epoch: u64,
        /// Pulls not done.
        pending: usize,
    },
    /// The ring could not be built or checked.
    #[error(transparent)]
    Ring(#[from] RingError),
}

impl MembershipError {
    fn invalid(node: &NodeId, reason: &str) -> Self {
        MembershipError::Invalid { node: node.to_string(), reason: reason.to_string() }
    }
}

/// Why bytes could not be decoded into a state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateDecodeError {
    /// More bytes than any valid state has.
    #[error("cluster state of {0} bytes is larger than the {MAX_STATE_BYTES} allowed")]
    TooLarge(usize),
    /// A format this build does not know.
    #[error("unknown cluster state format {0}")]
    UnknownFormat(u8),
    /// Input ended early.
    #[error("cluster state truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes after the state.
    #[error("cluster state has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A length, tag or order that the encoder never writes.
    #[error("cluster state invalid: {0}")]
    Invalid(&'static str),
    /// The content breaks an invariant.
    #[error("cluster state invalid: {0}")]
    Membership(#[from] MembershipError),
}

impl From<CodecError> for StateDecodeError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated(what) => StateDecodeError::Truncated(what),
            CodecError::TrailingBytes(count) => StateDecodeError::TrailingBytes(count),
            CodecError::Invalid(what) => StateDecodeError::Invalid(what),
            CodecError::UnknownFormat(format) => StateDecodeError::UnknownFormat(format),
        }
    }
}

/// The next ring and what it moves.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The planned ring (its version is the next epoch, or the committed
    /// one when nothing changes).
    pub ring: Ring,
    /// Partitions that change owner, in partition order.
    pub moves: Vec<PartitionMove>,
}

impl Plan {
    /// Whether committing it would change anything.
    pub fn is_empty(&self, committed: &Ring) -> bool {
        self.ring == *committed
    }
}

/// A partition some of whose replicas would stop being replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaLoss {
    /// The partition.
    pub partition: u32,
    /// The nodes in one of its preference lists under the old ring that
    /// are not in the list of the same length under the new ring.
    pub dropped: Vec<NodeId>,
}

/// The partitions whose preference list of any length in `replication`
/// (the replication factors in use) loses a node from `old` to `new`.
///
/// Empty means the change is *replica-preserving*: every copy of every key
/// stays on a node that still replicates its partition, so nothing needs
/// to move for data to stay reachable, and a write acknowledged by W nodes
/// of the old list meets a read of R nodes of the new list (R + W > n, and
/// the old list is inside the new one). Growing a cluster of fewer than n
/// nodes is always replica-preserving; nearly every other change is not.
pub fn replicas_lost(old: &Ring, new: &Ring, replication: &[usize]) -> Vec<ReplicaLoss> {
    let mut losses = Vec::new();
    for partition in 0..old.partitions() {
        let mut dropped: Vec<NodeId> = Vec::new();
        for &n in replication {
            let kept = new.preference_list(partition, n);
            for node in old.preference_list(partition, n) {
                if !kept.contains(&node) && !dropped.contains(&node) {
                    dropped.push(node);
                }
            }
        }
        if !dropped.is_empty() {
            dropped.sort();
            losses.push(ReplicaLoss { partition, dropped });
        }
    }
    losses
}

/// The cluster's membership and committed ring (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    cluster_id: ClusterId,
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
    /// The move to `ring` from the ring before it; `None` for the first
    /// ring (and states persisted before transitions existed).
    transition: Option<Transition>,
}

impl ClusterState {
    /// The first state of a cluster: `ring` (epoch 1, from the static
    /// member list or the founding node) and a record for each of its
    /// nodes. The cluster id is derived from the ring, so every node
    /// configured with the same member list founds the same cluster.
    pub fn genesis(ring: Ring, members: impl IntoIterator<Item = Member>) -> Result<Self, MembershipError> {
        let cluster_id = cluster_id_of(&ring);
        let members: BTreeMap<NodeId, Member> = members.into_iter().map(|member| (member.id.clone(), member)).collect();
        let state = ClusterState { cluster_id, members, ring, transition: None };
        state.check()?;
        Ok(state)
    }

    /// The first state from the static member list: ring epoch 1 and one
    /// `member` record (version 1) per node.
    pub fn from_static(partitions: u32, members: &[(NodeSpec, String)]) -> Result<Self, MembershipError> {
        let ring = Ring::new(partitions, members.iter().map(|(spec, _)| spec.clone()))?;
        let records = members.iter().map(|(spec, rpc_addr)| Member {
            id: spec.id.clone(),
            rpc_addr: rpc_addr.clone(),
            http_addr: None,
            capacity: spec.capacity,
            zone: spec.zone.clone(),
            status: MemberStatus::Member,
            version: 1,
        });
        Self::genesis(ring, records)
    }

    /// The cluster this state belongs to.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// The committed ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The committed ring's epoch.
    pub fn epoch(&self) -> u64 {
        self.ring.version()
    }

    /// Every member record, removed ones included, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member's record.
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// The members other than `local` that gossip may contact: every
    /// record not removed, in id order.
    pub fn gossip_peers(&self, local: &NodeId) -> Vec<&Member> {
        self.members.values().filter(|member| member.id != *local && member.status != MemberStatus::Removed).collect()
    }

    /// Where each node that may be called is reached: every record not
    /// removed, and every node of the ring whatever its status (it owns
    /// partitions until a commit says otherwise).
    pub fn rpc_addrs(&self) -> BTreeMap<NodeId, String> {
        self.members
            .values()
            .filter(|member| member.status != MemberStatus::Removed || self.ring.node(&member.id).is_some())
            .map(|member| (member.id.clone(), member.rpc_addr.clone()))
            .collect()
    }

    /// Whether this is a cluster of one node that never had another
    /// member: what a node that may still join a cluster looks like.
    pub fn is_standalone(&self, local: &NodeId) -> bool {
        self.members.len() == 1 && self.members.contains_key(local) && self.ring.nodes().count() == 1
    }

    /// Merges `other` into a new state (see the module documentation).
    pub fn merge(&self, other: &ClusterState) -> Result<ClusterState, MembershipError> {
        let mut merged = self.clone();
        merged.merge_in(other)?;
        Ok(merged)
    }

    /// Merges `other` into this state; returns whether this state changed.
    pub fn merge_in(&mut self, other: &ClusterState) -> Result<bool, MembershipError> {
        if self.cluster_id != other.cluster_id {
            return Err(MembershipError::DifferentCluster { ours: self.cluster_id, theirs: other.cluster_id });
        }
        let mut changed = false;
        for (id, theirs) in &other.members {
            match self.members.get_mut(id) {
                Some(ours) if ours.precedence(theirs) != Ordering::Less => {}
                Some(ours) => {
                    *ours = theirs.clone();
                    changed = true;
                }
                None => {
                    self.members.insert(id.clone(), theirs.clone());
                    changed = true;
                }
            }
        }
        match ring_precedence(&other.ring, &self.ring) {
            Ordering::Greater => {
                self.ring = other.ring.clone();
                self.transition = other.transition.clone();
                changed = true;
            }
            Ordering::Equal => changed |= merge_transition(&mut self.transition, other.transition.as_ref()),
            Ordering::Less => {}
        }
        Ok(changed)
    }

    /// This state with `candidate` added as a `joining` member (or, when
    /// it is already a member at the same address, with its announced
    /// fields refreshed). Refused when the id was removed, is taken by
    /// another address, the address by another id, the partition count
    /// differs, or the cluster is full.
    pub fn with_joining(&self, candidate: &Announcement, partitions: u32) -> Result<ClusterState, MembershipError> {
        candidate.check()?;
        if partitions != self.ring.partitions() {
            return Err(MembershipError::PartitionMismatch { ours: self.ring.partitions(), theirs: partitions });
        }
        match self.members.get(&candidate.id) {
            Some(existing) if existing.status == MemberStatus::Removed => {
                Err(MembershipError::Removed(candidate.id.clone()))
            }
            Some(existing) if existing.rpc_addr != candidate.rpc_addr => {
                Err(MembershipError::IdTaken { id: candidate.id.clone(), addr: existing.rpc_addr.clone() })
            }
            Some(_) => Ok(self.with_announcement(candidate).unwrap_or_else(|| self.clone())),
            None => {
                if let Some(other) = self
                    .members
                    .values()
                    .find(|member| member.rpc_addr == candidate.rpc_addr && member.status != MemberStatus::Removed)
                {
                    return Err(MembershipError::AddressTaken {
                        addr: candidate.rpc_addr.clone(),
                        id: other.id.clone(),
                    });
                }
                if self.members.len() >= MAX_MEMBERS {
                    return Err(MembershipError::TooManyMembers(self.members.len()));
                }
                let mut next = self.clone();
                next.members.insert(
                    candidate.id.clone(),
                    Member {
                        id: candidate.id.clone(),
                        rpc_addr: candidate.rpc_addr.clone(),
                        http_addr: candidate.http_addr.clone(),
                        capacity: candidate.capacity,
                        zone: candidate.zone.clone(),
                        status: MemberStatus::Joining,
                        version: 1,
                    },
                );
                Ok(next)
            }
        }
    }

    /// This state with the record of `announced.id` carrying the announced
    /// fields, at the next version; `None` when they are already its
    /// fields, or the node has no record. How a node that restarts with
    /// new addresses, capacity or zone tells the cluster (the ring changes
    /// only with the next commit).
    pub fn with_announcement(&self, announced: &Announcement) -> Option<ClusterState> {
        let record = self.members.get(&announced.id)?;
        if !record.announces_differently(announced) {
            return None;
        }
        let mut next = self.clone();
        next.members.insert(
            announced.id.clone(),
            Member {
                id: announced.id.clone(),
                rpc_addr: announced.rpc_addr.clone(),
                http_addr: announced.http_addr.clone(),
                capacity: announced.capacity,
                zone: announced.zone.clone(),
                status: record.status,
                version: record.version.saturating_add(1),
            },
        );
        Some(next)
    }

    /// This state with `id`'s status moved forward to `status` (at the
    /// next version); `None` when it has no record or is already there or
    /// beyond (status never goes back).
    pub fn with_status(&self, id: &NodeId, status: MemberStatus) -> Option<ClusterState> {
        let record = self.members.get(id)?;
        if record.status >= status {
            return None;
        }
        let mut next = self.clone();
        next.members.insert(id.clone(), Member { status, version: record.version.saturating_add(1), ..record.clone() });
        Some(next)
    }

    /// The next ring for the current members (`joining` and `member`) and
    /// its moves; the committed ring itself when nothing would change.
    pub fn plan(&self) -> Result<Plan, RingError> {
        let specs = self.members.values().filter(|member| member.status.in_plan()).map(Member::spec);
        let ring = self.ring.rebalance(specs)?;
        let moves = self.ring.diff(&ring)?;
        Ok(Plan { ring, moves })
    }

    /// This state with `plan` committed: its ring installed as the next
    /// epoch, every `joining` node it includes promoted to `member`, and a
    /// new [`Transition`] from the current ring, whose pulls are computed
    /// for the replication `factors` in use. Refused while the current
    /// transition has pulls pending.
    pub fn commit(&self, plan: &Plan, factors: &[u8]) -> Result<ClusterState, MembershipError> {
        if plan.ring.version() <= self.ring.version() {
            return Err(MembershipError::StalePlan { plan: plan.ring.version(), committed: self.ring.version() });
        }
        let pending = self.pending_pulls().len();
        if pending > 0 {
            return Err(MembershipError::TransfersPending { epoch: self.epoch(), pending });
        }
        let mut next = self.clone();
        next.transition = Some(Transition::new(self.ring.clone(), factors));
        for spec in plan.ring.nodes() {
            match next.members.get_mut(&spec.id) {
                None => return Err(MembershipError::UnknownRingNode(spec.id.clone())),
                Some(record) if record.status == MemberStatus::Joining => {
                    record.status = MemberStatus::Member;
                    record.version = record.version.saturating_add(1);
                }
                Some(_) => {}
            }
        }
        next.ring = plan.ring.clone();
        Ok(next)
    }

    /// The move to the committed ring, while known.
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }

    /// Whether `id` has a removed record.
    pub fn is_removed(&self, id: &NodeId) -> bool {
        self.members.get(id).is_some_and(|member| member.status == MemberStatus::Removed)
    }

    /// The pulls of the current transition that are neither done nor
    /// assigned to a removed node.
    pub fn pending_pulls(&self) -> Vec<Pull> {
        match &self.transition {
            None => Vec::new(),
            Some(transition) => transition.pending(&self.ring, |node| self.is_removed(node)),
        }
    }

    /// The partitions with a pull pending: those whose reads still go to
    /// the old ring's replicas and whose writes go to both rings'.
    pub fn unsettled_partitions(&self) -> BTreeSet<u32> {
        self.pending_pulls().into_iter().map(|pull| pull.partition).collect()
    }

    /// Where `partition`'s added replicas copy it from (see
    /// [`Transition::sources`]); empty without a transition.
    pub fn pull_sources(&self, partition: u32) -> Vec<NodeId> {
        match &self.transition {
            None => Vec::new(),
            Some(transition) => transition.sources(partition, |node| self.is_removed(node)),
        }
    }

    /// This state with `pull` recorded as complete; `None` when it is not a
    /// pull of the current transition or is already recorded.
    pub fn with_pull_done(&self, pull: &Pull) -> Option<ClusterState> {
        let transition = self.transition.as_ref()?;
        if transition.done().contains(pull) || !transition.pullers(&self.ring, pull.partition).contains(&pull.node) {
            return None;
        }
        let mut next = self.clone();
        if let Some(transition) = next.transition.as_mut() {
            transition.mark_done(pull.clone());
        }
        Some(next)
    }

    /// Digest of the canonical encoding.
    pub fn digest(&self) -> StateDigest {
        let mut hasher = Sha256::new();
        hasher.update(STATE_DIGEST_DOMAIN);
        hasher.update(self.encode());
        StateDigest(truncate(&hasher.finalize()))
    }

    /// Encodes the state (format 2, below [`MAX_STATE_BYTES`] for every
    /// state within the bounds).
    ///
    /// `format u8 | cluster id 16 | member count u16 | member * | ring |
    /// transition?` (format 1 had no transition),
    /// members in increasing id order, each `id | rpc | http? | capacity
    /// u32 | zone? | status u8 | version u64`; the ring is `partitions u32
    /// | epoch u64 | node count u16 | (id | capacity u32 | zone?) * | owner
    /// index u16 * partitions`, nodes in increasing id order. Text is
    /// `length u8 | UTF-8`, optional text `0`, or `1` then text. Integers
    /// big-endian. The transition is `0`, or `1 | from ring | factor count
    /// u8 | factor u8 * | done count u32 | (partition u32 | node index u16)
    /// *`, node indices into the committed ring's nodes, pulls in
    /// (partition, node id) order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.members.len() * 48 + self.ring.partitions() as usize * 2);
        out.push(FORMAT);
        out.extend_from_slice(&self.cluster_id.0);
        out.extend_from_slice(&clamped_count(self.members.len()).to_be_bytes());
        for member in self.members.values() {
            put_text(&mut out, member.id.as_str());
            put_text(&mut out, &member.rpc_addr);
            put_optional_text(&mut out, member.http_addr.as_deref());
            out.extend_from_slice(&member.capacity.to_be_bytes());
            put_optional_text(&mut out, member.zone.as_deref());
            out.push(member.status.byte());
            out.extend_from_slice(&member.version.to_be_bytes());
        }
        encode_ring(&self.ring, &mut out);
        encode_transition(self.transition.as_ref(), &self.ring, &mut out);
        out
    }

    /// Decodes and checks a state.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, StateDecodeError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateDecodeError::TooLarge(bytes.len()));
        }
        let mut reader = Reader::new(bytes);
        let format = reader.u8("format")?;
        if format != FORMAT && format != FORMAT_WITHOUT_TRANSITION {
            return Err(StateDecodeError::UnknownFormat(format));
        }
        let mut cluster_id = [0u8; 16];
        cluster_id.copy_from_slice(reader.take(16, "cluster id")?);
        let count = usize::from(reader.u16("member count")?);
        if count > MAX_MEMBERS {
            return Err(StateDecodeError::Invalid("more members than a cluster holds"));
        }
        let mut members = BTreeMap::new();
        let mut previous: Option<NodeId> = None;
        for _ in 0..count {
            let member = decode_member(&mut reader)?;
            if previous.as_ref().is_some_and(|previous| *previous >= member.id) {
                return Err(StateDecodeError::Invalid("members not in increasing id order"));
            }
            previous = Some(member.id.clone());
            members.insert(member.id.clone(), member);
        }
        let ring = decode_ring(&mut reader)?;
        let transition = match format {
            FORMAT_WITHOUT_TRANSITION => None,
            _ => decode_transition(&mut reader, &ring)?,
        };
        if reader.remaining() > 0 {
            return Err(StateDecodeError::TrailingBytes(reader.remaining()));
        }
        let state = ClusterState { cluster_id: ClusterId(cluster_id), members, ring, transition };
        state.check()?;
        Ok(state)
    }

    /// The invariants: records within bounds, at most [`MAX_MEMBERS`], and
    /// a record for every node of the ring.
    fn check(&self) -> Result<(), MembershipError> {
        if self.members.len() > MAX_MEMBERS {
            return Err(MembershipError::TooManyMembers(self.members.len()));
        }
        for (id, member) in &self.members {
            if *id != member.id {
                return Err(MembershipError::invalid(id, "record filed under another id"));
            }
            member.check()?;
        }
        match self.ring.nodes().find(|spec| !self.members.contains_key(&spec.id)) {
            Some(spec) => Err(MembershipError::UnknownRingNode(spec.id.clone())),
            None => Ok(()),
        }
    }
}

/// Merges the transitions of two states with the same ring: the greater by
/// [`Transition::precedence`] (a transition over none), or, for the same
/// move, the union of completions. Returns whether `ours` changed.
fn merge_transition(ours: &mut Option<Transition>, theirs: Option<&Transition>) -> bool {
    let Some(theirs) = theirs else { return false };
    match ours {
        None => {
            *ours = Some(theirs.clone());
            true
        }
        Some(mine) => match theirs.precedence(mine, ring_precedence) {
            Ordering::Greater => {
                *mine = theirs.clone();
                true
            }
            Ordering::Equal => mine.absorb(theirs),
            Ordering::Less => false,
        },
    }
}

/// Which of two rings a merge keeps: the greater epoch, then the greater
/// digest of the encoding (the same winner on every node).
fn ring_precedence(a: &Ring, b: &Ring) -> Ordering {
    a.version()
        .cmp(&b.version())
        .then_with(|| if a == b { Ordering::Equal } else { ring_digest(a).cmp(&ring_digest(b)) })
}

/// SHA-256 of a ring's encoding.
pub fn ring_digest(ring: &Ring) -> [u8; 32] {
    let mut out = Vec::new();
    encode_ring(ring, &mut out);
    let mut hasher = Sha256::new();
    hasher.update(RING_DIGEST_DOMAIN);
    hasher.update(&out);
    hasher.finalize().into()
}

fn cluster_id_of(ring: &Ring) -> ClusterId {
    let mut out = Vec::new();
    encode_ring(ring, &mut out);
    let mut hasher = Sha256::new();
    hasher.update(CLUSTER_ID_DOMAIN);
    hasher.update(&out);
    ClusterId(truncate(&hasher.finalize()))
}

fn truncate(hash: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// Above `u16::MAX` is above [`MAX_MEMBERS`] too: decoding refuses it.
fn clamped_count(count: usize) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Fields are checked to fit; a longer one gets a length the decoder
    // refuses (zero) rather than being cut into another value.
    let len = u8::try_from(text.len()).unwrap_or(0);
    out.push(len);
    if len > 0 {
        out.extend_from_slice(text.as_bytes());
    }
}

fn put_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            put_text(out, text);
        }
    }
}

fn encode_ring(ring: &Ring, out: &mut Vec<u8>) {
    out.extend_from_slice(&ring.partitions().to_be_bytes());
    out.extend_from_slice(&ring.version().to_be_bytes());
    let nodes: Vec<&NodeSpec> = ring.nodes().collect();
    out.extend_from_slice(&clamped_count(nodes.len()).to_be_bytes());
    for spec in &nodes {
        put_text(out, spec.id.as_str());
        out.extend_from_slice(&spec.capacity.to_be_bytes());
        put_optional_text(out, spec.zone.as_deref());
    }
    let index: BTreeMap<&NodeId, u16> =
        nodes.iter().enumerate().map(|(i, spec)| (&spec.id, u16::try_from(i).unwrap_or(u16::MAX))).collect();
    for owner in ring.owners() {
        out.extend_from_slice(&index.get(owner).copied().unwrap_or(u16::MAX).to_be_bytes());
    }
}

fn read_text(reader: &mut Reader<'_>, what: &'static str) -> Result<String, StateDecodeError> {
    let len = usize::from(reader.u8(what)?);
    if len == 0 {
        return Err(StateDecodeError::Invalid("empty text field"));
    }
    let bytes = reader.take(len, what)?;
    std::str::from_utf8(bytes).map(str::to_string).map_err(|_| StateDecodeError::Invalid("text is not UTF-8"))
}

fn read_optional_text(reader: &mut Reader<'_>, what: &'static str) -> Result<Option<String>, StateDecodeError> {
    match reader.u8(what)? {
        0 => Ok(None),
        1 => read_text(reader, what).map(Some),
        _ => Err(StateDecodeError::Invalid("optional field flag is neither 0 nor 1")),
    }
}

fn decode_member(reader: &mut Reader<'_>) -> Result<Member, StateDecodeError> {
    let id = NodeId::new(read_text(reader, "member id")?);
    let rpc_addr = read_text(reader, "RPC address")?;
    let http_addr = read_optional_text(reader, "HTTP address")?;
    let capacity = reader.u32("capacity")?;
    let zone = read_optional_text(reader, "zone")?;
    let status = MemberStatus::from_byte(reader.u8("status")?).ok_or(StateDecodeError::Invalid("unknown status"))?;
    let version = reader.u64("record version")?;
    let member = Member { id, rpc_addr, http_addr, capacity, zone, status, version };
    member.check()?;
    Ok(member)
}

fn decode_ring(reader: &mut Reader<'_>) -> Result<Ring, StateDecodeError> {
    let partitions = reader.u32("partitions")?;
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(StateDecodeError::Invalid("partition count out of range"));
    }
    let epoch = reader.u64("ring epoch")?;
    if epoch == 0 {
        return Err(StateDecodeError::Invalid("ring epoch 0"));
    }
    let count = usize::from(reader.u16("ring node count")?);
    if count == 0 || count > MAX_MEMBERS {
        return Err(StateDecodeError::Invalid("ring node count out of range"));
    }
    let mut nodes: Vec<NodeSpec> = Vec::with_capacity(count.min(reader.remaining() / 6));
    for _ in 0..count {
        let id = NodeId::new(read_text(reader, "ring node id")?);
        let capacity = reader.u32("ring node capacity")?;
        let zone = read_optional_text(reader, "ring node zone")?;
        if nodes.last().is_some_and(|last| last.id >= id) {
            return Err(StateDecodeError::Invalid("ring nodes not in increasing id order"));
        }
        nodes.push(NodeSpec { id, capacity, zone });
    }
    let mut owners = Vec::with_capacity((partitions as usize).min(reader.remaining() / 2));
    for _ in 0..partitions {
        let index = usize::from(reader.u16("owner")?);
        let owner = nodes.get(index).ok_or(StateDecodeError::Invalid("owner index outside the ring's nodes"))?;
        owners.push(owner.id.clone());
    }
    Ring::from_parts(partitions, owners, nodes, epoch).map_err(|error| MembershipError::Ring(error).into())
}

fn encode_transition(transition: Option<&Transition>, ring: &Ring, out: &mut Vec<u8>) {
    let Some(transition) = transition else {
        out.push(0);
        return;
    };
    out.push(1);
    encode_ring(transition.from_ring(), out);
    out.push(u8::try_from(transition.factors().len()).unwrap_or(0));
    out.extend_from_slice(transition.factors());
    let index: BTreeMap<&NodeId, u16> =
        ring.nodes().enumerate().map(|(i, spec)| (&spec.id, u16::try_from(i).unwrap_or(u16::MAX))).collect();
    let done = transition.done();
    out.extend_from_slice(&u32::try_from(done.len()).unwrap_or(u32::MAX).to_be_bytes());
    for pull in done {
        out.extend_from_slice(&pull.partition.to_be_bytes());
        out.extend_from_slice(&index.get(&pull.node).copied().unwrap_or(u16::MAX).to_be_bytes());
    }
}

fn decode_transition(reader: &mut Reader<'_>, ring: &Ring) -> Result<Option<Transition>, StateDecodeError> {
    match reader.u8("transition flag")? {
        0 => return Ok(None),
        1 => {}
        _ => return Err(StateDecodeError::Invalid("transition flag is neither 0 nor 1")),
    }
    let from = decode_ring(reader)?;
    if from.partitions() != ring.partitions() || from.version() >= ring.version() {
        return Err(StateDecodeError::Invalid("transition from a ring that is not an earlier one of this cluster"));
    }
    let count = usize::from(reader.u8("factor count")?);
    let factors = reader.take(count, "factors")?.to_vec();
    let done_count = reader.u32("done count")? as usize;
    if done_count > MAX_DONE_PULLS {
        return Err(StateDecodeError::Invalid("more completed pulls than a transition has"));
    }
    let nodes: Vec<&NodeSpec> = ring.nodes().collect();
    let mut done = BTreeSet::new();
    let mut previous: Option<Pull> = None;
    for _ in 0..done_count {
        let partition = reader.u32("pull partition")?;
        let index = usize::from(reader.u16("pull node")?);
        let node = nodes.get(index).ok_or(StateDecodeError::Invalid("pull node outside the ring's nodes"))?;
        if partition >= ring.partitions() {
            return Err(StateDecodeError::Invalid("pull of a partition outside the ring"));
        }
        let pull = Pull { partition, node: node.id.clone() };
        if previous.as_ref().is_some_and(|previous| *previous >= pull) {
            return Err(StateDecodeError::Invalid("completed pulls not in increasing order"));
        }
        previous = Some(pull.clone());
        done.insert(pull);
    }
    Transition::from_parts(from, factors, done)
        .map(Some)
        .ok_or(StateDecodeError::Invalid("transition factors not strictly increasing in 1..=16"))
}

/// Whom a node gossips with in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipTargets {
    /// Index of the member to exchange with, among the peers given.
    pub peer: Option<usize>,
    /// Index of the seed to exchange with as well, among the seeds given.
    pub seed: Option<usize>,
}

/// The peer-selection rule, shared by the node and the convergence
/// simulator: in round `round`, with `peers` other members and `seeds`
/// seed addresses (this node's own left out), and 64 random bits: one
/// member uniformly at random, and a seed every [`SEED_ROUND_INTERVAL`]
/// rounds or whenever no other member is known.
pub fn gossip_targets(round: u64, peers: usize, seeds: usize, random: u64) -> GossipTargets {
    let peer = (peers > 0).then(|| (random % peers as u64) as usize);
    let seed_due = seeds > 0 && (peers == 0 || round.is_multiple_of(SEED_ROUND_INTERVAL));
    // The high half: independent enough of the low half's choice.
    let seed = seed_due.then(|| ((random >> 32) % seeds as u64) as usize);
    GossipTargets { peer, seed }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    const Q: u32 = 16;

    fn announcement(index: usize) -> Announcement {
        Announcement {
            id: NodeId::new(format!("n{index}")),
            rpc_addr: format!("10.0.0.{index}:9000"),
            http_addr: Some(format!("10.0.0.{index}:8000")),
            capacity: 1 + (index % 3) as u32,
            zone: index.is_multiple_of(2).then(|| format!("z{}", index % 4)),
        }
    }

    fn static_state(nodes: usize) -> ClusterState {
        let members: Vec<(NodeSpec, String)> = (0..nodes)
            .map(|index| {
                let announced = announcement(index);
                (NodeSpec { id: announced.id, capacity: 1, zone: None }, announced.rpc_addr)
            })
            .collect();
        ClusterState::from_static(Q, &members).expect("valid static cluster")
    }

    /// One step of a generated history of a cluster (every replica starts
    /// from the same static state of two nodes).
    #[derive(Clone, Debug)]
    enum Step {
        /// Node `node` (0..8) asks replica `at` to join it.
        Join { at: Index, node: usize },
        /// Replica `at` commits its plan.
        Commit { at: Index },
        /// Node `node` announces other fields (a restart with new settings),
        /// at replica `at`.
        Announce { at: Index, node: usize, port: u16 },
        /// An operator moves a member forward, at replica `at`.
        Status { at: Index, node: usize, status: MemberStatus },
        /// Gossip: replica `from`'s state merged into replica `into`.
        Merge { from: Index, into: Index },
        /// A node finishes one of the pending pulls, at replica `at`.
        PullDone { at: Index, pull: Index },
    }

    fn step() -> impl Strategy<Value = Step> {
        let status = prop_oneof![Just(MemberStatus::Member), Just(MemberStatus::Leaving), Just(MemberStatus::Removed)];
        prop_oneof![
            3 => (any::<Index>(), 0..8usize).prop_map(|(at, node)| Step::Join { at, node }),
            2 => any::<Index>().prop_map(|at| Step::Commit { at }),
            1 => (any::<Index>(), 0..8usize, 1..4u16).prop_map(|(at, node, port)| Step::Announce { at, node, port }),
            1 => (any::<Index>(), 0..8usize, status).prop_map(|(at, node, status)| Step::Status { at, node, status }),
            4 => (any::<Index>(), any::<Index>()).prop_map(|(from, into)| Step::Merge { from, into }),
            3 => (any::<Index>(), any::<Index>()).prop_map(|(at, pull)| Step::PullDone { at, pull }),
        ]
    }

    /// The replicas' states after `steps`, from `replicas` copies of a
    /// two-node static state. Only reachable states: what nodes can produce.
    fn replay(replicas: usize, steps: &[Step]) -> Vec<ClusterState> {
        let mut states = vec![static_state(2); replicas];
        for step in steps {
            match step {
                Step::Join { at, node } => {
                    let state = &mut states[at.index(replicas)];
                    if let Ok(next) = state.with_joining(&announcement(*node), Q) {
                        *state = next;
                    }
                }
                Step::Commit { at } => {
                    let state = &mut states[at.index(replicas)];
                    if let Ok(plan) = state.plan()
                        && let Ok(next) = state.commit(&plan, &[2])
                    {
                        *state = next;
                    }
                }
                Step::Announce { at, node, port } => {
                    let state = &mut states[at.index(replicas)];
                    let mut announced = announcement(*node);
                    announced.http_addr = Some(format!("10.0.0.{node}:{port}"));
                    if let Some(member) = state.member(&announced.id) {
                        announced.rpc_addr = member.rpc_addr.clone();
                    }
                    if let Some(next) = state.with_announcement(&announced) {
                        *state = next;
                    }
                }
                Step::Status { at, node, status } => {
                    let state = &mut states[at.index(replicas)];
                    if let Some(next) = state.with_status(&NodeId::new(format!("n{node}")), *status) {
                        *state = next;
                    }
                }
                Step::Merge { from, into } => {
                    let from = states[from.index(replicas)].clone();
                    states[into.index(replicas)].merge_in(&from).expect("one cluster");
                }
                Step::PullDone { at, pull } => {
                    let state = &mut states[at.index(replicas)];
                    let pending = state.pending_pulls();
                    if !pending.is_empty() {
                        *state = state.with_pull_done(&pending[pull.index(pending.len())]).expect("a pending pull");
                    }
                }
            }
        }
        states
    }

    fn history() -> impl Strategy<Value = Vec<ClusterState>> {
        (1..=4usize, prop::collection::vec(step(), 0..40)).prop_map(|(replicas, steps)| replay(replicas, &steps))
    }

    fn pick(states: &[ClusterState], index: &Index) -> ClusterState {
        states[index.index(states.len())].clone()
    }

    proptest! {
        #[test]
        fn merge_is_commutative(states in history(), a in any::<Index>(), b in any::<Index>()) {
            let (a, b) = (pick(&states, &a), pick(&states, &b));
            prop_assert_eq!(a.merge(&b).unwrap(), b.merge(&a).unwrap());
        }

        #[test]
        fn merge_is_associative(states in history(), a in any::<Index>(), b in any::<Index>(), c in any::<Index>()) {
            let (a, b, c) = (pick(&states, &a), pick(&states, &b), pick(&states, &c));
            let left = a.merge(&b).unwrap().merge(&c).unwrap();
            let right = a.merge(&b.merge(&c).unwrap()).unwrap();
            prop_assert_eq!(left, right);
        }

        #[test]
        fn merge_is_idempotent_and_reports_changes_honestly(states in history(), a in any::<Index>(), b in any::<Index>()) {
            let (a, b) = (pick(&states, &a), pick(&states, &b));
            prop_assert_eq!(a.merge(&a).unwrap(), a.clone());
            let merged = a.merge(&b).unwrap();
            prop_assert_eq!(merged.merge(&b).unwrap(), merged.clone());
            let mut again = a.clone();
            prop_assert_eq!(again.merge_in(&b).unwrap(), merged != a);
        }

        #[test]
        fn every_reachable_state_keeps_its_invariants_and_roundtrips(states in history()) {
            for state in &states {
                state.check().unwrap();
                let bytes = state.encode();
                prop_assert!(bytes.len() <= MAX_STATE_BYTES);
                let decoded = ClusterState::decode(&bytes).unwrap();
                prop_assert_eq!(decoded.digest(), state.digest());
                prop_assert_eq!(&decoded, state);
            }
        }

        #[test]
        fn equal_states_have_equal_digests_and_different_ones_differ(states in history(), a in any::<Index>(), b in any::<Index>()) {
            let (a, b) = (pick(&states, &a), pick(&states, &b));
            prop_assert_eq!(a == b, a.digest() == b.digest());
        }

        #[test]
        fn merged_state_keeps_the_greater_epoch_and_every_records_furthest_status(
            states in history(), a in any::<Index>(), b in any::<Index>(),
        ) {
            let (a, b) = (pick(&states, &a), pick(&states, &b));
            let merged = a.merge(&b).unwrap();
            prop_assert_eq!(merged.epoch(), a.epoch().max(b.epoch()));
            for member in a.members().chain(b.members()) {
                let kept = merged.member(&member.id).unwrap();
                prop_assert!(kept.status >= member.status);
                prop_assert!(kept.status > member.status || kept.version >= member.version);
            }
        }

        #[test]
        fn the_plan_is_deterministic_and_its_moves_lead_to_its_ring(states in history(), a in any::<Index>()) {
            let state = pick(&states, &a);
            let Ok(plan) = state.plan() else { return Ok(()) };
            prop_assert_eq!(&state.clone().plan().unwrap(), &plan);
            let mut owners = state.ring().owners().to_vec();
            for step in &plan.moves {
                prop_assert_eq!(&owners[step.partition as usize], &step.from);
                owners[step.partition as usize] = step.to.clone();
            }
            prop_assert_eq!(owners, plan.ring.owners().to_vec());
            for spec in plan.ring.nodes() {
                prop_assert!(state.member(&spec.id).unwrap().status.in_plan());
            }
        }

        #[test]
        fn growing_a_cluster_below_n_nodes_keeps_every_replica(nodes in 1..3usize, joining in 1..3usize) {
            let mut state = static_state(nodes);
            for index in nodes..nodes + joining {
                state = state.with_joining(&announcement(index), Q).unwrap();
            }
            let plan = state.plan().unwrap();
            let n = nodes + joining;
            prop_assert!(replicas_lost(state.ring(), &plan.ring, &[n, n + 1]).is_empty());
            prop_assert!(replicas_lost(state.ring(), state.ring(), &[1, 2, 3]).is_empty());
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = ClusterState::decode(&bytes);
        }

        #[test]
        fn decoding_a_mangled_state_never_panics(states in history(), a in any::<Index>(), at in any::<Index>(), byte in any::<u8>()) {
            let mut bytes = pick(&states, &a).encode();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            if let Ok(state) = ClusterState::decode(&bytes) {
                prop_assert_eq!(ClusterState::decode(&state.encode()).unwrap(), state);
            }
        }

        #[test]
        fn gossip_targets_stay_in_range_and_include_a_seed_every_few_rounds(
            round in any::<u64>(), peers in 0..50usize, seeds in 0..5usize, random in any::<u64>(),
        ) {
            let targets = gossip_targets(round, peers, seeds, random);
            prop_assert_eq!(targets.peer.is_some(), peers > 0);
            prop_assert!(targets.peer.is_none_or(|peer| peer < peers));
            prop_assert!(targets.seed.is_none_or(|seed| seed < seeds));
            let due = seeds > 0 && (peers == 0 || round.is_multiple_of(SEED_ROUND_INTERVAL));
            prop_assert_eq!(targets.seed.is_some(), due);
        }
    }

    #[test]
    fn a_removed_member_stays_removed_whatever_arrives_later() {
        let base = static_state(2).with_joining(&announcement(5), Q).unwrap();
        let removed = base.with_status(&NodeId::new("n5"), MemberStatus::Removed).unwrap();
        // Elsewhere the node re-announces itself many times (higher versions).
        let mut busy = base.clone();
        for port in 0..5 {
            let mut announced = announcement(5);
            announced.http_addr = Some(format!("10.0.0.5:{}", 100 + port));
            busy = busy.with_announcement(&announced).unwrap();
        }
        assert!(busy.member(&NodeId::new("n5")).unwrap().version > removed.member(&NodeId::new("n5")).unwrap().version);
        for merged in [removed.merge(&busy).unwrap(), busy.merge(&removed).unwrap()] {
            assert_eq!(merged.member(&NodeId::new("n5")).unwrap().status, MemberStatus::Removed);
        }
        assert_eq!(removed.with_joining(&announcement(5), Q).unwrap_err(), MembershipError::Removed(NodeId::new("n5")));
        assert!(removed.with_status(&NodeId::new("n5"), MemberStatus::Member).is_none(), "status never goes back");
    }

    #[test]
    fn a_newer_ring_epoch_wins_and_concurrent_commits_of_one_epoch_agree() {
        let base = static_state(2);
        let one = base.with_joining(&announcement(2), Q).unwrap();
        let two = base.with_joining(&announcement(3), Q).unwrap();
        let first = one.commit(&one.plan().unwrap(), &[2]).unwrap();
        let second = two.commit(&two.plan().unwrap(), &[2]).unwrap();
        assert_eq!((first.epoch(), second.epoch()), (2, 2));
        assert_ne!(first.ring(), second.ring());
        let merged = first.merge(&second).unwrap();
        assert_eq!(merged, second.merge(&first).unwrap());
        assert!(merged.ring() == first.ring() || merged.ring() == second.ring());
        // Both joiners are known; the next plan takes both in, at epoch 3.
        let next = merged.clone();
        let next = next.pending_pulls().iter().fold(next, |state, pull| state.with_pull_done(pull).unwrap());
        let next = next.commit(&next.plan().unwrap(), &[2]).unwrap();
        assert_eq!(next.epoch(), 3);
        assert_eq!(next.ring().nodes().count(), 4);
        // An older state merged in changes nothing.
        assert_eq!(next.merge(&base).unwrap(), next);
        assert_eq!(base.merge(&next).unwrap().ring(), next.ring());
    }

    #[test]
    fn a_joining_node_owns_nothing_until_a_commit_promotes_it() {
        let base = static_state(3);
        let joining = Announcement { capacity: 1, ..announcement(7) };
        let joined = base.with_joining(&joining, Q).unwrap();
        let id = NodeId::new("n7");
        assert_eq!(joined.member(&id).unwrap().status, MemberStatus::Joining);
        assert_eq!(joined.ring(), base.ring());
        assert!(joined.rpc_addrs().contains_key(&id), "reachable for gossip before it owns anything");
        let plan = joined.plan().unwrap();
        assert!(plan.moves.iter().all(|step| step.to == id));
        assert_eq!(plan.moves.len(), 4, "Q/(S+1) = 16/4 partitions move, all to the new node");
        let committed = joined.commit(&plan, &[3]).unwrap();
        assert_eq!(committed.member(&id).unwrap().status, MemberStatus::Member);
        assert_eq!(committed.epoch(), 2);
        assert!(committed.plan().unwrap().is_empty(committed.ring()));
        assert_eq!(
            committed.commit(&committed.plan().unwrap(), &[3]).unwrap_err(),
            MembershipError::StalePlan { plan: 2, committed: 2 }
        );
    }

    #[test]
    fn joins_that_would_confuse_the_cluster_are_refused_with_what_to_do() {
        let base = static_state(2);
        let mut other_q = announcement(4);
        assert!(base.with_joining(&other_q, 32).unwrap_err().to_string().contains("--partitions 16"));
        other_q.rpc_addr = base.member(&NodeId::new("n0")).unwrap().rpc_addr.clone();
        let taken = base.with_joining(&other_q, Q).unwrap_err();
        assert!(matches!(taken, MembershipError::AddressTaken { .. }), "{taken}");
        let mut same_id = announcement(0);
        same_id.rpc_addr = "10.9.9.9:1".to_string();
        assert!(matches!(base.with_joining(&same_id, Q).unwrap_err(), MembershipError::IdTaken { .. }));
        let rejoin = base.with_joining(&announcement(4), Q).unwrap();
        assert_eq!(rejoin.with_joining(&announcement(4), Q).unwrap(), rejoin, "a repeated join changes nothing");
        let mut empty = announcement(4);
        empty.zone = Some(String::new());
        assert!(base.with_joining(&empty, Q).unwrap_err().to_string().contains("zone must be 1 to 255 bytes"));
    }

    #[test]
    fn a_full_cluster_refuses_another_join() {
        let mut state = static_state(1);
        for index in 1..MAX_MEMBERS {
            let announced = Announcement {
                id: NodeId::new(format!("m{index:04}")),
                rpc_addr: format!("h{index}:1"),
                http_addr: None,
                capacity: 1,
                zone: None,
            };
            state = state.with_joining(&announced, Q).unwrap();
        }
        let one_more =
            Announcement { id: NodeId::new("last"), rpc_addr: "h:2".into(), http_addr: None, capacity: 1, zone: None };
        assert_eq!(state.with_joining(&one_more, Q).unwrap_err(), MembershipError::TooManyMembers(MAX_MEMBERS));
        assert!(state.encode().len() < MAX_STATE_BYTES);
        assert_eq!(ClusterState::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn states_of_different_clusters_never_merge() {
        let ours = static_state(2);
        let theirs = static_state(3);
        let error = ours.merge(&theirs).unwrap_err();
        assert!(matches!(error, MembershipError::DifferentCluster { .. }));
        assert!(error.to_string().contains("another cluster"), "{error}");
        // The same static list founds the same cluster on every node.
        assert_eq!(static_state(2).cluster_id(), ours.cluster_id());
    }

    #[test]
    fn a_restarted_node_announces_new_settings_at_the_next_version_without_touching_the_ring() {
        let base = static_state(2);
        let id = NodeId::new("n1");
        let record = base.member(&id).unwrap().clone();
        let announced = Announcement {
            id: id.clone(),
            rpc_addr: record.rpc_addr.clone(),
            http_addr: Some("10.0.0.1:8081".into()),
            capacity: 3,
            zone: Some("b".into()),
        };
        let next = base.with_announcement(&announced).unwrap();
        let updated = next.member(&id).unwrap();
        assert_eq!((updated.version, updated.capacity, updated.status), (2, 3, MemberStatus::Member));
        assert_eq!(next.ring(), base.ring());
        assert!(next.with_announcement(&announced).is_none());
        assert_eq!(next.plan().unwrap().ring.node(&id).unwrap().capacity, 3, "the next plan uses it");
    }

    #[test]
    fn the_encoding_is_bounded_and_refuses_what_the_encoder_never_writes() {
        let state = static_state(3).with_joining(&announcement(4), Q).unwrap();
        let bytes = state.encode();
        assert_eq!(bytes[0], FORMAT);
        let mut newer = bytes.clone();
        newer[0] = 3;
        assert_eq!(ClusterState::decode(&newer).unwrap_err(), StateDecodeError::UnknownFormat(3));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(ClusterState::decode(&trailing).unwrap_err(), StateDecodeError::TrailingBytes(1));
        for cut in 0..bytes.len() {
            assert!(ClusterState::decode(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decoded");
        }
        let huge = vec![0u8; MAX_STATE_BYTES + 1];
        assert_eq!(ClusterState::decode(&huge).unwrap_err(), StateDecodeError::TooLarge(MAX_STATE_BYTES + 1));
    }

    #[test]
    fn a_ring_naming_a_node_without_a_record_is_refused() {
        let ring = Ring::new(Q, [NodeSpec::new("a", 1), NodeSpec::new("b", 1)]).unwrap();
        let only_a = Member {
            id: NodeId::new("a"),
            rpc_addr: "a:1".into(),
            http_addr: None,
            capacity: 1,
            zone: None,
            status: MemberStatus::Member,
            version: 1,
        };
        assert_eq!(
            ClusterState::genesis(ring, [only_a]).unwrap_err(),
            MembershipError::UnknownRingNode(NodeId::new("b"))
        );
    }

    #[test]
    fn adding_a_fourth_node_at_n3_drops_a_replica_of_the_partitions_it_takes() {
        let base = static_state(3);
        let joined = base.with_joining(&Announcement { capacity: 1, ..announcement(3) }, Q).unwrap();
        let plan = joined.plan().unwrap();
        let losses = replicas_lost(base.ring(), &plan.ring, &[3]);
        assert!(!losses.is_empty());
        assert!(plan.moves.iter().all(|step| losses.iter().any(|loss| loss.partition == step.partition)));
        assert!(losses.iter().all(|loss| !loss.dropped.contains(&NodeId::new("n3"))));
        // At n = 4 every node replicates everything, before and after.
        assert!(replicas_lost(base.ring(), &plan.ring, &[4]).is_empty());
    }

    #[test]
    fn a_state_persisted_in_the_first_format_still_decodes() {
        let state = static_state(3).with_joining(&announcement(4), Q).unwrap();
        let mut bytes = state.encode();
        assert_eq!(bytes.pop(), Some(0), "no transition");
        bytes[0] = FORMAT_WITHOUT_TRANSITION;
        assert_eq!(ClusterState::decode(&bytes).unwrap(), state);
    }

    #[test]
    fn a_commit_waits_for_the_previous_transfers_and_removed_pullers_are_not_waited_for() {
        let joined = static_state(3).with_joining(&Announcement { capacity: 1, ..announcement(3) }, Q).unwrap();
        let committed = joined.commit(&joined.plan().unwrap(), &[3]).unwrap();
        let pending = committed.pending_pulls();
        assert!(!pending.is_empty());
        assert!(pending.iter().all(|pull| pull.node == NodeId::new("n3")), "only the new node gains replicas");
        assert_eq!(
            committed.unsettled_partitions(),
            pending.iter().map(|pull| pull.partition).collect::<BTreeSet<u32>>()
        );
        for pull in &pending {
            let sources = committed.pull_sources(pull.partition);
            assert_eq!(sources.len(), 3);
            assert!(!sources.contains(&pull.node));
        }
        // Another join cannot be committed while data still moves.
        let again = committed.with_joining(&Announcement { capacity: 1, ..announcement(5) }, Q).unwrap();
        let refused = again.commit(&again.plan().unwrap(), &[3]).unwrap_err();
        assert!(matches!(refused, MembershipError::TransfersPending { epoch: 2, .. }), "{refused}");
        assert!(refused.to_string().contains("dynamo admin transfers"), "{refused}");
        // Each completion is recorded once and spreads by merge.
        let first = committed.with_pull_done(&pending[0]).unwrap();
        assert!(first.with_pull_done(&pending[0]).is_none());
        let mut merged = committed.clone();
        assert!(merged.merge_in(&first).unwrap());
        assert_eq!(merged.pending_pulls().len(), pending.len() - 1);
        let not_a_pull = Pull { partition: pending[0].partition, node: NodeId::new("n0") };
        assert!(committed.with_pull_done(&not_a_pull).is_none());
        // Once the new node is removed, nothing is waited for.
        let removed = again.with_status(&NodeId::new("n3"), MemberStatus::Removed).unwrap();
        assert!(removed.pending_pulls().is_empty() && removed.unsettled_partitions().is_empty());
        let settled = pending.iter().fold(again.clone(), |state, pull| state.with_pull_done(pull).unwrap());
        let next = settled.commit(&settled.plan().unwrap(), &[3]).unwrap();
        assert_eq!(next.epoch(), 3);
        assert_eq!(next.transition().unwrap().from_ring(), settled.ring());
        assert_eq!(ClusterState::decode(&next.encode()).unwrap(), next);
    }

    #[test]
    fn seeds_are_contacted_every_few_rounds_and_always_when_alone() {
        let rounds_with_seed = (0..100).filter(|round| gossip_targets(*round, 5, 2, 7).seed.is_some()).count();
        assert_eq!(rounds_with_seed, 100 / SEED_ROUND_INTERVAL as usize);
        assert!((0..10).all(|round| gossip_targets(round, 0, 1, 7).seed == Some(0)));
        assert_eq!(gossip_targets(3, 0, 0, 7), GossipTargets { peer: None, seed: None });
    }
}
