//! The object API of one real node over HTTP: siblings, contexts, deletes,
//! limits and error responses (SPEC section 4).

mod common;

use bytes::Bytes;
use common::{TestNode, block_on};
use dynamo_client::{GetResult, WriteOptions};
use hyper::Method;

fn with_context(context: &str) -> WriteOptions {
    WriteOptions { context: Some(context.to_string()), ..WriteOptions::default() }
}

fn values(result: &GetResult) -> Vec<String> {
    let mut values: Vec<String> = match result {
        GetResult::Found { sibling, .. } => vec![String::from_utf8_lossy(&sibling.value).into_owned()],
        GetResult::Siblings { siblings, .. } => siblings
            .iter()
            .map(|s| if s.deleted { "<deleted>".to_string() } else { String::from_utf8_lossy(&s.value).into_owned() })
            .collect(),
        GetResult::NotFound { .. } => Vec::new(),
    };
    values.sort();
    values
}

#[test]
fn two_puts_without_context_become_siblings_and_a_put_with_their_context_resolves_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        http.put("carts", b"alice", Bytes::from("apple"), &WriteOptions::default()).await.expect("put 1");
        http.put("carts", b"alice", Bytes::from("pear"), &WriteOptions::default()).await.expect("put 2");

        let raw = http.request(Method::GET, "/buckets/carts/keys/alice", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 300, "two blind writes are concurrent");
        assert!(raw.header("content-type").unwrap_or_default().starts_with("multipart/mixed; boundary="));
        let read = http.get("carts", b"alice", &[]).await.expect("get");
        assert_eq!(values(&read), vec!["apple", "pear"]);

        let context = read.context().expect("siblings carry a context").to_string();
        http.put("carts", b"alice", Bytes::from("apple+pear"), &with_context(&context)).await.expect("resolving put");
        let resolved = http.get("carts", b"alice", &[]).await.expect("get");
        assert!(matches!(resolved, GetResult::Found { .. }), "{resolved:?}");
        assert_eq!(values(&resolved), vec!["apple+pear"]);
    });
}

#[test]
fn a_put_with_a_stale_context_keeps_the_write_it_did_not_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        http.put("b", b"k", Bytes::from("v1"), &WriteOptions::default()).await.expect("put");
        let stale = http.get("b", b"k", &[]).await.expect("get").context().expect("ctx").to_string();
        http.put("b", b"k", Bytes::from("v2"), &with_context(&stale)).await.expect("client A");
        http.put("b", b"k", Bytes::from("v3"), &with_context(&stale)).await.expect("client B, stale");
        assert_eq!(values(&http.get("b", b"k", &[]).await.expect("get")), vec!["v2", "v3"]);
    });
}

#[test]
fn delete_with_context_hides_the_key_and_a_concurrent_put_survives_beside_the_tombstone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        http.put("b", b"k", Bytes::from("v1"), &WriteOptions::default()).await.expect("put");
        let context = http.get("b", b"k", &[]).await.expect("get").context().expect("ctx").to_string();
        http.delete("b", b"k", &with_context(&context)).await.expect("delete");
        let raw = http.request(Method::GET, "/buckets/b/keys/k", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 404);
        assert!(raw.header("x-dynamo-context").is_some(), "a tombstone read still returns its context");

        // A writer that read before the delete writes with the old context:
        // it did not see the delete, so both survive.
        http.put("b", b"k", Bytes::from("v2"), &with_context(&context)).await.expect("concurrent put");
        let read = http.get("b", b"k", &[]).await.expect("get");
        assert!(matches!(read, GetResult::Siblings { .. }), "{read:?}");
        assert_eq!(values(&read), vec!["<deleted>", "v2"]);
    });
}

#[test]
fn a_key_never_written_is_404_without_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let raw = http.request(Method::GET, "/buckets/b/keys/nothing", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 404);
        assert!(raw.header("x-dynamo-context").is_none());
    });
}

