//! The replica endpoints a client that coordinates by itself uses (paper
//! section 6.4): `GET /replica/{bucket}/{key}` answers this node's own
//! stored copy of the key, and `PUT /replica/{bucket}/{key}` merges a copy
//! into it, which is how such a client repairs a stale replica after a
//! read (paper section 5).
//!
//! They are the HTTP twins of the node-to-node `Read` and `Write`
//! ([`dynamo_core::messages::Request`]), served by the same
//! [`crate::replica::Replica`] calls: no coordination, no quorum, no read
//! repair, and a merge that supersedes nothing the posted copy has not
//! seen, so a repeated or stale `PUT` does no harm. Objects travel in
//! dynamo-core's object codec ([`dynamo_core::codec`]), siblings, clock and
//! all, as `application/octet-stream`.
//!
//! **Misdirected requests.** A node answers only for keys it replicates by
//! its own ring: a read when it is in the key's read list, a merge when it
//! is in one of its write lists ([`dynamo_core::routing`]). Otherwise it
//! refuses with `421 Misdirected Request`, naming the nodes that do, so a
//! client routing by a stale ring learns it and refreshes (`GET /ring`).
//!
//! **Internal-ish.** These routes are meant for the partition-aware client,
//! not for applications: a posted copy is trusted as a replica's would be.
//! Like every route they are unauthenticated for now (issue 17 adds auth).

use bytes::Bytes;
use dynamo_core::codec::{decode_object, encode_object};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::{BucketProps, DataType};
use dynamo_storage::Durability;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::cluster::nodes_of;
use crate::http::params;
use crate::http::responses::{
    ApiError, ApiRequest, HttpResponse, empty, error, json_response, props_error, set_header,
};
use crate::replica::ReplicaError;
use crate::services::NodeServices;

/// Content type of an encoded object.
pub const OBJECT_CONTENT_TYPE: &str = "application/octet-stream";
/// Values' worth of bytes a posted object may carry: a key with siblings
/// holds several values, each up to `max_value_bytes`. A copy larger than
/// this is refused (`413`); anti-entropy still repairs such a key.
const BODY_VALUES_MAX: usize = 4;
/// Bytes a posted object may take beyond its values: clock, dots,
/// timestamps, content types (a key with the most siblings and clock
/// entries the format allows needs less than this).
const BODY_OVERHEAD_BYTES: usize = 256 * 1024;

/// The replica routes, over this node's services.
pub(crate) struct ReplicaApi {
    services: NodeServices,
    /// Largest body `PUT /replica` reads (see [`body_limit`]).
    max_body_bytes: usize,
}

/// Largest body `PUT /replica` accepts on a node whose values are at most
/// `max_value_bytes`, never more than one node-to-node message holds.
pub fn body_limit(max_value_bytes: usize) -> usize {
    max_value_bytes
        .saturating_mul(BODY_VALUES_MAX)
        .saturating_add(BODY_OVERHEAD_BYTES)
        .min(dynamo_rpc::frame::MAX_MESSAGE_BYTES)
}

impl ReplicaApi {
    /// The routes over `services`, on a node whose values are at most
    /// `max_value_bytes`.
    pub(crate) fn new(services: NodeServices, max_value_bytes: usize) -> Self {
        Self { services, max_body_bytes: body_limit(max_value_bytes) }
    }

