//! What the nodes offer a partition-aware client (paper section 6.4,
//! issue 15), on real processes: `GET /ring` and the ring epoch on every
//! answer, a client-side ring model that routes exactly as the nodes do,
//! and the replica endpoints a client coordinates reads and repairs with.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, TestNode, block_on};
use dynamo_client::ring::ring_epoch;
use dynamo_client::{Connection, RawResponse, RingView, WriteOptions};
use dynamo_core::codec::{decode_object, encode_object};
use dynamo_core::hlc::Hlc;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::ConflictMode;
use dynamo_core::ring::NodeId;
use dynamo_core::version::{ActorId, VersionVector};
use hyper::Method;
use serde_json::Value;

/// Gossip five times a second, so a commit spreads in well under a second.
const GOSSIP: &str = "--gossip-interval-ms=200";
/// What "within a few seconds" allows on a loaded 2-core machine.
const SPREAD_DEADLINE: Duration = Duration::from_secs(15);

async fn get(http: &mut Connection, path: &str) -> RawResponse {
    http.request(Method::GET, path, &[], Bytes::new()).await.expect("GET")
}

async fn get_json(http: &mut Connection, path: &str) -> Value {
    let answer = get(http, path).await;
    assert_eq!(answer.status, 200, "{path}: {}", String::from_utf8_lossy(&answer.body));
    serde_json::from_slice(&answer.body).expect("JSON")
}

async fn put_replica(http: &mut Connection, path: &str, body: Bytes) -> RawResponse {
    http.request(Method::PUT, path, &[("content-type", "application/octet-stream")], body).await.expect("PUT")
}

/// The vtag `/admin/replicas` shows for each version of `object`.
fn vtags(object: &VersionedObject) -> Vec<String> {
    object.siblings().iter().map(|sibling| format!("{}-{}", sibling.dot.actor, sibling.dot.counter)).collect()
}

/// The vtags `/admin/replicas` shows for `node`'s copy.
fn admin_vtags(replicas: &Value, node: &str) -> Vec<String> {
    let entry = replicas["replicas"].as_array().expect("replicas").iter().find(|entry| entry["node"] == node);
    let entry = entry.unwrap_or_else(|| panic!("{node} not among the replicas: {replicas}"));
    assert_eq!(entry["status"], "ok", "{entry}");
    entry["versions"].as_array().expect("versions").iter().map(|version| version["vtag"].to_string()).collect()
}

fn quoted(tags: Vec<String>) -> Vec<String> {
    tags.into_iter().map(|tag| format!("\"{tag}\"")).collect()
}

