//! The dynamo node runtime: everything a running node does, above storage
//! and below the command line. A client request flows down one module per
//! paper mechanism:
//!
//! - [`server`]: accepts connections, runs the front ends and the RPC
//!   listener, starts the background tasks, shuts down gracefully.
//! - **Front ends**: [`http`] (the client API of SPEC section 4 and the
//!   admin API; one folder per front end, with room beside it for the
//!   Redis protocol). A front end turns requests into [`coordinator`]
//!   calls and answers into status codes.
//! - [`coordinator`]: resolves N/R/W/DW, takes the **preference list** from
//!   the ring ([`cluster`], the live view over `dynamo_core::ring`'s
//!   **consistent hashing**, sections 4.2 and 4.3), sends to the replicas and counts answers into a
//!   **sloppy quorum** (paper sections 4.5, 4.6), then **read repair**
//!   (section 5), forwarding a write to a replica when this node is none.
//! - [`peers`]: how a node reaches the others (RPC); [`handler`]: how it
//!   serves them.
//! - [`replica`]: this node's copy of its keys; every change is a
//!   read-merge-write of a versioned object (**versioning**, section 4.4)
//!   under the key's lock. It keeps two indexes in step, under the same
//!   lock: [`merkle_index`] (one Merkle tree per partition) and
//!   [`tombstone_index`] (which keys are deleted, since when).
//! - Storage: the `dynamo-storage` crate, below.
//!
//! Shared by all of them: [`services`] bundles the handles of a running
//! node (replica, cluster view, peers, failure detector, bucket props,
//! hints) so background work needs no coordinator. [`buckets`]: per-bucket
//! props, persisted. [`failure_detector`]: which peers this node routes
//! around, learned from its own calls, and the probes that bring them back
//! (**failure detection**, section 4.8.3). [`hints`]: writes held for
//! unreachable replicas.
//!
//! In the background, each over [`services`]:
//! - [`hint_delivery`]: **hinted handoff**, delivering held writes when
//!   their replica is back (section 4.6).
//! - [`anti_entropy`]: **Merkle anti-entropy**, comparing trees with
//!   another replica and repairing the keys that differ (section 4.7).
//! - [`tombstone_collector`]: reaps a tombstone on every replica at once
//!   once all hold it and its grace period is over.
//! - [`membership`]: this node's cluster state (members, committed ring),
//!   persisted, and join, plan, commit, leave, remove (section 4.8);
//!   [`gossip`] spreads it.
//! - [`transfers`]: after a commit, copies the partitions this node gained,
//!   deletes what moved away, and stops a node that finished leaving
//!   (section 4.9).
//!
//! Alongside: [`config`] (settings from file and flags), [`metrics`]
//! (Prometheus), [`clock`] (the injected wall clock), [`pacer`] (a rate
//! shared by background work of one kind: key listings).
//!
//! **Layering.** No module imports a module that imports it back, directly
//! or through others: `tests/import_cycles.rs` checks it on the source, in
//! CI. A module uses only the floors below it.

mod accept;
pub mod admission;
pub mod anti_entropy;
pub mod buckets;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod failure_detector;
pub mod gossip;
pub mod handler;
pub mod hint_delivery;
pub mod hints;
pub mod http;
pub mod membership;
pub mod merkle_index;
pub mod metrics;
pub mod pacer;
pub mod peers;
pub mod replica;
pub mod resp;
pub mod series;
pub mod server;
pub mod services;
pub mod staleness;
pub mod tombstone_collector;
pub mod tombstone_index;
pub mod transfers;

/// Locks `mutex`. A holder that panicked leaves what the mutex guards
/// consistent in every use in this crate (counters, caches, progress), so
/// poisoning is ignored rather than spread.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
