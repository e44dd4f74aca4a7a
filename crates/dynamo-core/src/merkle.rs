//! Merkle trees for anti-entropy (paper section 4.7): how two replicas of a
//! partition find the few keys on which they differ without sending their
//! key lists to each other.
//!
//! **Shape.** One tree per partition, of a fixed shape that every node
//! shares: [`SEGMENTS`] leaves (1,024), an inner level of
//! [`SEGMENTS`]/[`FANOUT`] nodes (32), and a root. A key belongs to the leaf
//! (segment) given by the low bits of its MD5 ring position
//! ([`segment_of`]); the top bits of that position choose the partition, so
//! the low bits spread a partition's keys evenly over the segments, and
//! every node puts a key in the same segment. The shape is part of message
//! format 1 of [`crate::messages`]: changing it needs a new format.
//!
//! **Leaves are sums, so a write updates the tree in O(1).** A leaf's hash
//! is the wrapping sum (mod 2^128) of one *item hash* per key in its
//! segment, `H(key, object digest)`. When a write changes a key's digest
//! from `old` to `new`, the leaf changes by `- H(key, old) + H(key, new)`:
//! no other key is read, nothing is rescanned. A sum (rather than XOR)
//! keeps a key counted twice by mistake visible instead of cancelling it
//! out. Summing hashes is not collision-resistant against someone choosing
//! many keys on purpose; replicas are not adversaries of each other, and a
//! forged collision would only hide a difference from anti-entropy (read
//! repair and hinted handoff still apply).
//!
//! **Inner nodes are real hashes, recomputed lazily.** An inner node is
//! `H(level, its children's hashes)`. A write only marks its leaf's parent
//! and the root stale; they are recomputed when someone reads them (an
//! exchange), so a burst of writes costs one recomputation, not one per
//! write.
//!
//! **The object digest** ([`ObjectDigest`]) is SHA-256 (cut to 128 bits) of
//! the object's canonical encoding ([`crate::codec::encode_object`]: the
//! clock in actor order, siblings sorted by dot). Two replicas holding the
//! same version set and causal context therefore have the same digest,
//! whatever order the versions arrived in; replicas whose contexts differ
//! (one has seen a version the other has not) differ, and are reconciled.
//!
//! **Comparing.** [`TreeWalk`] drives a top-down comparison with a remote
//! tree: root, then the children of the nodes that differ, then the
//! leaves. It is a pure state machine: the caller fetches the remote hashes
//! it asks for (over the network or, in tests, from another tree) and feeds
//! them back. [`diff_listings`] then compares the two sides' sorted
//! `(key, digest)` lists of the differing leaves.

use std::cmp::Ordering;
use std::ops::Range;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::codec::{encode_object, first_128_bits};
use crate::keys::ObjectKey;
use crate::object::VersionedObject;

/// Leaves (segments) per tree. Enough that a partition of a million keys
/// has about a thousand keys per leaf, so one differing key costs one
/// leaf's listing; few enough that a tree is 16 KiB of leaves.
pub const SEGMENTS: usize = 1024;
/// Children per inner node: the inner level has `SEGMENTS / FANOUT` nodes,
/// so a comparison takes three round trips (root, inner, leaves) and each
/// answer for one differing node is `FANOUT` hashes (512 bytes).
pub const FANOUT: usize = 32;
/// Level of the leaves (the root is level 0).
pub const LEAF_LEVEL: u8 = 2;
/// Nodes of the inner level.
const INNER_NODES: usize = SEGMENTS / FANOUT;

/// Domain tags keep the three kinds of hash apart.
const ITEM_TAG: &[u8] = b"dynamo/merkle/item/1";
const NODE_TAG: &[u8] = b"dynamo/merkle/node/1";

/// Digest of one replica's state of one key: SHA-256 of its canonical
/// encoding, first 128 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectDigest(pub [u8; 16]);

