//! Paged key listing by coverage (issue 14; beyond the paper, modelled on
//! riak_core's coverage plans): the pure parts. The node's coordinator
//! walks the ring's partitions in order and, in each, the bucket's keys in
//! key order, asking replicas for pages; this module owns what that walk
//! decides without I/O:
//!
//! - [`Position`]: where a listing stands, `(partition, last key listed)`,
//!   and its **continuation token**, the opaque text a client hands back
//!   to resume ([`encode_token`], [`decode_token`]);
//! - [`merge_replica_pages`]: the page of one partition assembled from the
//!   answers of several replicas, de-duplicated and cut at the point every
//!   answer covers.
//!
//! **Why a position is `(partition, key)`.** A key's partition is a pure
//! function of the key and Q (fixed at cluster creation), and within a
//! partition storage keeps a bucket's keys in byte order. So "every key of
//! partition p above k, then partitions p+1.." names the same set of keys
//! whichever replica answers, before or after a node fails or a partition
//! moves: a key live for the whole pass is listed exactly once, and the
//! token needs no server-side state.
//!
//! **Why several replicas per partition.** A write acknowledged by W of N
//! replicas may be missing from the other N−W for a while (until hinted
//! handoff or anti-entropy repairs them). Reading N−W+1 replicas and taking
//! the union overlaps every write quorum (W + N−W+1 > N), so an
//! acknowledged key cannot be missed because the one replica asked lacked
//! it. Each replica answers its keys up to some point it *covers*
//! ([`ReplicaPage::covered`]); the union is only complete up to the least
//! of those points, so the merged page stops there and the next request
//! resumes after it.
//!
//! **Token layout** before base64 (URL-safe alphabet, no padding):
//! `format u8 = 1 | partitions u32 | partition u32 | after flag u8 | (key
//! length u16 | key)? | crc32 u32`, the CRC over the bucket name followed
//! by everything before it, so a token altered, cut, or taken from another
//! bucket's listing is refused rather than misread. Q is in the token so
//! that one from a cluster of another size is refused too.
//!
//! Laws the tests prove: a token decodes to the position it encodes, for
//! its bucket only; any change to its text is refused; a merged page is
//! strictly increasing, holds every key any replica listed up to its end,
//! no key twice, and at most the limits.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use thiserror::Error;

use crate::keys::{MAX_KEY_LEN, MAX_PARTITIONS};

/// Keys per page when the client sets no `limit`.
pub const DEFAULT_PAGE_KEYS: usize = 1000;
/// Most keys a client may ask for in one page.
pub const MAX_PAGE_KEYS: usize = 10_000;
/// A page is closed once its keys reach this many bytes, whatever the
/// limit: 10,000 keys of 1 KiB would otherwise make a 10 MiB answer. It is
/// at least one key of the largest size, so every page makes progress.
pub const PAGE_KEY_BYTES: usize = 1 << 20;
/// Longest continuation token accepted, in characters (a maximal key
/// encodes to about 1,400).
pub const MAX_TOKEN_LEN: usize = 2048;

/// Format marker of the only token layout so far.
const TOKEN_FORMAT: u8 = 1;
/// Format, partitions, partition, after flag.
const TOKEN_HEADER_LEN: usize = 10;
/// The trailing crc32.
const TOKEN_CHECKSUM_LEN: usize = 4;

/// Where a listing stands: every key of the bucket in partitions below
/// `partition`, and in `partition` up to and including `after`, has been
/// listed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The partition the listing is in (`0..Q`).
    pub partition: u32,
    /// The last key listed in it; `None` when none yet.
    pub after: Option<Vec<u8>>,
}

impl Position {
    /// The start of a listing.
    pub fn start() -> Position {
        Position { partition: 0, after: None }
    }
}

