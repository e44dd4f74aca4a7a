//! Deterministic simulation of whole dynamo clusters (SPEC section 5;
//! TigerBeetle's "one seed replays a failure exactly").
//!
//! Five real nodes (the production coordinator, replica, RPC client and
//! server, storage) run in one process on [turmoil]'s simulated network
//! and clock. Everything a node takes from the world is injected: the
//! network ([`transport`]), the wall clock and handshake nonces
//! ([`clock`]), storage (an in-memory engine that loses unsynced writes on
//! a crash), the actor id of each incarnation. A run is a function of its
//! seed.
//!
//! Map of the modules:
//! - [`harness`]: [`SimCluster`] builds the cluster, clients and fault
//!   schedule from a seed, runs the phases (chaos, heal, check) and
//!   returns a [`RunReport`].
//! - [`node`]: one simulated machine running a node, across crashes.
//! - [`protocol`]: the client API (get, put, data-type update) over the
//!   simulated network.
//! - [`workload`]: the clients: read-modify-write of set-valued keys,
//!   causal chains on last-write-wins keys, and the final checker.
//! - [`datatypes`]: the data-type clients (issue 12): increments of
//!   counters, adds and observed removes of sets.
//! - [`faults`]: the fault model and the injector.
//! - [`check`]: the invariants.
//! - [`log`]: the history and the trace.
//! - [`rng`]: SplitMix64, the only source of randomness.
//! - [`gossip_scale`]: apart from the turmoil runs, a pure simulator of
//!   membership gossip at 10 to 1,000 nodes (rounds until a change is
//!   everywhere) and of what a join moves.
//!
//! ## Fault model
//! Per seed: partitions between node pairs (dropping or holding
//! messages) and isolation of single nodes, each healing after a while;
//! node crashes as power losses (unsynced writes lost; at most two nodes
//! down at once), restarted with a fresh actor id; random message loss on
//! every link (in turmoil's TCP a lost segment stalls the connection until
//! timeouts replace it); random latency and slow links; a fixed clock skew
//! per node of up to ±8 s plus clock steps (mostly backwards). See
//! [`faults`].
//!
//! ## Invariants
//! After healing, restarting every node, and reading every key with R=N
//! until read repair has converged the replicas: every replica of a key
//! holds the same versions; no acknowledged write is lost (a `dw = 0`
//! write may be lost only when at least W nodes, its replicas or the
//! fallbacks that took hints for them, crashed after it was sent); on last-write-wins keys, no value that an acknowledged
//! write causally superseded survives; a counter ends between what its
//! acknowledged increments and what all that may have been applied make;
//! a set keeps every acknowledged add that no remove was sent for, holds
//! nothing never added, and an acknowledged remove took effect. See
//! [`check`].
//!
//! ## Replaying
//! Every failing run prints its seed and the command that replays it:
//! `DYNAMO_SIM_SEED=<seed> cargo test -p dynamo-sim --test simulation -- --nocapture`.
//! The same seed gives the same run, event for event: the determinism test
//! runs seeds twice and compares the traces. What it takes, besides
//! injecting clock, network, randomness and storage: a crash cuts the
//! node's links before tokio drops its tasks (tokio drops them in an order
//! that depends on process-wide task ids, so their FINs would go out in a
//! different order each run, see [`faults`]), and clients live until the
//! simulation is over (dropping an RPC client closes its connections in
//! `HashMap` order). Everything in the node and RPC crates that can wake
//! several tasks at once must wake them in a fixed order; tokio's `watch`
//! channel does not (it picks a random shard per waiter). CI runs a fixed set
//! of seeds; `DYNAMO_SIM_SEEDS=<count>` (with `DYNAMO_SIM_BASE=<first>`,
//! random when absent) runs many more. Failed runs write their trace to
//! `$TMPDIR/dynamo-sim-<seed>.trace`.
//!
//! [turmoil]: https://docs.rs/turmoil

#![warn(missing_docs)]

pub mod check;
pub mod clock;
pub mod datatypes;
pub mod faults;
pub mod gossip_scale;
pub mod harness;
pub mod log;
pub mod node;
pub mod protocol;
pub mod rng;
pub mod transport;
pub mod workload;

pub use clock::{SeededNonces, SimClock};
pub use harness::{RunReport, SimCluster, SimOptions, run_seed};
pub use transport::TurmoilTransport;
