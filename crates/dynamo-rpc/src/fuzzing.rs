//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs, not
//! part of the API). The handshake runs over a [`FrameReader`], which is
//! private to the crate; these wrappers start it on any byte stream, so a
//! fuzz target can drive exactly the code a node runs on a fresh connection
//! with an in-memory duplex standing in for the network. They add no logic.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{self, HandshakeError};
use crate::config::RpcConfig;
use crate::conn::FrameReader;

/// The server side of the handshake on `stream`, as [`crate::serve`] runs it
/// on an accepted connection (without its timeout): the authenticated
/// client's name, or why it was refused.
pub async fn server_handshake<S>(stream: S, config: &RpcConfig) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    auth::server_handshake(&mut FrameReader::new(stream), config).await
}

/// The client side of the handshake on `stream`, as [`crate::RpcClient`]
/// runs it on a new connection: the authenticated server's name, or why it
/// was refused.
pub async fn client_handshake<S>(stream: S, config: &RpcConfig) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    auth::client_handshake(&mut FrameReader::new(stream), config).await
}
