//! Delivering hints (paper section 4.6): a background task offers the hints
//! this node holds to their owners once the failure detector says they are
//! reachable, and removes each only after its owner acknowledged it (a
//! durable write there). A failed delivery leaves the hint for the next
//! round, so a hint outlives crashes of either side.
//!
//! **After a ring change** a hint's owner may no longer replicate the key
//! (its partition moved away, or the owner left or was removed). The hint
//! may be one of the W copies its write was acknowledged with, so dropping
//! it, or handing it to a node that will purge it, could lose the write.
//! Such a hint is delivered instead to every current replica of the key
//! (both rings' while the partition moves), and removed only once all of
//! them acknowledged it durably.
//!
//! Delivery is paced: batches of [`DELIVERY_BATCH`] hints, at most
//! [`DELIVERY_CONCURRENCY`] in flight per owner, one owner at a time, so
//! catching a returning node up does not starve client requests; while
//! admission control has lowered the background budget
//! (`crate::admission`), each batch is followed by a rest in proportion.

use std::sync::Arc;
use std::time::Duration;

use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::NodeId;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::clock::WallClock;
use crate::cluster::nodes_of;
use crate::hints::Hint;
use crate::peers::Peers;
use crate::replica::Replica;
use crate::services::NodeServices;

/// Hints read from storage at a time.
pub const DELIVERY_BATCH: usize = 64;
/// Hints in flight to one owner at a time.
pub const DELIVERY_CONCURRENCY: usize = 16;
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `hint` durably to every node of `targets` (this node's own
/// replica directly); `Written { durable: true }` only when all of them
/// acknowledged it so.
async fn deliver(
    peers: &dyn Peers,
    replica: &Replica,
    local: &NodeId,
    targets: &[NodeId],
    hint: &Hint,
) -> Result<Response, String> {
    for target in targets {
        let request =
            Request::Write { key: hint.key.clone(), object: hint.object.clone(), mode: hint.mode, durable: true };
        let outcome = if target == local {
            replica.serve(request).await
        } else {
            peers.call(target, request, DELIVERY_TIMEOUT).await
        };
        match outcome {
            Ok(Response::Written { durable: true }) => {}
            Ok(other) => return Ok(other),
            Err(reason) => return Err(format!("{target}: {reason}")),
        }
    }
    Ok(Response::Written { durable: true })
}

/// What one delivery round did for one owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryRound {
    /// Hints acknowledged by the owner and removed.
    pub delivered: u64,
    /// Hints that failed (kept for the next round).
    pub failed: u64,
}

/// Delivers hints, forever (the task is dropped with the node).
pub struct HintDelivery {
    /// The hints held here, how and whether owners are reached, the
    /// members, the local replica (a re-routed hint may belong here) and
    /// the bucket props (a key's n).
    services: NodeServices,
    wall: Arc<dyn WallClock>,
    /// Hints older than this are dropped, not delivered (the tombstone
    /// grace period; see [`crate::tombstone_collector`]).
    max_age: Duration,
}

impl HintDelivery {
    /// Delivery of the hints in `services` to the members of the cluster;
    /// hints are dated by `wall` and dropped past `max_age`.
    pub fn new(services: NodeServices, wall: Arc<dyn WallClock>, max_age: Duration) -> Self {
        Self { services, wall, max_age }
    }

