//! What the keyspace commands share: the coordinator and the bucket the
//! Redis keyspace lives in, and how a coordinator failure reads as a Redis
//! error.

use std::sync::Arc;

use crate::coordinator::{Coordinator, CoordinatorError};

use super::reply::Reply;

/// The keyspace: keys of `bucket`, through `coordinator`.
pub struct Keyspace {
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) bucket: String,
}

/// The reply to a request the coordinator could not serve: Redis's `ERR`
/// with what failed and, for a quorum not reached, which replicas did not
/// answer and why (what HTTP's `503` body says).
pub(super) fn coordinator_error(error: CoordinatorError) -> Reply {
    match error {
        CoordinatorError::Unavailable(failure) => {
            let missing: Vec<String> = failure
                .replicas
                .iter()
                .filter(|replica| replica.status != "ok")
                .map(|replica| match &replica.reason {
                    Some(reason) => format!("{} {}: {reason}", replica.node, replica.status),
                    None => format!("{} {}", replica.node, replica.status),
                })
                .collect();
            Reply::err(format!(
                "quorum not reached for {}: {} of {} required replicas answered; {}; {}",
                failure.operation,
                failure.answered,
                failure.needed,
                missing.join(", "),
                failure.hint
            ))
        }
        CoordinatorError::Forwarded { body, .. } => {
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| value["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            Reply::err(message)
        }
        other => Reply::err(other.to_string()),
    }
}