#[test]
fn a_client_rebuilds_the_nodes_ring_and_reads_and_repairs_replicas_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    // Statically configured members know each other's RPC addresses only;
    // each one's HTTP address arrives with its own record, by gossip.
    wait_until("every node knows every member's HTTP address", SPREAD_DEADLINE, || {
        cluster.nodes.iter().all(|node| {
            let (view, _) = ring_of(node);
            view.members().all(|member| member.http_addr.is_some())
        })
    });
    block_on(async {
        let mut conns = Vec::new();
        for node in &cluster.nodes {
            conns.push(node.connect().await);
        }

        // Every node answers the same ring, and every answer (a 404 too)
        // carries its epoch.
        let mut documents = Vec::new();
        for http in &mut conns {
            let answer = get(http, "/ring").await;
            assert_eq!(answer.status, 200);
            assert_eq!(ring_epoch(&answer), Some(1), "{:?}", answer.headers);
            let mut document: Value = serde_json::from_slice(&answer.body).expect("JSON");
            document.as_object_mut().expect("object").remove("node");
            documents.push(document);
            for path in ["/ping", "/no/such/route", "/buckets/b/keys/absent"] {
                assert_eq!(ring_epoch(&get(http, path).await), Some(1), "{path}");
            }
        }
        assert!(documents.windows(2).all(|pair| pair[0] == pair[1]), "{documents:?}");
        assert_eq!(documents[0]["moving"], Value::Null);
        let ring_body = get(&mut conns[1], "/ring").await.body;
        let view = RingView::from_json(&ring_body).expect("RingView");
        assert_eq!((view.epoch(), view.ring().partitions(), view.members().count()), (1, 256, 3));
        for (index, node) in cluster.nodes.iter().enumerate() {
            let id = NodeId::new(format!("node{index}"));
            assert_eq!(view.http_addr(&id), Some(node.addr().as_str()), "{id}");
        }

        // Bucket b2 has n = 2, so one node of three replicates no key of it.
        let props = Bytes::from_static(br#"{"n":2,"r":1,"w":2}"#);
        let set = conns[0].request(Method::PUT, "/buckets/b2/props", &[], props).await.expect("props");
        assert_eq!(set.status, 204, "{}", String::from_utf8_lossy(&set.body));

        let w3 = WriteOptions { query: vec![("w".to_string(), "3".to_string())], ..WriteOptions::default() };
        let w2 = WriteOptions { query: vec![("w".to_string(), "2".to_string())], ..WriteOptions::default() };
        for index in 0..100 {
            let key = format!("key-{index}");
            let http = &mut conns[index % 3];
            http.put("b", key.as_bytes(), Bytes::from(key.clone()), &w3).await.expect("put b");
            http.put("b2", key.as_bytes(), Bytes::from(key.clone()), &w2).await.expect("put b2");
        }

        for index in 0..100 {
            let key = format!("key-{index}");
            for (bucket, n) in [("b", 3u8), ("b2", 2)] {
                let replicas = get_json(&mut conns[index % 3], &format!("/admin/replicas/{bucket}/{key}")).await;
                let expected: Vec<NodeId> = replicas["preference_list"]
                    .as_array()
                    .expect("preference list")
                    .iter()
                    .map(|node| NodeId::new(node.as_str().unwrap_or_default()))
                    .collect();
                let computed = view.preference_list(bucket, key.as_bytes(), n).expect("list");
                assert_eq!(computed, expected, "{bucket}/{key}");
                assert_eq!(view.read_list(bucket, key.as_bytes(), n).expect("reads"), expected);

                // Each replica's own copy, straight from it, is what
                // /admin/replicas shows of it.
                for node in &computed {
                    let addr = view.http_addr(node).expect("http address");
                    let mut http = dynamo_client::connect(addr).await.expect("connect");
                    let answer = get(&mut http, &format!("/replica/{bucket}/{key}")).await;
                    assert_eq!(answer.status, 200, "{node}: {}", String::from_utf8_lossy(&answer.body));
                    assert_eq!(answer.header("content-type"), Some("application/octet-stream"));
                    let object = decode_object(&answer.body).expect("an encoded object");
                    match object.siblings() {
                        [only] => {
                            assert!(matches!(&only.payload, Payload::Value { data, .. } if data == key.as_bytes()))
                        }
                        other => panic!("{node} holds {other:?}"),
                    }
                    assert_eq!(quoted(vtags(&object)), admin_vtags(&replicas, node.as_str()), "{node}");
                }

                // The node outside the list refuses both routes with 421,
                // naming the replicas.
                if let Some(outsider) = (0..3).find(|i| !computed.contains(&NodeId::new(format!("node{i}")))) {
                    let path = format!("/replica/{bucket}/{key}");
                    let refused = get(&mut conns[outsider], &path).await;
                    assert_eq!(refused.status, 421, "{}", String::from_utf8_lossy(&refused.body));
                    let body: Value = serde_json::from_slice(&refused.body).expect("JSON");
                    assert_eq!(body["replicas"], replicas["read_from"], "{body}");
                    assert!(body["error"].as_str().is_some_and(|text| text.contains("GET /ring")), "{body}");
                    let refused = put_replica(&mut conns[outsider], &path, Bytes::from_static(b"\x01")).await;
                    assert_eq!(refused.status, 421);
                }
            }
        }

        // A client's read repair: one replica gets the copy it holds plus
        // a concurrent version; it keeps both, the others are untouched.
        let key = "key-7";
        let list = view.preference_list("b", key.as_bytes(), 3).expect("list");
        let target = &list[0];
        let mut http = dynamo_client::connect(view.http_addr(target).expect("addr")).await.expect("connect");
        let path = format!("/replica/b/{key}");
        let mut object = decode_object(&get(&mut http, &path).await.body).expect("object");
        let payload = Payload::Value { data: Bytes::from_static(b"concurrent"), content_type: None, expires_ms: None };
        let stamp = Hlc::from_parts(object.latest_timestamp().wall_ms() + 1, 0);
        object.put(&VersionVector::new(), ActorId(0xC11E), stamp, payload, ConflictMode::Siblings);
        assert_eq!(object.siblings().len(), 2);
        let merged = put_replica(&mut http, &path, Bytes::from(encode_object(&object))).await;
        assert_eq!(merged.status, 204, "{}", String::from_utf8_lossy(&merged.body));
        // Merging the same copy again changes nothing.
        let again = put_replica(&mut http, &format!("{path}?durable=true"), Bytes::from(encode_object(&object))).await;
        assert_eq!(again.status, 204, "{}", String::from_utf8_lossy(&again.body));
        let replicas = get_json(&mut conns[0], &format!("/admin/replicas/b/{key}")).await;
        let mut shown = admin_vtags(&replicas, target.as_str());
        let mut expected = quoted(vtags(&object));
        shown.sort();
        expected.sort();
        assert_eq!(shown, expected, "{replicas}");
        for other in &list[1..] {
            assert_eq!(admin_vtags(&replicas, other.as_str()).len(), 1, "{other} untouched: {replicas}");
        }

        // Refusals a client can act on.
        let bad = put_replica(&mut http, &path, Bytes::from_static(b"not an object")).await;
        assert_eq!(bad.status, 400);
        let message = String::from_utf8_lossy(&bad.body);
        assert!(message.contains("object encoding") && message.contains("nothing was merged"), "{message}");
        let truncated = encode_object(&object);
        let bad = put_replica(&mut http, &path, Bytes::copy_from_slice(&truncated[..truncated.len() - 3])).await;
        assert_eq!(bad.status, 400, "{}", String::from_utf8_lossy(&bad.body));
        let bad = http.request(Method::PUT, &format!("{path}?durable=maybe"), &[], Bytes::new()).await.expect("PUT");
        assert_eq!(bad.status, 400);
        let absent = get(&mut http, "/replica/b/never-written").await;
        let owners = view.read_list("b", b"never-written", 3).expect("list");
        assert_eq!(absent.status, if owners.contains(target) { 404 } else { 421 });
        let wrong = http.request(Method::DELETE, &path, &[], Bytes::new()).await.expect("DELETE");
        assert_eq!(wrong.status, 405);
    });
}