/// Why a continuation token was refused. Every message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error(
        "continuation is {0} characters, longer than any this listing hands out; pass the continuation of the previous page unchanged, or omit it to start over"
    )]
    TooLong(usize),
    /// Not valid base64.
    #[error(
        "continuation is not valid base64url; pass the continuation of the previous page unchanged, or omit it to start over"
    )]
    NotBase64,
    /// Too short, too long for its fields, or a bad length or flag.
    #[error(
        "continuation is malformed ({0}); pass the continuation of the previous page unchanged, or omit it to start over"
    )]
    Malformed(&'static str),
    /// Unknown format marker.
    #[error(
        "continuation has unknown format version {0}; it was not issued by this version of dynamo, so start the listing over"
    )]
    UnknownFormat(u8),
    /// The checksum does not match.
    #[error(
        "continuation checksum does not match: it was modified, cut short, or belongs to another bucket's listing; pass the continuation of the previous page of this bucket unchanged, or omit it to start over"
    )]
    BadChecksum,
    /// Issued by a cluster with another partition count.
    #[error("continuation was issued by a cluster of {token} partitions, this one has {ours}; start the listing over")]
    OtherRing {
        /// Q in the token.
        token: u32,
        /// This cluster's Q.
        ours: u32,
    },
}

/// The continuation token of `position` in `bucket`'s listing, on a ring of
/// `partitions` partitions.
pub fn encode_token(bucket: &str, partitions: u32, position: &Position) -> String {
    let mut raw = Vec::with_capacity(TOKEN_HEADER_LEN + 2 + MAX_KEY_LEN + TOKEN_CHECKSUM_LEN);
    raw.push(TOKEN_FORMAT);
    raw.extend_from_slice(&partitions.to_be_bytes());
    raw.extend_from_slice(&position.partition.to_be_bytes());
    match &position.after {
        None => raw.push(0),
        Some(key) => {
            raw.push(1);
            // Keys are validated to MAX_KEY_LEN; a longer one would make a
            // token that decoding refuses, never one that decodes wrong.
            raw.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_be_bytes());
            raw.extend_from_slice(key);
        }
    }
    let checksum = token_checksum(bucket, &raw);
    raw.extend_from_slice(&checksum.to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// Reads a continuation token of `bucket`'s listing on a ring of
/// `partitions`, checking every field.
pub fn decode_token(text: &str, bucket: &str, partitions: u32) -> Result<Position, TokenError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong(text.len()));
    }
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| TokenError::NotBase64)?;
    if raw.len() < TOKEN_HEADER_LEN + TOKEN_CHECKSUM_LEN {
        return Err(TokenError::Malformed("too short"));
    }
    let (body, checksum) = raw.split_at(raw.len() - TOKEN_CHECKSUM_LEN);
    if body[0] != TOKEN_FORMAT {
        return Err(TokenError::UnknownFormat(body[0]));
    }
    let checksum = u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
    if checksum != token_checksum(bucket, body) {
        return Err(TokenError::BadChecksum);
    }
    let token_partitions = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
    if token_partitions != partitions {
        return Err(TokenError::OtherRing { token: token_partitions, ours: partitions });
    }
    let partition = u32::from_be_bytes([body[5], body[6], body[7], body[8]]);
    // The partition after the last is where a finished listing would
    // stand; tokens are never handed out for it, so it is refused too.
    if partition >= partitions || partition >= MAX_PARTITIONS {
        return Err(TokenError::Malformed("partition out of range"));
    }
    let rest = &body[TOKEN_HEADER_LEN..];
    let after = match body[9] {
        0 if rest.is_empty() => None,
        1 => {
            let Some((length, key)) = rest.split_first_chunk::<2>() else {
                return Err(TokenError::Malformed("key length missing"));
            };
            let length = usize::from(u16::from_be_bytes(*length));
            if length == 0 || length > MAX_KEY_LEN || key.len() != length {
                return Err(TokenError::Malformed("key length does not match the key"));
            }
            Some(key.to_vec())
        }
        0 => return Err(TokenError::Malformed("trailing bytes")),
        _ => return Err(TokenError::Malformed("unknown key flag")),
    };
    Ok(Position { partition, after })
}

fn token_checksum(bucket: &str, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bucket.as_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// One replica's answer for a partition's range of a bucket after some
/// key: its live keys in increasing order, and how far it looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaPage {
    /// Live keys, strictly increasing, all at most `covered`.
    pub keys: Vec<Vec<u8>>,
    /// The last key the replica examined (listed or skipped as dead):
    /// every live key it holds up to this one is in `keys`. `None` when it
    /// reached the end of the bucket's range in the partition.
    pub covered: Option<Vec<u8>>,
}

/// The merge of several replicas' pages of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedPage {
    /// The keys, strictly increasing, each once.
    pub keys: Vec<Vec<u8>>,
    /// Where the partition's listing resumes: after this key; `None` when
    /// the partition is finished.
    pub resume_after: Option<Vec<u8>>,
}

