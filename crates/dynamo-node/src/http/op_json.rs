//! Counter and set operations in JSON (SPEC section 4): `{"increment":N}`
//! (with an optional operation `"id"`), and `{"add":"x"}`,
//! `{"add_all":[...]}`, `{"remove":"x"}`, `{"remove_all":[...]}` with the
//! `"context"` of a read. The set fields are shared with a map's set
//! fields ([`crate::http::map_json`]).

use bytes::Bytes;
use dynamo_core::context::decode_datatype_context;
use dynamo_core::crdt::context::CausalContext;
use dynamo_core::crdt::counter::{MAX_OPERATION_ID_LEN, OperationId};
use dynamo_core::crdt::set::{MAX_ELEMENT_LEN, SetUpdate};
use dynamo_core::crdt::value::{DataOp, MAX_OP_UPDATES};
use dynamo_core::props::DataType;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::http::responses::ApiError;

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

/// Parses a JSON operation for a counter or set bucket (`datatype`).
pub(crate) fn parse_op(body: &[u8], datatype: DataType) -> Result<DataOp, ApiError> {
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
