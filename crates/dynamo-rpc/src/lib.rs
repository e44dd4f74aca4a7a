//! Node-to-node RPC of dynamo: how one node asks another to store, read or
//! repair a replica (paper section 4.5; SPEC sections 2 and 3).
//!
//! A node calls a peer with `client.call(addr, method, body, timeout)`; the
//! peer answers through its [`Handler`]. Bodies are opaque bytes and methods
//! are numbers: what they mean belongs to the node crate, not to the wire.
//!
//! Map of the modules, in the order a call meets them:
//! - [`transport`]: the network, injected: real TCP ([`TcpTransport`]) in
//!   production, a simulated network in the deterministic simulation.
//! - [`client`]: one multiplexed connection per peer, shared by concurrent
//!   callers, with request ids, a bound on calls in flight and a timeout on
//!   every call.
//! - [`auth`]: the handshake; both sides prove they know the cluster secret
//!   (HMAC-SHA256 challenge-response) before anything else is exchanged.
//! - [`frame`]: the versioned wire format: length-prefixed frames, large
//!   bodies chunked, every size bounded. Pure, unit-tested and fuzzable.
//! - [`server`]: accept, authenticate, run each request through the
//!   [`Handler`] concurrently (bounded), answer; graceful shutdown.
//! - [`config`]: the node's RPC identity and the [`Limits`] on every queue.
//! - [`error`]: what a failed call reports, naming the peer.
//! - `fuzzing` (hidden): the handshake on a plain byte stream, for the fuzz
//!   targets in `fuzz/`.
//!
//! Determinism, for the simulation: time comes only from tokio's timer
//! (simulated there), randomness only from the injected [`NonceSource`],
//! every `select!` polls its branches in a fixed order (`biased`), and no
//! behaviour depends on hash-map iteration order. A run with a seeded nonce
//! source replays exactly.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod config;
mod conn;
pub mod error;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod server;
pub mod transport;

pub use auth::{ClusterSecret, NonceSource, OsNonce, PROTOCOL_VERSION};
pub use client::RpcClient;
pub use config::{ConfigError, Limits, RpcConfig};
pub use error::RpcError;
pub use server::{Handler, serve};
pub use transport::{Listener, TcpRpcListener, TcpTransport, Transport};