/// Merges the pages several replicas returned for the same partition,
/// bucket and starting point, into at most `max_keys` keys of at most
/// `max_bytes` bytes in all (or one key, if the first is larger).
///
/// The union is complete only up to the least point every replica covered
/// (a replica that stopped early may hold more keys above it that another
/// lacks), so keys above it are left for the next request. A key listed by
/// two replicas appears once. At least one page must be given.
pub fn merge_replica_pages(pages: &[ReplicaPage], max_keys: usize, max_bytes: usize) -> MergedPage {
    debug_assert!(!pages.is_empty(), "a merge needs at least one replica's page");
    // The least covered point; `None` (end of range) is above every key.
    let horizon: Option<&Vec<u8>> = pages.iter().filter_map(|page| page.covered.as_ref()).min();
    let mut union: BTreeSet<&Vec<u8>> = BTreeSet::new();
    for page in pages {
        union.extend(page.keys.iter().filter(|key| horizon.is_none_or(|horizon| *key <= horizon)));
    }
    let mut keys = Vec::with_capacity(union.len().min(max_keys));
    let mut bytes = 0usize;
    let mut cut = false;
    assert!(max_keys > 0, "a page must have room for a key");
    for key in union {
        // The first key always fits, so that every page makes progress.
        if keys.len() == max_keys || (!keys.is_empty() && bytes + key.len() > max_bytes) {
            cut = true;
            break;
        }
        bytes += key.len();
        keys.push(key.clone());
    }
    let resume_after = match (cut, horizon) {
        // Cut by a limit: resume after the last key taken (there is one).
        (true, _) => keys.last().cloned(),
        // Everything up to the horizon is in: resume after it.
        (false, Some(horizon)) => Some(horizon.clone()),
        (false, None) => None,
    };
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "a merged page must be strictly increasing");
    MergedPage { keys, resume_after }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn page(keys: &[&str], covered: Option<&str>) -> ReplicaPage {
        ReplicaPage { keys: keys.iter().map(|text| key(text)).collect(), covered: covered.map(key) }
    }

    #[test]
    fn a_token_resumes_where_it_was_handed_out_for_its_bucket_only() {
        let position = Position { partition: 17, after: Some(key("user-42")) };
        let token = encode_token("carts", 64, &position);
        assert_eq!(decode_token(&token, "carts", 64), Ok(position));
        assert_eq!(decode_token(&token, "orders", 64), Err(TokenError::BadChecksum));
        assert_eq!(decode_token(&token, "carts", 128), Err(TokenError::OtherRing { token: 64, ours: 128 }));
        let start = encode_token("carts", 64, &Position { partition: 3, after: None });
        assert_eq!(decode_token(&start, "carts", 64), Ok(Position { partition: 3, after: None }));
    }

    #[test]
    fn garbage_tokens_are_refused_with_what_to_do() {
        let refused = |text: &str| decode_token(text, "b", 64).unwrap_err();
        assert_eq!(refused("not base64!"), TokenError::NotBase64);
        assert_eq!(refused("AAAA"), TokenError::Malformed("too short"));
        assert_eq!(refused(&"A".repeat(MAX_TOKEN_LEN + 1)), TokenError::TooLong(MAX_TOKEN_LEN + 1));
        assert!(refused("xyz").to_string().contains("omit it to start over"));
        // A well-formed token past the last partition.
        let beyond = encode_token("b", 64, &Position { partition: 64, after: None });
        assert_eq!(refused(&beyond), TokenError::Malformed("partition out of range"));
        let mut raw = URL_SAFE_NO_PAD.decode(encode_token("b", 64, &Position::start())).unwrap();
        raw[0] = 9;
        assert_eq!(refused(&URL_SAFE_NO_PAD.encode(raw)), TokenError::UnknownFormat(9));
    }

    #[test]
    fn replicas_that_each_miss_a_key_merge_into_every_key_once() {
        let merged = merge_replica_pages(&[page(&["a", "b", "d"], None), page(&["a", "c", "d"], None)], 10, 1000);
        assert_eq!(merged.keys, vec![key("a"), key("b"), key("c"), key("d")]);
        assert_eq!(merged.resume_after, None, "both reached the end");
    }

    #[test]
    fn a_replica_that_stopped_early_cuts_the_page_where_it_stopped() {
        // The first replica looked only up to "b": "c" from the second may
        // be joined by keys the first holds above "b", so it waits.
        let merged = merge_replica_pages(&[page(&["a", "b"], Some("b")), page(&["a", "c"], None)], 10, 1000);
        assert_eq!(merged.keys, vec![key("a"), key("b")]);
        assert_eq!(merged.resume_after, Some(key("b")));
        // A replica that skipped only dead keys still moves the page on.
        let merged = merge_replica_pages(&[page(&[], Some("m"))], 10, 1000);
        assert_eq!(merged, MergedPage { keys: vec![], resume_after: Some(key("m")) });
    }

    #[test]
    fn the_key_and_byte_limits_close_a_page() {
        let merged = merge_replica_pages(&[page(&["a", "b", "c"], None)], 2, 1000);
        assert_eq!(merged, MergedPage { keys: vec![key("a"), key("b")], resume_after: Some(key("b")) });
        let merged = merge_replica_pages(&[page(&["aa", "bb", "cc"], None)], 10, 5);
        assert_eq!(merged, MergedPage { keys: vec![key("aa"), key("bb")], resume_after: Some(key("bb")) });
    }

    fn replica_pages() -> impl Strategy<Value = (BTreeSet<Vec<u8>>, Vec<ReplicaPage>)> {
        // A set of keys; each replica holds a subset and lists a prefix of it.
        let keys = prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..4), 0..40);
        keys.prop_flat_map(|keys| {
            let count = keys.len();
            let replica = (prop::collection::vec(any::<bool>(), count), 0..=count + 1);
            (Just(keys), prop::collection::vec(replica, 1..4))
        })
        .prop_map(|(keys, replicas)| {
            let all: Vec<Vec<u8>> = keys.iter().cloned().collect();
            let pages = replicas
                .into_iter()
                .map(|(held, stop)| {
                    let held: Vec<Vec<u8>> =
                        all.iter().zip(held).filter(|(_, held)| *held).map(|(key, _)| key.clone()).collect();
                    // The replica looked at its keys up to `stop` of all keys.
                    let covered = all.get(stop).cloned();
                    let keys = held.into_iter().filter(|key| covered.as_ref().is_none_or(|c| key <= c)).collect();
                    ReplicaPage { keys, covered }
                })
                .collect();
            (keys, pages)
        })
    }

    proptest! {
        #[test]
        fn a_token_roundtrips_and_any_change_to_it_is_refused(
            partition in 0..1024u32,
            after in prop::option::of(prop::collection::vec(any::<u8>(), 1..=MAX_KEY_LEN)),
            at in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_-]",
        ) {
            let position = Position { partition, after };
            let token = encode_token("b", 1024, &position);
            prop_assert!(token.len() <= MAX_TOKEN_LEN);
            prop_assert_eq!(decode_token(&token, "b", 1024), Ok(position.clone()));
            let index = at.index(token.len());
            let mut changed = token.clone();
            changed.replace_range(index..index + 1, &replacement);
            if changed != token {
                // The last character may carry only padding bits that the
                // decoder rejects as non-canonical, or a changed bit: refused either way.
                prop_assert_ne!(decode_token(&changed, "b", 1024), Ok(position));
            }
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = decode_token(&text, "b", 64);
        }

        #[test]
        fn a_merged_page_holds_every_covered_key_once_within_its_limits(
            (_, pages) in replica_pages(),
            max_keys in 1..20usize,
            max_bytes in 3..40usize,
        ) {
            let merged = merge_replica_pages(&pages, max_keys, max_bytes);
            prop_assert!(merged.keys.len() <= max_keys);
            prop_assert!(merged.keys.iter().map(Vec::len).sum::<usize>() <= max_bytes);
            prop_assert!(merged.keys.windows(2).all(|pair| pair[0] < pair[1]));
            // Every key a replica listed up to where the page resumes is in it.
            for page in &pages {
                for key in &page.keys {
                    let before_end = merged.resume_after.as_ref().is_none_or(|end| key <= end);
                    prop_assert_eq!(merged.keys.contains(key), before_end, "key {:?}", key);
                }
            }
            // Progress: the page ends somewhere, or says where to resume.
            if let (Some(end), Some(last)) = (&merged.resume_after, merged.keys.last()) {
                prop_assert!(last <= end);
            }
        }
    }
}
