//! What nodes say to each other: the requests a coordinator sends to replicas
//! (and a non-replica to a coordinator), their responses, and the versioned
//! binary encoding of both.
//!
//! The RPC layer moves a `method: u16` and opaque bytes between nodes; this
//! module gives the bytes their meaning. It lives in the pure core, apart
//! from the transport, so that the codec is fuzzable and property-tested on
//! its own, and so that the node and the deterministic simulation speak
//! exactly the same messages.
//!
//! Every encoding starts with a message format version (1), so a node can
//! refuse (rather than misread) a message from a newer build during a rolling
//! upgrade. Every length is bounded and checked against its bound and the
//! bytes present before anything is allocated, trailing bytes are refused,
//! and keys and objects are validated as they would be from a client: the
//! bytes come from the network. Encoding is infallible; a field outside its
//! bound produces bytes that decoding refuses, never bytes that decode to
//! something else. The exception is a failure reason, which is advisory
//! text and is cut at a character boundary.
//!
//! Format 1, all integers big-endian:
//! - key: `bucket length u8 | bucket | key length u16 | key`, validated by
//!   [`ObjectKey::new`];
//! - object: `length u32 | object` in the [`crate::codec`] object format;
//! - clock and payload: as inside a [`crate::codec`] object (clock: entry
//!   count u16, then (actor u64, counter u64) in increasing actor order;
//!   payload: kind u8 (0 value, 1 tombstone), and for values content type
//!   length u8, content type, data length u32, data);
//! - booleans and conflict modes: one byte, 0 or 1 (0 = siblings, 1 = lww);
//! - optional text: `present u8 (0 or 1) | length u8 | UTF-8` when present.
//!
//! Requests (the method travels beside the bytes):
//! - [`METHOD_READ`] (1): `version | key`
//! - [`METHOD_WRITE`] (2): `version | key | object | mode | durable`
//! - [`METHOD_COORDINATE`] (3): `version | key | clock | payload | w | dw | n | timeout_ms | seen timestamp u64 | stamp u64`
//!   (each option an optional text)
//! - [`METHOD_PING`] (4): `version`
//! - [`METHOD_SET_PROPS`] (5): `version | bucket len u8 | bucket | n | r | w | dw | mode | props version u64`
//! - [`METHOD_MERKLE_HASHES`] (6): `version | partition u32 | level u8 | count u16 | index u16 *`; the
//!   indices strictly increasing, each a node of the level (shape of [`crate::merkle`]), at least one
//! - [`METHOD_MERKLE_KEYS`] (7): `version | partition u32 | count u16 | segment u16 * | resume`;
//!   the segments strictly increasing, at least one; `resume` is `present u8 | key` (list after it)
//! - [`METHOD_HINTED_WRITE`] (8): `version | owner len u8 | owner | key | object | mode | durable`
//! - [`METHOD_REAP`] (9): `version | key | object`
//! - [`METHOD_GOSSIP`] (10): `version | cluster id 16 bytes | state digest 16 bytes`
//! - [`METHOD_GOSSIP_PUSH`] (11): `version | state length u32 | state` ([`ClusterState::encode`])
//! - [`METHOD_JOIN`] (12): `version | id len u8 | id | rpc address len u8 | rpc address | http address (optional
//!   text) | capacity u32 | zone (optional text) | partitions u32`
//! - [`METHOD_TRANSFER_PAGE`] (13): `version | partition u32 | epoch u64 | resume` (`resume` as in `MerkleKeys`)
//!
//! Partitions are below [`MAX_PARTITIONS`] (the node checks its own Q).
//!
//! Responses: `version | kind u8 | fields`, kind 0 `Read` (object), 1
//! `Written` (durable), 2 `Coordinated` (outcome u8: 0 then the new context
//! as a clock and its greatest timestamp u64, or 1 then `status u16 | body length u32 | body`), 3 `Pong`,
//! 4 `Failed` (`reason length u16 | reason`), 5 `PropsSet`, 6 `MerkleHashes`
//! (`count u16 | hash 16 bytes *`, at most [`SEGMENTS`]), 7 `MerkleKeys`
//! (`more u8 | count u16 | (key | digest 16 bytes) *`, at most [`MAX_LISTED_KEYS`]), 8 `ClusterSame`,
//! 9 `ClusterState` (`state length u32 | state`), 10 `TransferPage` (`more u8 | count u16 | (key | object) *`,
//! at most [`MAX_TRANSFER_KEYS`]), 11 `Unreadable` (as `Failed`).

use thiserror::Error;

use crate::codec::{self, CodecError, KIND_TOMBSTONE, KIND_VALUE, Reader};
use crate::hlc::Hlc;
use crate::keys::{KeyError, MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_PARTITIONS, ObjectKey};
use crate::membership::{Announcement, ClusterId, ClusterState, MAX_FIELD_LEN, StateDecodeError, StateDigest};
use crate::merkle::{NodeHash, ObjectDigest, SEGMENTS, level_width};
use crate::object::{Payload, VersionedObject};
use crate::props::{BucketProps, ConflictMode};
use crate::quorum::MAX_REASON_LEN;
use crate::ring::NodeId;
use crate::version::VersionVector;

/// Method of [`Request::Read`]. Method 0 is never used, so that a zeroed
/// header cannot pass for a request.
pub const METHOD_READ: u16 = 1;
/// Method of [`Request::Write`].
pub const METHOD_WRITE: u16 = 2;
/// Method of [`Request::Coordinate`].
pub const METHOD_COORDINATE: u16 = 3;
/// Method of [`Request::Ping`].
pub const METHOD_PING: u16 = 4;
/// Method of [`Request::SetProps`].
pub const METHOD_SET_PROPS: u16 = 5;
/// Method of [`Request::MerkleHashes`].
pub const METHOD_MERKLE_HASHES: u16 = 6;
/// Method of [`Request::MerkleKeys`].
pub const METHOD_MERKLE_KEYS: u16 = 7;
/// Method of [`Request::HintedWrite`].
pub const METHOD_HINTED_WRITE: u16 = 8;
/// Method of [`Request::Reap`].
pub const METHOD_REAP: u16 = 9;
/// Method of [`Request::Gossip`].
pub const METHOD_GOSSIP: u16 = 10;
/// Method of [`Request::GossipPush`].
pub const METHOD_GOSSIP_PUSH: u16 = 11;
/// Method of [`Request::Join`].
pub const METHOD_JOIN: u16 = 12;
/// Method of [`Request::TransferPage`].
pub const METHOD_TRANSFER_PAGE: u16 = 13;
/// The last method this build knows.
const LAST_METHOD: u16 = METHOD_TRANSFER_PAGE;

/// Most objects in one [`Response::TransferPage`]. The replica also stops
/// a page once it passes [`TRANSFER_PAGE_BYTES`], so a page of large
/// objects is a few of them.
pub const MAX_TRANSFER_KEYS: usize = 512;
/// A transfer page is closed once its objects reach this many bytes (the
/// last object may take it over, up to one object's size).
pub const TRANSFER_PAGE_BYTES: usize = 1 << 20;

/// Most `(key, digest)` entries in one [`Response::MerkleKeys`] page. With
/// the largest keys (about 1.3 KB an entry) a page stays near one RPC frame;
/// typical keys make it a few tens of KiB. Longer listings take more pages.
pub const MAX_LISTED_KEYS: usize = 1024;

/// Longest forwarded quorum option (`w`, `dw`, `n`, `timeout_ms`), in bytes:
/// a number or a word like `quorum`; anything longer is not worth relaying.
pub const MAX_OPTION_LEN: usize = 64;
/// Longest relayed HTTP error body, in bytes: a `503` names at most
/// [`crate::props::MAX_N`] replicas, each with a reason of at most
/// [`MAX_REASON_LEN`] bytes, which fits with room to spare.
pub const MAX_FORWARDED_BODY_LEN: usize = 64 * 1024;

