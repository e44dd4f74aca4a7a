//! The encoding of a [`ClusterState`]: versioned, canonical (one encoding
//! per state, so equal states have equal [`StateDigest`]s) and bounded (at
//! most [`MAX_STATE_BYTES`]). The decoder checks every length, every
//! invariant, and the ring through [`Ring::from_parts`]. The same bytes are
//! persisted and gossiped, and the ids and digests derived from them
//! ([`ClusterState::digest`], the cluster id, [`ring_digest`]) are compared
//! across nodes, so this layout must never change without a new format
//! version (`crates/dynamo-core/tests/wire_format.rs` pins its bytes).
//!
//! The fields are the shared primitives of [`crate::codec`] (text fields,
//! optional fields, clamped counts); their errors become
//! [`StateDecodeError`]s.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::model::{ClusterId, ClusterState, MAX_MEMBERS, Member, MemberStatus, MembershipError, StateDigest};
use crate::codec::{CodecError, Reader, clamped_u16, clamped_u32, encode_field, encode_optional_field, first_128_bits};
use crate::keys::MAX_PARTITIONS;
use crate::ring::{NodeId, NodeSpec, Ring};
use crate::transition::{MAX_FACTORS, Pull, Transition};

/// Largest encoded state accepted: 1,024 members with every field at its
/// longest, two rings of 1,024 nodes and 65,536 owners each (a transition
/// keeps the previous ring) and a completed pull for each of 65,536
/// partitions times a few replicas take about 3.5 MB.
pub const MAX_STATE_BYTES: usize = 8 << 20;
/// Most completed pulls a transition records: a pull per partition and
/// added replica, at most [`crate::props::MAX_N`] replicas.
const MAX_DONE_PULLS: usize = MAX_PARTITIONS as usize * MAX_FACTORS;

/// Format marker of the state layout written: 2 appends the transition.
const FORMAT: u8 = 2;
/// The first layout (no transition), still read: a state persisted by an
/// earlier version decodes as one whose last change has settled.
const FORMAT_WITHOUT_TRANSITION: u8 = 1;
/// Domain separation of the hashes below.
const CLUSTER_ID_DOMAIN: &[u8] = b"dynamo cluster id\0";
const STATE_DIGEST_DOMAIN: &[u8] = b"dynamo cluster state\0";
const RING_DIGEST_DOMAIN: &[u8] = b"dynamo ring\0";

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

impl ClusterState {
    /// Digest of the canonical encoding.
    pub fn digest(&self) -> StateDigest {
        let mut hasher = Sha256::new();
        hasher.update(STATE_DIGEST_DOMAIN);
        hasher.update(self.encode());
        StateDigest(first_128_bits(hasher.finalize().into()))
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
        out.extend_from_slice(&clamped_u16(self.members.len()).to_be_bytes());
        for member in self.members.values() {
            encode_field(member.id.as_str(), &mut out);
            encode_field(&member.rpc_addr, &mut out);
            encode_optional_field(member.http_addr.as_deref(), &mut out);
            out.extend_from_slice(&member.capacity.to_be_bytes());
            encode_optional_field(member.zone.as_deref(), &mut out);
            out.push(status_byte(member.status));
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
        let cluster_id = reader.array("cluster id")?;
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

/// The id of the cluster whose first ring is `ring`.
pub(super) fn cluster_id_of(ring: &Ring) -> ClusterId {
    let mut out = Vec::new();
    encode_ring(ring, &mut out);
    let mut hasher = Sha256::new();
    hasher.update(CLUSTER_ID_DOMAIN);
    hasher.update(&out);
    ClusterId(first_128_bits(hasher.finalize().into()))
}

/// The byte of a status, in the order of a member's life.
fn status_byte(status: MemberStatus) -> u8 {
    match status {
        MemberStatus::Joining => 0,
        MemberStatus::Member => 1,
        MemberStatus::Leaving => 2,
        MemberStatus::Removed => 3,
    }
}

/// The status of a byte written by [`status_byte`].
fn status_from_byte(byte: u8) -> Option<MemberStatus> {
    match byte {
        0 => Some(MemberStatus::Joining),
        1 => Some(MemberStatus::Member),
        2 => Some(MemberStatus::Leaving),
        3 => Some(MemberStatus::Removed),
        _ => None,
    }
}

fn encode_ring(ring: &Ring, out: &mut Vec<u8>) {
    out.extend_from_slice(&ring.partitions().to_be_bytes());
    out.extend_from_slice(&ring.version().to_be_bytes());
    let nodes: Vec<&NodeSpec> = ring.nodes().collect();
    out.extend_from_slice(&clamped_u16(nodes.len()).to_be_bytes());
    for spec in &nodes {
        encode_field(spec.id.as_str(), out);
        out.extend_from_slice(&spec.capacity.to_be_bytes());
        encode_optional_field(spec.zone.as_deref(), out);
    }
    let index: BTreeMap<&NodeId, u16> = nodes.iter().enumerate().map(|(i, spec)| (&spec.id, clamped_u16(i))).collect();
    for owner in ring.owners() {
        out.extend_from_slice(&index.get(owner).copied().unwrap_or(u16::MAX).to_be_bytes());
    }
}

fn decode_member(reader: &mut Reader<'_>) -> Result<Member, StateDecodeError> {
    let id = NodeId::new(reader.field("member id")?);
    let rpc_addr = reader.field("RPC address")?;
    let http_addr = reader.optional_field("HTTP address")?;
    let capacity = reader.u32("capacity")?;
    let zone = reader.optional_field("zone")?;
    let status = status_from_byte(reader.u8("status")?).ok_or(StateDecodeError::Invalid("unknown status"))?;
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
        let id = NodeId::new(reader.field("ring node id")?);
        let capacity = reader.u32("ring node capacity")?;
        let zone = reader.optional_field("ring node zone")?;
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
    let index: BTreeMap<&NodeId, u16> = ring.nodes().enumerate().map(|(i, spec)| (&spec.id, clamped_u16(i))).collect();
    let done = transition.done();
    out.extend_from_slice(&clamped_u32(done.len()).to_be_bytes());
    for pull in done {
        out.extend_from_slice(&pull.partition.to_be_bytes());
        out.extend_from_slice(&index.get(&pull.node).copied().unwrap_or(u16::MAX).to_be_bytes());
    }
}

fn decode_transition(reader: &mut Reader<'_>, ring: &Ring) -> Result<Option<Transition>, StateDecodeError> {
    if !reader.flag("transition flag")? {
        return Ok(None);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::super::testing::{Q, announcement, history, pick, static_state};
    use super::*;

    proptest! {
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
    fn a_state_persisted_in_the_first_format_still_decodes() {
        let state = static_state(3).with_joining(&announcement(4), Q).unwrap();
        let mut bytes = state.encode();
        assert_eq!(bytes.pop(), Some(0), "no transition");
        bytes[0] = FORMAT_WITHOUT_TRANSITION;
        assert_eq!(ClusterState::decode(&bytes).unwrap(), state);
    }
}
