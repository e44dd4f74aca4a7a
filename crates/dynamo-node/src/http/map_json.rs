//! Maps in JSON (SPEC section 4, Riak's map API): an operation
//! `{"update":{"<name>_<type>": op, ...}, "remove":["<name>_<type>", ...],
//! "context":"..."}` becomes a [`DataOp::Map`], and a map's value becomes
//! `{"<name>_<type>": value, ...}`.
//!
//! A field is named by its name and its type, joined by the last `_`
//! (`home_addr_map` is the map `home_addr`). Each type's operation:
//! a register takes a string; a flag `"enable"` or `"disable"`; a counter
//! a number or `{"increment":N}`; a set the set operation's fields
//! (`{"add":"x"}`, `{"remove_all":[...]}`, ...); a nested map the same
//! shape as the top level, without a context. Removes apply before the
//! updates, so naming a field in both resets it to just the update.
//! Anything else is refused with what was expected, before anything is
//! stored.

use bytes::Bytes;
use dynamo_core::crdt::map::{FieldKey, FieldKind, FieldOp, FieldValue, MAX_DEPTH, MAX_OPS, MapOp};
use dynamo_core::crdt::value::DataOp;
use dynamo_core::hlc::Hlc;
use hyper::StatusCode;
use serde_json::{Map as JsonMap, Value, json};

use crate::http::op_json::{OpBody, read_context, set_updates};
use crate::http::responses::ApiError;

/// The fields a map operation may have.
const FIELDS: [&str; 3] = ["update", "remove", "context"];

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message.into())
}

/// Parses a JSON operation for a map bucket.
pub(crate) fn parse_op(body: &[u8]) -> Result<DataOp, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|problem| {
        bad(format!(
            "a map operation is a JSON object {{\"update\":{{\"<name>_<type>\": op}}, \"remove\":[\"<name>_<type>\"], \
             \"context\":\"...\"}}: {problem}"
        ))
    })?;
    let Value::Object(object) = value else {
        return Err(bad("a map operation is a JSON object with \"update\", \"remove\" and \"context\""));
    };
    let other_kind = ["increment", "add", "add_all", "remove_all"].iter().any(|name| object.contains_key(*name))
        || object.get("remove").is_some_and(Value::is_string);
    if other_kind {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a counter or set operation cannot apply to bucket of datatype map; update its fields with \
             {\"update\":{\"<name>_counter\":{\"increment\":1}}}"
                .to_string(),
        ));
    }
    let context = match object.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(read_context(text)?),
        Some(_) => return Err(bad("\"context\" is the string a read returned")),
    };
    let mut budget = MAX_OPS;
    let ops = map_ops(&object, 1, &mut budget, "")?;
    if ops.is_empty() {
        return Err(bad("the map operation is empty: give \"update\" or \"remove\" fields"));
    }
    Ok(DataOp::Map { ops, context })
}

/// The operations of one map level: its removes, then its updates.
fn map_ops(
    object: &JsonMap<String, Value>,
    depth: usize,
    budget: &mut usize,
    path: &str,
) -> Result<Vec<MapOp>, ApiError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!("maps nest at most {MAX_DEPTH} levels deep")));
    }
    let allowed: &[&str] = if depth == 1 { &FIELDS } else { &FIELDS[..2] };
    if let Some(unknown) = object.keys().find(|name| !allowed.contains(&name.as_str())) {
        return Err(bad(format!("{}unknown field {unknown:?}; a map operation has {allowed:?}", at(path))));
    }
    let mut ops = Vec::new();
    match object.get("remove") {
        None | Some(Value::Null) => {}
        Some(Value::Array(labels)) => {
            for label in labels {
                let Value::String(label) = label else {
                    return Err(bad(format!("{}\"remove\" lists field names as strings", at(path))));
                };
                spend(budget, 1)?;
                ops.push(MapOp::Remove(field_key(label, path)?));
            }
        }
        Some(_) => return Err(bad(format!("{}\"remove\" is a list of \"<name>_<type>\" strings", at(path)))),
    }
    match object.get("update") {
        None | Some(Value::Null) => {}
        Some(Value::Object(updates)) => {
            for (label, op) in updates {
                let key = field_key(label, path)?;
                let path = format!("{path}{label}.");
                spend(budget, 1)?;
                let op = field_op(key.kind, op, depth, budget, &path)?;
                ops.push(MapOp::Update { name: key.name, op });
            }
        }
        Some(_) => return Err(bad(format!("{}\"update\" is an object of \"<name>_<type>\": op", at(path)))),
    }
    Ok(ops)
}