    /// Runs a round every `interval`.
    pub async fn run(self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            self.round().await;
        }
    }

    /// Offers every held hint to its owner, for the owners marked up.
    pub async fn round(&self) -> DeliveryRound {
        let mut total = DeliveryRound::default();
        if self.services.hints.is_empty() {
            return total;
        }
        // Owners in the ring are waited for until they are up; the hints of
        // owners no longer in it (left, removed) go to the keys' current
        // replicas right away.
        let view = self.services.cluster.view();
        let owners: Vec<NodeId> = view
            .state()
            .members()
            .map(|member| member.id.clone())
            .filter(|node| node != self.services.cluster.local())
            .filter(|node| view.ring().node(node).is_none() || self.services.detector.is_up(node))
            .collect();
        for owner in owners {
            let round = self.deliver_to(&owner).await;
            if round.delivered > 0 || round.failed > 0 {
                info!(%owner, delivered = round.delivered, failed = round.failed, "hinted handoff");
            }
            total.delivered += round.delivered;
            total.failed += round.failed;
        }
        total
    }

    /// Delivers `owner`'s hints batch by batch; stops at the first batch
    /// with a failure (the owner is probably gone again).
    async fn deliver_to(&self, owner: &NodeId) -> DeliveryRound {
        let mut round = DeliveryRound::default();
        let mut after = Vec::new();
        loop {
            let batch = match self.services.hints.batch(owner, &after, DELIVERY_BATCH) {
                Ok(batch) => batch,
                Err(error) => {
                    warn!(%owner, %error, "cannot read hints");
                    return round;
                }
            };
            let Some(last) = batch.last() else { return round };
            after = last.record_key.clone();
            let failed_before = round.failed;
            let started = tokio::time::Instant::now();
            self.deliver_batch(owner, batch, &mut round).await;
            // Admission control: at budget b, delivery runs a share b of
            // the time (a batch that took t is followed by t(1/b - 1) of
            // rest); at the full budget, back to back as before.
            let busy = started.elapsed();
            let rest = self.services.background.stretch(busy).saturating_sub(busy);
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
            }
            let in_ring = self.services.cluster.ring().node(owner).is_some();
            if round.failed > failed_before || (in_ring && !self.services.detector.is_up(owner)) {
                return round;
            }
        }
    }

    async fn deliver_batch(&self, owner: &NodeId, batch: Vec<Hint>, round: &mut DeliveryRound) {
        let mut in_flight = JoinSet::new();
        let max_age_ms = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        let oldest_kept_ms = self.wall.now_ms().saturating_sub(max_age_ms);
        for hint in batch {
            if hint.created_ms < oldest_kept_ms {
                warn!(%owner, bucket = hint.key.bucket(), age_ms = self.wall.now_ms().saturating_sub(hint.created_ms),
                      "dropping a hint older than the tombstone grace period; anti-entropy brings the owner up to date");
                if let Err(error) = self.services.hints.remove_expired(&hint) {
                    warn!(%owner, %error, "cannot drop an expired hint");
                }
                continue;
            }
            if in_flight.len() >= DELIVERY_CONCURRENCY
                && let Some(done) = in_flight.join_next().await
            {
                self.settle(owner, done, round);
            }
            let targets = self.targets(owner, &hint);
            let peers = self.services.peers.clone();
            let replica = self.services.replica.clone();
            let local = self.services.cluster.local().clone();
            in_flight.spawn(async move {
                let outcome = deliver(&*peers, &replica, &local, &targets, &hint).await;
                (hint, outcome)
            });
        }
        while let Some(done) = in_flight.join_next().await {
            self.settle(owner, done, round);
        }
    }

    /// Where `hint` goes: its owner while the owner replicates the key;
    /// otherwise every current replica of the key.
    fn targets(&self, owner: &NodeId, hint: &Hint) -> Vec<NodeId> {
        let n = match self.services.buckets.get(hint.key.bucket()) {
            Ok(props) => props.n,
            // Unknown props: the widest list a bucket can have, to be safe.
            Err(_) => dynamo_core::props::MAX_N,
        };
        let replicas = nodes_of(&self.services.cluster.write_lists(&hint.key, n));
        if replicas.contains(owner) { vec![owner.clone()] } else { replicas }
    }

    fn settle(
        &self,
        owner: &NodeId,
        done: Result<(Hint, Result<Response, String>), tokio::task::JoinError>,
        round: &mut DeliveryRound,
    ) {
        let Ok((hint, outcome)) = done else {
            round.failed += 1;
            return;
        };
        match outcome {
            Ok(Response::Written { durable: true }) => match self.services.hints.remove_delivered(&hint) {
                Ok(true) => round.delivered += 1,
                Ok(false) => debug!(%owner, "hint changed during delivery; delivering the newer one next round"),
                Err(error) => warn!(%owner, %error, "delivered hint could not be removed; it will be sent again"),
            },
            Ok(other) => {
                round.failed += 1;
                debug!(%owner, reply = ?other, "hint not taken");
            }
            Err(reason) => {
                round.failed += 1;
                debug!(%owner, %reason, "hint delivery failed");
            }
        }
    }
}