impl ObjectDigest {
    /// The digest of `object`, or `None` for the state of a key nobody has
    /// written (such a key is in no tree).
    pub fn of(object: &VersionedObject) -> Option<ObjectDigest> {
        (*object != VersionedObject::new()).then(|| ObjectDigest::of_encoded(&encode_object(object)))
    }

    /// Like [`ObjectDigest::of`], from `encoded`, which must be
    /// `encode_object(object)`: saves encoding twice when the caller has the
    /// bytes already (a replica writing them to storage).
    pub fn of_encoding(object: &VersionedObject, encoded: &[u8]) -> Option<ObjectDigest> {
        debug_assert_eq!(encoded, encode_object(object), "the encoding of another object");
        (*object != VersionedObject::new()).then(|| ObjectDigest::of_encoded(encoded))
    }

    fn of_encoded(encoded: &[u8]) -> ObjectDigest {
        ObjectDigest(first_128_bits(Sha256::digest(encoded).into()))
    }
}

/// The hash of one tree node (for a leaf: the sum of its item hashes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NodeHash(pub [u8; 16]);

/// Why a tree query or a comparison step was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    /// A level below the leaves.
    #[error("tree level {0} does not exist (the leaves are level {LEAF_LEVEL})")]
    NoSuchLevel(u8),
    /// A node index outside its level.
    #[error("tree level {level} has no node {index}")]
    NoSuchNode {
        /// The level.
        level: u8,
        /// The index asked for.
        index: u16,
    },
    /// A comparison step got a different number of hashes than it asked for.
    #[error("expected {expected} hashes, got {got}")]
    WrongHashCount {
        /// Hashes asked for.
        expected: usize,
        /// Hashes received.
        got: usize,
    },
    /// A comparison step after the comparison finished.
    #[error("the comparison is already finished")]
    Finished,
}

/// Number of nodes at `level` (`None` below the leaves).
pub fn level_width(level: u8) -> Option<usize> {
    match level {
        0 => Some(1),
        1 => Some(INNER_NODES),
        LEAF_LEVEL => Some(SEGMENTS),
        _ => None,
    }
}

/// The indices, at `level + 1`, of the children of node `index` at `level`.
pub fn children(level: u8, index: u16) -> Range<u16> {
    let fanout = if level == 0 { INNER_NODES } else { FANOUT };
    let start = usize::from(index) * fanout;
    // Widths are at most SEGMENTS (1024), far inside u16.
    (start as u16)..((start + fanout) as u16)
}

/// The segment (leaf) of `key`: the low bits of its ring position.
pub fn segment_of(key: &ObjectKey) -> u16 {
    (key.ring_position() % SEGMENTS as u128) as u16
}

/// The item hash of `key` in state `digest`: what the key adds to its leaf.
fn item_hash(key: &ObjectKey, digest: &ObjectDigest) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(ITEM_TAG);
    // Validation keeps the bucket within 255 bytes and the key within 1,024.
    hasher.update([key.bucket().len() as u8]);
    hasher.update(key.bucket().as_bytes());
    hasher.update((key.key().len() as u16).to_be_bytes());
    hasher.update(key.key());
    hasher.update(digest.0);
    u128::from_be_bytes(first_128_bits(hasher.finalize().into()))
}

fn node_hash(level: u8, children: &[NodeHash]) -> NodeHash {
    let mut hasher = Sha256::new();
    hasher.update(NODE_TAG);
    hasher.update([level]);
    for child in children {
        hasher.update(child.0);
    }
    NodeHash(first_128_bits(hasher.finalize().into()))
}

/// One partition's tree. Updated incrementally, one key at a time; its
/// hashes depend only on the set of `(key, digest)` pairs it holds, never
/// on the order they were added in.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// Sum of the item hashes of each segment.
    leaves: Box<[u128]>,
    /// Inner-level hashes, valid where not `inner_stale`.
    inner: Box<[NodeHash]>,
    /// Inner nodes whose leaves changed since they were last computed.
    inner_stale: Box<[bool]>,
    /// The root hash, valid unless `root_stale`.
    root: NodeHash,
    /// Whether any inner node changed since the root was last computed.
    root_stale: bool,
    /// Keys held (insertions minus removals), for status reports.
    keys: u64,
}