/// Format marker of the only message layout so far.
const FORMAT: u8 = 1;

/// Response kind bytes.
const RESPONSE_READ: u8 = 0;
const RESPONSE_WRITTEN: u8 = 1;
const RESPONSE_COORDINATED: u8 = 2;
const RESPONSE_PONG: u8 = 3;
const RESPONSE_FAILED: u8 = 4;
const RESPONSE_PROPS_SET: u8 = 5;
const RESPONSE_MERKLE_HASHES: u8 = 6;
const RESPONSE_MERKLE_KEYS: u8 = 7;
const RESPONSE_CLUSTER_SAME: u8 = 8;
const RESPONSE_CLUSTER_STATE: u8 = 9;
const RESPONSE_TRANSFER_PAGE: u8 = 10;
const RESPONSE_UNREADABLE: u8 = 11;

/// Outcome bytes of a `Coordinated` response.
const OUTCOME_OK: u8 = 0;
const OUTCOME_ERROR: u8 = 1;

/// A request from one node to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read this replica's state of a key (not reconciled).
    Read {
        /// The key.
        key: ObjectKey,
    },
    /// Merge a version set into this replica (replication, read repair,
    /// anti-entropy; later hints).
    Write {
        /// The key.
        key: ObjectKey,
        /// The state to merge into the replica's own.
        object: VersionedObject,
        /// The bucket's conflict mode, to merge with (the coordinator read
        /// the bucket props; the replica need not).
        mode: ConflictMode,
        /// Whether the replica must fsync before acknowledging (the write
        /// counts toward `dw`).
        durable: bool,
    },
    /// Coordinate a client write on behalf of a node outside the key's
    /// preference list (paper section 4.5: a non-replica forwards).
    Coordinate {
        /// The key.
        key: ObjectKey,
        /// The client's context (empty when it sent none).
        context: VersionVector,
        /// The value, or a tombstone for a delete.
        payload: Payload,
        /// The client's quorum options, as it sent them.
        options: ForwardOptions,
    },
    /// Hold a write for `owner`, a replica of the key that could not take
    /// it (sloppy quorum, paper section 4.6): the receiver stores it as a
    /// hint, apart from its own data, and delivers it to `owner` when that
    /// node is reachable again. Answered like a [`Request::Write`].
    HintedWrite {
        /// The replica the write belongs to.
        owner: NodeId,
        /// The key.
        key: ObjectKey,
        /// The version set to hold.
        object: VersionedObject,
        /// The bucket's conflict mode.
        mode: ConflictMode,
        /// Whether the hint must be fsynced before acknowledging.
        durable: bool,
    },
    /// Remove the key's record if it is exactly `tombstone`: a delete every
    /// replica holds, past its grace period (tombstone collection). The
    /// replica answers [`Response::Written`] (`durable` false) whether or
    /// not it removed anything.
    Reap {
        /// The key.
        key: ObjectKey,
        /// The tombstone state every replica was seen to hold.
        tombstone: VersionedObject,
    },
    /// Liveness probe.
    Ping,
    /// Store a bucket's props if `version` is newer than the stored one
    /// (last writer wins by the hybrid logical clock of the node that took
    /// the change, so concurrent changes converge on every node).
    SetProps {
        /// The bucket.
        bucket: String,
        /// Its new props (validated on decode).
        props: BucketProps,
        /// Version of the change (an HLC timestamp).
        version: u64,
    },
    /// Anti-entropy: the hashes of some nodes of this replica's Merkle tree
    /// of a partition (paper section 4.7).
    MerkleHashes {
        /// The partition.
        partition: u32,
        /// The tree level (0 is the root).
        level: u8,
        /// Nodes of that level, strictly increasing, at least one.
        indices: Vec<u16>,
    },
    /// Anti-entropy: one page of this replica's `(key, digest)` list of some
    /// leaves (segments) of a partition's tree, in (segment, key) order.
    MerkleKeys {
        /// The partition.
        partition: u32,
        /// The segments, strictly increasing, at least one.
        segments: Vec<u16>,
        /// List only keys after this one (the last key of the previous
        /// page); `None` for the first page.
        after: Option<ObjectKey>,
    },
    /// Gossip, first step (paper section 4.8): the digest of the sender's
    /// cluster state. The receiver answers [`Response::ClusterSame`] when
    /// its own state has the same digest, else [`Response::ClusterState`]
    /// with its state; a state of another cluster is refused.
    Gossip {
        /// The sender's cluster.
        cluster: ClusterId,
        /// Digest of the sender's state.
        digest: StateDigest,
    },
    /// Gossip, second step: the sender's state (after merging the
    /// receiver's), for the receiver to merge. Answered with
    /// [`Response::ClusterSame`] when the merge gives exactly this state,
    /// else with the receiver's merged state.
    GossipPush {
        /// The sender's state.
        state: Box<ClusterState>,
    },
    /// A node asks to join the cluster: the receiver (a seed) adds it as a
    /// `joining` member and answers with the cluster state
    /// ([`Response::ClusterState`]), or refuses with the reason
    /// ([`Response::Failed`]).
    Join {
        /// The joining node as it announces itself.
        node: Announcement,
        /// Its configured partition count (must be the cluster's).
        partitions: u32,
    },
    /// Partition transfer (paper section 4.9): one page of this replica's
    /// objects of a partition, in storage-key order, for a node that
    /// becomes one of its replicas.
    TransferPage {
        /// The partition.
        partition: u32,
        /// The ring epoch the transfer belongs to: a source whose own ring
        /// is older refuses, so that every write it coordinates once it
        /// serves the copy already goes to the new replicas too.
        epoch: u64,
        /// Only objects after this key (the last of the previous page);
        /// `None` for the first page.
        after: Option<ObjectKey>,
    },
}

