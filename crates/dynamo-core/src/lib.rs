//! Pure logic of dynamo: everything that decides *what* the store does, with
//! no I/O, no clocks and no randomness (those are passed in), so that it can be
//! property-tested and run inside a deterministic simulation.
//!
//! Map of the modules, in the order a request meets them:
//! - [`keys`]: bucket and key validation, limits, the MD5 ring position of a
//!   key, its partition, and the storage key layout (paper section 4.2).
//! - [`props`]: per-bucket replication settings (N, R, W, DW) and the conflict
//!   mode (`siblings` or `lww`), with their validation (paper section 4.5).
//! - [`hlc`]: hybrid logical clock timestamps, monotonic per node even when the
//!   wall clock jumps back; they order last-write-wins buckets.
//! - [`version`]: actors, dots and version vectors (paper section 4.4).
//! - [`object`]: the versioned object stored for one key: a dotted version
//!   vector set (siblings plus causal context), with put, merge and LWW.
//! - [`context`]: the opaque, checksummed client context (`X-Dynamo-Context`).
//! - [`codec`]: the versioned binary encoding of objects for storage and wire,
//!   and the primitive fields (text, flags, clamped counts, a bounds-checked
//!   reader) that every hand codec of the crate shares.
//! - [`listing`]: paged key listing by coverage: the continuation token
//!   and the merge of several replicas' pages of a partition (issue 14).
//! - [`ring`]: partition ownership (strategy 3) and preference lists (paper sections 4.2, 4.3).
//! - [`membership`]: the gossiped cluster state (members, their status, the
//!   committed ring and its epoch): its data model and merge, the plan of
//!   the next ring, its encoding, and gossip peer choice, one file each
//!   (paper section 4.8).
//! - [`transition`]: a ring change in progress: which nodes copy which
//!   partitions before the new ring alone is trusted (paper section 4.9).
//! - [`routing`]: the replica lists reads and writes of a partition go to,
//!   by the committed ring and the ring change in progress; shared by the
//!   nodes and the partition-aware client (paper section 6.4).
//! - [`quorum`]: counting W/DW acknowledgements and R replies, the targets of
//!   read repair, and the diagnostics of a `503` (paper sections 4.5 and 5).
//! - [`failure_detector`]: the pure rules of local failure detection: which
//!   peers to route around and probe, learned from this node's own calls
//!   (paper section 4.8.3). `dynamo-node`'s `failure_detector` is its I/O
//!   half: it feeds these rules and runs the probes.
//! - [`merkle`]: the per-partition Merkle trees of anti-entropy (paper
//!   section 4.7): incremental updates, top-down comparison, listing diffs.
//! - [`crdt`]: convergent data types (delta-state CRDTs): so far the
//!   PN-counter, with the laws every type obeys stated on its trait.
//! - [`admission`]: the feedback controller that sets how much of its
//!   rate background work may use from the foreground's p99 (paper
//!   section 6.5, issue 16).
//! - [`rng`]: the seeded SplitMix64 generator every reproducible choice
//!   uses (simulation, gossip peers, chaos schedule, benchmark keys).
//! - [`messages`]: node-to-node requests and responses behind one
//!   `Request` and one `Response` enum, and their versioned binary encoding,
//!   one file per family (replica reads and writes, forwarded coordination,
//!   bucket props, hints, Merkle exchange, membership, transfers). Their
//!   golden bytes are pinned by `tests/wire_format.rs`.

pub mod admission;
pub mod codec;
pub mod context;
pub mod crdt;
pub mod failure_detector;
pub mod hlc;
pub mod keys;
pub mod listing;
pub mod membership;
pub mod merkle;
pub mod messages;
pub mod object;
pub mod props;
pub mod quorum;
pub mod ring;
pub mod rng;
pub mod routing;
pub mod transition;
pub mod version;

#[cfg(test)]
mod testing;
