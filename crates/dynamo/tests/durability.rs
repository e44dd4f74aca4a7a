//! Durability and lifecycle of a real node process: acknowledged durable
//! writes survive `kill -9`, corruption on disk is reported and not served,
//! and SIGTERM lets in-flight requests finish.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use bytes::Bytes;
use common::{TestNode, block_on};
use dynamo_client::{GetResult, WriteOptions};
use dynamo_core::keys::{DEFAULT_PARTITIONS, ObjectKey};
use dynamo_storage::{Engine as _, Namespace};
use hyper::Method;

#[test]
fn a_put_acknowledged_with_dw_1_survives_kill_9_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        for index in 0..50 {
            let options = WriteOptions { query: vec![("dw".into(), "1".into())], ..WriteOptions::default() };
            http.put("b", format!("k{index}").as_bytes(), Bytes::from(format!("v{index}")), &options)
                .await
                .expect("durable put");
        }
    });
    node.kill_9();
    node.restart();
    block_on(async {
        let mut http = node.connect().await;
        for index in 0..50 {
            match http.get("b", format!("k{index}").as_bytes(), &[]).await.expect("get") {
                GetResult::Found { sibling, .. } => assert_eq!(sibling.value, Bytes::from(format!("v{index}"))),
                other => panic!("k{index} lost after kill -9: {other:?}"),
            }
        }
    });
}

#[test]
fn a_corrupted_record_on_disk_is_reported_as_corruption_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::start(dir.path(), &[]);
    block_on(async {
        let mut http = node.connect().await;
        let options = WriteOptions { query: vec![("dw".into(), "1".into())], ..WriteOptions::default() };
        http.put("b", b"victim", Bytes::from("precious value"), &options).await.expect("put");
        http.put("b", b"bystander", Bytes::from("fine"), &options).await.expect("put");
    });
    node.stop();
    {
        let engine = dynamo_storage::fjall_engine::FjallEngine::open(&dir.path().join("fjall")).expect("open fjall");
        let key = ObjectKey::new("b", b"victim").expect("key").storage_key(DEFAULT_PARTITIONS);
        // One bit of the value's last byte.
        dynamo_storage::record::damage(&engine, Namespace::Objects, &key).expect("record exists");
        engine.sync().expect("sync");
    }
    node.restart();
    block_on(async {
        let mut http = node.connect().await;
        let raw = http.request(Method::GET, "/buckets/b/keys/victim", &[], Bytes::new()).await.expect("get");
        let body = String::from_utf8_lossy(&raw.body);
        assert_ne!(raw.status, 200, "corrupt data must not be served: {body}");
        assert!(body.contains("corruption"), "the error names the corruption: {body}");
        assert!(!body.contains("precious"), "no part of the value leaks: {body}");
        let raw = http.request(Method::GET, "/buckets/b/keys/bystander", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 200, "other keys are unaffected");
        let metrics = http.request(Method::GET, "/metrics", &[], Bytes::new()).await.expect("metrics");
        assert!(
            String::from_utf8_lossy(&metrics.body).contains("dynamo_storage_corruptions_total{node=\"node-"),
            "metric exported"
        );
    });
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::start(dir.path(), &[]);
    // Start a PUT whose body is only half sent.
    let mut stream = std::net::TcpStream::connect(node.addr()).expect("connect");
    let head = format!("PUT /buckets/b/keys/slow HTTP/1.1\r\nHost: {}\r\nContent-Length: 10\r\n\r\nhello", node.addr());
    stream.write_all(head.as_bytes()).expect("send head");
    std::thread::sleep(Duration::from_millis(300));
    node.sigterm();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown began...
    assert!(std::net::TcpStream::connect(node.addr()).is_err(), "listener closed on SIGTERM");
    // ...but the in-flight request completes.
    stream.write_all(b"world").expect("send rest");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut response = vec![0u8; 512];
    let read = stream.read(&mut response).expect("response");
    let response = String::from_utf8_lossy(&response[..read]);
    assert!(response.starts_with("HTTP/1.1 204"), "in-flight PUT answered: {response}");
    drop(stream);
    assert!(node.wait_exit(Duration::from_secs(20)), "clean exit after draining");
    node.restart();
    block_on(async {
        let mut http = node.connect().await;
        match http.get("b", b"slow", &[]).await.expect("get") {
            GetResult::Found { sibling, .. } => assert_eq!(sibling.value, Bytes::from("helloworld")),
            other => panic!("the drained write was lost: {other:?}"),
        }
    });
}
