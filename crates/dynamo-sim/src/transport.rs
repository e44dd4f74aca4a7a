//! The simulated network, plugged into the node's RPC layer: turmoil's TCP
//! implements tokio's `AsyncRead`/`AsyncWrite`, so the real RPC client and
//! server (handshake, framing, multiplexing, timeouts) run unchanged over
//! it. Host names (`node3:9000`) resolve through turmoil's DNS.
//!
//! What turmoil's TCP does under faults (and so what the node sees): a
//! message on a partitioned or randomly failed link is dropped, and since
//! there is no retransmission the stream stalls for good (a black hole,
//! detected only by timeouts); a *held* link delays messages and delivers
//! them on release (TCP retransmitting through a short outage); a crashed
//! host's streams are closed (peers see end of stream) and its port
//! refuses new connections until it restarts.

use std::io;

use dynamo_rpc::{Listener, Transport};
use turmoil::net::{TcpListener, TcpStream};

/// [`Transport`] over turmoil's simulated TCP. Must be used inside a
/// turmoil host or client.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilTransport;

impl Transport for TurmoilTransport {
    type Stream = TcpStream;
    type Listener = TurmoilListener;

    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        TcpStream::connect(addr).await
    }

    /// `addr` must be `0.0.0.0:PORT` (turmoil binds only the unspecified
    /// address or loopback).
    async fn bind(&self, addr: &str) -> io::Result<TurmoilListener> {
        Ok(TurmoilListener { inner: TcpListener::bind(addr).await? })
    }
}

/// A bound simulated port.
pub struct TurmoilListener {
    inner: TcpListener,
}

impl Listener for TurmoilListener {
    type Stream = TcpStream;

    /// Cancel safe: turmoil takes a pending connection off its queue and
    /// acknowledges it without awaiting in between.
    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, peer) = self.inner.accept().await?;
        Ok((stream, peer.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        self.inner.local_addr().map(|addr| addr.to_string())
    }
}