#[test]
fn value_above_the_limit_is_413_and_nothing_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &["--max-value-bytes=1024"]);
    block_on(async {
        let mut http = node.connect().await;
        let big = Bytes::from(vec![b'x'; 1025]);
        let raw = http.request(Method::PUT, "/buckets/b/keys/big", &[], big).await.expect("put");
        assert_eq!(raw.status, 413);
        let body = String::from_utf8_lossy(&raw.body);
        assert!(body.contains("1024"), "the message names the limit: {body}");
        let raw = http.request(Method::GET, "/buckets/b/keys/big", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 404, "nothing was stored");
        let exact = Bytes::from(vec![b'x'; 1024]);
        let raw = http.request(Method::PUT, "/buckets/b/keys/exact", &[], exact).await.expect("put");
        assert_eq!(raw.status, 204, "a value at the limit is accepted");
    });
}

/// (method, path, headers, what the error message must mention)
type BadRequestCase = (Method, &'static str, Vec<(&'static str, &'static str)>, &'static str);

#[test]
fn bad_requests_are_400_with_a_message_saying_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let cases: [BadRequestCase; 7] = [
            (Method::PUT, "/buckets/b/keys/k", vec![("x-dynamo-context", "not-a-context!")], "X-Dynamo-Context"),
            (Method::PUT, "/buckets/b/keys/k", vec![("x-dynamo-context", "AQAB")], "X-Dynamo-Context"),
            (Method::PUT, "/buckets/b/keys/k?w=lots", vec![], "w="),
            (Method::PUT, "/buckets/b/keys/k?w=2", vec![], "w=2"),
            (Method::GET, "/buckets/b/keys/k?bogus=1", vec![], "unknown query parameter"),
            (Method::PUT, "/buckets/b/keys/", vec![], "key is empty"),
            (Method::PUT, "/buckets/b%20c/keys/k", vec![], "bucket name"),
        ];
        for (method, path, headers, expected) in cases {
            let raw = http.request(method.clone(), path, &headers, Bytes::from("v")).await.expect("request");
            let body = String::from_utf8_lossy(&raw.body);
            assert_eq!(raw.status, 400, "{method} {path}: {body}");
            assert!(body.contains(expected), "{method} {path}: {body:?} should mention {expected:?}");
        }
        let raw = http.request(Method::GET, "/buckets/b/keys/k", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 404, "no bad request stored anything");
    });
}

#[test]
fn quorum_larger_than_the_cluster_is_503_with_diagnostics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &["--default-n=3", "--default-r=2", "--default-w=2"]);
    block_on(async {
        let mut http = node.connect().await;
        let raw = http.request(Method::PUT, "/buckets/b/keys/k", &[], Bytes::from("v")).await.expect("put");
        assert_eq!(raw.status, 503);
        let body: serde_json::Value = serde_json::from_slice(&raw.body).expect("JSON body");
        assert_eq!(body["needed"], 2);
        assert_eq!(body["answered"], 0, "a write that cannot reach its quorum is not even started");
        let replicas = body["replicas"].as_array().expect("replicas");
        assert_eq!(replicas.len(), 3);
        assert_eq!(replicas.iter().filter(|replica| replica["status"] == "missing").count(), 2, "{body}");
        let raw = http.request(Method::GET, "/buckets/b/keys/k?r=1", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 404, "nothing was written by the refused put");
        // The same write with w=1 goes through.
        let raw = http.request(Method::PUT, "/buckets/b/keys/k?w=1", &[], Bytes::from("v")).await.expect("put");
        assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
    });
}

#[test]
fn keys_with_slashes_spaces_and_binary_bytes_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let key: &[u8] = b"a/b c\xff%";
        http.put("b", key, Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        assert_eq!(values(&http.get("b", key, &[]).await.expect("get")), vec!["v"]);
        assert!(matches!(http.get("b", b"a", &[]).await.expect("get"), GetResult::NotFound { .. }));
    });
}

#[test]
fn content_type_is_stored_with_the_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let options = WriteOptions { content_type: Some("application/json".into()), ..WriteOptions::default() };
        http.put("b", b"k", Bytes::from("{}"), &options).await.expect("put");
        let raw = http.request(Method::GET, "/buckets/b/keys/k", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.header("content-type"), Some("application/json"));
    });
}