/// Polls `done` until it holds; panics after `deadline` with `what`.
fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "not within {deadline:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `node`'s `/ring`, parsed, and the epoch its header carries.
fn ring_of(node: &TestNode) -> (RingView, Option<u64>) {
    block_on(async {
        let mut http = node.connect().await;
        let answer = get(&mut http, "/ring").await;
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        (RingView::from_json(&answer.body).expect("RingView"), ring_epoch(&answer))
    })
}

#[test]
fn after_a_fourth_node_joins_and_the_commit_every_node_serves_the_higher_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let join = format!("--join={}", cluster.nodes[0].rpc_addr());
    let secret = format!("--cluster-secret-file={}", cluster.secret_file.display());
    let node3 = TestNode::start(&dir.path().join("node3"), &["--node-id=node3", &secret, GOSSIP, &join]);

    wait_until("node3 is joining on node1", SPREAD_DEADLINE, || {
        let (view, _) = ring_of(&cluster.nodes[1]);
        view.member(&NodeId::new("node3")).is_some_and(|member| member.status == "joining")
    });
    let (before, epoch) = ring_of(&cluster.nodes[1]);
    assert_eq!((before.epoch(), epoch), (1, Some(1)));
    assert!(before.ring().node(&NodeId::new("node3")).is_none(), "joining nodes own nothing yet");

    let commit = block_on(async {
        let mut http = cluster.nodes[1].connect().await;
        http.request(Method::POST, "/admin/commit", &[], Bytes::new()).await.expect("commit")
    });
    assert_eq!(commit.status, 200, "{}", String::from_utf8_lossy(&commit.body));

    let nodes: Vec<&TestNode> = cluster.nodes.iter().chain([&node3]).collect();
    wait_until("every node serves ring epoch 2", SPREAD_DEADLINE, || {
        nodes.iter().all(|node| {
            let (view, header) = ring_of(node);
            view.epoch() == 2 && header == Some(2)
        })
    });
    let (after, _) = ring_of(&node3);
    assert!(after.ring().node(&NodeId::new("node3")).is_some(), "node3 is in the committed ring");
    assert_eq!(after.http_addr(&NodeId::new("node3")), Some(node3.addr().as_str()));
}