impl Default for MerkleTree {
    fn default() -> Self {
        Self::new()
    }
}

impl MerkleTree {
    /// The tree of an empty partition.
    pub fn new() -> Self {
        Self {
            leaves: vec![0; SEGMENTS].into_boxed_slice(),
            inner: vec![NodeHash::default(); INNER_NODES].into_boxed_slice(),
            inner_stale: vec![true; INNER_NODES].into_boxed_slice(),
            root: NodeHash::default(),
            root_stale: true,
            keys: 0,
        }
    }

    /// Adds `key` in state `digest`. The key must not be in the tree.
    pub fn insert(&mut self, key: &ObjectKey, digest: &ObjectDigest) {
        self.add(segment_of(key), item_hash(key, digest));
        self.keys += 1;
    }

    /// Removes `key`, which is in the tree in state `digest`.
    pub fn remove(&mut self, key: &ObjectKey, digest: &ObjectDigest) {
        self.add(segment_of(key), item_hash(key, digest).wrapping_neg());
        self.keys = self.keys.saturating_sub(1);
    }

    /// Applies one key's change of state from `old` to `new` (`None`: not
    /// in the tree), without looking at any other key.
    pub fn update(&mut self, key: &ObjectKey, old: Option<&ObjectDigest>, new: Option<&ObjectDigest>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.remove(key, old);
        }
        if let Some(new) = new {
            self.insert(key, new);
        }
    }

    /// Adds `delta` to a leaf and marks the nodes above it stale.
    fn add(&mut self, segment: u16, delta: u128) {
        let segment = usize::from(segment);
        self.leaves[segment] = self.leaves[segment].wrapping_add(delta);
        self.inner_stale[segment / FANOUT] = true;
        self.root_stale = true;
    }

    /// Keys in the tree.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The root hash.
    pub fn root(&mut self) -> NodeHash {
        self.refresh();
        self.root
    }

    /// The hash of leaf `segment`.
    pub fn leaf(&self, segment: u16) -> NodeHash {
        NodeHash(self.leaves[usize::from(segment) % SEGMENTS].to_be_bytes())
    }

    /// The hashes of the nodes `indices` of `level`, in the same order.
    pub fn hashes(&mut self, level: u8, indices: &[u16]) -> Result<Vec<NodeHash>, TreeError> {
        let width = level_width(level).ok_or(TreeError::NoSuchLevel(level))?;
        if let Some(&index) = indices.iter().find(|&&index| usize::from(index) >= width) {
            return Err(TreeError::NoSuchNode { level, index });
        }
        self.refresh();
        Ok(indices
            .iter()
            .map(|&index| match level {
                0 => self.root,
                1 => self.inner[usize::from(index)],
                _ => self.leaf(index),
            })
            .collect())
    }

    /// Recomputes the stale inner nodes and the root.
    fn refresh(&mut self) {
        if !self.root_stale {
            return;
        }
        for node in 0..INNER_NODES {
            if self.inner_stale[node] {
                let leaves: Vec<NodeHash> = children(1, node as u16).map(|segment| self.leaf(segment)).collect();
                self.inner[node] = node_hash(1, &leaves);
                self.inner_stale[node] = false;
            }
        }
        self.root = node_hash(0, &self.inner);
        self.root_stale = false;
    }

    /// The segments on which this tree and `other` differ, found top-down
    /// with a [`TreeWalk`], as an exchange finds them over the network.
    pub fn differing_segments(&mut self, other: &mut MerkleTree) -> Vec<u16> {
        let mut walk = TreeWalk::new();
        while let Some((level, indices)) = walk.request() {
            let indices = indices.to_vec();
            let comparison = self
                .hashes(level, &indices)
                .and_then(|local| other.hashes(level, &indices).map(|remote| (local, remote)))
                .and_then(|(local, remote)| walk.receive(&local, &remote));
            // The walk only asks for nodes that exist, and both trees answer
            // with one hash per node.
            debug_assert!(comparison.is_ok(), "{comparison:?}");
            if comparison.is_err() {
                break;
            }
        }
        walk.into_differing_segments()
    }
}