#[test]
fn bucket_props_are_validated_and_persist_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let json = [("content-type", "application/json")];
        let raw = http
            .request(Method::PUT, "/buckets/b/props", &json, Bytes::from(r#"{"conflict":"lww"}"#))
            .await
            .expect("put");
        assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
        let raw = http.request(Method::PUT, "/buckets/b/props", &json, Bytes::from(r#"{"w":5}"#)).await.expect("put");
        assert_eq!(raw.status, 400);
        let raw =
            http.request(Method::PUT, "/buckets/b/props", &json, Bytes::from(r#"{"quorum":1}"#)).await.expect("put");
        assert_eq!(raw.status, 400, "unknown fields are refused");
    });
    node.stop();
    node.restart();
    block_on(async {
        let mut http = node.connect().await;
        let raw = http.request(Method::GET, "/buckets/b/props", &[], Bytes::new()).await.expect("get");
        let props: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!(props["conflict"], "lww");
        assert_eq!(props["n"], 1);
        // In an lww bucket two blind writes do not make siblings.
        http.put("b", b"k", Bytes::from("first"), &WriteOptions::default()).await.expect("put");
        http.put("b", b"k", Bytes::from("second"), &WriteOptions::default()).await.expect("put");
        assert_eq!(values(&http.get("b", b"k", &[]).await.expect("get")), vec!["second"]);
    });
}

#[test]
fn metrics_count_requests_per_operation_in_prometheus_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        http.put("b", b"k", Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        http.get("b", b"k", &[]).await.expect("get");
        let raw = http.request(Method::GET, "/metrics", &[], Bytes::new()).await.expect("metrics");
        assert_eq!(raw.status, 200);
        let text = String::from_utf8_lossy(&raw.body);
        assert!(text.contains("op=\"put\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("op=\"get\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("# TYPE dynamo_request_duration_seconds histogram"), "{text}");
    });
}

#[test]
fn admin_replicas_shows_the_versions_the_node_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        http.put("b", b"k", Bytes::from("one"), &WriteOptions::default()).await.expect("put");
        http.put("b", b"k", Bytes::from("two"), &WriteOptions::default()).await.expect("put");
        let raw = http.request(Method::GET, "/admin/replicas/b/k", &[], Bytes::new()).await.expect("admin");
        assert_eq!(raw.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!(body["preference_list"].as_array().map(Vec::len), Some(1));
        let versions = body["replicas"][0]["versions"].as_array().expect("versions");
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0]["digest_md5"].as_str().map(str::len), Some(32));
    });
}

/// Sends `head` (and `body`) on a fresh connection and returns the answer's
/// status line and headers, lower-cased.
fn raw_exchange(addr: &str, head: &str, body: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).expect("read the answer");
        assert!(read > 0, "connection closed before the answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

#[test]
fn an_answer_that_leaves_the_request_body_unread_says_the_connection_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &["--max-value-bytes=1024"]);
    let addr = node.addr();
    // Refused before its body is read: a bad bucket, half of the body sent.
    let head = format!("PUT /buckets/b%2F/keys/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\n");
    let answer = raw_exchange(&addr, &head, b"hello");
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    // Refused by its declared length.
    let head = format!("PUT /buckets/b/keys/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 999999\r\n\r\n");
    let answer = raw_exchange(&addr, &head, b"");
    assert!(answer.starts_with("http/1.1 413") && answer.contains("connection: close"), "{answer}");
    // A body read to its end keeps the connection: no such header.
    let head = format!("PUT /buckets/b/keys/k HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\n\r\n");
    let answer = raw_exchange(&addr, &head, b"hello");
    assert!(answer.starts_with("http/1.1 204") && !answer.contains("connection: close"), "{answer}");
    let head = format!("GET /buckets/b/keys/k HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let answer = raw_exchange(&addr, &head, b"");
    assert!(answer.starts_with("http/1.1 200") && !answer.contains("connection: close"), "{answer}");
}
