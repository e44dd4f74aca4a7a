//! What can go wrong with a call, typed so that the coordinator can tell a
//! down peer (connect), a misconfigured one (auth, protocol), a slow one
//! (timeout), a busy one (overloaded) and a failed operation (remote) apart,
//! and report it to the operator in the quorum diagnostics.
//!
//! Errors are `Clone` because one connection failure is delivered to every
//! call waiting on that connection.

use std::io;
use std::sync::Arc;

use thiserror::Error;

/// Why a call failed. Every variant names the peer address.
#[derive(Clone, Debug, Error)]
pub enum RpcError {
    /// The TCP (or simulated) connection could not be opened.
    #[error("rpc: cannot connect to {addr}: {source} (is the node running, and is its RPC address right?)")]
    Connect {
        /// The peer address.
        addr: String,
        /// What the transport said.
        source: Arc<io::Error>,
    },
    /// The peer did not prove it knows the cluster secret, or refused our
    /// proof. Nothing but the hello was sent to it.
    #[error("rpc: authentication with {addr} failed: {reason} (do both nodes use the same cluster secret?)")]
    Auth {
        /// The peer address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// No answer within the call's timeout (which covers connecting, the
    /// handshake, sending and waiting). The request may still run remotely.
    #[error(
        "rpc: call to {addr} timed out after {ms} ms (peer slow, overloaded or unreachable; retry later or raise the timeout)"
    )]
    Timeout {
        /// The peer address.
        addr: String,
        /// The timeout that elapsed.
        ms: u64,
    },
    /// Too many calls already outstanding on the connection to this peer;
    /// refused at once instead of queueing without bound.
    #[error("rpc: {in_flight} calls already in flight to {addr}, the limit; back off and retry")]
    Overloaded {
        /// The peer address.
        addr: String,
        /// Calls outstanding when this one was refused.
        in_flight: usize,
    },
    /// The peer ran the call and its handler returned an error.
    #[error("rpc: {addr} answered with an error: {message}")]
    Remote {
        /// The peer address.
        addr: String,
        /// The handler's message.
        message: String,
    },
    /// The peer broke the wire protocol (or speaks another version); the
    /// connection was dropped.
    #[error("rpc: protocol error with {addr}: {detail} (are both nodes running compatible versions?)")]
    Protocol {
        /// The peer address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// The connection closed before the answer arrived. The next call
    /// reconnects.
    #[error("rpc: connection to {addr} closed: {reason}; the next call reconnects")]
    Closed {
        /// The peer address.
        addr: String,
        /// Why it closed.
        reason: String,
    },
    /// The request body is above the message limit; nothing was sent.
    #[error(
        "rpc: message of {bytes} bytes for {addr} exceeds the limit of {max_bytes} bytes; send it in smaller parts"
    )]
    TooLarge {
        /// The peer address.
        addr: String,
        /// Size of the refused body.
        bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
}

impl RpcError {
    /// The peer address the failed call was for.
    pub fn addr(&self) -> &str {
        match self {
            RpcError::Connect { addr, .. }
            | RpcError::Auth { addr, .. }
            | RpcError::Timeout { addr, .. }
            | RpcError::Overloaded { addr, .. }
            | RpcError::Remote { addr, .. }
            | RpcError::Protocol { addr, .. }
            | RpcError::Closed { addr, .. }
            | RpcError::TooLarge { addr, .. } => addr,
        }
    }

    pub(crate) fn closed(addr: &str, reason: impl Into<String>) -> Self {
        RpcError::Closed { addr: addr.to_owned(), reason: reason.into() }
    }

    pub(crate) fn protocol(addr: &str, detail: impl ToString) -> Self {
        RpcError::Protocol { addr: addr.to_owned(), detail: detail.to_string() }
    }

    pub(crate) fn connect(addr: &str, source: io::Error) -> Self {
        RpcError::Connect { addr: addr.to_owned(), source: Arc::new(source) }
    }
}
