//! The data-type API of SPEC section 4 (issue 12, modelled on Riak's):
//! `GET /buckets/{b}/datatypes/{k}` reads the value of a counter, set or
//! map bucket, `POST` applies a JSON operation to it. The coordinator does
//! the work (one replica acts, the others get the delta); this module
//! routes, turns JSON into a [`DataOp`] ([`crate::http::op_json`] for
//! counters and sets, [`crate::http::map_json`] for maps) and a
//! [`DataValue`] back into JSON, and says exactly what is wrong with an
//! operation it refuses, before anything is stored.

use std::sync::Arc;

use dynamo_core::context::encode_datatype_context;
use dynamo_core::crdt::map::{MapOp, expiry_key};
use dynamo_core::crdt::set::MAX_ELEMENT_LEN;
use dynamo_core::crdt::value::{DataOp, DataValue, MAX_OP_UPDATES};
use dynamo_core::keys::ObjectKey;
use dynamo_core::props::DataType;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::coordinator::{Coordinator, RequestOptions};
use crate::http::responses::{
    ApiError, ApiRequest, HttpResponse, coordinator_error, empty, error, json_response, set_header,
};
use crate::http::{map_json, multipart, objects, op_json, params};

/// Largest operation body accepted: a full `add_all` of the longest
/// elements, JSON-escaped, fits.
const MAX_OP_BODY: usize = 2 * MAX_OP_UPDATES * MAX_ELEMENT_LEN;

/// The data-type routes, over the coordinator.
pub(crate) struct DatatypeApi {
    coordinator: Arc<Coordinator>,
}

impl DatatypeApi {
    pub(crate) fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    pub(crate) async fn get_value(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let (options, _) = match options(&request, &["r", "n", "timeout_ms"]) {
            Ok(parsed) => parsed,
            Err(problem) => return problem.into_response(),
        };
        if let Err(problem) = self.datatype_of(key) {
            return problem.into_response();
        }
        match self.coordinator.get(key, &options).await {
            Ok(object) if object.is_dead_at(self.coordinator.wall_ms()) => {
                error(StatusCode::NOT_FOUND, "not found (expired)".to_string())
            }
            Ok(object) => match object.datatype_value() {
                Ok(Some(value)) => {
                    let mut response = json_response(StatusCode::OK, &render(value));
                    if let Some(expires_ms) = value.expires_ms() {
                        set_header(&mut response, multipart::EXPIRES_HEADER, &expires_ms.to_string());
                    }
                    response
                }
                Ok(None) => error(StatusCode::NOT_FOUND, "not found".to_string()),
                Err(problem) => error(StatusCode::CONFLICT, format!("{}: {problem}", describe(key))),
            },
            Err(problem) => coordinator_error(problem),
        }
    }

    pub(crate) async fn post_update(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let (options, return_body) = match options(&request, UPDATE_PARAMS) {
            Ok(parsed) => parsed,
            Err(problem) => return problem.into_response(),
        };
        let datatype = match self.datatype_of(key) {
            Ok(datatype) => datatype,
            Err(problem) => return problem.into_response(),
        };
        // A map in a bucket with a default TTL gets it with every update
        // that gives none (validation keeps it off counters and sets).
        let ttl_s = objects::request_ttl(&request, UPDATE_PARAMS)
            .and_then(|ttl_s| ttl_for(datatype, ttl_s))
            .and_then(|ttl_s| objects::write_ttl(&self.coordinator, key.bucket(), ttl_s));
        let ttl_s = match ttl_s {
            Ok(ttl_s) => ttl_s,
            Err(problem) => return problem.into_response(),
        };
        let body = match Limited::new(request.into_body(), MAX_OP_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("operation body unreadable or over {MAX_OP_BODY} bytes"),
                );
            }
        };
        let mut op = match parse_op(&body, datatype) {
            Ok(op) => op,
            Err(problem) => return problem.into_response(),
        };
        if let (Some(ttl_s), DataOp::Map { ops, .. }) = (ttl_s, &mut op) {
            ops.push(MapOp::expire_at(self.coordinator.wall_ms().saturating_add(ttl_s * 1000)));
        }
        match self.coordinator.update(key, &op, &options).await {
            Ok(value) if return_body => json_response(StatusCode::OK, &render(&value)),
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(problem) => coordinator_error(problem),
        }
    }

    /// The bucket's datatype; a bucket without one is refused with what to
    /// do about it.
    fn datatype_of(&self, key: &ObjectKey) -> Result<DataType, ApiError> {
        let props = self
            .coordinator
            .props(key.bucket())
            .map_err(|problem| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string()))?;
        match props.datatype {
            DataType::None => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "bucket {} has no datatype; set one first: PUT /buckets/{}/props {{\"datatype\":\"counter\"}} (or \
                     \"set\"), or use /buckets/{}/keys for opaque values",
                    key.bucket(),
                    key.bucket(),
                    key.bucket()
                ),
            )),
            datatype => Ok(datatype),
        }
    }
}

/// Query parameters of an update.
const UPDATE_PARAMS: &[&str] = &["w", "dw", "n", "timeout_ms", "returnbody", "ttl_s"];

/// A `ttl_s` is for maps: only a map carries an expiry (see
/// [`dynamo_core::crdt::map::expiry_key`]).
fn ttl_for(datatype: DataType, ttl_s: Option<u64>) -> Result<Option<u64>, ApiError> {
    match (datatype, ttl_s) {
        (DataType::Map, _) | (_, None) => Ok(ttl_s),
        (other, Some(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "ttl_s applies to map buckets; this bucket's datatype is {other}: keep the value in a map field to let it expire"
            ),
        )),
    }
}

/// The request's quorum options (as the object routes read them) and
/// whether it asked for `returnbody=true`.
fn options(request: &ApiRequest, allowed: &[&str]) -> Result<(RequestOptions, bool), ApiError> {
    let options = objects::request_options(request, allowed)?;
    let pairs = params::parse_query(request.uri().query(), allowed)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let mut return_body = false;
    for (_, value) in pairs.iter().filter(|(name, _)| name == "returnbody") {
        return_body = match value.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                let message = format!("returnbody={value:?} must be true or false");
                return Err(ApiError::new(StatusCode::BAD_REQUEST, message));
            }
        };
    }
    Ok((options, return_body))
}

/// Parses a JSON operation for a bucket of `datatype`.
fn parse_op(body: &[u8], datatype: DataType) -> Result<DataOp, ApiError> {
    match datatype {
        DataType::Map => map_json::parse_op(body),
        _ => op_json::parse_op(body, datatype),
    }
}

/// The JSON of a value (SPEC section 4).
fn render(value: &DataValue) -> Value {
    match value {
        DataValue::Counter(counter) => json!({ "type": "counter", "value": counter.value() }),
        DataValue::Set(set) => {
            // Elements arrive as JSON strings here; one written another way
            // that is not UTF-8 is shown with replacement characters.
            let elements: Vec<String> = set.elements().map(|element| String::from_utf8_lossy(element).into()).collect();
            json!({ "type": "set", "value": elements, "context": encode_datatype_context(set.context()) })
        }
        DataValue::Map(map) => {
            let mut fields = map.value();
            fields.remove(&expiry_key());
            json!({ "type": "map", "value": map_json::render(&fields), "context": encode_datatype_context(map.context()) })
        }
    }
}

fn describe(key: &ObjectKey) -> String {
    format!("{}/{}", key.bucket(), String::from_utf8_lossy(key.key()))
}
