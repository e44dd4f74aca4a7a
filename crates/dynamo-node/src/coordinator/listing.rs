//! Listing (issue 14; beyond the paper): the buckets of the cluster, and a
//! bucket's keys page by page by a **coverage plan**, as riak_core does.
//!
//! **Keys.** A page walks the ring's partitions in order from where the
//! client's continuation token says it stopped ([`dynamo_core::listing`]).
//! For each partition it plans its coverage: the partition's read list
//! ([`crate::cluster::ClusterView::read_list`], the same replicas a get
//! reads, so a partition still moving in a ring change is read where its
//! data already is), this node first when it is one of them (no network
//! hop), then the replicas the failure detector believes up. It asks
//! `N − W + 1` of them (2 of 3 by default) for their live keys after the
//! resume point ([`Request::ListKeys`]), trying the next replica in the
//! list for each one that fails or times out, and merges the answers
//! ([`merge_replica_pages`]): N−W+1 replicas overlap every write quorum,
//! so a key acknowledged to the client is listed even when the one
//! replica that missed its write is among those asked. With fewer
//! replicas reachable it lists from those that answered (a key only the
//! unreachable ones hold may then be missing); with none, the page fails
//! with `503`.
//!
//! A page holds at most `limit` keys and [`PAGE_KEY_BYTES`] of them, and
//! answers after [`PAGE_TIME_BUDGET`] with what it has (possibly nothing,
//! with a continuation): a bucket sparse over many partitions costs a few
//! requests, never an unbounded one.
//!
//! **Pacing.** Listing is background-class work (SPEC section 3, paper
//! section 6.5): each replica call reads at most one page's worth of
//! records in bounded chunks, the coordinator pauses [`PARTITION_PAUSE`]
//! between two partitions of a page, and every listing this node serves
//! shares one [`crate::pacer::Pacer`]: at most `listing_max_keys_per_sec` keys per
//! second in all, however many clients list at once. Unpaced, a listing
//! gathered about 240,000 keys/s on two cores and multiplied the
//! foreground's p99 by five (docs/benchmarks.md); the cap keeps a listing
//! that runs back to back from taking the machine.
//!
//! **Buckets.** Every member is asked which buckets it stores live keys
//! of ([`Request::ListBuckets`]); the answer is their union with the
//! buckets that have props (props are stored on every member). It needs,
//! for each partition, one replica that answered; otherwise `503`.

use std::collections::BTreeSet;
use std::time::Duration;

use dynamo_core::keys::{MAX_KEY_LEN, validate_bucket};
use dynamo_core::listing::{
    MAX_PAGE_KEYS, MergedPage, PAGE_KEY_BYTES, Position, ReplicaPage, decode_token, encode_token, merge_replica_pages,
};
use dynamo_core::messages::{Request, Response};
use dynamo_core::ring::NodeId;
use tokio::time::Instant;

use super::errors::{QuorumFailure, ReplicaOutcome, failed, unexpected};
use super::{Coordinator, CoordinatorError};

/// Pause between the scans of two partitions in one page: listing yields
/// to foreground work between bounded bursts of reads.
pub const PARTITION_PAUSE: Duration = Duration::from_millis(2);
/// A page answers with what it has once its walk has taken this long.
pub const PAGE_TIME_BUDGET: Duration = Duration::from_secs(5);
/// Longest one replica call of a listing may take.
const LIST_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One page of a bucket's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, in listing order (partition, then key).
    pub keys: Vec<Vec<u8>>,
    /// The token to resume after this page; `None` when the pass is over.
    pub continuation: Option<String>,
}

/// The buckets of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketListing {
    /// Buckets with live keys or props, in name order.
    pub buckets: Vec<String>,
    /// False when a node stopped before looking at all its keys (too many
    /// buckets or tombstones): buckets may be missing.
    pub complete: bool,
}

impl Coordinator {
    /// One page of `bucket`'s live keys: at most `limit` (1 to
    /// [`MAX_PAGE_KEYS`]), from the start or from `continuation`.
    pub async fn list_keys(
        &self,
        bucket: &str,
        limit: usize,
        continuation: Option<&str>,
    ) -> Result<KeyPage, CoordinatorError> {
        validate_bucket(bucket).map_err(|error| CoordinatorError::BadRequest(error.to_string()))?;
        assert!((1..=MAX_PAGE_KEYS).contains(&limit), "the front end bounds the limit: {limit}");
        let props = self.props(bucket)?;
        // N−W+1 replicas overlap every write quorum.
        let wanted = usize::from(props.n.saturating_sub(props.w).saturating_add(1)).max(1);
        let partitions = self.services.cluster.ring().partitions();
        let mut position = match continuation {
            None => Position::start(),
            Some(text) => decode_token(text, bucket, partitions)
                .map_err(|error| CoordinatorError::BadRequest(error.to_string()))?,
        };
        let started = Instant::now();
        let (mut keys, mut bytes) = (Vec::new(), 0usize);
        loop {
            if position.partition >= partitions {
                return Ok(KeyPage { keys, continuation: None });
            }
            let full = keys.len() == limit || PAGE_KEY_BYTES - bytes < MAX_KEY_LEN;
            if full || started.elapsed() >= PAGE_TIME_BUDGET {
                return Ok(KeyPage { keys, continuation: Some(encode_token(bucket, partitions, &position)) });
            }
            let room = (limit - keys.len(), PAGE_KEY_BYTES - bytes);
            let merged = self.list_partition(bucket, &position, props.n, wanted, room).await?;
            // A call that found nothing still scanned: it pays for one key.
            self.listing_pacer.pay(merged.keys.len().max(1)).await;
            bytes += merged.keys.iter().map(Vec::len).sum::<usize>();
            keys.extend(merged.keys);
            position = match merged.resume_after {
                Some(after) => Position { partition: position.partition, after: Some(after) },
                None => {
                    tokio::time::sleep(PARTITION_PAUSE).await;
                    Position { partition: position.partition + 1, after: None }
                }
            };
        }
    }