/// One field's operation, by its type.
fn field_op(kind: FieldKind, op: &Value, depth: usize, budget: &mut usize, path: &str) -> Result<FieldOp, ApiError> {
    let field = path.trim_end_matches('.');
    match (kind, op) {
        // The acting replica stamps the write with its own clock.
        (FieldKind::Register, Value::String(text)) => {
            Ok(FieldOp::Assign { value: Bytes::from(text.clone()), timestamp: Hlc(0) })
        }
        (FieldKind::Flag, Value::String(word)) if word == "enable" => Ok(FieldOp::Enable),
        (FieldKind::Flag, Value::String(word)) if word == "disable" => Ok(FieldOp::Disable),
        (FieldKind::Counter, Value::Number(number)) => number
            .as_i64()
            .map(FieldOp::Increment)
            .ok_or_else(|| bad(format!("{field}: an increment is a whole number within 64 bits, not {number}"))),
        (FieldKind::Counter, Value::Object(object)) if object.len() == 1 && object.contains_key("increment") => {
            field_op(kind, &object["increment"], depth, budget, path)
        }
        (FieldKind::Set, Value::Object(_)) => {
            let parsed: OpBody = serde_json::from_value(op.clone()).map_err(|problem| {
                bad(format!("{field}: a set operation has add, add_all, remove, remove_all: {problem}"))
            })?;
            if parsed.context.is_some() || parsed.increment.is_some() || parsed.id.is_some() || parsed.update.is_some()
            {
                return Err(bad(format!(
                    "{field}: a set field takes add, add_all, remove and remove_all (the context goes at the top)"
                )));
            }
            let updates = set_updates(parsed).map_err(|problem| prefixed(field, problem))?;
            spend(budget, updates.len())?;
            Ok(FieldOp::Set(updates))
        }
        (FieldKind::Map, Value::Object(object)) => Ok(FieldOp::Map(map_ops(object, depth + 1, budget, path)?)),
        (kind, _) => Err(bad(format!("{field}: {}", expected(kind)))),
    }
}

/// What an operation on a field of `kind` looks like.
fn expected(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Register => "a register's operation is the string to write",
        FieldKind::Flag => "a flag's operation is \"enable\" or \"disable\"",
        FieldKind::Counter => "a counter's operation is a number or {\"increment\":N}",
        FieldKind::Set => {
            "a set's operation is {\"add\":\"x\"}, {\"add_all\":[...]}, {\"remove\":\"x\"} or {\"remove_all\":[...]}"
        }
        FieldKind::Map => "a nested map's operation is {\"update\":{...}, \"remove\":[...]}",
    }
}

/// The field a label names: `<name>_<type>`, split at the last `_`.
fn field_key(label: &str, path: &str) -> Result<FieldKey, ApiError> {
    let split = label.rsplit_once('_').and_then(|(name, kind)| Some((name, FieldKind::from_name(kind)?)));
    match split {
        Some((name, kind)) if !name.is_empty() => Ok(FieldKey::new(Bytes::from(name.to_string()), kind)),
        _ => Err(bad(format!(
            "{}field {label:?} is not <name>_<type> with a type of register, flag, counter, set or map",
            at(path)
        ))),
    }
}

fn spend(budget: &mut usize, count: usize) -> Result<(), ApiError> {
    *budget = budget
        .checked_sub(count)
        .ok_or_else(|| bad(format!("a map operation carries more than {MAX_OPS} changes, its limit")))?;
    Ok(())
}

fn at(path: &str) -> String {
    match path.trim_end_matches('.') {
        "" => String::new(),
        field => format!("{field}: "),
    }
}

fn prefixed(field: &str, problem: ApiError) -> ApiError {
    let (status, message) = problem.parts();
    ApiError::new(status, format!("{field}: {message}"))
}

