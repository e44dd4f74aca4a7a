//! The file format of `dynamo export` and `dynamo import` (issue 14), and
//! the pure logic that turns one line back into the writes that recreate
//! it. No I/O here but the bounded line reader over any [`BufRead`], so
//! every rule is unit-tested.
//!
//! **The file is JSON lines.** Line 1 is a header,
//! `{"dynamo_export":1,"bucket":"b","props":{...},"exported_at_ms":...}`;
//! every other line is one live key:
//! - an opaque key: `{"key":"k","context":"...","siblings":[{"content_type":
//!   "text/plain","value_b64":"...","expires_ms":1796000000000}, ...]}`;
//! - a data-type key: `{"key":"k","datatype":"map","value":{...},
//!   "context":"...","expires_ms":...}`, `value` as `GET .../datatypes/{k}`
//!   gives it.
//!
//! A key that is not UTF-8 is `"key_b64"` instead of `"key"`. Values are
//! always base64 (standard, padded): exact for any bytes, at the price of a
//! third more size. `expires_ms` is absolute (unix ms), so a file does not
//! go stale in the drawer: import turns it into the remaining `ttl_s`,
//! rounded up to whole seconds, and skips what has expired since. The
//! `context` is informational: a context means nothing to another cluster.
//!
//! **Why siblings survive.** Import writes each sibling with a PUT that
//! carries no context. A write without a context supersedes nothing, so
//! beside the sibling written just before it, it becomes another sibling
//! (in a `conflict: siblings` bucket): the set comes back as a set, not
//! as its last member, which is what `riak-admin backup` lost.
//!
//! **Data types** come back through the operations that build them: a
//! counter by one increment of its value, a set by `add_all` in chunks, a
//! map by updates of its leaves (registers assigned, flags enabled or
//! disabled, counters incremented, sets added, nested maps recursively),
//! packed into as few operations as the server's limits allow.

use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use dynamo_core::crdt::map::MAX_OPS;
use dynamo_core::crdt::value::MAX_OP_UPDATES;
use dynamo_core::props::DataType;
use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value, json};

/// Version of the format, in the header's `dynamo_export`.
pub const FORMAT_VERSION: u64 = 1;

/// Longest line import reads by default: room for five siblings of the
/// largest value a node takes by default (1 MiB, a third more in base64),
/// or a set of some hundred thousand short elements. `--max-line-bytes`
/// raises it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Set elements per `add_all` of a map's set field: with the labels on the
/// way down, it stays well inside a map operation's budget ([`MAX_OPS`]).
const MAP_SET_CHUNK: usize = MAX_OPS / 2;

/// A map operation is flushed once its JSON passes this size, well under
/// the server's operation body limit.
const MAP_OP_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The format version ([`FORMAT_VERSION`]).
    pub dynamo_export: u64,
    /// The bucket exported.
    pub bucket: String,
    /// Its props, as `GET /buckets/{b}/props` gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub props: Option<Value>,
    /// When the export began (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at_ms: Option<u64>,
}

/// One key's line. Exactly one of `key`/`key_b64`, and exactly one of
/// `siblings` (opaque values) or `datatype` with `value`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyLine {
    /// The key, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    /// The data type (`counter`, `set`, `map`) of a data-type key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datatype: Option<String>,
    /// A data-type key's value, as `GET .../datatypes/{k}` gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// A map's expiry (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// The live siblings of an opaque key (one when there is no conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub siblings: Option<Vec<SiblingLine>>,
    /// The context the read returned (informational; import ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// One sibling of an opaque key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiblingLine {
    /// Its content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its value, standard base64.
    pub value_b64: String,
    /// When it expires (unix ms), if it has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// One write of an import.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// `PUT /buckets/{b}/keys/{k}` without a context.
    Put {
        /// The value.
        value: Bytes,
        /// Its content type.
        content_type: Option<String>,
        /// `ttl_s`, if it expires.
        ttl_s: Option<u64>,
    },
    /// `POST /buckets/{b}/datatypes/{k}` of an operation.
    Update {
        /// The JSON operation.
        op: Value,
        /// `ttl_s` (maps only).
        ttl_s: Option<u64>,
    },
}

/// What one line asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// Siblings (or a map) left out because they expired since the export.
    pub expired: usize,
}

/// What a line of an export is.
#[derive(Debug)]
pub enum Line {
    /// The header.
    Header(Header),
    /// A key.
    Key(Box<KeyLine>),
}