    /// `GET /replica/{bucket}/{key}`: this node's stored copy, encoded;
    /// `404` when it holds nothing of the key.
    pub(crate) async fn get_replica(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return error(StatusCode::BAD_REQUEST, message);
        }
        let props = match self.services.buckets.get(key.bucket()) {
            Ok(props) => props,
            Err(problem) => return props_error(problem),
        };
        if let Some(refusal) = self.misdirected(key, &props, Access::Read) {
            return refusal;
        }
        match self.services.replica.read(key) {
            Ok(object) if object.is_empty() && object.context().is_empty() => {
                error(StatusCode::NOT_FOUND, "this replica holds nothing of the key".to_string())
            }
            Ok(object) => {
                let mut response = Response::new(Full::new(Bytes::from(encode_object(&object))));
                set_header(&mut response, CONTENT_TYPE.as_str(), OBJECT_CONTENT_TYPE);
                response
            }
            Err(problem) => replica_error(&problem),
        }
    }

    /// `PUT /replica/{bucket}/{key}[?durable=true]`: merges the posted
    /// encoded copy into this node's, as the bucket's conflict mode says;
    /// `204` once merged (and fsynced, with `durable=true`).
    pub(crate) async fn put_replica(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let durability = match durability(&request) {
            Ok(durability) => durability,
            Err(problem) => return problem.into_response(),
        };
        let props = match self.services.buckets.get(key.bucket()) {
            Ok(props) => props,
            Err(problem) => return props_error(problem),
        };
        if let Some(refusal) = self.misdirected(key, &props, Access::Write) {
            return refusal;
        }
        let object = match self.read_object(request).await {
            Ok(object) => object,
            Err(problem) => return problem.into_response(),
        };
        if let Err(problem) = check_kind(key, &object, props.datatype) {
            return problem.into_response();
        }
        match self.services.replica.merge_write(key, &object, props.conflict, durability).await {
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(problem) => replica_error(&problem),
        }
    }

    /// `None` when this node replicates `key` for `access` by its own
    /// ring, else the `421` that says who does.
    fn misdirected(&self, key: &ObjectKey, props: &BucketProps, access: Access) -> Option<HttpResponse> {
        let view = self.services.cluster.view();
        let partition = key.partition(view.ring().partitions());
        let replicas = match access {
            Access::Read => view.read_list(partition, props.n),
            Access::Write => nodes_of(&view.write_lists(partition, props.n)),
        };
        let local = self.services.cluster.local();
        if replicas.contains(local) {
            return None;
        }
        let (what, list) = match access {
            Access::Read => ("read", "read list"),
            Access::Write => ("merge", "write lists"),
        };
        let message = format!(
            "{local} does not replicate {}/{} at ring epoch {}: its {list} is {}; refresh the ring (GET /ring) and \
             {what} at one of those",
            key.bucket(),
            String::from_utf8_lossy(key.key()),
            view.state().epoch(),
            replicas.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        );
        let body = json!({
            "error": message,
            "node": local.to_string(),
            "epoch": view.state().epoch(),
            "partition": partition,
            "replicas": replicas.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        Some(json_response(StatusCode::MISDIRECTED_REQUEST, &body))
    }

    /// Reads and decodes the posted object, refusing a body over the limit
    /// (`413`) as soon as that is known, and bytes that are not an object
    /// (`400`).
    async fn read_object(&self, request: ApiRequest) -> Result<VersionedObject, ApiError> {
        let limit = self.max_body_bytes;
        let too_large = |size: String| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the posted object is {size} bytes; a replica accepts at most {limit} (max_value_bytes times \
                     {BODY_VALUES_MAX}, plus overhead); nothing was merged"
                ),
            )
        };
        let declared = request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok());
        if let Some(length) = declared.and_then(|text| text.parse::<u64>().ok())
            && length > limit as u64
        {
            return Err(too_large(length.to_string()));
        }
        let body = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(problem) if problem.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large(format!("more than {limit}")));
            }
            Err(problem) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {problem}"),
                ));
            }
        };
        decode_object(&body).map_err(|problem| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not an object in dynamo's object encoding (dynamo_core::codec::encode_object): \
                     {problem}; nothing was merged"
                ),
            )
        })
    }
}

/// What a replica route does with the key.
#[derive(Clone, Copy)]
enum Access {
    /// Serves this node's copy: it must be in the key's read list.
    Read,
    /// Merges into it: it must be in one of the key's write lists.
    Write,
}

/// `?durable=true|false` (default false: buffered, like read repair).
fn durability(request: &ApiRequest) -> Result<Durability, ApiError> {
    let pairs = params::parse_query(request.uri().query(), &["durable"])
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    match pairs.first().map(|(_, value)| value.as_str()) {
        None | Some("false") => Ok(Durability::Buffered),
        Some("true") => Ok(Durability::Durable),
        Some(other) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("durable={other:?}: use true or false"))),
    }
}

/// Refuses a copy whose values do not fit the bucket: an opaque value in a
/// data-type bucket, or a data type in a bucket of another type (or of
/// none). Either would sit beside the bucket's values and make the key
/// unreadable. Tombstones fit every bucket.
fn check_kind(key: &ObjectKey, object: &VersionedObject, datatype: DataType) -> Result<(), ApiError> {
    for sibling in object.siblings() {
        let fits = match &sibling.payload {
            Payload::Tombstone => true,
            Payload::Value { .. } => datatype == DataType::None,
            Payload::Datatype(value) => datatype != DataType::None && value.kind() == datatype,
        };
        if !fits {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "the posted object holds a version that does not fit bucket {} (datatype {datatype}); nothing \
                     was merged",
                    key.bucket()
                ),
            ));
        }
    }
    Ok(())
}

fn replica_error(problem: &ReplicaError) -> HttpResponse {
    let status = match problem {
        ReplicaError::Unencodable { .. } | ReplicaError::Refused(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, problem.to_string())
}