/// The JSON of a map's fields: `{"<name>_<type>": value}` (names shown
/// with replacement characters where they are not UTF-8).
pub(crate) fn render(fields: &std::collections::BTreeMap<FieldKey, FieldValue>) -> Value {
    let object: JsonMap<String, Value> = fields
        .iter()
        .map(|(key, value)| {
            let rendered = match value {
                FieldValue::Register(bytes) => json!(String::from_utf8_lossy(bytes)),
                FieldValue::Flag(enabled) => json!(enabled),
                FieldValue::Counter(value) => json!(value),
                FieldValue::Set(elements) => {
                    json!(
                        elements
                            .iter()
                            .map(|element| String::from_utf8_lossy(element).into_owned())
                            .collect::<Vec<_>>()
                    )
                }
                FieldValue::Map(nested) => render(nested),
            };
            (key.label(), rendered)
        })
        .collect();
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use dynamo_core::crdt::map::Map;
    use dynamo_core::crdt::set::SetUpdate;
    use dynamo_core::version::ActorId;

    use super::*;

    fn refused(body: &str) -> (StatusCode, String) {
        let problem = parse_op(body.as_bytes()).expect_err("refused");
        let (status, message) = problem.parts();
        (status, message.to_string())
    }

    #[test]
    fn an_operation_names_each_field_by_name_and_type() {
        let op = parse_op(
            br#"{"remove":["old_flag"],"update":{"name_register":"Ann","seen_flag":"enable","visits_counter":3,
                "hits_counter":{"increment":-1},"tags_set":{"add_all":["a","b"]},
                "home_addr_map":{"update":{"city_register":"Oslo"},"remove":["zip_register"]}}}"#,
        )
        .unwrap();
        let DataOp::Map { ops, context: None } = op else { panic!("a map op: {op:?}") };
        assert_eq!(ops[0], MapOp::remove(Bytes::from_static(b"old"), FieldKind::Flag), "removes come first");
        let find = |name: &str| {
            ops.iter()
                .find_map(|op| match op {
                    MapOp::Update { name: found, op } if found.as_ref() == name.as_bytes() => Some(op.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no update of {name}"))
        };
        assert_eq!(find("visits"), FieldOp::Increment(3));
        assert_eq!(find("hits"), FieldOp::Increment(-1));
        assert_eq!(find("seen"), FieldOp::Enable);
        assert_eq!(
            find("tags"),
            FieldOp::Set(vec![SetUpdate::Add(Bytes::from_static(b"a")), SetUpdate::Add(Bytes::from_static(b"b"))])
        );
        let FieldOp::Map(nested) = find("home_addr") else { panic!("the name keeps its underscore") };
        assert_eq!(nested.len(), 2);
    }

    #[test]
    fn malformed_operations_say_what_was_expected() {
        let cases = [
            (r#"{"update":{"name":"x"}}"#, "not <name>_<type>"),
            (r#"{"update":{"_register":"x"}}"#, "not <name>_<type>"),
            (r#"{"update":{"name_register":5}}"#, "name_register: a register's operation is the string"),
            (r#"{"update":{"on_flag":"yes"}}"#, "\"enable\" or \"disable\""),
            (r#"{"update":{"n_counter":1.5}}"#, "n_counter: an increment is a whole number"),
            (r#"{"update":{"t_set":{"add":"x","context":"c"}}}"#, "the context goes at the top"),
            (r#"{"update":{"a_map":{"update":{"b_map":{"context":"x"}}}}}"#, "a_map.b_map: unknown field"),
            (r#"{"update":{}}"#, "empty"),
            (r#"{"remove":"x_flag"}"#, "cannot apply to bucket of datatype map"),
            (r#"{"increment":1}"#, "cannot apply to bucket of datatype map"),
            (
                r#"{"update":{"a_map":{"update":{"b_map":{"update":{"c_map":{"update":{"d_map":{}}}}}}}}}"#,
                "nest at most",
            ),
            (r#"{"update":{"x_register":"v"},"colour":1}"#, "unknown field \"colour\""),
            ("[1]", "a map operation is a JSON object"),
        ];
        for (body, expected) in cases {
            let (status, message) = refused(body);
            assert!(message.contains(expected), "{body}: {status} {message}");
            assert!(status.is_client_error(), "{body}: {status}");
        }
        let many = format!(r#"{{"remove":[{}]}}"#, vec!["\"x_flag\""; MAX_OPS + 1].join(","));
        assert!(refused(&many).1.contains("more than"));
    }

    #[test]
    fn a_value_renders_with_typed_field_names() {
        let mut map = Map::new();
        let op = parse_op(
            br#"{"update":{"name_register":"Ann","seen_flag":"enable","visits_counter":3,"tags_set":{"add":"a"},
                "addr_map":{"update":{"city_register":"Oslo"}}}}"#,
        )
        .unwrap();
        let DataOp::Map { ops, .. } = op else { panic!() };
        map.apply(&ops, ActorId(1), None).unwrap();
        assert_eq!(
            render(&map.value()),
            json!({"name_register":"Ann","seen_flag":true,"visits_counter":3,"tags_set":["a"],
                   "addr_map":{"city_register":"Oslo"}})
        );
    }
}
