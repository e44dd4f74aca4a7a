//! A real three-node cluster on loopback (N=3, R=2, W=2): replication,
//! quorums under node failures, read repair, and the cluster secret.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::{GetResult, WriteOptions};
use hyper::Method;

fn value_of(result: &GetResult) -> Option<String> {
    match result {
        GetResult::Found { sibling, .. } => Some(String::from_utf8_lossy(&sibling.value).into_owned()),
        _ => None,
    }
}

async fn admin_replicas(cluster: &TestCluster, via: usize, key: &str) -> serde_json::Value {
    let mut http = cluster.nodes[via].connect().await;
    let raw = http.request(Method::GET, &format!("/admin/replicas/b/{key}"), &[], Bytes::new()).await.expect("admin");
    assert_eq!(raw.status, 200);
    serde_json::from_slice(&raw.body).expect("json")
}

/// How many replicas hold at least one version of the key.
fn replicas_holding(admin: &serde_json::Value) -> usize {
    admin["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|replica| replica["versions"].as_array().is_some_and(|versions| !versions.is_empty()))
        .count()
}

#[test]
fn a_key_written_through_node_0_is_read_through_node_2_and_stored_on_three_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let mut node2 = cluster.nodes[2].connect().await;
        for index in 0..20 {
            let key = format!("k{index}");
            node0
                .put("b", key.as_bytes(), Bytes::from(format!("v{index}")), &WriteOptions::default())
                .await
                .expect("put");
            let read = node2.get("b", key.as_bytes(), &[]).await.expect("get");
            assert_eq!(value_of(&read).as_deref(), Some(format!("v{index}").as_str()));
        }
        // W=2 answers after two acks; the third replica gets the write too.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let admin = admin_replicas(&cluster, 1, "k7").await;
            assert_eq!(admin["preference_list"].as_array().map(Vec::len), Some(3));
            if replicas_holding(&admin) == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "the write never reached all three replicas: {admin}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn with_one_node_killed_puts_and_gets_succeed_and_with_two_killed_a_w2_put_is_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[]);
    cluster.nodes[2].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let mut node1 = cluster.nodes[1].connect().await;
        for index in 0..20 {
            let key = format!("k{index}");
            node0
                .put("b", key.as_bytes(), Bytes::from("v"), &WriteOptions::default())
                .await
                .expect("put with one down");
            assert_eq!(value_of(&node1.get("b", key.as_bytes(), &[]).await.expect("get")).as_deref(), Some("v"));
        }
    });
    cluster.nodes[1].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let raw = node0.request(Method::PUT, "/buckets/b/keys/k0", &[], Bytes::from("v2")).await.expect("put");
        assert_eq!(raw.status, 503);
        let body: serde_json::Value = serde_json::from_slice(&raw.body).expect("json body");
        assert_eq!(body["needed"], 2);
        assert_eq!(body["answered"], 1, "only the coordinator itself acknowledged: {body}");
        let failed: Vec<&serde_json::Value> =
            body["replicas"].as_array().expect("replicas").iter().filter(|r| r["status"] == "failed").collect();
        assert_eq!(failed.len(), 2, "{body}");
        assert!(failed.iter().all(|r| r["reason"].as_str().is_some_and(|reason| !reason.is_empty())), "{body}");
        // R=1 still reads what W=2 wrote before.
        let read = node0.get("b", b"k3", &[("r".to_string(), "1".to_string())]).await.expect("get r=1");
        assert_eq!(value_of(&read).as_deref(), Some("v"));
    });
}