/// Parses a line: the header or a key line.
pub fn parse_line(line: &[u8]) -> Result<Line, String> {
    let value: Value = serde_json::from_slice(line).map_err(|problem| format!("not JSON: {problem}"))?;
    if !value.is_object() {
        return Err("not a JSON object".to_string());
    }
    if value.get("dynamo_export").is_some() {
        let header: Header = serde_json::from_value(value).map_err(|problem| format!("bad header: {problem}"))?;
        if header.dynamo_export != FORMAT_VERSION {
            return Err(format!(
                "export format version {} is not one this dynamo reads ({FORMAT_VERSION})",
                header.dynamo_export
            ));
        }
        return Ok(Line::Header(header));
    }
    let key: KeyLine = serde_json::from_value(value).map_err(|problem| format!("bad key line: {problem}"))?;
    Ok(Line::Key(Box::new(key)))
}

/// The remaining whole seconds until `expires_ms`, rounded up (so the
/// import expires within a second after the original, never before), or
/// `None` when it has passed.
pub fn remaining_ttl_s(expires_ms: u64, now_ms: u64) -> Option<u64> {
    let left_ms = expires_ms.checked_sub(now_ms).filter(|left_ms| *left_ms > 0)?;
    Some(left_ms.div_ceil(1000))
}

/// The writes that recreate `line` in a bucket of datatype `target`, at
/// `now_ms`. Every check happens here, before anything is written, so a bad
/// line writes nothing.
pub fn plan(line: &KeyLine, target: DataType, now_ms: u64) -> Result<Plan, String> {
    let key = match (&line.key, &line.key_b64) {
        (Some(key), None) => key.as_bytes().to_vec(),
        (None, Some(encoded)) => {
            STANDARD.decode(encoded).map_err(|problem| format!("bad base64 in key_b64: {problem}"))?
        }
        (Some(_), Some(_)) => return Err("both \"key\" and \"key_b64\"; give one".to_string()),
        (None, None) => return Err("missing \"key\" (or \"key_b64\")".to_string()),
    };
    match (&line.siblings, &line.datatype) {
        (Some(siblings), None) => plan_siblings(key, siblings, target, now_ms),
        (None, Some(datatype)) => plan_datatype(key, datatype, line, target, now_ms),
        (Some(_), Some(_)) => Err("both \"siblings\" and \"datatype\"; a key holds one or the other".to_string()),
        (None, None) => Err("missing \"siblings\" (opaque values) or \"datatype\" with \"value\"".to_string()),
    }
}

fn plan_siblings(key: Vec<u8>, siblings: &[SiblingLine], target: DataType, now_ms: u64) -> Result<Plan, String> {
    if target != DataType::None {
        return Err(format!("the line holds opaque values, the bucket holds {target} values"));
    }
    if siblings.is_empty() {
        return Err("\"siblings\" is empty".to_string());
    }
    let mut plan = Plan { key, writes: Vec::with_capacity(siblings.len()), expired: 0 };
    for (index, sibling) in siblings.iter().enumerate() {
        let value = STANDARD
            .decode(&sibling.value_b64)
            .map_err(|problem| format!("bad base64 in value_b64 of sibling {}: {problem}", index + 1))?;
        let ttl_s = match sibling.expires_ms {
            None => None,
            Some(expires_ms) => match remaining_ttl_s(expires_ms, now_ms) {
                Some(ttl_s) => Some(ttl_s),
                None => {
                    plan.expired += 1;
                    continue;
                }
            },
        };
        plan.writes.push(Write::Put { value: Bytes::from(value), content_type: sibling.content_type.clone(), ttl_s });
    }
    Ok(plan)
}

fn plan_datatype(key: Vec<u8>, name: &str, line: &KeyLine, target: DataType, now_ms: u64) -> Result<Plan, String> {
    let datatype: DataType = serde_json::from_value(json!(name))
        .ok()
        .filter(|datatype| *datatype != DataType::None)
        .ok_or_else(|| format!("datatype {name:?} is not counter, set or map"))?;
    if datatype != target {
        return Err(format!("the line holds a {datatype}, the bucket holds {target} values"));
    }
    let value = line.value.as_ref().ok_or_else(|| format!("a {datatype} line needs its \"value\""))?;
    let mut plan = Plan { key, writes: Vec::new(), expired: 0 };
    let ttl_s = match (datatype, line.expires_ms) {
        (DataType::Map, Some(expires_ms)) => match remaining_ttl_s(expires_ms, now_ms) {
            Some(ttl_s) => Some(ttl_s),
            None => {
                plan.expired = 1;
                return Ok(plan);
            }
        },
        (DataType::Map, None) => None,
        (_, Some(_)) => return Err(format!("\"expires_ms\" on a {datatype}; only maps expire")),
        (_, None) => None,
    };
    let ops = match datatype {
        DataType::Counter => {
            let amount = value.as_i64().ok_or_else(|| format!("a counter's value is a whole number, not {value}"))?;
            vec![json!({ "increment": amount })]
        }
        DataType::Set => set_ops(value)?,
        DataType::Map => {
            let Value::Object(fields) = value else { return Err(format!("a map's value is an object, not {value}")) };
            map_ops(fields)?
        }
        DataType::None => unreachable!("refused above"),
    };
    plan.writes = ops.into_iter().map(|op| Write::Update { op, ttl_s }).collect();
    Ok(plan)
}

