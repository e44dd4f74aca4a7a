//! Export and import on real processes (issue 14): export a bucket, wipe
//! the cluster (a fresh one in a new directory), import, export again, and
//! the two exports hold the same keys, the same sibling sets and the same
//! expiries (within the whole second a TTL is rounded to); data-type
//! buckets (counter, set, map) come back with the same values, their
//! props set from the export's header; and a file with bad lines has each
//! reported by number while the good ones are imported, exit code 1.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use common::{TestCluster, TestNode, block_on, dynamo_bin};
use dynamo_client::{Connection, WriteOptions};
use hyper::Method;
use serde_json::{Value, json};

/// Buckets of the round trip: opaque values, and one of each data type.
const OBJECTS: &str = "objects";
const DATATYPE_BUCKETS: [(&str, &str); 3] = [("hits", "counter"), ("tags", "set"), ("profiles", "map")];
/// A TTL long enough that nothing expires during the test.
const TTL_S: u64 = 3600;
/// How far apart the two exports' expiries of one value may be: the TTL is
/// carried in whole seconds, rounded up.
const EXPIRY_SLACK_MS: i64 = 2000;

/// Runs `dynamo args...` with `stdin` as its input.
fn dynamo(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(dynamo_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dynamo");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("dynamo output");
    writer.join().expect("stdin writer");
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn export(addr: &str, bucket: &str) -> Vec<u8> {
    let output = dynamo(&["export", &format!("--node={addr}"), bucket], b"");
    assert!(output.status.success(), "export of {bucket} failed: {}", stderr(&output));
    output.stdout
}

fn import(addr: &str, bucket: &str, file: &[u8]) {
    let output = dynamo(&["import", &format!("--node={addr}"), bucket], file);
    assert!(output.status.success(), "import into {bucket} failed: {}", stderr(&output));
}

async fn put(
    http: &mut Connection,
    bucket: &str,
    key: &[u8],
    value: &[u8],
    content_type: Option<&str>,
    ttl_s: Option<u64>,
) {
    let query = ttl_s.map(|ttl_s| ("ttl_s".to_string(), ttl_s.to_string())).into_iter().collect();
    let options = WriteOptions { query, context: None, content_type: content_type.map(str::to_string) };
    http.put(bucket, key, Bytes::copy_from_slice(value), &options).await.expect("put");
}

async fn call(http: &mut Connection, method: Method, path: &str, body: &str) {
    let raw = http
        .request(method, path, &[("Content-Type", "application/json")], Bytes::from(body.to_string()))
        .await
        .expect("request");
    assert!(raw.status == 204 || raw.status == 200, "{path}: {} {}", raw.status, String::from_utf8_lossy(&raw.body));
}

/// Fills cluster A: plain values, content types, two and three siblings
/// (context-free writes through different nodes), TTLs (also on one of two
/// siblings), a key and a value that are not UTF-8, a deleted key, and a
/// counter, sets and maps (one with an expiry, one nested).
fn fill(cluster: &TestCluster) {
    block_on(async {
        let mut via: Vec<Connection> = Vec::new();
        for node in &cluster.nodes {
            via.push(node.connect().await);
        }
        for index in 0..30 {
            let content_type = ["text/plain", "application/json", "image/png"].get(index % 4).copied();
            let value = format!("value {index}");
            let ttl_s = (index % 5 == 0).then_some(TTL_S);
            put(
                &mut via[index % 3],
                OBJECTS,
                format!("plain-{index}").as_bytes(),
                value.as_bytes(),
                content_type,
                ttl_s,
            )
            .await;
        }
        for (count, key) in [(2usize, "two-siblings"), (3, "three-siblings")] {
            for (sibling, http) in via.iter_mut().enumerate().take(count) {
                let value = format!("{key} #{sibling}");
                put(http, OBJECTS, key.as_bytes(), value.as_bytes(), Some("text/plain"), None).await;
            }
        }
        put(&mut via[0], OBJECTS, b"mixed-ttl", b"lasts", None, None).await;
        put(&mut via[1], OBJECTS, b"mixed-ttl", b"expires", Some("text/plain"), Some(TTL_S)).await;
        put(&mut via[2], OBJECTS, b"\xff\xfebinary\x00key", b"\x00\x01\xff\xfe not text", None, None).await;
        put(&mut via[0], OBJECTS, b"deleted", b"soon gone", None, None).await;
        let read = via[0].get(OBJECTS, b"deleted", &[]).await.expect("get");
        let options = WriteOptions { context: read.context().map(str::to_string), ..WriteOptions::default() };
        via[0].delete(OBJECTS, b"deleted", &options).await.expect("delete");

        for (bucket, datatype) in DATATYPE_BUCKETS {
            call(
                &mut via[0],
                Method::PUT,
                &format!("/buckets/{bucket}/props"),
                &format!(r#"{{"datatype":"{datatype}"}}"#),
            )
            .await;
        }
        for (key, amount) in [("home", 5), ("about", -3), ("faq", 12)] {
            call(
                &mut via[1],
                Method::POST,
                &format!("/buckets/hits/datatypes/{key}"),
                &format!(r#"{{"increment":{amount}}}"#),
            )
            .await;
        }
        call(&mut via[2], Method::POST, "/buckets/hits/datatypes/home", r#"{"increment":2}"#).await;
        // A counter back at zero, and a map with a disabled flag and a
        // counter at zero: values rebuilt by an operation of no effect.
        call(&mut via[0], Method::POST, "/buckets/hits/datatypes/zero", r#"{"increment":4}"#).await;
        call(&mut via[1], Method::POST, "/buckets/hits/datatypes/zero", r#"{"increment":-4}"#).await;
        let quiet = r#"{"update":{"off_flag":"enable","none_counter":2,"name_register":"q"}}"#;
        call(&mut via[0], Method::POST, "/buckets/profiles/datatypes/quiet", quiet).await;
        let quieter = r#"{"update":{"off_flag":"disable","none_counter":-2}}"#;
        call(&mut via[1], Method::POST, "/buckets/profiles/datatypes/quiet", quieter).await;
        call(&mut via[0], Method::POST, "/buckets/tags/datatypes/alice", r#"{"add_all":["apple","fig","pear"]}"#).await;
        call(&mut via[1], Method::POST, "/buckets/tags/datatypes/alice", r#"{"add":"plum"}"#).await;
        let many: Vec<String> = (0..1500).map(|index| format!("element-{index}")).collect();
        let op = json!({ "add_all": many[..1000] }).to_string();
        call(&mut via[2], Method::POST, "/buckets/tags/datatypes/many", &op).await;
        let op = json!({ "add_all": many[1000..] }).to_string();
        call(&mut via[0], Method::POST, "/buckets/tags/datatypes/many", &op).await;
        let profile = r#"{"update":{"name_register":"Ann","vip_flag":"enable","visits_counter":3,
            "tags_set":{"add_all":["a","b"]},"home_map":{"update":{"city_register":"Oslo","floor_counter":2,
            "keys_set":{"add":"front"},"inner_map":{"update":{"deep_register":"yes"}}}}}}"#;
        call(&mut via[1], Method::POST, "/buckets/profiles/datatypes/ann", profile).await;
        let session = r#"{"update":{"cart_register":"3 items","seen_flag":"enable"}}"#;
        call(&mut via[2], Method::POST, &format!("/buckets/profiles/datatypes/session?ttl_s={TTL_S}"), session).await;
    });
}

/// An export's lines by key (the header under `""`), each line without
/// its context (contexts belong to the cluster that wrote them).
fn by_key(file: &[u8]) -> BTreeMap<String, Value> {
    let mut lines = BTreeMap::new();
    for (index, line) in file.split(|byte| *byte == b'\n').filter(|line| !line.is_empty()).enumerate() {
        let mut value: Value = serde_json::from_slice(line).expect("every exported line is JSON");
        if index == 0 {
            assert_eq!(value["dynamo_export"], 1, "line 1 is the header");
            lines.insert(String::new(), value);
            continue;
        }
        let key = match (&value["key"], &value["key_b64"]) {
            (Value::String(key), Value::Null) => key.clone(),
            (Value::Null, Value::String(key)) => format!("b64:{key}"),
            other => panic!("a line with no key: {other:?}"),
        };
        let object = value.as_object_mut().expect("object");
        let context = object.remove("context");
        // A counter's read has no context; every other has one.
        assert!(context.is_some() || object["datatype"] == "counter", "{key}: the line carries its context");
        assert!(lines.insert(key.clone(), value).is_none(), "{key} exported twice");
    }
    lines
}

/// The siblings of a line as sorted (content type, value) pairs, each with
/// its expiry.
fn siblings(line: &Value) -> Vec<((String, String), Option<i64>)> {
    let mut siblings: Vec<_> = line["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|sibling| {
            let content_type = sibling["content_type"].as_str().unwrap_or_default().to_string();
            let value = sibling["value_b64"].as_str().expect("value_b64").to_string();
            ((content_type, value), sibling["expires_ms"].as_i64())
        })
        .collect();
    siblings.sort();
    siblings
}

fn assert_expiry_close(what: &str, before: Option<i64>, after: Option<i64>) {
    match (before, after) {
        (None, None) => {}
        (Some(before), Some(after)) => {
            assert!(
                (after - before).abs() <= EXPIRY_SLACK_MS,
                "{what}: expired at {before}, after the round trip {after}"
            )
        }
        other => panic!("{what}: expiry {other:?} before and after the round trip"),
    }
}

/// Asserts two exports hold the same keys, sibling sets, values and
/// expiries, and the same props.
fn assert_same_export(bucket: &str, before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) {
    assert_eq!(before[""]["props"], after[""]["props"], "{bucket}: props");
    let keys_before: Vec<&String> = before.keys().collect();
    let keys_after: Vec<&String> = after.keys().collect();
    assert_eq!(keys_before, keys_after, "{bucket}: the same keys");
    for (key, line) in before.iter().filter(|(key, _)| !key.is_empty()) {
        let again = &after[key];
        if line.get("datatype").is_some() {
            assert_eq!(line["datatype"], again["datatype"], "{bucket}/{key}");
            let sorted = |value: &Value| match value {
                Value::Array(items) => {
                    let mut items = items.clone();
                    items.sort_by_key(Value::to_string);
                    Value::Array(items)
                }
                other => other.clone(),
            };
            assert_eq!(sorted(&line["value"]), sorted(&again["value"]), "{bucket}/{key}: the value");
            assert_expiry_close(&format!("{bucket}/{key}"), line["expires_ms"].as_i64(), again["expires_ms"].as_i64());
            continue;
        }
        let (siblings_before, siblings_after) = (siblings(line), siblings(again));
        let values = |siblings: &[((String, String), Option<i64>)]| {
            siblings.iter().map(|(pair, _)| pair.clone()).collect::<Vec<_>>()
        };
        assert_eq!(values(&siblings_before), values(&siblings_after), "{bucket}/{key}: the same sibling set");
        for (before, after) in siblings_before.iter().zip(&siblings_after) {
            assert_expiry_close(&format!("{bucket}/{key} {:?}", before.0), before.1, after.1);
        }
    }
}

#[test]
fn export_wipe_import_export_keeps_keys_siblings_and_ttls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).expect("dir a");
    std::fs::create_dir_all(&dir_b).expect("dir b");
    let cluster_a = TestCluster::start(&dir_a, 3, &[]);
    fill(&cluster_a);
    let buckets: Vec<&str> = [OBJECTS].into_iter().chain(DATATYPE_BUCKETS.iter().map(|(bucket, _)| *bucket)).collect();
    let exports: Vec<Vec<u8>> = buckets.iter().map(|bucket| export(&cluster_a.nodes[1].addr(), bucket)).collect();
    drop(cluster_a);

    let objects = by_key(&exports[0]);
    assert_eq!(objects.len(), 1 + 30 + 2 + 2, "header, plain keys, sibling keys, mixed-ttl, binary key");
    assert!(!objects.contains_key("deleted"), "a deleted key is not exported");
    assert_eq!(siblings(&objects["three-siblings"]).len(), 3, "{}", objects["three-siblings"]);
    assert_eq!(siblings(&objects["two-siblings"]).len(), 2);
    let mixed = siblings(&objects["mixed-ttl"]);
    assert_eq!(mixed.iter().filter(|(_, expires)| expires.is_some()).count(), 1, "{mixed:?}");
    assert!(siblings(&objects["plain-5"])[0].1.is_some(), "a TTL is exported as its expiry");
    assert_eq!(by_key(&exports[1])["home"]["value"], 7);
    assert_eq!(by_key(&exports[1])["zero"]["value"], 0, "a counter at zero is still a key");
    let quiet = &by_key(&exports[3])["quiet"]["value"];
    // A disabled flag reads as absent (as in Riak); a counter at zero stays.
    assert_eq!((&quiet["off_flag"], &quiet["none_counter"]), (&Value::Null, &json!(0)), "{quiet}");
    assert_eq!(by_key(&exports[2])["many"]["value"].as_array().map(Vec::len), Some(1500));
    assert!(by_key(&exports[3])["session"]["expires_ms"].is_u64(), "a map's expiry is exported");

    let cluster_b = TestCluster::start(&dir_b, 3, &[]);
    for (bucket, file) in buckets.iter().zip(&exports) {
        import(&cluster_b.nodes[2].addr(), bucket, file);
    }
    for (bucket, file) in buckets.iter().zip(&exports) {
        let again = export(&cluster_b.nodes[0].addr(), bucket);
        assert_same_export(bucket, &by_key(file), &by_key(&again));
    }
}

#[test]
fn bad_lines_are_reported_by_number_and_the_rest_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    let addr = node.addr();
    let long_value = "QUFB".repeat(200);
    let file = [
        r#"{"dynamo_export":1,"bucket":"somewhere"}"#.to_string(),
        "this is not JSON".to_string(),
        r#"{"key":"good-1","siblings":[{"content_type":"text/plain","value_b64":"b25l"}]}"#.to_string(),
        r#"{"key":"bad-base64","siblings":[{"value_b64":"not base64!"}]}"#.to_string(),
        r#"{"key":"good-2","siblings":[{"value_b64":"YQ=="},{"value_b64":"Yg=="}]}"#.to_string(),
        r#"{"key":"counter","datatype":"counter","value":3}"#.to_string(),
        r#"{"siblings":[{"value_b64":"YQ=="}]}"#.to_string(),
        format!(r#"{{"key":"too-long","siblings":[{{"value_b64":"{long_value}"}}]}}"#),
        r#"{"key":"expired","siblings":[{"value_b64":"YQ==","expires_ms":1000}]}"#.to_string(),
        String::new(),
    ]
    .join("\n");
    let output = dynamo(&["import", &format!("--node={addr}"), "--max-line-bytes=500", "imported"], file.as_bytes());
    let report = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "a failed line makes the exit code 1: {report}");
    for (line, reason) in [
        (2, "not JSON"),
        (4, "bad base64"),
        (6, "holds a counter, the bucket holds none"),
        (7, "missing \"key\""),
        (8, "over the limit of 500"),
    ] {
        let reported = report.lines().find(|text| text.starts_with(&format!("line {line}: ")));
        let reported = reported.unwrap_or_else(|| panic!("line {line} is not reported: {report}"));
        assert!(reported.contains(reason), "line {line}: {reported}");
    }
    for line in [1, 3, 5, 9] {
        assert!(!report.contains(&format!("line {line}:")), "line {line} is fine: {report}");
    }
    assert!(report.contains("5 of 8 lines failed"), "{report}");
    assert!(report.contains("1 siblings or maps expired"), "{report}");

    let exported = by_key(&export(&addr, "imported"));
    let keys: Vec<&str> = exported.keys().map(String::as_str).collect();
    assert_eq!(keys, ["", "good-1", "good-2"], "the good lines are imported");
    assert_eq!(siblings(&exported["good-2"]).len(), 2, "as siblings");
    assert_eq!(siblings(&exported["good-1"])[0].0, ("text/plain".to_string(), "b25l".to_string()));
}
