//! How the coordinator reaches other replicas: a [`Peers`] sends one
//! [`Request`] to one node and returns its [`Response`]. The real
//! implementation speaks the authenticated RPC protocol over TCP
//! ([`RpcPeers`]); the simulation plugs in the same type over turmoil's
//! network. The coordinator never calls its own node through here: local
//! replica operations are direct calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::NodeId;
use dynamo_rpc::{RpcClient, Transport};

use crate::cluster::Cluster;
use crate::failure_detector::{FailureDetector, bypasses_down_check};

/// A boxed future, so [`Peers`] stays object-safe.
pub type PeerFuture<'a> = Pin<Box<dyn Future<Output = Result<Response, String>> + Send + 'a>>;

/// Sends requests to other nodes.
pub trait Peers: Send + Sync + 'static {
    /// Sends `request` to `node`, waiting at most `timeout`. The error is a
    /// human-readable reason (unreachable, timeout, refused...), reported in
    /// quorum diagnostics.
    fn call<'a>(&'a self, node: &'a NodeId, request: Request, timeout: Duration) -> PeerFuture<'a>;

    /// Sends `request` to the RPC listener at `addr`, whoever it is: a seed
    /// known only by address, or a cluster to join. Not watched by the
    /// failure detector (the address may be no member). The default
    /// refuses: a transport that has no addresses cannot do it.
    fn call_addr<'a>(&'a self, addr: &'a str, request: Request, timeout: Duration) -> PeerFuture<'a> {
        let _ = (request, timeout);
        Box::pin(async move { Err(format!("cannot call {addr}: these peers are reached by node id only")) })
    }
}

/// [`Peers`] over the RPC protocol. Every call's outcome feeds the failure
/// detector, and a call to a peer it marks down fails at once (except the
/// detector's own probes).
pub struct RpcPeers<T: Transport> {
    client: RpcClient<T>,
    cluster: Cluster,
    detector: Arc<FailureDetector>,
}

impl<T: Transport> RpcPeers<T> {
    /// Peers of `cluster`, reached through `client`, watched by `detector`.
    pub fn new(client: RpcClient<T>, cluster: Cluster, detector: Arc<FailureDetector>) -> Self {
        Self { client, cluster, detector }
    }
}

impl<T: Transport> Peers for RpcPeers<T> {
    fn call<'a>(&'a self, node: &'a NodeId, request: Request, timeout: Duration) -> PeerFuture<'a> {
        Box::pin(async move {
            let addr = self.cluster.rpc_addr(node).ok_or_else(|| format!("{node} is not a member"))?;
            if !bypasses_down_check(&request) && !self.detector.is_up(node) {
                return Err(self.detector.down_reason(node));
            }
            let method = request.method();
            let body = Bytes::from(request.encode());
            let result = self.client.call(&addr, method, body, timeout).await;
            self.detector.record_rpc(node, &result);
            let reply = result.map_err(|error| error.to_string())?;
            Response::decode(&reply).map_err(|error| format!("unreadable reply from {node}: {error}"))
        })
    }

    fn call_addr<'a>(&'a self, addr: &'a str, request: Request, timeout: Duration) -> PeerFuture<'a> {
        Box::pin(async move {
            let method = request.method();
            let body = Bytes::from(request.encode());
            let reply = self.client.call(addr, method, body, timeout).await.map_err(|error| error.to_string())?;
            Response::decode(&reply).map_err(|error| format!("unreadable reply from {addr}: {error}"))
        })
    }
}