/// A set's elements as strings, or why not.
fn set_elements<'a>(value: &'a Value, what: &str) -> Result<Vec<&'a str>, String> {
    let Value::Array(elements) = value else { return Err(format!("{what} is a list of strings, not {value}")) };
    elements
        .iter()
        .map(|element| element.as_str().ok_or_else(|| format!("{what} holds {element}, not a string")))
        .collect()
}

/// `add_all` operations of at most [`MAX_OP_UPDATES`] elements each.
fn set_ops(value: &Value) -> Result<Vec<Value>, String> {
    let elements = set_elements(value, "a set's value")?;
    Ok(elements.chunks(MAX_OP_UPDATES).map(|chunk| json!({ "add_all": chunk })).collect())
}

/// One change to one field of a map, somewhere down its nesting.
struct Leaf {
    /// The labels of the nested maps above it (`["addr_map"]`).
    path: Vec<String>,
    /// Its own label (`"city_register"`).
    label: String,
    /// Its operation.
    op: Value,
    /// What it spends of a map operation's budget (one per label on the
    /// way down, one per set element).
    cost: usize,
    /// Roughly how many bytes of JSON it adds.
    bytes: usize,
}

/// The operations that rebuild a map with these fields.
fn map_ops(fields: &JsonMap<String, Value>) -> Result<Vec<Value>, String> {
    let mut leaves = Vec::new();
    map_leaves(fields, &mut Vec::new(), &mut leaves)?;
    let mut ops = Vec::new();
    let (mut current, mut cost, mut bytes) = (JsonMap::new(), 0usize, 0usize);
    for leaf in leaves {
        let full = cost + leaf.cost > MAX_OPS || bytes + leaf.bytes > MAP_OP_BYTES_MAX;
        if full || contains_leaf(&current, &leaf) {
            ops.push(json!({ "update": std::mem::take(&mut current) }));
            (cost, bytes) = (0, 0);
        }
        cost += leaf.cost;
        bytes += leaf.bytes;
        insert_leaf(&mut current, leaf);
    }
    if !current.is_empty() {
        ops.push(json!({ "update": current }));
    }
    Ok(ops)
}

/// Collects the leaves of `fields` (at `path`). Empty sets and empty nested
/// maps have no operation that creates them, and are left out.
fn map_leaves(fields: &JsonMap<String, Value>, path: &mut Vec<String>, leaves: &mut Vec<Leaf>) -> Result<(), String> {
    for (label, value) in fields {
        let at = || path.iter().chain([label]).cloned().collect::<Vec<_>>().join(".");
        let kind = label.rsplit_once('_').map(|(_, kind)| kind).unwrap_or_default();
        let depth = path.len() + 1;
        let mut leaf = |op: Value, elements: usize| {
            let bytes = op.to_string().len() + label.len() + path.iter().map(|label| label.len() + 16).sum::<usize>();
            leaves.push(Leaf { path: path.clone(), label: label.clone(), op, cost: depth + elements, bytes });
        };
        match (kind, value) {
            ("register", Value::String(_)) => leaf(value.clone(), 0),
            ("flag", Value::Bool(enabled)) => leaf(json!(if *enabled { "enable" } else { "disable" }), 0),
            ("counter", Value::Number(number)) => {
                let amount = number.as_i64().ok_or_else(|| format!("{}: a counter is a whole number", at()))?;
                leaf(json!(amount), 0);
            }
            ("set", _) => {
                let elements = set_elements(value, &at())?;
                for chunk in elements.chunks(MAP_SET_CHUNK) {
                    leaf(json!({ "add_all": chunk }), chunk.len());
                }
            }
            ("map", Value::Object(nested)) => {
                path.push(label.clone());
                let result = map_leaves(nested, path, leaves);
                path.pop();
                result?;
            }
            ("register" | "flag" | "counter" | "map", _) => {
                return Err(format!("{}: a {kind} field cannot hold {value}", at()));
            }
            _ => return Err(format!("{}: not <name>_<type> with a type of register, flag, counter, set or map", at())),
        }
    }
    Ok(())
}

