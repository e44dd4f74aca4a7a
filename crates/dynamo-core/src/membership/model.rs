//! The membership data model and its merge (paper section 4.8): who the
//! members are, where they are reached, and which ring is committed, as one
//! versioned state that every node holds, persists, and merges with its
//! peers' by gossip.
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

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::codec::{cluster_id_of, ring_digest};
use crate::ring::{NodeId, NodeSpec, Ring, RingError};
use crate::transition::Transition;

/// Most member records a state holds, removed ones included. A limit on
/// everything a peer can make us store; far above the clusters this store
/// is meant for (the paper's ran to a few hundred nodes).
pub const MAX_MEMBERS: usize = 1024;
/// Longest node id, address or zone, in bytes (one length byte).
pub const MAX_FIELD_LEN: usize = 255;

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

    /// Checks every field against its bound and the version against 0.
    pub(super) fn check(&self) -> Result<(), MembershipError> {
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

/// The cluster's membership and committed ring (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterState {
    /// The cluster this state belongs to (a hash of its first ring).
    pub(super) cluster_id: ClusterId,
    /// Every member record, removed ones included, by id.
    pub(super) members: BTreeMap<NodeId, Member>,
    /// The committed ring.
    pub(super) ring: Ring,
    /// The move to `ring` from the ring before it; `None` for the first
    /// ring (and states persisted before transitions existed).
    pub(super) transition: Option<Transition>,
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

    /// The invariants: records within bounds, at most [`MAX_MEMBERS`], and
    /// a record for every node of the ring.
    pub(super) fn check(&self) -> Result<(), MembershipError> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::testing::{Q, announcement, history, pick, static_state};
    use super::*;
    use crate::membership::MAX_STATE_BYTES;

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
}