/// A top-down comparison with a remote tree of the same shape. Ask
/// [`TreeWalk::request`] which hashes to fetch, fetch them, hand them to
/// [`TreeWalk::receive`] with the local hashes of the same nodes; repeat
/// until `request` returns `None`. At most three rounds: root, the inner
/// nodes, the leaves under the inner nodes that differ.
#[derive(Clone, Debug)]
pub struct TreeWalk {
    /// The level being asked for, and which of its nodes.
    pending: Option<(u8, Vec<u16>)>,
    /// Leaves found to differ.
    differing: Vec<u16>,
}

impl Default for TreeWalk {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeWalk {
    /// A comparison that starts at the root.
    pub fn new() -> Self {
        Self { pending: Some((0, vec![0])), differing: Vec::new() }
    }

    /// The level and node indices whose hashes are needed next (indices in
    /// increasing order), or `None` when the comparison is over.
    pub fn request(&self) -> Option<(u8, &[u16])> {
        self.pending.as_ref().map(|(level, indices)| (*level, indices.as_slice()))
    }

    /// Takes the local and remote hashes of the nodes [`TreeWalk::request`]
    /// named, in its order.
    pub fn receive(&mut self, local: &[NodeHash], remote: &[NodeHash]) -> Result<(), TreeError> {
        let (level, indices) = self.pending.take().ok_or(TreeError::Finished)?;
        for got in [local.len(), remote.len()] {
            if got != indices.len() {
                self.pending = Some((level, indices));
                return Err(TreeError::WrongHashCount { expected: self.request().map_or(0, |r| r.1.len()), got });
            }
        }
        let differing = indices.iter().zip(local.iter().zip(remote)).filter(|(_, (l, r))| l != r).map(|(i, _)| *i);
        if level == LEAF_LEVEL {
            self.differing.extend(differing);
            return Ok(());
        }
        let next: Vec<u16> = differing.flat_map(|index| children(level, index)).collect();
        if !next.is_empty() {
            self.pending = Some((level + 1, next));
        }
        Ok(())
    }

    /// The leaves found to differ, in increasing order (complete once
    /// [`TreeWalk::request`] returns `None`).
    pub fn into_differing_segments(self) -> Vec<u16> {
        self.differing
    }
}

/// One key on which two listings disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference<K, D> {
    /// The key.
    pub key: K,
    /// Its digest on the local side (`None`: absent there).
    pub local: Option<D>,
    /// Its digest on the remote side (`None`: absent there).
    pub remote: Option<D>,
}

/// What [`diff_listings`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingDiff<K, D> {
    /// Keys that differ, in key order.
    pub differences: Vec<Difference<K, D>>,
    /// Distinct keys looked at (on either side).
    pub compared: usize,
    /// Whether it stopped at the limit before the end of both listings.
    pub truncated: bool,
}

