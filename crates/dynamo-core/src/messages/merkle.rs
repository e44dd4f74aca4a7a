//! Merkle anti-entropy (paper section 4.7): two replicas of a partition
//! compare their trees top-down ([`crate::merkle::TreeWalk`]), then list the
//! `(key, digest)` pairs of the leaves that differ, a page at a time.
//!
//! The tree's shape ([`crate::merkle`]) is part of message format 1:
//! indices are checked against it on decode, so changing it needs a new
//! format.
//!
//! Layouts (after the format byte; fields as in [`super::fields`]):
//! - [`Request::MerkleHashes`] (method 6): `partition u32 | level u8 |
//!   count u16 | index u16 *`, the indices strictly increasing, each a node
//!   of the level, at least one;
//! - [`Request::MerkleKeys`] (method 7): `partition u32 | count u16 |
//!   segment u16 * | resume`, the segments strictly increasing, at least
//!   one;
//! - [`Response::MerkleHashes`] (kind 6): `count u16 | hash 16 bytes *`, at
//!   most [`SEGMENTS`];
//! - [`Response::MerkleKeys`] (kind 7): `more flag | count u16 | (key |
//!   digest 16 bytes) *`, at most [`MAX_LISTED_KEYS`].

use super::fields::{decode_key, decode_partition, decode_resume, encode_key, encode_resume};
use super::{MessageError, Request, Response};
use crate::codec::{Reader, clamped_u16};
use crate::keys::ObjectKey;
use crate::merkle::{NodeHash, ObjectDigest, SEGMENTS, level_width};

/// Most `(key, digest)` entries in one [`Response::MerkleKeys`] page. With
/// the largest keys (about 1.3 KB an entry) a page stays near one RPC frame;
/// typical keys make it a few tens of KiB. Longer listings take more pages.
pub const MAX_LISTED_KEYS: usize = 1024;

/// Appends the fields of [`Request::MerkleHashes`].
pub(super) fn encode_hashes_request(partition: u32, level: u8, indices: &[u16], out: &mut Vec<u8>) {
    out.extend_from_slice(&partition.to_be_bytes());
    out.push(level);
    encode_u16_list(indices, out);
}

/// Reads the fields of [`Request::MerkleHashes`].
pub(super) fn decode_hashes_request(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let partition = decode_partition(reader)?;
    let level = reader.u8("tree level")?;
    let width = level_width(level).ok_or(MessageError::Invalid("tree level below the leaves"))?;
    let indices = decode_index_list(reader, width, "tree nodes")?;
    Ok(Request::MerkleHashes { partition, level, indices })
}

/// Appends the fields of [`Request::MerkleKeys`].
pub(super) fn encode_keys_request(partition: u32, segments: &[u16], after: Option<&ObjectKey>, out: &mut Vec<u8>) {
    out.extend_from_slice(&partition.to_be_bytes());
    encode_u16_list(segments, out);
    encode_resume(after, out);
}

/// Reads the fields of [`Request::MerkleKeys`].
pub(super) fn decode_keys_request(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let partition = decode_partition(reader)?;
    let segments = decode_index_list(reader, SEGMENTS, "segments")?;
    let after = decode_resume(reader)?;
    Ok(Request::MerkleKeys { partition, segments, after })
}

/// Appends the body of [`Response::MerkleHashes`] (after its kind byte).
pub(super) fn encode_hashes_response(hashes: &[NodeHash], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u16(hashes.len()).to_be_bytes());
    for hash in hashes {
        out.extend_from_slice(&hash.0);
    }
}

/// Reads the body of [`Response::MerkleHashes`].
pub(super) fn decode_hashes_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let count = usize::from(reader.u16("hash count")?);
    if count > SEGMENTS {
        return Err(MessageError::Invalid("more hashes than a tree level has"));
    }
    let mut hashes = Vec::with_capacity(count.min(reader.remaining() / 16));
    for _ in 0..count {
        hashes.push(NodeHash(reader.array("hash")?));
    }
    Ok(Response::MerkleHashes { hashes })
}

/// Appends the body of [`Response::MerkleKeys`] (after its kind byte).
pub(super) fn encode_keys_response(entries: &[(ObjectKey, ObjectDigest)], more: bool, out: &mut Vec<u8>) {
    out.push(u8::from(more));
    out.extend_from_slice(&clamped_u16(entries.len()).to_be_bytes());
    for (key, digest) in entries {
        encode_key(key, out);
        out.extend_from_slice(&digest.0);
    }
}

/// Reads the body of [`Response::MerkleKeys`].
pub(super) fn decode_keys_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let more = reader.flag("more flag")?;
    let count = usize::from(reader.u16("entry count")?);
    if count > MAX_LISTED_KEYS {
        return Err(MessageError::Invalid("more listed keys than a page holds"));
    }
    // The smallest entry: one-byte bucket and key with their lengths, digest.
    let mut entries = Vec::with_capacity(count.min(reader.remaining() / (1 + 1 + 2 + 1 + 16)));
    for _ in 0..count {
        let key = decode_key(reader)?;
        entries.push((key, ObjectDigest(reader.array("digest")?)));
    }
    Ok(Response::MerkleKeys { entries, more })
}

