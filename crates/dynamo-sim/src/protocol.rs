//! How simulated clients reach the nodes: the client API (get and put,
//! paper section 4.1) carried over the same authenticated RPC as
//! node-to-node traffic, instead of HTTP. Client requests thus cross the
//! simulated network, with its partitions, losses and latency, and reach
//! the node's real [`Coordinator`], exactly as the HTTP front end calls it.
//!
//! Four extra RPC methods, served by [`SimHandler`] in front of the node's
//! own [`NodeHandler`] (which serves every other method unchanged):
//! - [`METHOD_CLIENT_GET`]: body `r u8 (0 = bucket default) | Read request`;
//!   answer a `Read` response (the reconciled object) or `Failed`.
//! - [`METHOD_CLIENT_PUT`]: body a `Coordinate` request (key, context,
//!   payload, w/dw options); answer `Coordinated(Ok(context))` or `Failed`.
//! - [`METHOD_CLIENT_COMMIT`]: an operator's `dynamo admin commit` on this
//!   node; empty body; answer `Pong` when a new ring was committed, or
//!   `Failed` with why not (nothing to commit, transfers pending...).
//! - [`METHOD_CLIENT_UPDATE`]: a data-type operation (issue 12, what
//!   `POST /buckets/{b}/datatypes/{k}` does); body a `CoordinateUpdate`
//!   request (key, operation, w/dw options); answer `Updated(Ok(value))`
//!   (the value at the acting replica) or `Failed`. A data-type read is a
//!   client get whose object holds the value
//!   ([`SimClient::get_value`]), as `GET /buckets/{b}/datatypes/{k}` is.
//!
//! All reuse the node-to-node message codec of
//! [`dynamo_core::messages`], so nothing here parses bytes by hand.
//!
//! The handler also witnesses one node-to-node method: every forwarded
//! data-type update (`CoordinateUpdate` from a peer) it receives is
//! recorded in the run's log before the node handles it, so the checks
//! know how many replicas may have applied each client update (see
//! [`crate::log::ForwardedUpdate`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynamo_core::crdt::value::{DataOp, DataValue};
use dynamo_core::hlc::Hlc;
use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{
    ForwardOptions, METHOD_COORDINATE, METHOD_COORDINATE_UPDATE, METHOD_READ, Request, Response,
};
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::version::VersionVector;
use dynamo_node::coordinator::{Coordinator, RequestOptions};
use dynamo_node::handler::NodeHandler;
use dynamo_node::membership::Membership;
use dynamo_rpc::{Handler, RpcClient, RpcConfig};

use crate::log::{ForwardedUpdate, SharedLog, now_ms};
use crate::transport::TurmoilTransport;

/// Client get (not a node-to-node method; see the module docs).
pub const METHOD_CLIENT_GET: u16 = 0x5101;
/// Client put.
pub const METHOD_CLIENT_PUT: u16 = 0x5102;
/// Operator commit of the membership plan.
pub const METHOD_CLIENT_COMMIT: u16 = 0x5103;
/// Client data-type update.
pub const METHOD_CLIENT_UPDATE: u16 = 0x5104;

/// The RPC handler of a simulated node: the client API plus everything
/// the node itself serves.
pub struct SimHandler {
    node: Arc<NodeHandler>,
    coordinator: Arc<Coordinator>,
    membership: Arc<Membership>,
    /// This node's index and the log that forwarded data-type updates go to.
    witness: Option<(usize, SharedLog)>,
}

impl SimHandler {
    /// Serves `coordinator` and `membership` to clients and operators, and
    /// `node` to peers.
    pub fn new(node: Arc<NodeHandler>, coordinator: Arc<Coordinator>, membership: Arc<Membership>) -> Self {
        Self { node, coordinator, membership, witness: None }
    }

    /// This handler, recording every forwarded data-type update that node
    /// `index` receives in `log`.
    pub fn witnessing(mut self, index: usize, log: SharedLog) -> Self {
        self.witness = Some((index, log));
        self
    }
}