/// Compares two listings of `(key, digest)`, each sorted by key with no key
/// twice, in one merge pass. Stops after `limit` differences (the keys
/// after them are left for a later exchange), so the work per call is
/// bounded however far apart the two sides are.
pub fn diff_listings<K: Ord, D: Eq>(
    local: impl IntoIterator<Item = (K, D)>,
    remote: impl IntoIterator<Item = (K, D)>,
    limit: usize,
) -> ListingDiff<K, D> {
    let mut local = local.into_iter().peekable();
    let mut remote = remote.into_iter().peekable();
    let mut result = ListingDiff { differences: Vec::new(), compared: 0, truncated: false };
    loop {
        let order = match (local.peek(), remote.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((l, _)), Some((r, _))) => l.cmp(r),
        };
        if result.differences.len() >= limit {
            result.truncated = true;
            break;
        }
        result.compared += 1;
        let difference = match order {
            Ordering::Less => local.next().map(|(key, digest)| Difference { key, local: Some(digest), remote: None }),
            Ordering::Greater => {
                remote.next().map(|(key, digest)| Difference { key, local: None, remote: Some(digest) })
            }
            Ordering::Equal => match (local.next(), remote.next()) {
                (Some((key, l)), Some((_, r))) if l != r => Some(Difference { key, local: Some(l), remote: Some(r) }),
                _ => None,
            },
        };
        result.differences.extend(difference);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::props::ConflictMode;
    use crate::testing::three_states;

    fn key(index: u32) -> ObjectKey {
        ObjectKey::new("b", format!("key-{index}").as_bytes()).expect("valid key")
    }

    fn digest(value: u8) -> ObjectDigest {
        ObjectDigest([value; 16])
    }

    fn built(keys: &BTreeMap<u32, u8>) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for (index, value) in keys {
            tree.insert(&key(*index), &digest(*value));
        }
        tree
    }

    /// Every hash of every level: what "two trees are equal" means.
    fn all_hashes(tree: &mut MerkleTree) -> Vec<NodeHash> {
        (0..=LEAF_LEVEL)
            .flat_map(|level| {
                let width = level_width(level).expect("level exists") as u16;
                tree.hashes(level, &(0..width).collect::<Vec<_>>()).expect("valid nodes")
            })
            .collect()
    }

    /// A key-value map small enough to put several keys in some segments.
    fn key_set() -> impl Strategy<Value = BTreeMap<u32, u8>> {
        prop::collection::btree_map(0..5_000u32, any::<u8>(), 0..300)
    }

    #[test]
    fn an_empty_tree_has_the_same_root_everywhere_and_zero_leaves() {
        let mut a = MerkleTree::new();
        let mut b = MerkleTree::new();
        assert_eq!(a.root(), b.root());
        assert_eq!(a.leaf(7), NodeHash::default());
        assert_eq!(a.keys(), 0);
    }

    #[test]
    fn inserting_then_removing_a_key_gives_back_the_empty_tree() {
        let mut tree = MerkleTree::new();
        let empty = tree.root();
        tree.insert(&key(1), &digest(9));
        assert_ne!(tree.root(), empty);
        tree.update(&key(1), Some(&digest(9)), Some(&digest(10)));
        tree.update(&key(1), Some(&digest(10)), None);
        assert_eq!(tree.root(), empty);
        assert_eq!(tree.keys(), 0);
    }

    #[test]
    fn a_key_counted_twice_does_not_cancel_out() {
        let mut once = MerkleTree::new();
        once.insert(&key(1), &digest(1));
        let mut twice = once.clone();
        twice.insert(&key(1), &digest(1));
        assert_ne!(once.root(), twice.root());
        assert_ne!(twice.root(), MerkleTree::new().root());
    }

    #[test]
    fn queries_outside_the_shape_are_refused() {
        let mut tree = MerkleTree::new();
        assert_eq!(tree.hashes(3, &[0]), Err(TreeError::NoSuchLevel(3)));
        assert_eq!(tree.hashes(1, &[32]), Err(TreeError::NoSuchNode { level: 1, index: 32 }));
        assert_eq!(tree.hashes(0, &[1]), Err(TreeError::NoSuchNode { level: 0, index: 1 }));
        assert_eq!(tree.hashes(2, &[1023]).map(|hashes| hashes.len()), Ok(1));
    }

    #[test]
    fn children_cover_each_level_exactly_once() {
        assert_eq!(children(0, 0), 0..32);
        assert_eq!(children(1, 0), 0..32);
        assert_eq!(children(1, 31), 992..1024);
        let leaves: Vec<u16> = (0..32).flat_map(|inner| children(1, inner)).collect();
        assert_eq!(leaves, (0..1024).collect::<Vec<_>>());
    }

    #[test]
    fn a_walk_refuses_the_wrong_number_of_hashes_and_steps_after_the_end() {
        let mut walk = TreeWalk::new();
        assert_eq!(walk.request(), Some((0, &[0u16][..])));
        let error = walk.receive(&[NodeHash::default()], &[]);
        assert_eq!(error, Err(TreeError::WrongHashCount { expected: 1, got: 0 }));
        assert_eq!(walk.request(), Some((0, &[0u16][..])), "a refused step can be retried");
        walk.receive(&[NodeHash::default()], &[NodeHash::default()]).expect("equal roots");
        assert_eq!(walk.request(), None);
        assert_eq!(walk.receive(&[], &[]), Err(TreeError::Finished));
        assert!(walk.into_differing_segments().is_empty());
    }

    #[test]
    fn one_differing_key_costs_three_rounds_of_one_thirty_two_and_thirty_two_hashes() {
        let keys: BTreeMap<u32, u8> = (0..2_000).map(|index| (index, 1)).collect();
        let mut local = built(&keys);
        let mut remote = local.clone();
        remote.update(&key(77), Some(&digest(1)), Some(&digest(2)));
        let mut walk = TreeWalk::new();
        let mut asked = Vec::new();
        while let Some((level, indices)) = walk.request() {
            let indices = indices.to_vec();
            asked.push(indices.len());
            let local = local.hashes(level, &indices).expect("valid");
            let remote = remote.hashes(level, &indices).expect("valid");
            walk.receive(&local, &remote).expect("same counts");
        }
        assert_eq!(asked, [1, 32, 32]);
        assert_eq!(walk.into_differing_segments(), [segment_of(&key(77))]);
    }

    #[test]
    fn the_object_digest_is_sha256_of_the_canonical_encoding_and_absent_for_a_fresh_key() {
        assert_eq!(ObjectDigest::of(&VersionedObject::new()), None);
        // SHA-256 of the empty object's encoding [1, 0, 0, 0, 0].
        let expected = Sha256::digest([1u8, 0, 0, 0, 0]);
        assert_eq!(ObjectDigest::of_encoded(&[1, 0, 0, 0, 0]).0[..], expected[..16]);
    }

    #[test]
    fn listings_diff_reports_missing_extra_and_changed_keys_in_order() {
        let local = vec![(1, 'a'), (2, 'b'), (4, 'd')];
        let remote = vec![(2, 'B'), (3, 'c'), (4, 'd')];
        let diff = diff_listings(local, remote, 10);
        assert_eq!(
            diff.differences,
            vec![
                Difference { key: 1, local: Some('a'), remote: None },
                Difference { key: 2, local: Some('b'), remote: Some('B') },
                Difference { key: 3, local: None, remote: Some('c') },
            ]
        );
        assert_eq!((diff.compared, diff.truncated), (4, false));
    }

    #[test]
    fn listings_diff_stops_at_its_limit() {
        let local: Vec<(u32, u8)> = (0..100).map(|key| (key, 0)).collect();
        let diff = diff_listings(local, Vec::new(), 5);
        assert_eq!(diff.differences.len(), 5);
        assert_eq!((diff.compared, diff.truncated), (5, true));
        let diff = diff_listings(vec![(1, 0)], vec![(1, 0)], 0);
        assert!(diff.truncated, "a zero limit compares nothing");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn incremental_updates_in_any_order_equal_a_full_rebuild(
            start in key_set(),
            changes in prop::collection::vec((0..5_000u32, prop::option::of(any::<u8>())), 0..200),
        ) {
            let mut tree = built(&start);
            let mut model = start;
            for (index, new) in changes {
                let old = model.get(&index).copied();
                tree.update(&key(index), old.map(digest).as_ref(), new.map(digest).as_ref());
                match new {
                    Some(value) => model.insert(index, value),
                    None => model.remove(&index),
                };
            }
            prop_assert_eq!(tree.keys(), model.len() as u64);
            prop_assert_eq!(all_hashes(&mut tree), all_hashes(&mut built(&model)));
        }

        #[test]
        fn equal_sets_give_equal_roots_whatever_the_insertion_order(
            keys in key_set(),
            rotation in any::<Index>(),
        ) {
            let mut entries: Vec<(u32, u8)> = keys.iter().map(|(k, v)| (*k, *v)).collect();
            let shift = if entries.is_empty() { 0 } else { rotation.index(entries.len()) };
            entries.rotate_left(shift);
            entries.reverse();
            let mut shuffled = MerkleTree::new();
            for (index, value) in entries {
                shuffled.insert(&key(index), &digest(value));
            }
            prop_assert_eq!(shuffled.root(), built(&keys).root());
        }

        #[test]
        fn trees_differing_in_k_keys_report_exactly_the_leaves_holding_those_keys(
            base in key_set(),
            changes in prop::collection::btree_map(5_000..10_000u32, prop::option::of(any::<u8>()), 0..20),
            changed_existing in prop::collection::vec(any::<Index>(), 0..10),
        ) {
            // Keys 5,000 and up are added on one side (Some) or on the other
            // (None); some existing keys change digest on the remote side.
            let mut local = base.clone();
            let mut remote = base.clone();
            let mut touched = BTreeSet::new();
            for (index, value) in changes {
                match value {
                    Some(value) => remote.insert(index, value),
                    None => local.insert(index, 0),
                };
                touched.insert(index);
            }
            let existing: Vec<u32> = base.keys().copied().collect();
            for pick in changed_existing {
                if existing.is_empty() {
                    break;
                }
                let index = *pick.get(&existing);
                remote.entry(index).and_modify(|value| *value = value.wrapping_add(1));
                touched.insert(index);
            }
            let expected: BTreeSet<u16> = touched.iter().map(|index| segment_of(&key(*index))).collect();
            let found = built(&local).differing_segments(&mut built(&remote));
            prop_assert_eq!(found.iter().copied().collect::<BTreeSet<u16>>(), expected);
            prop_assert!(found.windows(2).all(|pair| pair[0] < pair[1]), "increasing, no repeats");
        }

        #[test]
        fn listings_diff_equals_the_set_difference(
            local in prop::collection::btree_map(0..200u32, 0..3u8, 0..100),
            remote in prop::collection::btree_map(0..200u32, 0..3u8, 0..100),
        ) {
            let diff = diff_listings(local.clone(), remote.clone(), usize::MAX);
            let keys: BTreeSet<u32> = local.keys().chain(remote.keys()).copied().collect();
            let expected: Vec<Difference<u32, u8>> = keys
                .iter()
                .map(|key| Difference { key: *key, local: local.get(key).copied(), remote: remote.get(key).copied() })
                .filter(|difference| difference.local != difference.remote)
                .collect();
            prop_assert_eq!(diff.differences, expected);
            prop_assert_eq!(diff.compared, keys.len());
            prop_assert!(!diff.truncated);
        }

        #[test]
        fn replicas_that_merged_each_other_have_equal_digests(
            (mode, [a, b, _]) in prop_oneof![Just(ConflictMode::Siblings), Just(ConflictMode::Lww)]
                .prop_flat_map(|mode| three_states(mode).prop_map(move |states| (mode, states))),
        ) {
            let mut ab = a.clone();
            ab.merge(&b, mode);
            let mut ba = b.clone();
            ba.merge(&a, mode);
            prop_assert_eq!(ObjectDigest::of(&ab), ObjectDigest::of(&ba));
            let decoded = crate::codec::decode_object(&encode_object(&ab)).expect("roundtrip");
            prop_assert_eq!(ObjectDigest::of(&decoded), ObjectDigest::of(&ab), "the encoding is canonical");
        }
    }
}
