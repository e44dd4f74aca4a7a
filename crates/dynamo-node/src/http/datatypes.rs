//! The data-type API of SPEC section 4 (issue 12, modelled on Riak's):
//! `GET /buckets/{b}/datatypes/{k}` reads the value of a counter or set
//! bucket, `POST` applies a JSON operation to it. The coordinator does the
//! work (one replica acts, the others get the delta); this module turns
//! JSON into a [`DataOp`] and a [`DataValue`] back into JSON, and says
//! exactly what is wrong with an operation it refuses, before anything is
//! stored.

use std::sync::Arc;

use bytes::Bytes;
use dynamo_core::context::{decode_datatype_context, encode_datatype_context};
use dynamo_core::crdt::context::CausalContext;
use dynamo_core::crdt::counter::{MAX_OPERATION_ID_LEN, OperationId};
use dynamo_core::crdt::set::{MAX_ELEMENT_LEN, SetUpdate};
use dynamo_core::crdt::value::{DataOp, DataValue, MAX_OP_UPDATES};
use dynamo_core::keys::ObjectKey;
use dynamo_core::props::DataType;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::coordinator::{Coordinator, RequestOptions};
use crate::http::responses::{ApiError, ApiRequest, HttpResponse, coordinator_error, empty, error, json_response};
use crate::http::{map_json, objects, params};

/// Largest operation body accepted: a full `add_all` of the longest
/// elements, JSON-escaped, fits.
const MAX_OP_BODY: usize = 2 * MAX_OP_UPDATES * MAX_ELEMENT_LEN;

/// The data-type routes, over the coordinator.
pub(crate) struct DatatypeApi {
    coordinator: Arc<Coordinator>,
}

/// A JSON operation as a client sends it (SPEC section 4). Exactly one
/// kind: `increment`, or any of the set fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpBody {
    pub(crate) increment: Option<i64>,
    pub(crate) add: Option<String>,
    pub(crate) add_all: Option<Vec<String>>,
    pub(crate) remove: Option<String>,
    pub(crate) remove_all: Option<Vec<String>>,
    pub(crate) context: Option<String>,
    /// An increment's operation id: the same id applied again counts once
    /// (see [`dynamo_core::crdt::counter`] for the window).
    pub(crate) id: Option<String>,
    /// A map operation's updates: recognised so the error can say the
    /// bucket is not a map, rather than "unknown field".
    pub(crate) update: Option<Value>,
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
            Ok(object) => match object.datatype_value() {
                Ok(Some(value)) => json_response(StatusCode::OK, &render(value)),
                Ok(None) => error(StatusCode::NOT_FOUND, "not found".to_string()),
                Err(problem) => error(StatusCode::CONFLICT, format!("{}: {problem}", describe(key))),
            },
            Err(problem) => coordinator_error(problem),
        }
    }

    pub(crate) async fn post_update(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let (options, return_body) = match options(&request, &["w", "dw", "n", "timeout_ms", "returnbody"]) {
            Ok(parsed) => parsed,
            Err(problem) => return problem.into_response(),
        };
        let datatype = match self.datatype_of(key) {
            Ok(datatype) => datatype,
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
        let op = match parse_op(&body, datatype) {
            Ok(op) => op,
            Err(problem) => return problem.into_response(),
        };
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
    if datatype == DataType::Map {
        return map_json::parse_op(body);
    }
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let parsed: OpBody = serde_json::from_slice(body).map_err(|problem| {
        bad(format!(
            "an operation is a JSON object: {{\"increment\":N}} (optionally with an \"id\") for a counter; {{\"add\":\"x\"}}, \
             {{\"add_all\":[...]}}, {{\"remove\":\"x\"}}, {{\"remove_all\":[...]}} (with the \"context\" of a read) \
             for a set: {problem}"
        ))
    })?;
    if parsed.update.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a map operation (\"update\") cannot apply to bucket of datatype {datatype}"),
        ));
    }
    let set_fields = parsed.add.is_some()
        || parsed.add_all.is_some()
        || parsed.remove.is_some()
        || parsed.remove_all.is_some()
        || parsed.context.is_some();
    let op = match (parsed.increment, set_fields) {
        (Some(_), true) => return Err(bad("an operation is either an increment or set changes, not both".into())),
        (None, false) => return Err(bad("the operation is empty: give increment, or add/remove fields".into())),
        (Some(amount), false) => DataOp::Increment { amount, id: operation_id(parsed.id.as_deref())? },
        (None, true) if parsed.id.is_some() => {
            return Err(bad(
                "an operation \"id\" applies to increments only (adds and removes repeat harmlessly)".into()
            ));
        }
        (None, true) => set_op(parsed)?,
    };
    if op.kind() != datatype {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a {} operation cannot apply to bucket of datatype {datatype}", op.kind()),
        ));
    }
    Ok(op)
}