impl Handler for SimHandler {
    fn handle(&self, peer: &str, method: u16, body: Bytes) -> impl Future<Output = Result<Bytes, String>> + Send {
        let node = self.node.clone();
        let coordinator = self.coordinator.clone();
        let membership = self.membership.clone();
        let peer = peer.to_string();
        if method == METHOD_COORDINATE_UPDATE
            && let Some((index, log)) = &self.witness
        {
            witness_forwarded_update(*index, &peer, &body, log);
        }
        async move {
            match method {
                METHOD_CLIENT_GET => Ok(Bytes::from(client_get(&coordinator, &body).await.encode())),
                METHOD_CLIENT_PUT => Ok(Bytes::from(client_put(&coordinator, &body).await.encode())),
                METHOD_CLIENT_COMMIT => Ok(Bytes::from(client_commit(&membership).await.encode())),
                METHOD_CLIENT_UPDATE => Ok(Bytes::from(client_update(&coordinator, &body).await.encode())),
                _ => node.handle(&peer, method, body).await,
            }
        }
    }
}

/// Records a forwarded data-type update that node `index` received from
/// `peer` (other methods, and bodies that do not decode, are the node's
/// business).
fn witness_forwarded_update(index: usize, peer: &str, body: &[u8], log: &SharedLog) {
    let Ok(Request::CoordinateUpdate { key, op, .. }) = Request::decode(METHOD_COORDINATE_UPDATE, body) else {
        return;
    };
    let at_ms = now_ms();
    let mut log = log.lock();
    let what = match &op {
        DataOp::Increment { amount, id: None } => format!("increment {amount:+}"),
        DataOp::Increment { amount, id: Some(id) } => {
            format!("increment {amount:+} id {:02x}{:02x}..", id.0[0], id.0[1])
        }
        DataOp::Set { updates, .. } => format!("set operation of {} changes", updates.len()),
        DataOp::Map { ops, .. } => format!("map operation of {} changes", ops.len()),
    };
    log.event(
        at_ms,
        format!("n{index} received a forwarded {what} of {}/{} from {peer}", key.bucket(), key_text(&key)),
    );
    log.forwarded_updates.push(ForwardedUpdate { node: index, from: peer.to_string(), key, op, at_ms });
}

fn key_text(key: &ObjectKey) -> String {
    String::from_utf8_lossy(key.key()).into_owned()
}

async fn client_get(coordinator: &Coordinator, body: &[u8]) -> Response {
    let Some((&r, request)) = body.split_first() else {
        return failed("empty client get");
    };
    let key = match Request::decode(METHOD_READ, request) {
        Ok(Request::Read { key }) => key,
        Ok(_) => return failed("client get: not a read"),
        Err(error) => return failed(&format!("client get: {error}")),
    };
    let options = RequestOptions { r: (r > 0).then(|| r.to_string()), ..RequestOptions::default() };
    match coordinator.get(&key, &options).await {
        Ok(object) => Response::Read { object },
        Err(error) => failed(&error.to_string()),
    }
}

async fn client_put(coordinator: &Coordinator, body: &[u8]) -> Response {
    let (key, context, payload, options) = match Request::decode(METHOD_COORDINATE, body) {
        Ok(Request::Coordinate { key, context, payload, options }) => (key, context, payload, options),
        Ok(_) => return failed("client put: not a put"),
        Err(error) => return failed(&format!("client put: {error}")),
    };
    let options = RequestOptions::from(options);
    match coordinator.put(&key, &context, payload, &options).await {
        Ok(context) => Response::Coordinated(Ok(context)),
        Err(error) => failed(&error.to_string()),
    }
}

async fn client_update(coordinator: &Coordinator, body: &[u8]) -> Response {
    let (key, op, options) = match Request::decode(METHOD_COORDINATE_UPDATE, body) {
        Ok(Request::CoordinateUpdate { key, op, options }) => (key, op, options),
        Ok(_) => return failed("client update: not an update"),
        Err(error) => return failed(&format!("client update: {error}")),
    };
    match coordinator.update(&key, &op, &RequestOptions::from(options)).await {
        Ok(value) => Response::Updated(Ok(value)),
        Err(error) => failed(&error.to_string()),
    }
}

async fn client_commit(membership: &Membership) -> Response {
    match membership.commit().await {
        Ok(report) if report.committed => Response::Pong,
        Ok(report) => failed(&format!("not committed: {}", report.note)),
        Err(error) => failed(&error.to_string()),
    }
}

fn failed(reason: &str) -> Response {
    Response::Failed { reason: reason.to_string() }
}

/// Quorum options of one client write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Acknowledgements to wait for.
    pub w: u8,
    /// Of which durable.
    pub dw: u8,
}

/// A simulated client: calls the client API of any node over the
/// simulated network. Every failure is a string (the outcome of a failed
/// write is unknown: it may or may not have been applied).
pub struct SimClient {
    rpc: RpcClient<TurmoilTransport>,
    timeout: Duration,
}

