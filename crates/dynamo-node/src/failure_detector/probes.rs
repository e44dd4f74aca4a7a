//! The probe loop of the failure detector: a peer marked down is pinged
//! every probe interval, and the answer (recorded by the RPC layer, like
//! the outcome of every call) marks it up again. Without probes a down
//! peer would stay down for routing until some other call happened to
//! reach it, and nothing calls a peer marked down.

use std::sync::Arc;
use std::time::Duration;

use dynamo_core::messages::{Request, Response};
use tracing::warn;

use super::FailureDetector;
use crate::peers::Peers;

/// How long a probe waits for its `Pong`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes every down peer when it is due, forever (the task is dropped
/// with the node). A probe is a `Ping`, the one request [`Peers`] sends to
/// a peer marked down; the RPC layer records its outcome in `detector`.
pub async fn run(detector: Arc<FailureDetector>, peers: Arc<dyn Peers>, interval: Duration) {
    let tick = (interval / 2).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        for node in detector.due_probes() {
            let peers = peers.clone();
            tokio::spawn(async move {
                if let Ok(response) = peers.call(&node, Request::Ping, PROBE_TIMEOUT).await
                    && response != Response::Pong
                {
                    warn!(%node, "probe answered with something other than Pong");
                }
            });
        }
    }
}
