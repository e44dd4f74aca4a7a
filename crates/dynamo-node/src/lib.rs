//! The dynamo node runtime: everything a running node does, above storage
//! and below the command line. A request flows through the modules in this
//! order:
//!
//! - [`server`]: accepts connections, runs the HTTP service, shuts down
//!   gracefully.
//! - [`http`]: the client API of SPEC section 4: routing, parsing, status
//!   codes, `multipart/mixed` siblings.
//! - [`coordinator`]: resolves N/R/W/DW, builds the preference list, counts
//!   answers into a quorum (paper section 4.5).
//! - [`replica`]: this node's copy of its keys; every change is a
//!   read-merge-write of a versioned object under the key's lock.
//! - [`buckets`]: per-bucket props, persisted.
//!
//! Alongside: [`config`] (settings from file and flags), [`metrics`]
//! (Prometheus), [`clock`] (the injected wall clock).

pub mod buckets;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod http;
pub mod metrics;
pub mod replica;
pub mod server;