impl SimClient {
    /// A client authenticating as `rpc_config`'s name, giving every call
    /// `timeout`.
    pub fn new(rpc_config: RpcConfig, timeout: Duration) -> Self {
        Self { rpc: RpcClient::new(TurmoilTransport, rpc_config), timeout }
    }

    /// Reads `key` through the node at `addr`, waiting for `r` replies
    /// (`None`: the bucket's default).
    pub async fn get(&self, addr: &str, key: &ObjectKey, r: Option<u8>) -> Result<VersionedObject, String> {
        let mut body = vec![r.unwrap_or(0)];
        body.extend(Request::Read { key: key.clone() }.encode());
        match self.call(addr, METHOD_CLIENT_GET, body).await? {
            Response::Read { object } => Ok(object),
            Response::Failed { reason } => Err(reason),
            _ => Err("unexpected reply to a client get".to_string()),
        }
    }

    /// Writes `data` over `context` (whose read saw versions up to `seen`)
    /// through the node at `addr`; returns the new context and the greatest
    /// timestamp it covers.
    pub async fn put(
        &self,
        addr: &str,
        key: &ObjectKey,
        context: &VersionVector,
        seen: Hlc,
        data: Bytes,
        options: WriteOptions,
    ) -> Result<(VersionVector, Hlc), String> {
        let request = Request::Coordinate {
            key: key.clone(),
            context: context.clone(),
            payload: Payload::Value { data, content_type: None, expires_ms: None },
            options: ForwardOptions {
                w: Some(options.w.to_string()),
                dw: Some(options.dw.to_string()),
                n: None,
                timeout_ms: None,
                seen_timestamp: seen.0,
                stamp: 0,
                deadline_ms: 0,
            },
        };
        match self.call(addr, METHOD_CLIENT_PUT, request.encode()).await? {
            Response::Coordinated(Ok(context)) => Ok(context),
            Response::Coordinated(Err(error)) => Err(format!("{} {}", error.status, error.body)),
            Response::Failed { reason } => Err(reason),
            _ => Err("unexpected reply to a client put".to_string()),
        }
    }

    /// Applies the data-type operation `op` to `key` through the node at
    /// `addr`; returns the value as the acting replica holds it after the
    /// operation.
    pub async fn update(
        &self,
        addr: &str,
        key: &ObjectKey,
        op: DataOp,
        options: WriteOptions,
    ) -> Result<DataValue, String> {
        let request = Request::CoordinateUpdate {
            key: key.clone(),
            op,
            options: ForwardOptions {
                w: Some(options.w.to_string()),
                dw: Some(options.dw.to_string()),
                ..ForwardOptions::default()
            },
        };
        match self.call(addr, METHOD_CLIENT_UPDATE, request.encode()).await? {
            Response::Updated(Ok(value)) => Ok(value),
            Response::Updated(Err(error)) => Err(format!("{} {}", error.status, error.body)),
            Response::Failed { reason } => Err(reason),
            _ => Err("unexpected reply to a client update".to_string()),
        }
    }

    /// Reads the data-type value of `key` through the node at `addr`,
    /// waiting for `r` replies. The outer error: the read failed. The
    /// inner one: the key holds something other than one data-type value
    /// (which no client of a data-type bucket ever writes). `None`: the
    /// key holds nothing yet.
    pub async fn get_value(
        &self,
        addr: &str,
        key: &ObjectKey,
        r: Option<u8>,
    ) -> Result<Result<Option<DataValue>, String>, String> {
        let object = self.get(addr, key, r).await?;
        Ok(object.datatype_value().map(Option::<&DataValue>::cloned).map_err(str::to_string))
    }

    /// Commits the membership plan through the node at `addr`.
    pub async fn commit(&self, addr: &str) -> Result<(), String> {
        match self.call(addr, METHOD_CLIENT_COMMIT, Vec::new()).await? {
            Response::Pong => Ok(()),
            Response::Failed { reason } => Err(reason),
            _ => Err("unexpected reply to a commit".to_string()),
        }
    }

    async fn call(&self, addr: &str, method: u16, body: Vec<u8>) -> Result<Response, String> {
        let reply = self.rpc.call(addr, method, Bytes::from(body), self.timeout).await.map_err(|e| e.to_string())?;
        Response::decode(&reply).map_err(|error| format!("unreadable reply: {error}"))
    }
}
