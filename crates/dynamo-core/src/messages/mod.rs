//! What nodes say to each other: the one [`Request`] enum of everything a
//! node asks another (a coordinator of its replicas, a non-replica of a
//! coordinator, a node of its gossip peers), the one [`Response`] enum of
//! the answers, and their versioned binary encoding.
//!
//! The RPC layer moves a `method: u16` and opaque bytes between nodes; this
//! module gives the bytes their meaning. It lives in the pure core, apart
//! from the transport, so that the codec is fuzzable and property-tested on
//! its own, and so that the node and the deterministic simulation speak
//! exactly the same messages.
//!
//! **What this file owns**: the two enums, the method numbers and response
//! kind bytes (the tags of the wire format), the framing every message
//! shares, and the dispatch from a tag to the family that encodes the
//! fields. The fields of each message live with their family, one file
//! each, beside the subsystem they serve:
//! - `replica`: replica reads, writes and reaps, and failure answers;
//! - `forward`: a client write forwarded to a coordinator, and its outcome;
//! - `props`: bucket props replication;
//! - `hint`: hinted handoff;
//! - `merkle`: Merkle anti-entropy (tree hashes and key listings);
//! - `membership`: gossip and joins;
//! - `transfer`: partition transfer pages;
//! - `listing`: pages of a bucket's keys in a partition, and the buckets a
//!   node holds (issue 14);
//! - `fields`: the message-level fields several families share (keys,
//!   embedded objects, conflict modes, partitions, resume keys), built on
//!   the primitives of [`crate::codec`].
//!
//! **Framing.** Every encoding starts with a message format version (1), so
//! a node can refuse (rather than misread) a message from a newer build
//! during a rolling upgrade. A request is `version | fields`, its method
//! travelling beside the bytes; a response is `version | kind u8 | fields`.
//! Every length is bounded and checked against its bound and the bytes
//! present before anything is allocated, trailing bytes are refused, and
//! keys and objects are validated as they would be from a client: the bytes
//! come from the network. Encoding is infallible; a field outside its bound
//! produces bytes that decoding refuses, never bytes that decode to
//! something else. The exception is a failure reason, which is advisory
//! text and is cut at a character boundary. All integers are big-endian.
//!
//! | method | request | family | | kind | response | family |
//! |---|---|---|---|---|---|---|
//! | 1 | `Read` | replica | | 0 | `Read` | replica |
//! | 2 | `Write` | replica | | 1 | `Written` | replica |
//! | 3 | `Coordinate` | forward | | 2 | `Coordinated` | forward |
//! | 4 | `Ping` (no fields) | here | | 3 | `Pong` (no fields) | here |
//! | 5 | `SetProps` | props | | 4 | `Failed` | replica |
//! | 6 | `MerkleHashes` | merkle | | 5 | `PropsSet` (no fields) | props |
//! | 7 | `MerkleKeys` | merkle | | 6 | `MerkleHashes` | merkle |
//! | 8 | `HintedWrite` | hint | | 7 | `MerkleKeys` | merkle |
//! | 9 | `Reap` | replica | | 8 | `ClusterSame` (no fields) | membership |
//! | 10 | `Gossip` | membership | | 9 | `ClusterState` | membership |
//! | 11 | `GossipPush` | membership | | 10 | `TransferPage` | transfer |
//! | 12 | `Join` | membership | | 11 | `Unreadable` | replica |
//! | 13 | `TransferPage` | transfer | | 12 | `Updated` | forward |
//! | 14 | `CoordinateUpdate` | forward | | 13 | `BucketKeys` | props |
//! | 15 | `BucketHasKeys` | props | | 14 | `ListedKeys` | listing |
//! | 16 | `ListKeys` | listing | | 15 | `Buckets` | listing |
//! | 17 | `ListBuckets` (no fields) | listing | | | | |
//!
//! The golden bytes of every message are pinned by
//! `crates/dynamo-core/tests/wire_format.rs`: a change to any of them is a
//! new format version, not an edit.

mod fields;
mod forward;
mod hint;
mod listing;
mod membership;
mod merkle;
mod props;
mod replica;
#[cfg(test)]
mod testing;
mod transfer;

use thiserror::Error;

