//! The network, injected. Everything above this module talks to a
//! [`Transport`] (connect, bind) and a [`Listener`] (accept), never to
//! `tokio::net` directly, so that the deterministic simulation can run whole
//! clusters in one process over a simulated network (turmoil's `TcpStream`
//! and `TcpListener` fit these traits: they implement tokio's `AsyncRead` and
//! `AsyncWrite`). [`TcpTransport`] is the real thing.
//!
//! Addresses are `"host:port"` strings throughout: that is what operators
//! configure, what cluster metadata stores, and what both tokio and turmoil
//! resolve.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::debug;

/// A way to open and accept byte-stream connections.
///
/// Cloned into every task that connects; implementations are cheap handles.
pub trait Transport: Clone + Send + Sync + 'static {
    /// A connected, ordered, reliable byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What [`Transport::bind`] returns.
    type Listener: Listener<Stream = Self::Stream>;

    /// Opens a connection to `addr` (`"host:port"`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Listens on `addr` (`"host:port"`; port 0 picks a free port, see
    /// [`Listener::local_addr`]).
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
}

/// Accepts incoming connections.
pub trait Listener: Send + 'static {
    /// The accepted stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection; returns it and the peer's address (for
    /// logs only: peers are identified by the name they authenticate with).
    ///
    /// Must be cancel safe: the server polls it in a `select!` with its
    /// shutdown signal, and a cancelled accept must not lose a connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;

    /// The address actually bound (`"host:port"`), e.g. after binding port 0.
    fn local_addr(&self) -> io::Result<String>;
}

/// Real TCP, through tokio. Every stream gets `TCP_NODELAY`: RPC messages are
/// small and latency-bound, and the writer already batches what is queued.
#[derive(Clone, Debug, Default)]
pub struct TcpTransport {
    /// Local IP that outgoing connections bind to before connecting. The
    /// chaos test gives each node its own loopback IP (127.0.0.x) so that a
    /// firewall rule can partition one node; without this, every connection
    /// would come from 127.0.0.1. `None`: the OS chooses.
    bind_outgoing: Option<IpAddr>,
}

impl TcpTransport {
    /// Outgoing connections from an address chosen by the OS.
    pub fn new() -> Self {
        TcpTransport { bind_outgoing: None }
    }

    /// Outgoing connections from `ip` (any free port).
    pub fn with_outgoing_ip(ip: IpAddr) -> Self {
        TcpTransport { bind_outgoing: Some(ip) }
    }

    async fn connect_one(&self, target: SocketAddr) -> io::Result<TcpStream> {
        let stream = match self.bind_outgoing {
            None => TcpStream::connect(target).await?,
            Some(ip) => {
                let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(target).await?
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl Transport for TcpTransport {
    type Stream = TcpStream;
    type Listener = TcpRpcListener;

    /// Tries every address `addr` resolves to, in order; reports the last
    /// failure.
    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let mut last_error = None;
        for target in tokio::net::lookup_host(addr).await? {
            match self.connect_one(target).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr} resolves to no address"))))
    }

    /// Binds with `SO_REUSEADDR` (tokio's default on Unix), so a restarted
    /// node gets its port back while old connections sit in TIME_WAIT.
    async fn bind(&self, addr: &str) -> io::Result<TcpRpcListener> {
        Ok(TcpRpcListener { inner: TcpListener::bind(addr).await? })
    }
}

/// A bound TCP port accepting RPC connections (`TCP_NODELAY` on each).
///
/// A wrapper rather than `tokio::net::TcpListener` itself, whose inherent
/// `local_addr` (a `SocketAddr`) would shadow [`Listener::local_addr`].
#[derive(Debug)]
pub struct TcpRpcListener {
    inner: TcpListener,
}

/// Serves a listener bound elsewhere (e.g. bound early to learn its port).
impl From<TcpListener> for TcpRpcListener {
    fn from(inner: TcpListener) -> Self {
        TcpRpcListener { inner }
    }
}

impl Listener for TcpRpcListener {
    type Stream = TcpStream;

    /// Cancel safe, as tokio's `accept` is.
    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, peer) = self.inner.accept().await?;
        // Not fatal: it only fails on a socket that is already broken, and
        // the first read will report that to the connection's task. An
        // accept error would make the server back off instead.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "rpc: cannot set TCP_NODELAY");
        }
        Ok((stream, peer.to_string()))
    }

    fn local_addr(&self) -> io::Result<String> {
        self.inner.local_addr().map(|a| a.to_string())
    }
}
