//! What the keyspace commands share: the coordinator and the bucket the
//! Redis keyspace lives in, reading a key as its Redis value and updating
//! it with map operations ([`super::model`]), and how a coordinator
//! failure reads as a Redis error.

use std::sync::Arc;

use bytes::Bytes;
use dynamo_core::crdt::context::CausalContext;
use dynamo_core::crdt::map::{Map, MapError, MapOp, parse_integer};
use dynamo_core::crdt::value::{DataOp, DataValue, OpError};
use dynamo_core::keys::ObjectKey;
use dynamo_core::props::DataType;

use super::model::{Kind, RedisValue, redis_value};
use super::reply::Reply;
use crate::coordinator::{Coordinator, CoordinatorError, RequestOptions};

/// The keyspace: keys of `bucket`, through `coordinator`.
pub struct Keyspace {
    pub(super) coordinator: Arc<Coordinator>,
    pub(super) bucket: String,
}

/// A key read: its map (whose context a remove may act on) and its value.
pub(super) struct Read {
    pub(super) map: Map,
    pub(super) value: RedisValue,
}

/// Why an update stored nothing.
pub(super) enum Refusal {
    /// The key holds another type (`WRONGTYPE`).
    WrongType,
    /// A condition other than the type did not hold (named as
    /// [`dynamo_core::crdt::map::Condition::describe`] does).
    Unmet(String),
    /// A remove of what the acting replica no longer holds (removed
    /// concurrently): read again and retry.
    Stale,
    /// Anything else, as the client reads it.
    Failed(Reply),
}

impl From<Reply> for Refusal {
    fn from(reply: Reply) -> Self {
        Refusal::Failed(reply)
    }
}

/// An integer argument, as Redis parses one.
pub(super) fn integer_argument(argument: &Bytes) -> Result<i64, Reply> {
    parse_integer(argument).ok_or_else(|| Reply::err("value is not an integer or out of range"))
}

/// What a refusal answers, when it is not a condition the command expects.
pub(super) fn refusal_reply(refusal: Refusal) -> Reply {
    match refusal {
        Refusal::WrongType => wrong_type(),
        Refusal::Unmet(condition) => Reply::err(format!("refused: {condition} does not hold")),
        Refusal::Stale => Reply::err("the key changed concurrently; retry"),
        Refusal::Failed(reply) => reply,
    }
}

/// Redis's answer to an operation on a key of another type.
pub(super) fn wrong_type() -> Reply {
    Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".to_string())
}

impl Keyspace {
    fn object_key(&self, name: &Bytes) -> Result<ObjectKey, Reply> {
        ObjectKey::new(&self.bucket, name.as_ref()).map_err(|problem| Reply::err(format!("invalid key: {problem}")))
    }

    /// Refuses a bucket whose values are not maps: the keys would not be
    /// the front end's.
    fn check_bucket(&self) -> Result<(), Reply> {
        let props = self.coordinator.props(&self.bucket).map_err(|problem| Reply::err(problem.to_string()))?;
        match props.datatype {
            DataType::Map => Ok(()),
            other => Err(Reply::err(format!(
                "the Redis keyspace's bucket {} has datatype {other}; the Redis front end keeps each key as a map: \
                 point resp_bucket at a bucket of datatype map (or one without props)",
                self.bucket
            ))),
        }
    }

    /// This node's wall clock (unix ms): what expiry is judged against.
    pub(super) fn now_ms(&self) -> u64 {
        self.coordinator.wall_ms()
    }

    /// Reads the key `name` with the bucket's R.
    pub(super) async fn read(&self, name: &Bytes) -> Result<Read, Reply> {
        self.check_bucket()?;
        let key = self.object_key(name)?;
        let object = self.coordinator.get(&key, &RequestOptions::default()).await.map_err(coordinator_error)?;
        let map = match object.datatype_value() {
            Ok(None) => Map::new(),
            Ok(Some(DataValue::Map(map))) => map.clone(),
            Ok(Some(other)) => {
                return Err(Reply::err(format!("the key holds a {} the Redis front end did not write", other.kind())));
            }
            Err(problem) => return Err(Reply::err(format!("the key is not the Redis front end's: {problem}"))),
        };
        // An expired key reads as absent, by this node's clock; its map
        // stays until collected, and the next write starts it afresh.
        let value = match map.is_expired_at(self.now_ms()) {
            true => RedisValue::Absent,
            false => redis_value(&map),
        };
        Ok(Read { map, value })
    }

    /// Reads the key `name` and checks that it is absent or of `kind`.
    pub(super) async fn read_kind(&self, name: &Bytes, kind: Kind) -> Result<Read, Reply> {
        let read = self.read(name).await?;
        match read.value.kind() {
            Some(held) if held != kind => Err(wrong_type()),
            _ => Ok(read),
        }
    }

    /// Applies `ops` to the key `name` (removes acting on what `observed`
    /// saw, else on what the acting replica holds), with the bucket's W;
    /// returns the map as the acting replica then holds it.
    pub(super) async fn update(
        &self,
        name: &Bytes,
        ops: Vec<MapOp>,
        observed: Option<CausalContext>,
    ) -> Result<Map, Refusal> {
        self.check_bucket()?;
        let key = self.object_key(name)?;
        let op = DataOp::Map { ops, context: observed };
        match self.coordinator.update(&key, &op, &RequestOptions::default()).await {
            Ok(DataValue::Map(map)) => Ok(map),
            Ok(other) => Err(Refusal::Failed(Reply::err(format!("the key holds a {}, not a map", other.kind())))),
            Err(error) => Err(refusal(error)),
        }
    }
}

fn refusal(error: CoordinatorError) -> Refusal {
    if let Some(condition) = error.unmet_condition() {
        return match Kind::is_type_check(&condition) {
            true => Refusal::WrongType,
            false => Refusal::Unmet(condition),
        };
    }
    let stale = match &error {
        CoordinatorError::Refused(OpError::Map(MapError::NotObserved(_) | MapError::ElementNotObserved { .. })) => true,
        CoordinatorError::Forwarded { status, .. } => *status == 412,
        _ => false,
    };
    match stale {
        true => Refusal::Stale,
        false => Refusal::Failed(coordinator_error(error)),
    }
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