#[test]
fn a_restarted_node_catches_up_through_read_repair() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Hint delivery and anti-entropy off: either would bring node2 up to
    // date too, and this test is about read repair alone.
    let args = ["--hint-delivery-interval-ms=3600000", "--anti-entropy-interval-ms=0"];
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    cluster.nodes[2].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        node0.put("b", b"missed", Bytes::from("while you were away"), &WriteOptions::default()).await.expect("put");
    });
    cluster.nodes[2].restart();
    block_on(async {
        let before = admin_replicas(&cluster, 0, "missed").await;
        assert_eq!(replicas_holding(&before), 2, "node2 missed the write: {before}");
        let mut node1 = cluster.nodes[1].connect().await;
        let read = node1.get("b", b"missed", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert_eq!(value_of(&read).as_deref(), Some("while you were away"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let after = admin_replicas(&cluster, 0, "missed").await;
            if replicas_holding(&after) == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "read repair never reached node2: {after}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn concurrent_writes_through_different_nodes_become_siblings_everywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let mut node1 = cluster.nodes[1].connect().await;
        node0.put("b", b"k", Bytes::from("from0"), &WriteOptions::default()).await.expect("put");
        node1.put("b", b"k", Bytes::from("from1"), &WriteOptions::default()).await.expect("put");
        let mut node2 = cluster.nodes[2].connect().await;
        let read = node2.get("b", b"k", &[("r".to_string(), "3".to_string())]).await.expect("get");
        let GetResult::Siblings { siblings, context } = read else { panic!("expected siblings, got {read:?}") };
        assert_eq!(siblings.len(), 2);
        let options = WriteOptions { context: Some(context), ..WriteOptions::default() };
        node2.put("b", b"k", Bytes::from("merged"), &options).await.expect("resolve");
        let read = node0.get("b", b"k", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert_eq!(value_of(&read).as_deref(), Some("merged"));
    });
}

#[test]
fn rpc_connections_without_the_cluster_secret_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    let rpc_addr = format!("127.0.0.1:{}", cluster.nodes[0].port + 1000);
    block_on(async {
        // A peer with the wrong secret.
        let wrong = dynamo_rpc::ClusterSecret::new(b"not-the-cluster-secret".to_vec()).expect("long enough");
        let config = dynamo_rpc::RpcConfig::new("intruder", wrong, std::sync::Arc::new(dynamo_rpc::OsNonce))
            .expect("valid config");
        let client = dynamo_rpc::RpcClient::new(dynamo_rpc::TcpTransport::default(), config);
        let request = dynamo_core::messages::Request::Ping;
        let outcome =
            client.call(&rpc_addr, request.method(), Bytes::from(request.encode()), Duration::from_secs(5)).await;
        let error = outcome.expect_err("a wrong secret is refused");
        assert!(error.to_string().contains("auth"), "{error}");
        // Raw garbage: the connection is closed without an answer.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut raw = tokio::net::TcpStream::connect(&rpc_addr).await.expect("connect");
        let _ = raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "garbage gets no answer, only a closed connection: {read:?}");
        // The cluster still works.
        let mut node0 = cluster.nodes[0].connect().await;
        node0.put("b", b"k", Bytes::from("v"), &WriteOptions::default()).await.expect("put");
    });
}

#[test]
fn a_node_outside_the_preference_list_forwards_writes_to_a_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 4, &[]);
    block_on(async {
        let mut node3 = cluster.nodes[3].connect().await;
        let mut node0 = cluster.nodes[0].connect().await;
        let mut forwarded = 0;
        for index in 0..40 {
            let key = format!("k{index}");
            node3.put("b", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await.expect("put");
            let read = node0.get("b", key.as_bytes(), &[]).await.expect("get");
            assert_eq!(value_of(&read).as_deref(), Some(key.as_str()));
            let admin = admin_replicas(&cluster, 0, &key).await;
            let list: Vec<&str> =
                admin["preference_list"].as_array().expect("list").iter().filter_map(|node| node.as_str()).collect();
            assert_eq!(list.len(), 3);
            if !list.contains(&"node3") {
                forwarded += 1;
            }
        }
        assert!(forwarded > 0, "some of 40 keys must live off node3, so their writes were forwarded");
    });
}