/// A client's per-request options, relayed as text so that the coordinator
/// parses and validates them against its own view of the bucket props, and
/// the client gets the same `400` whichever node it called. Each is at most
/// [`MAX_OPTION_LEN`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardOptions {
    /// `w` query parameter.
    pub w: Option<String>,
    /// `dw` query parameter.
    pub dw: Option<String>,
    /// `n` query parameter.
    pub n: Option<String>,
    /// `timeout_ms` query parameter.
    pub timeout_ms: Option<String>,
    /// The greatest version timestamp the client's read saw (from its
    /// context; 0 when none): a last-write-wins write is stamped above it.
    pub seen_timestamp: u64,
    /// The timestamp the new version must carry, chosen by the forwarding
    /// node (0: the coordinating replica stamps it). The forwarding node
    /// stamps the write once, so that when it retries at another replica
    /// after a timeout, a copy that the first replica applies late carries
    /// the same timestamp as the acknowledged one and can never order after
    /// a causally later write (which is stamped above it).
    pub stamp: u64,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The replica's state of the key (empty if it has none).
    Read {
        /// The replica's state.
        object: VersionedObject,
    },
    /// The write was merged, and fsynced if `durable`.
    Written {
        /// Whether it is on disk.
        durable: bool,
    },
    /// The outcome of a forwarded write: the new context, or the HTTP error
    /// the coordinator would have answered, to relay to the client.
    Coordinated(Result<(VersionVector, Hlc), ForwardedError>),
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::SetProps`]: stored (or a newer change already was).
    PropsSet,
    /// Answer to [`Request::MerkleHashes`]: one hash per node asked for, in
    /// the same order.
    MerkleHashes {
        /// The hashes.
        hashes: Vec<NodeHash>,
    },
    /// Answer to [`Request::MerkleKeys`]: at most [`MAX_LISTED_KEYS`]
    /// entries in (segment, key) order.
    MerkleKeys {
        /// The keys and the digests of this replica's state of them.
        entries: Vec<(ObjectKey, ObjectDigest)>,
        /// Whether more entries follow (ask again after the last one).
        more: bool,
    },
    /// Answer to [`Request::TransferPage`]: at most [`MAX_TRANSFER_KEYS`]
    /// objects in storage-key order.
    TransferPage {
        /// The keys and this replica's state of each.
        entries: Vec<(ObjectKey, VersionedObject)>,
        /// Whether more follow (ask again after the last key).
        more: bool,
    },
    /// Answer to [`Request::Gossip`] and [`Request::GossipPush`]: both
    /// sides hold the same state.
    ClusterSame,
    /// Answer to [`Request::Gossip`], [`Request::GossipPush`] and
    /// [`Request::Join`]: the receiver's cluster state.
    ClusterState {
        /// The state.
        state: Box<ClusterState>,
    },
    /// The replica could not serve the request (storage error, corruption).
    /// The reason is at most [`MAX_REASON_LEN`] bytes.
    Failed {
        /// What went wrong, for the quorum report.
        reason: String,
    },
    /// Answer to [`Request::Read`] when the replica's stored state of the
    /// key failed its integrity check: it serves nothing, and a write of
    /// a good copy (read repair, anti-entropy) replaces the corrupt record.
    /// The reason is at most [`MAX_REASON_LEN`] bytes.
    Unreadable {
        /// Where the corruption was detected, for the quorum report.
        reason: String,
    },
}

/// An HTTP-level error of a coordinator, relayed unchanged to the client by
/// the node that forwarded the request (for example a `503` with its JSON
/// body, or a `400` for a bad quorum option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedError {
    /// HTTP status, 100 to 599.
    pub status: u16,
    /// Response body, at most [`MAX_FORWARDED_BODY_LEN`] bytes.
    pub body: String,
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    /// The method is not one this build knows.
    #[error("unknown request method {0}")]
    UnknownMethod(u16),
    /// The first byte names a message format this build does not know.
    #[error("unknown message format version {0}")]
    UnknownFormat(u8),
    /// The response kind byte is not one this build knows.
    #[error("unknown response kind {0}")]
    UnknownResponse(u8),
    /// Input ended before a field was complete.
    #[error("message truncated while reading {0}")]
    Truncated(&'static str),
    /// Bytes left after the message.
    #[error("message has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A length above its bound, a bad tag, or malformed text.
    #[error("message invalid: {0}")]
    Invalid(&'static str),
    /// The bucket or key is not one a client could have used.
    #[error("message carries an invalid key: {0}")]
    Key(#[from] KeyError),
    /// The embedded object does not decode.
    #[error("message carries an invalid object: {0}")]
    Object(#[source] CodecError),
    /// The embedded cluster state does not decode.
    #[error("message carries an invalid cluster state: {0}")]
    State(#[source] StateDecodeError),
}

/// Field readers shared with [`crate::codec`] report in its terms; a
/// truncated or invalid field means the same thing in a message. (Errors of
/// an embedded object are wrapped in [`MessageError::Object`] instead.)
impl From<CodecError> for MessageError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::Truncated(what) => MessageError::Truncated(what),
            CodecError::Invalid(what) => MessageError::Invalid(what),
            CodecError::TrailingBytes(count) => MessageError::TrailingBytes(count),
            CodecError::UnknownFormat(_) => MessageError::Object(error),
        }
    }
}

impl Request {
    /// The method number the RPC layer carries beside the bytes.
    pub fn method(&self) -> u16 {
        match self {
            Request::Read { .. } => METHOD_READ,
            Request::Write { .. } => METHOD_WRITE,
            Request::Coordinate { .. } => METHOD_COORDINATE,
            Request::Ping => METHOD_PING,
            Request::SetProps { .. } => METHOD_SET_PROPS,
            Request::HintedWrite { .. } => METHOD_HINTED_WRITE,
            Request::Reap { .. } => METHOD_REAP,
            Request::MerkleHashes { .. } => METHOD_MERKLE_HASHES,
            Request::MerkleKeys { .. } => METHOD_MERKLE_KEYS,
            Request::Gossip { .. } => METHOD_GOSSIP,
            Request::GossipPush { .. } => METHOD_GOSSIP_PUSH,
            Request::Join { .. } => METHOD_JOIN,
            Request::TransferPage { .. } => METHOD_TRANSFER_PAGE,
        }
    }

    /// Encodes the request's fields (format 1); send with [`Request::method`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        match self {
            Request::Read { key } => encode_key(key, &mut out),
            Request::Write { key, object, mode, durable } => {
                encode_key(key, &mut out);
                encode_object(object, &mut out);
                out.push(mode_byte(*mode));
                out.push(u8::from(*durable));
            }
            Request::Coordinate { key, context, payload, options } => {
                encode_key(key, &mut out);
                codec::encode_clock(context, &mut out);
                codec::encode_payload(payload, &mut out);
                for option in [&options.w, &options.dw, &options.n, &options.timeout_ms] {
                    encode_option(option.as_deref(), &mut out);
                }
                out.extend_from_slice(&options.seen_timestamp.to_be_bytes());
                out.extend_from_slice(&options.stamp.to_be_bytes());
            }
            Request::HintedWrite { owner, key, object, mode, durable } => {
                let owner = owner.as_str().as_bytes();
                out.push(u8::try_from(owner.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(&owner[..owner.len().min(usize::from(u8::MAX))]);
                encode_key(key, &mut out);
                encode_object(object, &mut out);
                out.push(mode_byte(*mode));
                out.push(u8::from(*durable));
            }
            Request::Reap { key, tombstone } => {
                encode_key(key, &mut out);
                encode_object(tombstone, &mut out);
            }
            Request::Ping => {}
            Request::SetProps { bucket, props, version } => {
                out.push(u8::try_from(bucket.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(bucket.as_bytes());
                out.extend_from_slice(&[props.n, props.r, props.w, props.dw, mode_byte(props.conflict)]);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Request::MerkleHashes { partition, level, indices } => {
                out.extend_from_slice(&partition.to_be_bytes());
                out.push(*level);
                encode_u16_list(indices, &mut out);
            }
            Request::MerkleKeys { partition, segments, after } => {
                out.extend_from_slice(&partition.to_be_bytes());
                encode_u16_list(segments, &mut out);
                encode_resume(after.as_ref(), &mut out);
            }
            Request::TransferPage { partition, epoch, after } => {
                out.extend_from_slice(&partition.to_be_bytes());
                out.extend_from_slice(&epoch.to_be_bytes());
                encode_resume(after.as_ref(), &mut out);
            }
            Request::Gossip { cluster, digest } => {
                out.extend_from_slice(&cluster.0);
                out.extend_from_slice(&digest.0);
            }
            Request::GossipPush { state } => encode_state(state, &mut out),
            Request::Join { node, partitions } => {
                encode_field(node.id.as_str(), &mut out);
                encode_field(&node.rpc_addr, &mut out);
                encode_optional_field(node.http_addr.as_deref(), &mut out);
                out.extend_from_slice(&node.capacity.to_be_bytes());
                encode_optional_field(node.zone.as_deref(), &mut out);
                out.extend_from_slice(&partitions.to_be_bytes());
            }
        }
        out
    }

    /// Decodes a request of `method`, checking every bound.
    pub fn decode(method: u16, bytes: &[u8]) -> Result<Request, MessageError> {
        if !(METHOD_READ..=LAST_METHOD).contains(&method) {
            return Err(MessageError::UnknownMethod(method));
        }
        let mut reader = Reader::new(bytes);
        read_format(&mut reader)?;
        let request = match method {
            METHOD_READ => Request::Read { key: decode_key(&mut reader)? },
            METHOD_WRITE => Request::Write {
                key: decode_key(&mut reader)?,
                object: decode_object(&mut reader)?,
                mode: decode_mode(&mut reader)?,
                durable: decode_bool(&mut reader, "durable flag")?,
            },
            METHOD_COORDINATE => Request::Coordinate {
                key: decode_key(&mut reader)?,
                context: codec::decode_clock(&mut reader)?,
                payload: decode_payload(&mut reader)?,
                options: ForwardOptions {
                    w: decode_option(&mut reader, "w option")?,
                    dw: decode_option(&mut reader, "dw option")?,
                    n: decode_option(&mut reader, "n option")?,
                    timeout_ms: decode_option(&mut reader, "timeout_ms option")?,
                    seen_timestamp: reader.u64("seen timestamp")?,
                    stamp: reader.u64("stamp")?,
                },
            },
            METHOD_SET_PROPS => decode_set_props(&mut reader)?,
            METHOD_HINTED_WRITE => Request::HintedWrite {
                owner: decode_node(&mut reader, "hint owner")?,
                key: decode_key(&mut reader)?,
                object: decode_object(&mut reader)?,
                mode: decode_mode(&mut reader)?,
                durable: decode_bool(&mut reader, "durable flag")?,
            },
            METHOD_REAP => Request::Reap { key: decode_key(&mut reader)?, tombstone: decode_object(&mut reader)? },
            METHOD_MERKLE_HASHES => decode_merkle_hashes(&mut reader)?,
            METHOD_MERKLE_KEYS => decode_merkle_keys(&mut reader)?,
            METHOD_GOSSIP => Request::Gossip {
                cluster: ClusterId(read_16(&mut reader, "cluster id")?),
                digest: StateDigest(read_16(&mut reader, "state digest")?),
            },
            METHOD_GOSSIP_PUSH => Request::GossipPush { state: decode_state(&mut reader)? },
            METHOD_JOIN => decode_join(&mut reader)?,
            METHOD_TRANSFER_PAGE => Request::TransferPage {
                partition: decode_partition(&mut reader)?,
                epoch: reader.u64("epoch")?,
                after: decode_resume(&mut reader)?,
            },
            _ => Request::Ping,
        };
        finish(&reader)?;
        Ok(request)
    }
}

impl Response {
    /// Encodes the response (format 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        match self {
            Response::Read { object } => {
                out.push(RESPONSE_READ);
                encode_object(object, &mut out);
            }
            Response::Written { durable } => out.extend_from_slice(&[RESPONSE_WRITTEN, u8::from(*durable)]),
            Response::Coordinated(Ok((context, timestamp))) => {
                out.extend_from_slice(&[RESPONSE_COORDINATED, OUTCOME_OK]);
                codec::encode_clock(context, &mut out);
                out.extend_from_slice(&timestamp.0.to_be_bytes());
            }
            Response::Coordinated(Err(ForwardedError { status, body })) => {
                out.extend_from_slice(&[RESPONSE_COORDINATED, OUTCOME_ERROR]);
                out.extend_from_slice(&status.to_be_bytes());
                // Clamping makes an oversized body fail to decode instead of
                // decoding as a different one.
                out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
                out.extend_from_slice(body.as_bytes());
            }
            Response::Pong => out.push(RESPONSE_PONG),
            Response::PropsSet => out.push(RESPONSE_PROPS_SET),
            Response::ClusterSame => out.push(RESPONSE_CLUSTER_SAME),
            Response::ClusterState { state } => {
                out.push(RESPONSE_CLUSTER_STATE);
                encode_state(state, &mut out);
            }
            Response::MerkleHashes { hashes } => {
                out.push(RESPONSE_MERKLE_HASHES);
                out.extend_from_slice(&clamped_count(hashes.len()).to_be_bytes());
                for hash in hashes {
                    out.extend_from_slice(&hash.0);
                }
            }
            Response::MerkleKeys { entries, more } => {
                out.extend_from_slice(&[RESPONSE_MERKLE_KEYS, u8::from(*more)]);
                out.extend_from_slice(&clamped_count(entries.len()).to_be_bytes());
                for (key, digest) in entries {
                    encode_key(key, &mut out);
                    out.extend_from_slice(&digest.0);
                }
            }
            Response::TransferPage { entries, more } => {
                out.extend_from_slice(&[RESPONSE_TRANSFER_PAGE, u8::from(*more)]);
                out.extend_from_slice(&clamped_count(entries.len()).to_be_bytes());
                for (key, object) in entries {
                    encode_key(key, &mut out);
                    encode_object(object, &mut out);
                }
            }
            Response::Failed { reason } => {
                out.push(RESPONSE_FAILED);
                encode_reason(reason, &mut out);
            }
            Response::Unreadable { reason } => {
                out.push(RESPONSE_UNREADABLE);
                encode_reason(reason, &mut out);
            }
        }
        out
    }

    /// Decodes a response, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<Response, MessageError> {
        let mut reader = Reader::new(bytes);
        read_format(&mut reader)?;
        let response = match reader.u8("response kind")? {
            RESPONSE_READ => Response::Read { object: decode_object(&mut reader)? },
            RESPONSE_WRITTEN => Response::Written { durable: decode_bool(&mut reader, "durable flag")? },
            RESPONSE_COORDINATED => match reader.u8("coordination outcome")? {
                OUTCOME_OK => {
                    let clock = codec::decode_clock(&mut reader)?;
                    Response::Coordinated(Ok((clock, Hlc(reader.u64("timestamp")?))))
                }
                OUTCOME_ERROR => Response::Coordinated(Err(decode_forwarded_error(&mut reader)?)),
                _ => return Err(MessageError::Invalid("unknown coordination outcome")),
            },
            RESPONSE_PONG => Response::Pong,
            RESPONSE_PROPS_SET => Response::PropsSet,
            RESPONSE_MERKLE_HASHES => decode_hashes_response(&mut reader)?,
            RESPONSE_MERKLE_KEYS => decode_keys_response(&mut reader)?,
            RESPONSE_CLUSTER_SAME => Response::ClusterSame,
            RESPONSE_CLUSTER_STATE => Response::ClusterState { state: decode_state(&mut reader)? },
            RESPONSE_TRANSFER_PAGE => decode_transfer_response(&mut reader)?,
            RESPONSE_FAILED => Response::Failed { reason: decode_reason(&mut reader)? },
            RESPONSE_UNREADABLE => Response::Unreadable { reason: decode_reason(&mut reader)? },
            kind => return Err(MessageError::UnknownResponse(kind)),
        };
        finish(&reader)?;
        Ok(response)
    }
}

/// `reason length u16 | reason`, cut at [`MAX_REASON_LEN`] bytes.
fn encode_reason(reason: &str, out: &mut Vec<u8>) {
    let reason = codec::truncate_at_char(reason, MAX_REASON_LEN);
    // MAX_REASON_LEN fits in u16.
    out.extend_from_slice(&u16::try_from(reason.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
}

fn decode_reason(reader: &mut Reader<'_>) -> Result<String, MessageError> {
    let len = usize::from(reader.u16("reason length")?);
    decode_text(reader, len, MAX_REASON_LEN, "reason")
}

fn read_format(reader: &mut Reader<'_>) -> Result<(), MessageError> {
    match reader.u8("format version")? {
        FORMAT => Ok(()),
        other => Err(MessageError::UnknownFormat(other)),
    }
}

fn finish(reader: &Reader<'_>) -> Result<(), MessageError> {
    match reader.remaining() {
        0 => Ok(()),
        trailing => Err(MessageError::TrailingBytes(trailing)),
    }
}

fn encode_key(key: &ObjectKey, out: &mut Vec<u8>) {
    // Validation keeps both lengths within their fields.
    out.push(u8::try_from(key.bucket().len()).unwrap_or(u8::MAX));
    out.extend_from_slice(key.bucket().as_bytes());
    out.extend_from_slice(&u16::try_from(key.key().len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(key.key());
}

fn decode_key(reader: &mut Reader<'_>) -> Result<ObjectKey, MessageError> {
    // A u8 length cannot exceed MAX_BUCKET_LEN (255).
    let bucket_len = usize::from(reader.u8("bucket length")?);
    debug_assert!(bucket_len <= MAX_BUCKET_LEN);
    let bucket = reader.take(bucket_len, "bucket")?;
    let bucket = std::str::from_utf8(bucket).map_err(|_| MessageError::Invalid("bucket is not UTF-8"))?;
    let key_len = usize::from(reader.u16("key length")?);
    if key_len > MAX_KEY_LEN {
        return Err(KeyError::KeyTooLong(key_len).into());
    }
    let key = reader.take(key_len, "key")?;
    Ok(ObjectKey::new(bucket, key)?)
}

fn encode_object(object: &VersionedObject, out: &mut Vec<u8>) {
    let encoded = codec::encode_object(object);
    // Clamping makes an object beyond 4 GiB fail to decode (a strict prefix
    // of an object encoding never decodes) instead of decoding as another.
    out.extend_from_slice(&u32::try_from(encoded.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&encoded);
}

fn decode_object(reader: &mut Reader<'_>) -> Result<VersionedObject, MessageError> {
    // No allocation before the object decoder, which bounds its own: the
    // length is only checked against the bytes present.
    let len = usize::try_from(reader.u32("object length")?).unwrap_or(usize::MAX);
    let bytes = reader.take(len, "object")?;
    codec::decode_object(bytes).map_err(MessageError::Object)
}

fn decode_payload(reader: &mut Reader<'_>) -> Result<Payload, MessageError> {
    match reader.u8("payload kind")? {
        KIND_VALUE => Ok(codec::decode_value(reader)?),
        KIND_TOMBSTONE => Ok(Payload::Tombstone),
        _ => Err(MessageError::Invalid("unknown payload kind")),
    }
}

fn decode_node(reader: &mut Reader<'_>, what: &'static str) -> Result<NodeId, MessageError> {
    let len = usize::from(reader.u8(what)?);
    if len == 0 {
        return Err(MessageError::Invalid("empty node id"));
    }
    Ok(NodeId::new(decode_text(reader, len, usize::from(u8::MAX), what)?))
}

fn decode_set_props(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let len = usize::from(reader.u8("bucket length")?);
    let bucket = decode_text(reader, len, crate::keys::MAX_BUCKET_LEN, "bucket")?;
    crate::keys::validate_bucket(&bucket).map_err(MessageError::Key)?;
    let n = reader.u8("n")?;
    let r = reader.u8("r")?;
    let w = reader.u8("w")?;
    let dw = reader.u8("dw")?;
    let conflict = decode_mode(reader)?;
    let props = BucketProps { n, r, w, dw, conflict };
    props.validate().map_err(|_| MessageError::Invalid("bucket props out of range"))?;
    let version = reader.u64("props version")?;
    Ok(Request::SetProps { bucket, props, version })
}

/// A count above `u16::MAX` is above every list bound too: decoding refuses
/// the clamped value (or the bytes that follow it).
fn clamped_count(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// `count u16 | value u16 *`.
fn encode_u16_list(values: &[u16], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_count(values.len()).to_be_bytes());
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

fn decode_partition(reader: &mut Reader<'_>) -> Result<u32, MessageError> {
    let partition = reader.u32("partition")?;
    if partition >= MAX_PARTITIONS {
        return Err(MessageError::Invalid("partition above the largest ring"));
    }
    Ok(partition)
}

fn decode_merkle_hashes(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let partition = decode_partition(reader)?;
    let level = reader.u8("tree level")?;
    let width = level_width(level).ok_or(MessageError::Invalid("tree level below the leaves"))?;
    let indices = decode_index_list(reader, width, "tree nodes")?;
    Ok(Request::MerkleHashes { partition, level, indices })
}

fn decode_merkle_keys(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let partition = decode_partition(reader)?;
    let segments = decode_index_list(reader, SEGMENTS, "segments")?;
    let after = decode_resume(reader)?;
    Ok(Request::MerkleKeys { partition, segments, after })
}

fn encode_resume(after: Option<&ObjectKey>, out: &mut Vec<u8>) {
    match after {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            encode_key(key, out);
        }
    }
}

fn decode_resume(reader: &mut Reader<'_>) -> Result<Option<ObjectKey>, MessageError> {
    if decode_bool(reader, "resume flag")? { Ok(Some(decode_key(reader)?)) } else { Ok(None) }
}

fn decode_transfer_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let more = decode_bool(reader, "more flag")?;
    let count = usize::from(reader.u16("object count")?);
    if count > MAX_TRANSFER_KEYS {
        return Err(MessageError::Invalid("more objects than a transfer page holds"));
    }
    // The smallest entry: one-byte bucket and key with their lengths, and
    // an object's length field.
    let mut entries = Vec::with_capacity(count.min(reader.remaining() / (1 + 1 + 2 + 1 + 4)));
    for _ in 0..count {
        let key = decode_key(reader)?;
        entries.push((key, decode_object(reader)?));
    }
    Ok(Response::TransferPage { entries, more })
}

fn decode_hashes_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let count = usize::from(reader.u16("hash count")?);
    if count > SEGMENTS {
        return Err(MessageError::Invalid("more hashes than a tree level has"));
    }
    let mut hashes = Vec::with_capacity(count.min(reader.remaining() / 16));
    for _ in 0..count {
        hashes.push(NodeHash(read_16(reader, "hash")?));
    }
    Ok(Response::MerkleHashes { hashes })
}

fn decode_keys_response(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let more = decode_bool(reader, "more flag")?;
    let count = usize::from(reader.u16("entry count")?);
    if count > MAX_LISTED_KEYS {
        return Err(MessageError::Invalid("more listed keys than a page holds"));
    }
    // The smallest entry: one-byte bucket and key with their lengths, digest.
    let mut entries = Vec::with_capacity(count.min(reader.remaining() / (1 + 1 + 2 + 1 + 16)));
    for _ in 0..count {
        let key = decode_key(reader)?;
        entries.push((key, ObjectDigest(read_16(reader, "digest")?)));
    }
    Ok(Response::MerkleKeys { entries, more })
}

fn read_16(reader: &mut Reader<'_>, what: &'static str) -> Result<[u8; 16], MessageError> {
    let bytes = reader.take(16, what)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    Ok(out)
}

fn mode_byte(mode: ConflictMode) -> u8 {
    match mode {
        ConflictMode::Siblings => 0,
        ConflictMode::Lww => 1,
    }
}

fn decode_mode(reader: &mut Reader<'_>) -> Result<ConflictMode, MessageError> {
    match reader.u8("conflict mode")? {
        0 => Ok(ConflictMode::Siblings),
        1 => Ok(ConflictMode::Lww),
        _ => Err(MessageError::Invalid("unknown conflict mode")),
    }
}

/// Only 0 and 1, so every message has exactly one encoding.
fn decode_bool(reader: &mut Reader<'_>, what: &'static str) -> Result<bool, MessageError> {
    match reader.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MessageError::Invalid("a flag is neither 0 nor 1")),
    }
}

fn encode_option(option: Option<&str>, out: &mut Vec<u8>) {
    match option {
        None => out.push(0),
        Some(text) => {
            // An over-long option gets a length above MAX_OPTION_LEN (or
            // 255), which decoding refuses: a quorum value is never cut.
            out.extend_from_slice(&[1, u8::try_from(text.len()).unwrap_or(u8::MAX)]);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn decode_option(reader: &mut Reader<'_>, what: &'static str) -> Result<Option<String>, MessageError> {
    if !decode_bool(reader, what)? {
        return Ok(None);
    }
    let len = usize::from(reader.u8(what)?);
    decode_text(reader, len, MAX_OPTION_LEN, what).map(Some)
}

fn encode_state(state: &ClusterState, out: &mut Vec<u8>) {
    let encoded = state.encode();
    // Clamping makes an impossible size fail to decode instead of decoding
    // as something else.
    out.extend_from_slice(&u32::try_from(encoded.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&encoded);
}

fn decode_state(reader: &mut Reader<'_>) -> Result<Box<ClusterState>, MessageError> {
    // The state decoder refuses more than MAX_STATE_BYTES before reading;
    // here the length is only checked against the bytes present.
    let len = usize::try_from(reader.u32("state length")?).unwrap_or(usize::MAX);
    let bytes = reader.take(len, "cluster state")?;
    ClusterState::decode(bytes).map(Box::new).map_err(MessageError::State)
}

/// `length u8 | UTF-8`, 1 to [`MAX_FIELD_LEN`] bytes (a longer field gets
/// length 0, which decoding refuses).
fn encode_field(text: &str, out: &mut Vec<u8>) {
    let len = u8::try_from(text.len()).unwrap_or(0);
    out.push(len);
    if len > 0 {
        out.extend_from_slice(text.as_bytes());
    }
}

fn encode_optional_field(text: Option<&str>, out: &mut Vec<u8>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            encode_field(text, out);
        }
    }
}

fn decode_field(reader: &mut Reader<'_>, what: &'static str) -> Result<String, MessageError> {
    let len = usize::from(reader.u8(what)?);
    if len == 0 {
        return Err(MessageError::Invalid("empty text field"));
    }
    decode_text(reader, len, MAX_FIELD_LEN, what)
}

fn decode_optional_field(reader: &mut Reader<'_>, what: &'static str) -> Result<Option<String>, MessageError> {
    if decode_bool(reader, what)? { decode_field(reader, what).map(Some) } else { Ok(None) }
}

fn decode_join(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let node = Announcement {
        id: NodeId::new(decode_field(reader, "joining node id")?),
        rpc_addr: decode_field(reader, "joining node RPC address")?,
        http_addr: decode_optional_field(reader, "joining node HTTP address")?,
        capacity: reader.u32("joining node capacity")?,
        zone: decode_optional_field(reader, "joining node zone")?,
    };
    if node.capacity == 0 {
        return Err(MessageError::Invalid("joining node with capacity 0"));
    }
    let partitions = reader.u32("joining node partitions")?;
    Ok(Request::Join { node, partitions })
}

fn decode_forwarded_error(reader: &mut Reader<'_>) -> Result<ForwardedError, MessageError> {
    let status = reader.u16("status")?;
    if !(100..=599).contains(&status) {
        return Err(MessageError::Invalid("forwarded status is not an HTTP status"));
    }
    let len = usize::try_from(reader.u32("body length")?).unwrap_or(usize::MAX);
    let body = decode_text(reader, len, MAX_FORWARDED_BODY_LEN, "body")?;
    Ok(ForwardedError { status, body })
}

/// Reads `len` bytes of UTF-8 text, refusing `len` above `max` before
/// reading or allocating anything.
fn decode_text(reader: &mut Reader<'_>, len: usize, max: usize, what: &'static str) -> Result<String, MessageError> {
    if len > max {
        return Err(MessageError::Invalid("text longer than its field allows"));
    }
    let bytes = reader.take(len, what)?;
    let text = std::str::from_utf8(bytes).map_err(|_| MessageError::Invalid("text is not UTF-8"))?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;
    use crate::merkle::LEAF_LEVEL;
    use crate::ring::NodeSpec;
    use crate::testing::reachable_object;
    use crate::version::ActorId;

    fn object_key() -> impl Strategy<Value = ObjectKey> {
        ("[A-Za-z0-9_.-]{1,40}", prop::collection::vec(any::<u8>(), 1..80))
            .prop_map(|(bucket, key)| ObjectKey::new(&bucket, &key).expect("generated keys are valid"))
    }

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            Just(Payload::Tombstone),
            (prop::collection::vec(any::<u8>(), 0..64), prop::option::of("[a-z]{1,10}/[a-z0-9.+-]{1,20}"))
                .prop_map(|(data, content_type)| Payload::Value { data: Bytes::from(data), content_type }),
        ]
    }

    /// Up to 16 characters of up to 4 bytes: within MAX_OPTION_LEN.
    fn option() -> impl Strategy<Value = Option<String>> {
        prop::option::of("\\PC{0,16}")
    }

    fn request() -> impl Strategy<Value = Request> {
        let mode = prop_oneof![Just(ConflictMode::Siblings), Just(ConflictMode::Lww)];
        prop_oneof![
            object_key().prop_map(|key| Request::Read { key }),
            (object_key(), reachable_object(), mode, any::<bool>())
                .prop_map(|(key, object, mode, durable)| Request::Write { key, object, mode, durable }),
            (object_key(), reachable_object()).prop_map(|(key, tombstone)| Request::Reap { key, tombstone }),
            ("[a-z0-9-]{1,40}", object_key(), reachable_object(), any::<bool>()).prop_map(
                |(owner, key, object, durable)| Request::HintedWrite {
                    owner: NodeId::new(owner),
                    key,
                    object,
                    mode: ConflictMode::Siblings,
                    durable
                }
            ),
            (
                object_key(),
                reachable_object(),
                payload(),
                (option(), option(), option(), option()),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(key, object, payload, (w, dw, n, timeout_ms), seen_timestamp, stamp)| {
                    Request::Coordinate {
                        key,
                        context: object.context().clone(),
                        payload,
                        options: ForwardOptions { w, dw, n, timeout_ms, seen_timestamp, stamp },
                    }
                }),
            Just(Request::Ping),
            (1u8..=5, any::<bool>(), any::<u64>()).prop_map(|(n, lww, version)| Request::SetProps {
                bucket: "b".to_string(),
                props: BucketProps {
                    n,
                    r: 1,
                    w: n,
                    dw: 0,
                    conflict: if lww { ConflictMode::Lww } else { ConflictMode::Siblings },
                },
                version,
            }),
            merkle_request(),
            membership_request(),
        ]
    }

    /// A small cluster state: `members` static nodes, the first `joining`
    /// of the others joined, and a committed plan when `commit`.
    fn cluster_state(members: usize, joining: usize, commit: bool) -> ClusterState {
        let specs: Vec<(NodeSpec, String)> =
            (0..members).map(|i| (NodeSpec::new(format!("n{i}"), 1), format!("h{i}:9000"))).collect();
        let mut state = ClusterState::from_static(16, &specs).expect("valid");
        for i in members..members + joining {
            let node = announcement(i);
            state = state.with_joining(&node, 16).expect("join");
        }
        if commit
            && let Ok(plan) = state.plan()
            && let Ok(next) = state.commit(&plan, &[3])
        {
            state = next;
        }
        state
    }

    fn announcement(i: usize) -> Announcement {
        Announcement {
            id: NodeId::new(format!("n{i}")),
            rpc_addr: format!("h{i}:9000"),
            http_addr: i.is_multiple_of(2).then(|| format!("h{i}:8000")),
            capacity: 1 + i as u32 % 3,
            zone: i.is_multiple_of(3).then(|| format!("z{i}")),
        }
    }

    fn membership_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(cluster, digest)| Request::Gossip {
                cluster: ClusterId(cluster),
                digest: StateDigest(digest)
            }),
            (1..4usize, 0..3usize, any::<bool>()).prop_map(|(members, joining, commit)| Request::GossipPush {
                state: Box::new(cluster_state(members, joining, commit))
            }),
            (0..10usize, 1..=MAX_PARTITIONS)
                .prop_map(|(i, partitions)| Request::Join { node: announcement(i), partitions }),
        ]
    }

    fn index_list(width: usize) -> impl Strategy<Value = Vec<u16>> {
        prop::collection::btree_set(0..width as u16, 1..=width.min(64)).prop_map(|set| set.into_iter().collect())
    }

    fn merkle_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (0..MAX_PARTITIONS, 0..=LEAF_LEVEL).prop_flat_map(|(partition, level)| {
                index_list(level_width(level).expect("level exists")).prop_map(move |indices| Request::MerkleHashes {
                    partition,
                    level,
                    indices,
                })
            }),
            (0..MAX_PARTITIONS, index_list(SEGMENTS), prop::option::of(object_key()))
                .prop_map(|(partition, segments, after)| Request::MerkleKeys { partition, segments, after }),
            (0..MAX_PARTITIONS, prop::option::of(object_key())).prop_map(|(partition, after)| Request::TransferPage {
                partition,
                epoch: u64::from(partition) * 7,
                after
            }),
        ]
    }

    fn merkle_response() -> impl Strategy<Value = Response> {
        prop_oneof![
            prop::collection::vec(any::<[u8; 16]>(), 0..40)
                .prop_map(|hashes| Response::MerkleHashes { hashes: hashes.into_iter().map(NodeHash).collect() }),
            (prop::collection::vec((object_key(), any::<[u8; 16]>()), 0..20), any::<bool>()).prop_map(
                |(entries, more)| Response::MerkleKeys {
                    entries: entries.into_iter().map(|(key, digest)| (key, ObjectDigest(digest))).collect(),
                    more,
                }
            ),
            (prop::collection::vec((object_key(), reachable_object()), 0..6), any::<bool>())
                .prop_map(|(entries, more)| Response::TransferPage { entries, more }),
        ]
    }

    fn response() -> impl Strategy<Value = Response> {
        prop_oneof![
            reachable_object().prop_map(|object| Response::Read { object }),
            any::<bool>().prop_map(|durable| Response::Written { durable }),
            (reachable_object(), any::<u64>())
                .prop_map(|(object, at)| Response::Coordinated(Ok((object.context().clone(), Hlc(at))))),
            (100..=599u16, "\\PC{0,200}")
                .prop_map(|(status, body)| Response::Coordinated(Err(ForwardedError { status, body }))),
            Just(Response::Pong),
            Just(Response::PropsSet),
            "\\PC{0,100}".prop_map(|reason| Response::Failed { reason }),
            "\\PC{0,100}".prop_map(|reason| Response::Unreadable { reason }),
            merkle_response(),
            Just(Response::ClusterSame),
            (1..4usize, 0..3usize, any::<bool>()).prop_map(|(members, joining, commit)| Response::ClusterState {
                state: Box::new(cluster_state(members, joining, commit))
            }),
        ]
    }

    fn key(bucket: &str, key: &[u8]) -> ObjectKey {
        ObjectKey::new(bucket, key).unwrap()
    }

    #[test]
    fn gossip_request_layout_is_cluster_id_then_digest() {
        let request = Request::Gossip { cluster: ClusterId([1; 16]), digest: StateDigest([2; 16]) };
        assert_eq!(request.method(), METHOD_GOSSIP);
        let mut expected = vec![1];
        expected.extend_from_slice(&[1; 16]);
        expected.extend_from_slice(&[2; 16]);
        assert_eq!(request.encode(), expected);
        assert_eq!(Response::ClusterSame.encode(), [1, 8]);
    }

    #[test]
    fn states_travel_length_prefixed_and_a_broken_one_is_refused_as_a_state() {
        let state = cluster_state(2, 1, false);
        let encoded = state.encode();
        let push = Request::GossipPush { state: Box::new(state.clone()) };
        let bytes = push.encode();
        assert_eq!(&bytes[1..5], &(encoded.len() as u32).to_be_bytes());
        assert_eq!(&bytes[5..], &encoded[..]);
        let answer = Response::ClusterState { state: Box::new(state) };
        assert_eq!(&answer.encode()[..2], &[1, 9]);
        let mut broken = bytes.clone();
        broken[5] = 9;
        assert!(matches!(Request::decode(METHOD_GOSSIP_PUSH, &broken), Err(MessageError::State(_))));
    }

    #[test]
    fn join_request_layout_carries_the_announcement_and_q() {
        let node = Announcement {
            id: NodeId::new("n4"),
            rpc_addr: "h:1".to_string(),
            http_addr: None,
            capacity: 2,
            zone: Some("a".to_string()),
        };
        let request = Request::Join { node, partitions: 256 };
        assert_eq!(request.method(), METHOD_JOIN);
        assert_eq!(request.encode(), [1, 2, b'n', b'4', 3, b'h', b':', b'1', 0, 0, 0, 0, 2, 1, 1, b'a', 0, 0, 1, 0]);
        let mut zero_capacity = request.encode();
        zero_capacity[12] = 0;
        assert!(Request::decode(METHOD_JOIN, &zero_capacity).is_err());
        let mut empty_id = request.encode();
        empty_id[1] = 0;
        assert!(Request::decode(METHOD_JOIN, &empty_id).is_err());
    }

    #[test]
    fn ping_is_one_version_byte_and_pong_adds_its_kind() {
        assert_eq!(Request::Ping.encode(), [1]);
        assert_eq!(Request::Ping.method(), METHOD_PING);
        assert_eq!(Request::decode(METHOD_PING, &[1]), Ok(Request::Ping));
        assert_eq!(Response::Pong.encode(), [1, 3]);
        assert_eq!(Response::decode(&[1, 3]), Ok(Response::Pong));
    }

    #[test]
    fn read_request_layout_matches_the_documented_format() {
        let request = Request::Read { key: key("b1", b"k") };
        assert_eq!(request.method(), METHOD_READ);
        assert_eq!(request.encode(), [1, 2, b'b', b'1', 0, 1, b'k']);
    }

    #[test]
    fn write_request_layout_embeds_the_object_codec_with_a_length() {
        let request = Request::Write {
            key: key("b", b"k"),
            object: VersionedObject::new(),
            mode: ConflictMode::Lww,
            durable: true,
        };
        assert_eq!(request.encode(), [1, 1, b'b', 0, 1, b'k', 0, 0, 0, 5, 1, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn coordinate_request_layout_carries_clock_payload_and_options() {
        let request = Request::Coordinate {
            key: key("b", b"k"),
            context: [(ActorId(7), 2)].into_iter().collect(),
            payload: Payload::Tombstone,
            options: ForwardOptions { w: Some("all".to_string()), ..ForwardOptions::default() },
        };
        let mut expected = vec![1, 1, b'b', 0, 1, b'k', 0, 1];
        expected.extend_from_slice(&7u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&[1, 1, 3, b'a', b'l', b'l', 0, 0, 0]);
        expected.extend_from_slice(&0u64.to_be_bytes());
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(request.encode(), expected);
    }

    #[test]
    fn forwarded_error_layout_is_status_then_length_prefixed_body() {
        let response = Response::Coordinated(Err(ForwardedError { status: 503, body: "{}".to_string() }));
        assert_eq!(response.encode(), [1, 2, 1, 0x01, 0xf7, 0, 0, 0, 2, b'{', b'}']);
    }

    #[test]
    fn unknown_method_and_format_version_are_refused() {
        assert_eq!(Request::decode(0, &[1]), Err(MessageError::UnknownMethod(0)));
        assert_eq!(Request::decode(99, &[1]), Err(MessageError::UnknownMethod(99)));
        assert_eq!(Request::decode(METHOD_PING, &[2]), Err(MessageError::UnknownFormat(2)));
        assert_eq!(Response::decode(&[2, 3]), Err(MessageError::UnknownFormat(2)));
        assert_eq!(Response::decode(&[1, 12]), Err(MessageError::UnknownResponse(12)));
        assert_eq!(MessageError::UnknownMethod(99).to_string(), "unknown request method 99");
        assert_eq!(
            Request::decode(METHOD_READ, &[]).unwrap_err().to_string(),
            "message truncated while reading format version"
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert_eq!(Request::decode(METHOD_PING, &[1, 0]), Err(MessageError::TrailingBytes(1)));
        assert_eq!(Response::decode(&[1, 3, 0, 0]), Err(MessageError::TrailingBytes(2)));
    }

    #[test]
    fn invalid_keys_are_refused_with_the_key_error() {
        assert_eq!(Request::decode(METHOD_READ, &[1, 1, b'b', 0, 0]), Err(MessageError::Key(KeyError::EmptyKey)));
        assert_eq!(
            Request::decode(METHOD_READ, &[1, 1, b'/', 0, 1, b'k']),
            Err(MessageError::Key(KeyError::BucketCharacter('/')))
        );
        let error = Request::decode(METHOD_READ, &[1, 1, b'b', 0xff, 0xff]).unwrap_err();
        assert_eq!(error, MessageError::Key(KeyError::KeyTooLong(65535)), "refused before reading the key");
        assert_eq!(error.to_string(), "message carries an invalid key: key is 65535 bytes; the limit is 1024");
        assert_eq!(
            Request::decode(METHOD_READ, &[1, 1, 0xff, 0, 1, b'k']),
            Err(MessageError::Invalid("bucket is not UTF-8"))
        );
    }

    #[test]
    fn broken_embedded_objects_are_refused_as_objects() {
        let mut bytes = Response::Read { object: VersionedObject::new() }.encode();
        bytes[6] = 7; // the object's own format byte
        let error = Response::decode(&bytes).unwrap_err();
        assert_eq!(error, MessageError::Object(CodecError::UnknownFormat(7)));
        assert_eq!(error.to_string(), "message carries an invalid object: unknown object format version 7");
    }

    #[test]
    fn flags_modes_and_outcomes_other_than_the_defined_bytes_are_refused() {
        assert_eq!(Response::decode(&[1, 1, 2]), Err(MessageError::Invalid("a flag is neither 0 nor 1")));
        assert_eq!(Response::decode(&[1, 2, 5]), Err(MessageError::Invalid("unknown coordination outcome")));
        let mut write = Request::Write {
            key: key("b", b"k"),
            object: VersionedObject::new(),
            mode: ConflictMode::Siblings,
            durable: false,
        }
        .encode();
        let mode_at = write.len() - 2;
        write[mode_at] = 2;
        assert_eq!(Request::decode(METHOD_WRITE, &write), Err(MessageError::Invalid("unknown conflict mode")));
    }

    #[test]
    fn statuses_outside_http_range_are_refused() {
        for status in [0, 99, 600, u16::MAX] {
            let bytes = Response::Coordinated(Err(ForwardedError { status, body: String::new() })).encode();
            assert_eq!(Response::decode(&bytes), Err(MessageError::Invalid("forwarded status is not an HTTP status")));
        }
    }

    #[test]
    fn overlong_options_and_bodies_encode_to_bytes_that_are_refused() {
        for long in ["1".repeat(MAX_OPTION_LEN + 1), "1".repeat(300)] {
            let options = ForwardOptions { timeout_ms: Some(long), ..ForwardOptions::default() };
            let request = Request::Coordinate {
                key: key("b", b"k"),
                context: VersionVector::new(),
                payload: Payload::Tombstone,
                options,
            };
            let refused = Request::decode(METHOD_COORDINATE, &request.encode());
            assert_eq!(refused, Err(MessageError::Invalid("text longer than its field allows")));
        }
        let options = ForwardOptions { n: Some("1".repeat(MAX_OPTION_LEN)), ..ForwardOptions::default() };
        let request = Request::Coordinate {
            key: key("b", b"k"),
            context: VersionVector::new(),
            payload: Payload::Tombstone,
            options,
        };
        assert_eq!(Request::decode(METHOD_COORDINATE, &request.encode()), Ok(request), "the limit itself is fine");
        let body = "x".repeat(MAX_FORWARDED_BODY_LEN + 1);
        let bytes = Response::Coordinated(Err(ForwardedError { status: 503, body })).encode();
        assert_eq!(Response::decode(&bytes), Err(MessageError::Invalid("text longer than its field allows")));
    }

    #[test]
    fn overlong_failure_reasons_are_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let Ok(Response::Failed { reason: kept }) = Response::decode(&Response::Failed { reason }.encode()) else {
            panic!("expected a failure response");
        };
        assert_eq!(kept.len(), MAX_REASON_LEN);
        assert!(kept.chars().all(|c| c == 'é'));
    }

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

    #[test]
    fn non_utf8_text_is_refused() {
        assert_eq!(Response::decode(&[1, 4, 0, 1, 0xff]), Err(MessageError::Invalid("text is not UTF-8")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_request_roundtrips(request in request()) {
            let decoded = Request::decode(request.method(), &request.encode());
            prop_assert_eq!(decoded, Ok(request));
        }

        #[test]
        fn every_response_roundtrips(response in response()) {
            prop_assert_eq!(Response::decode(&response.encode()), Ok(response));
        }

        #[test]
        fn every_strict_prefix_of_a_request_is_refused(request in request(), cut in any::<Index>()) {
            let bytes = request.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(Request::decode(request.method(), &bytes[..cut]).is_err());
        }

        #[test]
        fn every_strict_prefix_of_a_response_is_refused(response in response(), cut in any::<Index>()) {
            let bytes = response.encode();
            let cut = cut.index(bytes.len());
            prop_assert!(Response::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn corrupted_messages_never_panic_and_decode_only_to_valid_messages(
            request in request(),
            response in response(),
            at in any::<Index>(),
            mask in 1..=255u8,
        ) {
            let mut bytes = request.encode();
            let index = at.index(bytes.len());
            bytes[index] ^= mask;
            if let Ok(decoded) = Request::decode(request.method(), &bytes) {
                prop_assert_eq!(Request::decode(decoded.method(), &decoded.encode()), Ok(decoded));
            }
            let mut bytes = response.encode();
            let index = at.index(bytes.len());
            bytes[index] ^= mask;
            if let Ok(decoded) = Response::decode(&bytes) {
                prop_assert_eq!(Response::decode(&decoded.encode()), Ok(decoded));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(method in 0..=LAST_METHOD + 1, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(method, &bytes);
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn decoding_arbitrary_bytes_after_a_valid_header_never_panics(
            method in METHOD_READ..=LAST_METHOD,
            kind in 0..=RESPONSE_MERKLE_KEYS + 1,
            tail in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            // Random bytes rarely get past the version byte; these do.
            let mut request = vec![FORMAT];
            request.extend_from_slice(&tail);
            let _ = Request::decode(method, &request);
            let mut response = vec![FORMAT, kind];
            response.extend_from_slice(&tail);
            let _ = Response::decode(&response);
        }
    }
}