pub use self::forward::{ForwardOptions, ForwardedError, MAX_FORWARDED_BODY_LEN, MAX_OPTION_LEN};
pub use self::listing::MAX_LISTED_BUCKETS;
pub use self::merkle::MAX_LISTED_KEYS;
pub use self::transfer::{MAX_TRANSFER_KEYS, TRANSFER_PAGE_BYTES};
use crate::codec::{CodecError, Reader};
use crate::crdt::value::{DataOp, DataValue};
use crate::hlc::Hlc;
use crate::keys::{KeyError, ObjectKey};
use crate::membership::{Announcement, ClusterId, ClusterState, StateDecodeError, StateDigest};
use crate::merkle::{NodeHash, ObjectDigest};
use crate::object::{Payload, VersionedObject};
use crate::props::{BucketProps, ConflictMode};
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
/// Method of [`Request::CoordinateUpdate`].
pub const METHOD_COORDINATE_UPDATE: u16 = 14;
/// Method of [`Request::BucketHasKeys`].
pub const METHOD_BUCKET_HAS_KEYS: u16 = 15;
/// Method of [`Request::ListKeys`].
pub const METHOD_LIST_KEYS: u16 = 16;
/// Method of [`Request::ListBuckets`].
pub const METHOD_LIST_BUCKETS: u16 = 17;
/// The last method this build knows.
const LAST_METHOD: u16 = METHOD_LIST_BUCKETS;

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
const RESPONSE_UPDATED: u8 = 12;
const RESPONSE_BUCKET_KEYS: u8 = 13;
const RESPONSE_LISTED_KEYS: u8 = 14;
const RESPONSE_BUCKETS: u8 = 15;

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
    /// Coordinate a data-type operation on behalf of a node outside the
    /// key's preference list (issue 12): the receiver, a replica, acts as
    /// the operation's actor.
    CoordinateUpdate {
        /// The key.
        key: ObjectKey,
        /// The operation.
        op: DataOp,
        /// The client's quorum options, as it sent them (`stamp` and
        /// `seen_timestamp` unused).
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
    /// Whether this node stores any live key of a bucket (asked of every
    /// member before a bucket takes a datatype: SPEC section 4, fixed once
    /// the bucket holds data).
    BucketHasKeys {
        /// The bucket.
        bucket: String,
    },
    /// Listing (issue 14): this replica's live keys of `bucket` in
    /// `partition`, in key order, after `after`: at most `max_keys` keys of
    /// at most `max_bytes` bytes in all (the first key always fits). Dead
    /// keys (tombstones, expired values) are skipped.
    ListKeys {
        /// The partition.
        partition: u32,
        /// The bucket.
        bucket: String,
        /// Only keys after this one; `None` from the start.
        after: Option<Vec<u8>>,
        /// Most keys to answer (`1..=MAX_PAGE_KEYS`).
        max_keys: u16,
        /// Most key bytes to answer (`1..=PAGE_KEY_BYTES`).
        max_bytes: u32,
    },
    /// Listing (issue 14): which buckets this node stores live keys of,
    /// in any partition.
    ListBuckets,
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
    /// The outcome of a forwarded data-type operation: the value as the
    /// acting replica holds it, or the HTTP error to relay.
    Updated(Result<DataValue, ForwardedError>),
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::SetProps`]: stored (or a newer change already was).
    PropsSet,
    /// Answer to [`Request::BucketHasKeys`].
    BucketKeys {
        /// Whether the node stores a live key of the bucket.
        any: bool,
    },
    /// Answer to [`Request::ListKeys`].
    ListedKeys {
        /// Live keys, strictly increasing, none above `covered`.
        keys: Vec<Vec<u8>>,
        /// The last key the replica examined: every live key it holds up
        /// to it is listed. `None` when it reached the end of the bucket's
        /// range in the partition.
        covered: Option<Vec<u8>>,
    },
    /// Answer to [`Request::ListBuckets`].
    Buckets {
        /// The buckets, strictly increasing, at most [`MAX_LISTED_BUCKETS`].
        buckets: Vec<String>,
        /// False when the node stopped before looking at all its keys (too
        /// many buckets, or too many dead keys to read through).
        complete: bool,
    },
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
    /// The reason is at most [`MAX_REASON_LEN`](crate::quorum::MAX_REASON_LEN) bytes.
    Failed {
        /// What went wrong, for the quorum report.
        reason: String,
    },
    /// Answer to [`Request::Read`] when the replica's stored state of the
    /// key failed its integrity check: it serves nothing, and a write of
    /// a good copy (read repair, anti-entropy) replaces the corrupt record.
    /// The reason is at most [`MAX_REASON_LEN`](crate::quorum::MAX_REASON_LEN) bytes.
    Unreadable {
        /// Where the corruption was detected, for the quorum report.
        reason: String,
    },
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
            Request::CoordinateUpdate { .. } => METHOD_COORDINATE_UPDATE,
            Request::Ping => METHOD_PING,
            Request::SetProps { .. } => METHOD_SET_PROPS,
            Request::BucketHasKeys { .. } => METHOD_BUCKET_HAS_KEYS,
            Request::ListKeys { .. } => METHOD_LIST_KEYS,
            Request::ListBuckets => METHOD_LIST_BUCKETS,
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
            Request::Read { key } => fields::encode_key(key, &mut out),
            Request::Write { key, object, mode, durable } => {
                replica::encode_write(key, object, *mode, *durable, &mut out);
            }
            Request::CoordinateUpdate { key, op, options } => {
                forward::encode_coordinate_update(key, op, options, &mut out)
            }
            Request::Coordinate { key, context, payload, options } => {
                forward::encode_coordinate(key, context, payload, options, &mut out);
            }
            Request::HintedWrite { owner, key, object, mode, durable } => {
                hint::encode_hinted_write(owner, key, object, *mode, *durable, &mut out);
            }
            Request::Reap { key, tombstone } => replica::encode_reap(key, tombstone, &mut out),
            Request::Ping | Request::ListBuckets => {}
            Request::ListKeys { partition, bucket, after, max_keys, max_bytes } => {
                listing::encode_list_keys(*partition, bucket, after.as_deref(), *max_keys, *max_bytes, &mut out);
            }
            Request::SetProps { bucket, props, version } => props::encode_set_props(bucket, props, *version, &mut out),
            Request::BucketHasKeys { bucket } => props::encode_bucket(bucket, &mut out),
            Request::MerkleHashes { partition, level, indices } => {
                merkle::encode_hashes_request(*partition, *level, indices, &mut out);
            }
            Request::MerkleKeys { partition, segments, after } => {
                merkle::encode_keys_request(*partition, segments, after.as_ref(), &mut out);
            }
            Request::TransferPage { partition, epoch, after } => {
                transfer::encode_transfer_request(*partition, *epoch, after.as_ref(), &mut out);
            }
            Request::Gossip { cluster, digest } => membership::encode_gossip(cluster, digest, &mut out),
            Request::GossipPush { state } => membership::encode_state(state, &mut out),
            Request::Join { node, partitions } => membership::encode_join(node, *partitions, &mut out),
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
        let reader = &mut reader;
        let request = match method {
            METHOD_READ => Request::Read { key: fields::decode_key(reader)? },
            METHOD_WRITE => replica::decode_write(reader)?,
            METHOD_COORDINATE => forward::decode_coordinate(reader)?,
            METHOD_COORDINATE_UPDATE => forward::decode_coordinate_update(reader)?,
            METHOD_PING => Request::Ping,
            METHOD_SET_PROPS => props::decode_set_props(reader)?,
            METHOD_BUCKET_HAS_KEYS => Request::BucketHasKeys { bucket: props::decode_bucket(reader)? },
            METHOD_LIST_KEYS => listing::decode_list_keys(reader)?,
            METHOD_LIST_BUCKETS => Request::ListBuckets,
            METHOD_HINTED_WRITE => hint::decode_hinted_write(reader)?,
            METHOD_REAP => replica::decode_reap(reader)?,
            METHOD_MERKLE_HASHES => merkle::decode_hashes_request(reader)?,
            METHOD_MERKLE_KEYS => merkle::decode_keys_request(reader)?,
            METHOD_GOSSIP => membership::decode_gossip(reader)?,
            METHOD_GOSSIP_PUSH => Request::GossipPush { state: membership::decode_state(reader)? },
            METHOD_JOIN => membership::decode_join(reader)?,
            METHOD_TRANSFER_PAGE => transfer::decode_transfer_request(reader)?,
            _ => return Err(MessageError::UnknownMethod(method)),
        };
        finish(reader)?;
        Ok(request)
    }
}

impl Response {
    /// Encodes the response (format 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT, self.kind()];
        match self {
            Response::Read { object } => fields::encode_object(object, &mut out),
            Response::Written { durable } => out.push(u8::from(*durable)),
            Response::BucketKeys { any } => out.push(u8::from(*any)),
            Response::ListedKeys { keys, covered } => listing::encode_listed_keys(keys, covered.as_deref(), &mut out),
            Response::Buckets { buckets, complete } => listing::encode_buckets(buckets, *complete, &mut out),
            Response::Coordinated(outcome) => forward::encode_coordinated(outcome, &mut out),
            Response::Updated(outcome) => forward::encode_updated(outcome, &mut out),
            Response::Pong | Response::PropsSet | Response::ClusterSame => {}
            Response::ClusterState { state } => membership::encode_state(state, &mut out),
            Response::MerkleHashes { hashes } => merkle::encode_hashes_response(hashes, &mut out),
            Response::MerkleKeys { entries, more } => merkle::encode_keys_response(entries, *more, &mut out),
            Response::TransferPage { entries, more } => transfer::encode_transfer_response(entries, *more, &mut out),
            Response::Failed { reason } | Response::Unreadable { reason } => replica::encode_reason(reason, &mut out),
        }
        out
    }

    /// Decodes a response, checking every bound.
    pub fn decode(bytes: &[u8]) -> Result<Response, MessageError> {
        let mut reader = Reader::new(bytes);
        read_format(&mut reader)?;
        let reader = &mut reader;
        let response = match reader.u8("response kind")? {
            RESPONSE_READ => Response::Read { object: fields::decode_object(reader)? },
            RESPONSE_WRITTEN => Response::Written { durable: reader.flag("durable flag")? },
            RESPONSE_COORDINATED => forward::decode_coordinated(reader)?,
            RESPONSE_UPDATED => forward::decode_updated(reader)?,
            RESPONSE_PONG => Response::Pong,
            RESPONSE_PROPS_SET => Response::PropsSet,
            RESPONSE_BUCKET_KEYS => Response::BucketKeys { any: reader.flag("any keys flag")? },
            RESPONSE_LISTED_KEYS => listing::decode_listed_keys(reader)?,
            RESPONSE_BUCKETS => listing::decode_buckets(reader)?,
            RESPONSE_MERKLE_HASHES => merkle::decode_hashes_response(reader)?,
            RESPONSE_MERKLE_KEYS => merkle::decode_keys_response(reader)?,
            RESPONSE_CLUSTER_SAME => Response::ClusterSame,
            RESPONSE_CLUSTER_STATE => Response::ClusterState { state: membership::decode_state(reader)? },
            RESPONSE_TRANSFER_PAGE => transfer::decode_transfer_response(reader)?,
            RESPONSE_FAILED => Response::Failed { reason: replica::decode_reason(reader)? },
            RESPONSE_UNREADABLE => Response::Unreadable { reason: replica::decode_reason(reader)? },
            kind => return Err(MessageError::UnknownResponse(kind)),
        };
        finish(reader)?;
        Ok(response)
    }

    /// The kind byte that follows the format byte.
    fn kind(&self) -> u8 {
        match self {
            Response::Read { .. } => RESPONSE_READ,
            Response::Written { .. } => RESPONSE_WRITTEN,
            Response::Coordinated(_) => RESPONSE_COORDINATED,
            Response::Updated(_) => RESPONSE_UPDATED,
            Response::Pong => RESPONSE_PONG,
            Response::PropsSet => RESPONSE_PROPS_SET,
            Response::BucketKeys { .. } => RESPONSE_BUCKET_KEYS,
            Response::ListedKeys { .. } => RESPONSE_LISTED_KEYS,
            Response::Buckets { .. } => RESPONSE_BUCKETS,
            Response::MerkleHashes { .. } => RESPONSE_MERKLE_HASHES,
            Response::MerkleKeys { .. } => RESPONSE_MERKLE_KEYS,
            Response::TransferPage { .. } => RESPONSE_TRANSFER_PAGE,
            Response::ClusterSame => RESPONSE_CLUSTER_SAME,
            Response::ClusterState { .. } => RESPONSE_CLUSTER_STATE,
            Response::Failed { .. } => RESPONSE_FAILED,
            Response::Unreadable { .. } => RESPONSE_UNREADABLE,
        }
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::testing::{request, response};
    use super::*;

    #[test]
    fn ping_is_one_version_byte_and_pong_adds_its_kind() {
        assert_eq!(Request::Ping.encode(), [1]);
        assert_eq!(Request::Ping.method(), METHOD_PING);
        assert_eq!(Request::decode(METHOD_PING, &[1]), Ok(Request::Ping));
        assert_eq!(Response::Pong.encode(), [1, 3]);
        assert_eq!(Response::decode(&[1, 3]), Ok(Response::Pong));
    }
    #[test]
    fn unknown_method_and_format_version_are_refused() {
        assert_eq!(Request::decode(0, &[1]), Err(MessageError::UnknownMethod(0)));
        assert_eq!(Request::decode(99, &[1]), Err(MessageError::UnknownMethod(99)));
        assert_eq!(Request::decode(METHOD_PING, &[2]), Err(MessageError::UnknownFormat(2)));
        assert_eq!(Response::decode(&[2, 3]), Err(MessageError::UnknownFormat(2)));
        assert_eq!(Response::decode(&[1, 16]), Err(MessageError::UnknownResponse(16)));
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
            kind in 0..=RESPONSE_BUCKETS + 1,
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