#[test]
fn bucket_props_set_through_one_node_apply_on_every_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[]);
    let json = [("content-type", "application/json")];
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let raw = node0.request(Method::PUT, "/buckets/s/props", &json, Bytes::from(r#"{"conflict":"lww"}"#)).await;
        assert_eq!(raw.expect("put props").status, 204);
        for node in &cluster.nodes {
            let mut http = node.connect().await;
            let raw = http.request(Method::GET, "/buckets/s/props", &[], Bytes::new()).await.expect("get props");
            let props: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
            assert_eq!(props["conflict"], "lww", "{}", node.addr());
        }
    });
    cluster.nodes[2].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let raw = node0.request(Method::PUT, "/buckets/s/props", &json, Bytes::from(r#"{"w":3}"#)).await;
        let raw = raw.expect("put props");
        assert_eq!(raw.status, 503, "a member is down, so the change is not everywhere");
        assert!(String::from_utf8_lossy(&raw.body).contains("node2"), "the body names the missing member");
    });
    cluster.nodes[2].restart();
    block_on(async {
        let mut node1 = cluster.nodes[1].connect().await;
        let raw = node1.request(Method::PUT, "/buckets/s/props", &json, Bytes::from(r#"{"w":3}"#)).await;
        assert_eq!(raw.expect("repeat").status, 204, "repeating reaches the restarted member");
        let mut node2 = cluster.nodes[2].connect().await;
        let raw = node2.request(Method::GET, "/buckets/s/props", &[], Bytes::new()).await.expect("get props");
        let props: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!((props["w"].clone(), props["conflict"].clone()), (serde_json::json!(3), serde_json::json!("lww")));
    });
}

#[test]
fn a_corrupt_record_on_one_replica_is_read_around_and_replaced_by_read_repair() {
    use dynamo_storage::{Engine as _, Namespace};
    let dir = tempfile::tempdir().expect("tempdir");
    // Hint delivery and anti-entropy off: this test is about reads alone.
    let args = ["--hint-delivery-interval-ms=3600000", "--anti-entropy-interval-ms=0"];
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    let all = WriteOptions { query: vec![("w".into(), "3".into()), ("dw".into(), "3".into())], ..Default::default() };
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        node0.put("b", b"rotten", Bytes::from("good value"), &all).await.expect("put on all three");
    });
    cluster.nodes[2].stop();
    {
        let fjall = cluster.nodes[2].data_dir.join("fjall");
        let engine = dynamo_storage::fjall_engine::FjallEngine::open(&fjall).expect("open node2's storage");
        let key = dynamo_core::keys::ObjectKey::new("b", b"rotten")
            .expect("key")
            .storage_key(dynamo_core::keys::DEFAULT_PARTITIONS);
        dynamo_storage::record::damage(&engine, Namespace::Objects, &key).expect("node2 holds the key");
        engine.sync().expect("sync");
    }
    cluster.nodes[2].restart();
    cluster.wait_until_peers_up();
    block_on(async {
        let before = admin_replicas(&cluster, 0, "rotten").await;
        let node2 = before["replicas"].as_array().expect("replicas").iter().find(|r| r["node"] == "node2").cloned();
        let node2 = node2.expect("node2 is a replica");
        assert_eq!(node2["status"], "unreadable", "{before}");
        assert!(node2["reason"].as_str().is_some_and(|reason| reason.contains("corruption")), "{before}");
        // Through node2 itself: the two good replicas answer (r = 2).
        let mut via_node2 = cluster.nodes[2].connect().await;
        let read = via_node2.get("b", b"rotten", &[]).await.expect("get");
        assert_eq!(value_of(&read).as_deref(), Some("good value"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let after = admin_replicas(&cluster, 0, "rotten").await;
            if replicas_holding(&after) == 3 {
                break;
            }
            assert!(Instant::now() < deadline, "read repair never replaced node2's corrupt record: {after}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And node2 coordinates writes to the key again.
        let GetResult::Found { context, .. } = read else { panic!("one value expected: {read:?}") };
        let over_it = WriteOptions { context: Some(context), ..all };
        via_node2.put("b", b"rotten", Bytes::from("newer"), &over_it).await.expect("put through node2");
        let read = via_node2.get("b", b"rotten", &[("r".to_string(), "3".to_string())]).await.expect("get r=3");
        assert_eq!(value_of(&read).as_deref(), Some("newer"));
    });
}
