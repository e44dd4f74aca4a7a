//! The read path (paper section 4.5's get, and section 5's read repair):
//! `Read` to every replica at once, the client answered with the merge of
//! the first R replies, then, in the background, the merged version sent to
//! every replica that was stale or missing it.

use std::time::Duration;

use dynamo_core::keys::ObjectKey;
use dynamo_core::messages::{Request, Response};
use dynamo_core::object::VersionedObject;
use dynamo_core::props::BucketProps;
use dynamo_core::quorum::{Progress, ReadQuorum};
use dynamo_core::ring::NodeId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::errors::unexpected;
use super::{Coordinator, CoordinatorError, Effective, RequestOptions};

/// How long after answering a read the coordinator keeps waiting for the
/// remaining replicas, to repair them.
const READ_REPAIR_WAIT: Duration = Duration::from_secs(2);

/// What a read answered, to judge its staleness once the other replicas
/// have replied.
struct ReadAnswer {
    /// The context of the version given to the client.
    context: dynamo_core::version::VersionVector,
    /// Replicas that had replied with a state.
    replies: usize,
}

impl Coordinator {
    /// Reads `key`: waits for R replies and returns their merge; repairs
    /// stale replicas in the background.
    pub async fn get(&self, key: &ObjectKey, options: &RequestOptions) -> Result<VersionedObject, CoordinatorError> {
        let Effective { props, timeout } = self.resolve(key.bucket(), options)?;
        let replicas = self.services.cluster.read_list(key, props.n);
        assert!(replicas.len() <= usize::from(props.n), "a read list longer than n: {replicas:?}");
        let deadline = Instant::now() + timeout;
        let mut quorum = ReadQuorum::new(replicas.clone(), props.r, props.conflict);
        let mut replies = self.send_to_all(&replicas, &Request::Read { key: key.clone() }, deadline);
        let mut first_reader: Option<NodeId> = None;
        let mut answered = 0;
        let mut progress = quorum.progress();
        while progress == Progress::Pending {
            let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, replies.recv()).await else {
                quorum.timed_out();
                return Err(self.unavailable("get", props, props.r, 0, quorum.report()));
            };
            progress = match outcome {
                Ok(Response::Read { object }) => {
                    first_reader.get_or_insert_with(|| node.clone());
                    answered += 1;
                    quorum.reply(node, object)
                }
                Ok(Response::Unreadable { reason }) => quorum.unreadable(node, reason),
                Ok(other) => quorum.fail(node, unexpected(&other)),
                Err(reason) => quorum.fail(node, reason),
            };
        }
        if progress == Progress::Failed {
            return Err(self.unavailable("get", props, props.r, 0, quorum.report()));
        }
        if let Some(fastest) = first_reader {
            self.remember_fastest_reader(key, fastest);
        }
        let merged = quorum.merged();
        let answer = ReadAnswer { context: merged.context().clone(), replies: answered };
        self.spawn_read_repair(key.clone(), quorum, replies, props, answer);
        Ok(merged)
    }

    /// After the client has its answer: waits (up to [`READ_REPAIR_WAIT`])
    /// for the other replicas, records whether the answer lacked a write
    /// some replica held ([`crate::staleness`]), and repairs the stale
    /// replicas with the merge of all.
    fn spawn_read_repair(
        &self,
        key: ObjectKey,
        mut quorum: ReadQuorum,
        mut replies: mpsc::Receiver<(NodeId, Result<Response, String>)>,
        props: BucketProps,
        mut answer: ReadAnswer,
    ) {
        let staleness = self.staleness.clone();
        let local = self.replica_handle();
        let peers = self.peers_handle();
        let local_id = self.services.cluster.local().clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + READ_REPAIR_WAIT;
            while let Ok(Some((node, outcome))) = tokio::time::timeout_at(deadline, replies.recv()).await {
                match outcome {
                    Ok(Response::Read { object }) => {
                        answer.replies += 1;
                        quorum.reply(node, object)
                    }
                    Ok(Response::Unreadable { reason }) => quorum.unreadable(node, reason),
                    Ok(other) => quorum.fail(node, unexpected(&other)),
                    Err(reason) => quorum.fail(node, reason),
                };
            }
            let merged = quorum.merged();
            let targets = quorum.repair_targets();
            staleness.record_read(merged.versions_missing_from(&answer.context), answer.replies, targets.len());
            for node in targets {
                debug!(%node, bucket = key.bucket(), "read repair");
                let request =
                    Request::Write { key: key.clone(), object: merged.clone(), mode: props.conflict, durable: false };
                let _ = if node == local_id {
                    local.serve(request).await
                } else {
                    peers.call(&node, request, READ_REPAIR_WAIT).await
                };
            }
        });
    }
}