/// The operation id of an increment, if the client gave one.
fn operation_id(id: Option<&str>) -> Result<Option<OperationId>, ApiError> {
    match id {
        None => Ok(None),
        Some(id) if id.is_empty() || id.len() > MAX_OPERATION_ID_LEN => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "an operation \"id\" is 1 to {MAX_OPERATION_ID_LEN} bytes, this one is {}; use e.g. a UUID per increment",
                id.len()
            ),
        )),
        Some(id) => Ok(Some(OperationId::from_client(id.as_bytes()))),
    }
}

/// The set operation of a body: every add, then every remove.
fn set_op(parsed: OpBody) -> Result<DataOp, ApiError> {
    let context = match &parsed.context {
        None => None,
        Some(text) => Some(read_context(text)?),
    };
    Ok(DataOp::Set { updates: set_updates(parsed)?, context })
}

/// A read's context, as a client hands it back.
pub(crate) fn read_context(text: &str) -> Result<CausalContext, ApiError> {
    decode_datatype_context(text).map_err(|problem| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed context: {problem}; pass the \"context\" of a read of this key unchanged"),
        )
    })
}

/// The element changes of a set operation: every add, then every remove.
pub(crate) fn set_updates(parsed: OpBody) -> Result<Vec<SetUpdate>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let adds = parsed.add.into_iter().chain(parsed.add_all.unwrap_or_default());
    let removes = parsed.remove.into_iter().chain(parsed.remove_all.unwrap_or_default());
    let mut updates = Vec::new();
    for (element, is_add) in adds.map(|element| (element, true)).chain(removes.map(|element| (element, false))) {
        if element.len() > MAX_ELEMENT_LEN {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a set element is {} bytes; the limit is {MAX_ELEMENT_LEN}", element.len()),
            ));
        }
        let element = Bytes::from(element);
        updates.push(if is_add { SetUpdate::Add(element) } else { SetUpdate::Remove(element) });
    }
    if updates.is_empty() {
        return Err(bad("the set operation names no element".into()));
    }
    if updates.len() > MAX_OP_UPDATES {
        return Err(bad(format!("{} set changes in one operation; the limit is {MAX_OP_UPDATES}", updates.len())));
    }
    Ok(updates)
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
            json!({ "type": "map", "value": map_json::render(&map.value()), "context": encode_datatype_context(map.context()) })
        }
    }
}

fn describe(key: &ObjectKey) -> String {
    format!("{}/{}", key.bucket(), String::from_utf8_lossy(key.key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(body: &str, datatype: DataType) -> (StatusCode, String) {
        let problem = parse_op(body.as_bytes(), datatype).expect_err("refused");
        let response = problem.into_response();
        (response.status(), format!("{response:?}"))
    }

    #[test]
    fn operations_parse_into_their_kind() {
        assert_eq!(parse_op(br#"{"increment":-4}"#, DataType::Counter).unwrap(), DataOp::increment(-4));
        let once = parse_op(br#"{"increment":2,"id":"retry-me"}"#, DataType::Counter).unwrap();
        assert_eq!(once, DataOp::Increment { amount: 2, id: Some(OperationId::from_client(b"retry-me")) });
        let op = parse_op(br#"{"add":"a","add_all":["b"],"remove":"c"}"#, DataType::Set).unwrap();
        let DataOp::Set { updates, context: None } = op else { panic!("a set op") };
        assert_eq!(updates.len(), 3);
        assert!(matches!(&updates[2], SetUpdate::Remove(element) if element.as_ref() == b"c"));
    }

    #[test]
    fn malformed_and_mismatched_operations_are_refused_with_their_reason() {
        assert_eq!(refusal("{}", DataType::Set).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"increment":1,"add":"x"}"#, DataType::Set).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"increment":"one"}"#, DataType::Counter).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"incr":1}"#, DataType::Counter).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"add":"x"}"#, DataType::Counter).0, StatusCode::CONFLICT);
        assert_eq!(refusal(r#"{"remove":"x","context":"garbage!"}"#, DataType::Set).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"update":{"a_flag":"enable"}}"#, DataType::Set).0, StatusCode::CONFLICT);
        assert_eq!(refusal(r#"{"increment":1,"id":""}"#, DataType::Counter).0, StatusCode::BAD_REQUEST);
        let long_id = format!(r#"{{"increment":1,"id":"{}"}}"#, "i".repeat(MAX_OPERATION_ID_LEN + 1));
        assert_eq!(refusal(&long_id, DataType::Counter).0, StatusCode::BAD_REQUEST);
        assert_eq!(refusal(r#"{"add":"x","id":"a"}"#, DataType::Set).0, StatusCode::BAD_REQUEST);
        let long = format!(r#"{{"add":"{}"}}"#, "x".repeat(MAX_ELEMENT_LEN + 1));
        assert_eq!(refusal(&long, DataType::Set).0, StatusCode::PAYLOAD_TOO_LARGE);
        let many = format!(r#"{{"add_all":[{}]}}"#, vec!["\"x\""; MAX_OP_UPDATES + 1].join(","));
        assert_eq!(refusal(&many, DataType::Set).0, StatusCode::BAD_REQUEST);
    }
}