/// The `update` object of the nested map at `path`, if present.
fn nested<'a>(mut level: &'a JsonMap<String, Value>, path: &[String]) -> Option<&'a JsonMap<String, Value>> {
    for label in path {
        level = level.get(label)?.get("update")?.as_object()?;
    }
    Some(level)
}

fn contains_leaf(update: &JsonMap<String, Value>, leaf: &Leaf) -> bool {
    nested(update, &leaf.path).is_some_and(|level| level.contains_key(&leaf.label))
}

fn insert_leaf(update: &mut JsonMap<String, Value>, leaf: Leaf) {
    let mut level = update;
    for label in &leaf.path {
        let entry = level.entry(label.clone()).or_insert_with(|| json!({ "update": {} }));
        level = match entry.get_mut("update").and_then(Value::as_object_mut) {
            Some(inner) => inner,
            None => unreachable!("nested maps are inserted as {{\"update\": {{}}}}"),
        };
    }
    level.insert(leaf.label, leaf.op);
}

/// What [`read_bounded_line`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    /// A line, without its `\n` (or `\r\n`).
    Line(Vec<u8>),
    /// A line longer than the limit, skipped whole; its length in bytes.
    TooLong(usize),
    /// The end of the input.
    End,
}

/// Reads one line of at most `max_bytes`, holding no more than that in
/// memory: a longer line is read through to its end and dropped.
pub fn read_bounded_line(reader: &mut impl BufRead, max_bytes: usize) -> std::io::Result<LineRead> {
    let mut line = Vec::new();
    let (mut total, mut started) = (0usize, false);
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(match (started, total > max_bytes) {
                (false, _) => LineRead::End,
                (true, true) => LineRead::TooLong(total),
                (true, false) => LineRead::Line(line),
            });
        }
        started = true;
        let (chunk, newline) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&buffer[..end], true),
            None => (buffer, false),
        };
        total += chunk.len();
        if total <= max_bytes {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let consumed = chunk.len() + usize::from(newline);
        reader.consume(consumed);
        if newline {
            if total > max_bytes {
                return Ok(LineRead::TooLong(total));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(LineRead::Line(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(text: &str) -> KeyLine {
        match parse_line(text.as_bytes()).expect("parses") {
            Line::Key(line) => *line,
            Line::Header(header) => panic!("a header: {header:?}"),
        }
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds_and_expired_is_none() {
        assert_eq!(remaining_ttl_s(10_001, 10_000), Some(1));
        assert_eq!(remaining_ttl_s(11_000, 10_000), Some(1));
        assert_eq!(remaining_ttl_s(11_001, 10_000), Some(2));
        assert_eq!(remaining_ttl_s(10_000, 10_000), None);
        assert_eq!(remaining_ttl_s(5, 10_000), None);
    }

    #[test]
    fn siblings_become_context_free_puts_and_expired_ones_are_counted() {
        let line = key_line(
            r#"{"key":"k","siblings":[{"content_type":"text/plain","value_b64":"b25l"},
                {"value_b64":"dHdv","expires_ms":5000},{"value_b64":"","expires_ms":500}]}"#,
        );
        let plan = plan(&line, DataType::None, 1000).expect("plan");
        assert_eq!(plan.key, b"k");
        assert_eq!(plan.expired, 1);
        assert_eq!(
            plan.writes,
            vec![
                Write::Put { value: Bytes::from_static(b"one"), content_type: Some("text/plain".into()), ttl_s: None },
                Write::Put { value: Bytes::from_static(b"two"), content_type: None, ttl_s: Some(4) },
            ]
        );
    }

    #[test]
    fn bad_lines_say_what_is_wrong_and_plan_nothing() {
        let cases = [
            (r#"{"key":"k","siblings":[{"value_b64":"!!"}]}"#, DataType::None, "bad base64 in value_b64 of sibling 1"),
            (r#"{"key_b64":"%%","siblings":[{"value_b64":""}]}"#, DataType::None, "bad base64 in key_b64"),
            (r#"{"siblings":[{"value_b64":""}]}"#, DataType::None, "missing \"key\""),
            (r#"{"key":"k"}"#, DataType::None, "missing \"siblings\""),
            (r#"{"key":"k","siblings":[]}"#, DataType::None, "empty"),
            (r#"{"key":"k","siblings":[{"value_b64":""}]}"#, DataType::Set, "the bucket holds set values"),
            (r#"{"key":"k","datatype":"counter","value":1}"#, DataType::Set, "holds a counter, the bucket holds set"),
            (r#"{"key":"k","datatype":"counter","value":1}"#, DataType::None, "the bucket holds none"),
            (r#"{"key":"k","datatype":"gauge","value":1}"#, DataType::Counter, "not counter, set or map"),
            (r#"{"key":"k","datatype":"counter","value":"x"}"#, DataType::Counter, "whole number"),
            (r#"{"key":"k","datatype":"set","value":[1]}"#, DataType::Set, "not a string"),
            (r#"{"key":"k","datatype":"map","value":{"a_flag":"on"}}"#, DataType::Map, "a_flag: a flag field"),
            (r#"{"key":"k","datatype":"map","value":{"a":"x"}}"#, DataType::Map, "a: not <name>_<type>"),
        ];
        for (text, target, expected) in cases {
            let problem = plan(&key_line(text), target, 0).expect_err(text);
            assert!(problem.contains(expected), "{text}: {problem}");
        }
        assert!(parse_line(b"{nope").expect_err("not JSON").starts_with("not JSON"));
        assert!(parse_line(br#"{"dynamo_export":9,"bucket":"b"}"#).expect_err("version").contains("version 9"));
    }

    #[test]
    fn counters_and_sets_rebuild_by_one_increment_and_chunked_adds() {
        let counter = plan(&key_line(r#"{"key":"c","datatype":"counter","value":-7}"#), DataType::Counter, 0);
        assert_eq!(counter.unwrap().writes, vec![Write::Update { op: json!({"increment": -7}), ttl_s: None }]);
        let elements: Vec<String> = (0..MAX_OP_UPDATES + 1).map(|index| index.to_string()).collect();
        let line = KeyLine {
            key: Some("s".into()),
            datatype: Some("set".into()),
            value: Some(json!(elements)),
            ..KeyLine::default()
        };
        let writes = plan(&line, DataType::Set, 0).unwrap().writes;
        assert_eq!(writes.len(), 2);
        let Write::Update { op, .. } = &writes[1] else { panic!() };
        assert_eq!(op, &json!({"add_all": [MAX_OP_UPDATES.to_string()]}));
    }

    #[test]
    fn a_map_rebuilds_by_updates_of_its_leaves_with_its_ttl() {
        let line = key_line(
            r#"{"key":"m","datatype":"map","expires_ms":61000,"value":{"name_register":"Ann","vip_flag":true,
                "off_flag":false,"visits_counter":3,"tags_set":["a","b"],"empty_set":[],
                "addr_map":{"city_register":"Oslo","inner_map":{"n_counter":1}}}}"#,
        );
        let plan = plan(&line, DataType::Map, 1000).expect("plan");
        assert_eq!(
            plan.writes,
            vec![Write::Update {
                op: json!({"update":{"name_register":"Ann","vip_flag":"enable","off_flag":"disable","visits_counter":3,
                    "tags_set":{"add_all":["a","b"]},
                    "addr_map":{"update":{"city_register":"Oslo","inner_map":{"update":{"n_counter":1}}}}}}),
                ttl_s: Some(60),
            }]
        );
        let expired = super::plan(&line, DataType::Map, 61_000).expect("plan");
        assert_eq!((expired.writes.len(), expired.expired), (0, 1));
    }

    #[test]
    fn a_big_map_set_is_split_across_operations_within_the_budget() {
        let elements: Vec<String> = (0..MAP_SET_CHUNK * 3).map(|index| index.to_string()).collect();
        let value = json!({"big_set": elements, "x_register": "y"});
        let Value::Object(fields) = value else { panic!() };
        let ops = map_ops(&fields).expect("ops");
        assert_eq!(ops.len(), 3, "each chunk of the one set field is its own operation: {}", ops.len());
        let added: usize = ops.iter().map(|op| op["update"]["big_set"]["add_all"].as_array().map_or(0, Vec::len)).sum();
        assert_eq!(added, MAP_SET_CHUNK * 3);
    }

    #[test]
    fn lines_are_read_within_a_bound_and_long_ones_skipped_whole() {
        let input = b"short\r\n0123456789abcdef\nlast";
        let mut reader = std::io::BufReader::with_capacity(4, &input[..]);
        assert_eq!(read_bounded_line(&mut reader, 8).unwrap(), LineRead::Line(b"short".to_vec()));
        assert_eq!(read_bounded_line(&mut reader, 8).unwrap(), LineRead::TooLong(16));
        assert_eq!(read_bounded_line(&mut reader, 8).unwrap(), LineRead::Line(b"last".to_vec()));
        assert_eq!(read_bounded_line(&mut reader, 8).unwrap(), LineRead::End);
    }
}
