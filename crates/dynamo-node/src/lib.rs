//! The dynamo node runtime: everything a running node does, above storage
//! and below the command line. A request flows through the modules in this
//! order:
//!
//! - [`server`]: accepts connections, runs the HTTP service, shuts down
//!   gracefully.
//! - [`http`]: the client API of SPEC section 4: routing, parsing, status
//!   codes, `multipart/mixed` siblings.
//! - [`coordinator`]: resolves N/R/W/DW, takes the preference list from the
//!   ring, sends to the replicas and counts answers into a quorum (paper
//!   section 4.5), then repairs stale replicas (section 5).
//! - [`peers`]: how the coordinator reaches other nodes (RPC); [`handler`]:
//!   how this node serves them.
//! - [`replica`]: this node's copy of its keys; every change is a
//!   read-merge-write of a versioned object under the key's lock.
//! - [`buckets`]: per-bucket props, persisted.
//! - [`failure_detector`]: which peers this node routes around, learned
//!   from its own calls, and the probes that bring them back (paper section
//!   4.8.3).
//! - [`hints`] and [`hint_delivery`]: writes held for unreachable replicas
//!   (sloppy quorum) and their delivery when the replica is back (paper
//!   section 4.6).
//! - [`tombstones`]: when a delete's tombstone may be collected, and the
//!   collector that reaps it on every replica at once.
//! - [`membership`]: this node's cluster state (members, committed ring),
//!   persisted, and the operations that change it: join, plan, commit,
//!   leave, remove
//!   (paper section 4.8); [`gossip`] spreads it.
//! - [`transfers`]: after a commit, copies the partitions this node gained
//!   from their previous replicas, records each copy in the cluster state,
//!   deletes what moved away, and stops a node that finished leaving
//!   (paper section 4.9).
//!
//! In the background: [`anti_entropy`] keeps a Merkle tree per partition in
//! step with the replica and periodically compares it with another
//! replica's, repairing the keys that differ (paper section 4.7).
//!
//! Alongside: [`cluster`] (the live view of members and ring that every
//! part reads), [`config`] (settings from
//! file and flags), [`metrics`]
//! (Prometheus), [`clock`] (the injected wall clock).

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
pub mod peers;
pub mod replica;
pub mod server;
pub mod services;
pub mod tombstone_collector;
pub mod tombstone_index;
pub mod transfers;

/// Locks `mutex`. A holder that panicked leaves what the mutex guards
/// consistent in every use in this crate (counters, caches, progress), so
/// poisoning is ignored rather than spread.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