/// `count u16 | value u16 *`.
fn encode_u16_list(values: &[u16], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u16(values.len()).to_be_bytes());
    for value in values {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Reads `count u16 | value u16 *`: between 1 and `width` values, strictly
/// increasing, each below `width` (so each list has one encoding, and the
/// count is checked before anything is allocated).
fn decode_index_list(reader: &mut Reader<'_>, width: usize, what: &'static str) -> Result<Vec<u16>, MessageError> {
    let count = usize::from(reader.u16(what)?);
    if count == 0 || count > width {
        return Err(MessageError::Invalid("node or segment count out of range"));
    }
    let mut values: Vec<u16> = Vec::with_capacity(count.min(reader.remaining() / 2));
    for _ in 0..count {
        let value = reader.u16(what)?;
        if usize::from(value) >= width {
            return Err(MessageError::Invalid("node or segment index outside the tree"));
        }
        if values.last().is_some_and(|last| *last >= value) {
            return Err(MessageError::Invalid("node or segment indices not strictly increasing"));
        }
        values.push(value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::super::testing::key;
    use super::super::{METHOD_MERKLE_HASHES, METHOD_MERKLE_KEYS};
    use super::*;
    use crate::keys::MAX_PARTITIONS;

    #[test]
    fn merkle_hashes_request_layout_is_partition_level_and_indices() {
        let request = Request::MerkleHashes { partition: 3, level: 1, indices: vec![0, 31] };
        assert_eq!(request.method(), METHOD_MERKLE_HASHES);
        assert_eq!(request.encode(), [1, 0, 0, 0, 3, 1, 0, 2, 0, 0, 0, 31]);
    }

    #[test]
    fn merkle_keys_request_layout_carries_segments_and_the_resume_key() {
        let request = Request::MerkleKeys { partition: 1, segments: vec![5], after: Some(key("b", b"k")) };
        assert_eq!(request.method(), METHOD_MERKLE_KEYS);
        assert_eq!(request.encode(), [1, 0, 0, 0, 1, 0, 1, 0, 5, 1, 1, b'b', 0, 1, b'k']);
        let first_page = Request::MerkleKeys { partition: 1, segments: vec![5], after: None };
        assert_eq!(first_page.encode(), [1, 0, 0, 0, 1, 0, 1, 0, 5, 0]);
    }

    #[test]
    fn merkle_responses_layout_is_counted_hashes_and_entries() {
        let hashes = Response::MerkleHashes { hashes: vec![NodeHash([7; 16])] };
        let mut expected = vec![1, 6, 0, 1];
        expected.extend_from_slice(&[7; 16]);
        assert_eq!(hashes.encode(), expected);
        let keys = Response::MerkleKeys { entries: vec![(key("b", b"k"), ObjectDigest([9; 16]))], more: true };
        let mut expected = vec![1, 7, 1, 0, 1, 1, b'b', 0, 1, b'k'];
        expected.extend_from_slice(&[9; 16]);
        assert_eq!(keys.encode(), expected);
    }

    #[test]
    fn merkle_requests_outside_the_tree_shape_are_refused() {
        let refused = |request: Request| Request::decode(request.method(), &request.encode()).unwrap_err();
        let hashes = |level, indices: Vec<u16>| Request::MerkleHashes { partition: 0, level, indices };
        assert_eq!(refused(hashes(3, vec![0])), MessageError::Invalid("tree level below the leaves"));
        assert_eq!(refused(hashes(0, vec![1])), MessageError::Invalid("node or segment index outside the tree"));
        assert_eq!(refused(hashes(1, vec![])), MessageError::Invalid("node or segment count out of range"));
        assert_eq!(
            refused(hashes(2, vec![4, 4])),
            MessageError::Invalid("node or segment indices not strictly increasing")
        );
        assert_eq!(
            refused(hashes(2, (0..=1024).collect())),
            MessageError::Invalid("node or segment count out of range")
        );
        let keys = Request::MerkleKeys { partition: MAX_PARTITIONS, segments: vec![0], after: None };
        assert_eq!(refused(keys), MessageError::Invalid("partition above the largest ring"));
        let keys = Request::MerkleKeys { partition: 0, segments: vec![1024], after: None };
        assert_eq!(refused(keys), MessageError::Invalid("node or segment index outside the tree"));
    }

    #[test]
    fn merkle_responses_over_their_bounds_are_refused() {
        let hashes = Response::MerkleHashes { hashes: vec![NodeHash::default(); SEGMENTS + 1] };
        assert_eq!(Response::decode(&hashes.encode()), Err(MessageError::Invalid("more hashes than a tree level has")));
        let entries = vec![(key("b", b"k"), ObjectDigest::default()); MAX_LISTED_KEYS + 1];
        let keys = Response::MerkleKeys { entries, more: false };
        assert_eq!(Response::decode(&keys.encode()), Err(MessageError::Invalid("more listed keys than a page holds")));
        // A count promising more than the bytes hold fails without allocating it.
        assert_eq!(Response::decode(&[1, 6, 0x03, 0xff]), Err(MessageError::Truncated("hash")));
    }
}
