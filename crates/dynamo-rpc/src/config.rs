//! Who this node is on the RPC network (name, cluster secret, nonce source)
//! and the limits that bound every queue. One [`RpcConfig`] serves both the
//! client and the server of a node, because a node has one identity.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::auth::{ClusterSecret, MAX_NODE_NAME_BYTES, NonceSource};
use crate::frame::MAX_MESSAGE_BYTES;

/// Bounds on queues, sizes and waits. Every one exists so that a slow,
/// broken or hostile peer costs bounded memory and time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Client: calls outstanding on one connection. Beyond it a call fails
    /// at once with `Overloaded` (backpressure to the coordinator) instead
    /// of queueing without bound.
    pub max_in_flight: usize,
    /// Server: requests of one connection handled concurrently. Beyond it
    /// the server stops reading that connection until a handler finishes,
    /// which pushes back on the client through TCP.
    pub max_concurrent_requests: usize,
    /// Server: connections open at once (authenticated or not); more are
    /// closed on accept.
    pub max_connections: usize,
    /// Largest request or response body, in bytes. Checked by the sender
    /// before sending and by the receiver while reassembling.
    pub max_message_bytes: usize,
    /// Messages queued for one connection's writer. Small: the writer drains
    /// it quickly, and a full queue means the peer is not reading.
    pub write_queue_messages: usize,
    /// Client: opening a connection plus the handshake, shared by all
    /// callers waiting for it (each caller still stops at its own timeout).
    pub connect_timeout: Duration,
    /// Server: time an unauthenticated connection may take to finish the
    /// handshake before it is closed.
    pub handshake_timeout: Duration,
    /// Server: how long shutdown waits for in-flight requests to answer.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 1024,
            max_concurrent_requests: 1024,
            max_connections: 1024,
            max_message_bytes: MAX_MESSAGE_BYTES,
            write_queue_messages: 256,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_in_flight", self.max_in_flight),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_connections", self.max_connections),
            ("max_message_bytes", self.max_message_bytes),
            ("write_queue_messages", self.write_queue_messages),
        ];
        match counts.into_iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(ConfigError::ZeroLimit(name)),
            None => Ok(()),
        }
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The node name is empty or too long for the handshake.
    #[error("rpc node name is {0} bytes; use 1 to {MAX_NODE_NAME_BYTES} bytes")]
    BadNodeName(usize),
    /// A count limit of zero would refuse or block everything.
    #[error("rpc limit {0} is 0; it must be at least 1")]
    ZeroLimit(&'static str),
}

/// A node's RPC identity and limits, for [`crate::RpcClient`] and
/// [`crate::serve`].
#[derive(Clone)]
pub struct RpcConfig {
    local_name: String,
    secret: ClusterSecret,
    nonces: Arc<dyn NonceSource>,
    limits: Limits,
}

impl RpcConfig {
    /// A node named `local_name` (told to peers in the handshake, and passed
    /// to handlers as the caller's identity) knowing `secret`, drawing
    /// handshake nonces from `nonces` ([`crate::OsNonce`] in production, a
    /// seeded source in the simulation), with default [`Limits`].
    pub fn new(
        local_name: impl Into<String>,
        secret: ClusterSecret,
        nonces: Arc<dyn NonceSource>,
    ) -> Result<Self, ConfigError> {
        let local_name = local_name.into();
        if local_name.is_empty() || local_name.len() > MAX_NODE_NAME_BYTES {
            return Err(ConfigError::BadNodeName(local_name.len()));
        }
        Ok(RpcConfig { local_name, secret, nonces, limits: Limits::default() })
    }

    /// The same identity with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Result<Self, ConfigError> {
        limits.validate()?;
        self.limits = limits;
        Ok(self)
    }

    /// This node's name.
    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    pub(crate) fn nonce(&self) -> [u8; crate::auth::NONCE_BYTES] {
        self.nonces.nonce()
    }
}

/// Never prints the secret.
impl fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpcConfig")
            .field("local_name", &self.local_name)
            .field("secret", &self.secret)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{CountingNonce, secret};

    #[test]
    fn node_name_must_fit_the_handshake() {
        let nonces = Arc::new(CountingNonce::default());
        assert_eq!(RpcConfig::new("", secret(), nonces.clone()).err(), Some(ConfigError::BadNodeName(0)));
        let long = "n".repeat(MAX_NODE_NAME_BYTES + 1);
        assert!(RpcConfig::new(long, secret(), nonces.clone()).is_err());
        assert!(RpcConfig::new("node-1", secret(), nonces).is_ok());
    }

    #[test]
    fn zero_limits_are_refused() {
        let config = RpcConfig::new("a", secret(), Arc::new(CountingNonce::default())).expect("valid");
        let limits = Limits { write_queue_messages: 0, ..Limits::default() };
        assert_eq!(config.with_limits(limits).err(), Some(ConfigError::ZeroLimit("write_queue_messages")));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let config = RpcConfig::new("a", secret(), Arc::new(CountingNonce::default())).expect("valid");
        let shown = format!("{config:?}");
        assert!(shown.contains("\"a\"") && !shown.contains("0123456789abcdef"), "{shown}");
    }
}