    /// One merged page of the partition at `position`, from up to `wanted`
    /// of its `n` read replicas, within `room` (keys, bytes).
    async fn list_partition(
        &self,
        bucket: &str,
        position: &Position,
        n: u8,
        wanted: usize,
        room: (usize, usize),
    ) -> Result<MergedPage, CoordinatorError> {
        let replicas = self.coverage_order(self.services.cluster.view().read_list(position.partition, n));
        let wanted = wanted.min(replicas.len()).max(1);
        let request = Request::ListKeys {
            partition: position.partition,
            bucket: bucket.to_string(),
            after: position.after.clone(),
            // Both fit: limit <= MAX_PAGE_KEYS < 2^16, bytes <= PAGE_KEY_BYTES < 2^32.
            max_keys: u16::try_from(room.0).unwrap_or(u16::MAX),
            max_bytes: u32::try_from(room.1).unwrap_or(u32::MAX),
        };
        let (mut pages, mut outcomes) = (Vec::new(), Vec::new());
        let mut next = 0;
        // Waves: ask as many as are still wanted, then replace each that
        // failed by the next replica in the list.
        while pages.len() < wanted && next < replicas.len() {
            let end = (next + wanted - pages.len()).min(replicas.len());
            let wave = &replicas[next..end];
            next = end;
            let timeout = self.default_timeout.min(LIST_CALL_TIMEOUT);
            let mut answers = self.send_to_all(wave, &request, Instant::now() + timeout);
            while let Some((node, outcome)) = answers.recv().await {
                outcomes.push(match outcome {
                    Ok(Response::ListedKeys { keys, covered }) => {
                        pages.push(ReplicaPage { keys, covered });
                        ReplicaOutcome { node: node.to_string(), status: "ok", reason: None, hint_for: None }
                    }
                    Ok(Response::Failed { reason }) => failed(&node, reason),
                    Ok(other) => failed(&node, unexpected(&other)),
                    Err(reason) => failed(&node, reason),
                });
            }
        }
        if pages.is_empty() {
            return Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
                operation: "list keys",
                n,
                needed: 1,
                needed_durable: 0,
                answered: 0,
                replicas: outcomes,
                hint: format!(
                    "no replica of partition {} answered; retry with the same continuation when one is up",
                    position.partition
                ),
            })));
        }
        if pages.len() < wanted {
            tracing::debug!(
                partition = position.partition,
                answered = pages.len(),
                wanted,
                "listing a partition from fewer replicas than wanted"
            );
        }
        Ok(merge_replica_pages(&pages, room.0, room.1))
    }

    /// `replicas` in the order a coverage plan tries them: this node first
    /// (no network hop), then those believed up, in preference order.
    fn coverage_order(&self, mut replicas: Vec<NodeId>) -> Vec<NodeId> {
        let local = self.services.cluster.local();
        let detector = &self.services.detector;
        replicas.sort_by_key(|node| (node != local, !detector.is_up(node)));
        replicas
    }

    /// Every bucket that holds a live key on some member, or has props.
    pub async fn list_buckets(&self) -> Result<BucketListing, CoordinatorError> {
        let mut members = self.services.cluster.others();
        members.push(self.services.cluster.local().clone());
        let mut answers = self.send_to_all(&members, &Request::ListBuckets, Instant::now() + self.default_timeout);
        let (mut buckets, mut complete) = (BTreeSet::new(), true);
        let (mut answered, mut outcomes) = (BTreeSet::new(), Vec::new());
        while let Some((node, outcome)) = answers.recv().await {
            outcomes.push(match outcome {
                Ok(Response::Buckets { buckets: held, complete: whole }) => {
                    buckets.extend(held);
                    complete &= whole;
                    answered.insert(node.clone());
                    ReplicaOutcome { node: node.to_string(), status: "ok", reason: None, hint_for: None }
                }
                Ok(Response::Failed { reason }) => failed(&node, reason),
                Ok(other) => failed(&node, unexpected(&other)),
                Err(reason) => failed(&node, reason),
            });
        }
        let view = self.services.cluster.view();
        let n = self.services.buckets.defaults().n;
        if let Some(partition) = (0..view.ring().partitions())
            .find(|partition| view.read_list(*partition, n).iter().all(|node| !answered.contains(node)))
        {
            return Err(CoordinatorError::Unavailable(Box::new(QuorumFailure {
                operation: "list buckets",
                n,
                needed: 1,
                needed_durable: 0,
                answered: 0,
                replicas: outcomes,
                hint: format!(
                    "no replica of partition {partition} answered, so its buckets are unknown; retry when one is up"
                ),
            })));
        }
        let props = self.services.buckets.listing()?;
        buckets.extend(props.readable.into_iter().map(|(bucket, ..)| bucket));
        buckets.extend(props.unreadable);
        Ok(BucketListing { buckets: buckets.into_iter().collect(), complete })
    }
}
