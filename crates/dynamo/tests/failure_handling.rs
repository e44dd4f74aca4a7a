//! Failure handling on real processes (paper sections 4.6 and 4.8.3): the
//! failure detector, sloppy quorum and hinted handoff. No test here reads
//! the keys it checks through the client API, so read repair cannot be what
//! brings a returning node up to date: `/admin/replicas` reads each replica
//! directly and repairs nothing.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::WriteOptions;
use hyper::Method;

async fn admin_json(cluster: &TestCluster, via: usize, path: &str) -> serde_json::Value {
    let mut http = cluster.nodes[via].connect().await;
    let raw = http.request(Method::GET, path, &[], Bytes::new()).await.expect("admin request");
    assert_eq!(raw.status, 200, "{path}: {}", String::from_utf8_lossy(&raw.body));
    serde_json::from_slice(&raw.body).expect("json")
}

/// Whether `node` holds at least one version of `key`, read directly.
async fn holds(cluster: &TestCluster, via: usize, key: &str, node: &str) -> bool {
    let admin = admin_json(cluster, via, &format!("/admin/replicas/b/{key}")).await;
    admin["replicas"].as_array().expect("replicas").iter().any(|replica| {
        replica["node"] == node && replica["versions"].as_array().is_some_and(|versions| !versions.is_empty())
    })
}

fn preference_list(admin: &serde_json::Value) -> Vec<String> {
    admin["preference_list"].as_array().expect("list").iter().filter_map(|n| n.as_str().map(String::from)).collect()
}

async fn peer_state(cluster: &TestCluster, via: usize, peer: &str) -> String {
    let peers = admin_json(cluster, via, "/admin/peers").await;
    let entry = peers["peers"].as_array().expect("peers").iter().find(|p| p["node"] == peer).cloned();
    entry.and_then(|p| p["state"].as_str().map(String::from)).unwrap_or_default()
}

#[test]
fn with_one_of_three_nodes_down_every_w2_put_succeeds_and_the_node_gets_its_hints_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[]);
    cluster.nodes[2].kill_9();
    let keys: Vec<String> = (0..200).map(|index| format!("k{index}")).collect();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let mut node1 = cluster.nodes[1].connect().await;
        for (index, key) in keys.iter().enumerate() {
            let via = if index % 2 == 0 { &mut node0 } else { &mut node1 };
            via.put("b", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default())
                .await
                .unwrap_or_else(|error| panic!("put {key} with one node down: {error}"));
        }
        assert_eq!(peer_state(&cluster, 0, "node2").await, "down", "node0 routes around node2");
        let hints0 = admin_json(&cluster, 0, "/admin/hints").await;
        let hints1 = admin_json(&cluster, 1, "/admin/hints").await;
        let held = hints0["hints"]["stored"].as_u64().unwrap_or(0) + hints1["hints"]["stored"].as_u64().unwrap_or(0);
        assert_eq!(held, 200, "one hint per key for node2, kept by its coordinator: {hints0} {hints1}");
    });
    let restarted = Instant::now();
    cluster.nodes[2].restart();
    block_on(async {
        let deadline = restarted + Duration::from_secs(30);
        for key in &keys {
            while !holds(&cluster, 2, key, "node2").await {
                assert!(Instant::now() < deadline, "node2 did not get {key} back from the hints within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        eprintln!("node2 had all 200 hinted writes {:?} after restarting", restarted.elapsed());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hints0 = admin_json(&cluster, 0, "/admin/hints").await;
            let hints1 = admin_json(&cluster, 1, "/admin/hints").await;
            let left =
                hints0["hints"]["stored"].as_u64().unwrap_or(0) + hints1["hints"]["stored"].as_u64().unwrap_or(0);
            if left == 0 {
                let delivered = hints0["hints"]["delivered"].as_u64().unwrap_or(0)
                    + hints1["hints"]["delivered"].as_u64().unwrap_or(0);
                assert_eq!(delivered, 200);
                break;
            }
            assert!(Instant::now() < deadline, "hints were not removed after delivery: {hints0} {hints1}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(peer_state(&cluster, 0, "node2").await, "up", "the probes brought node2 back");
    });
}

#[test]
fn a_fallback_node_takes_a_down_replicas_write_so_w3_still_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 4, &[]);
    // Keys replicated on node3 (so node3 is in their top 3), written with
    // w=3 while node3 is down: only a fallback outside the top 3 can make
    // up the third acknowledgement.
    let mut keys = Vec::new();
    block_on(async {
        for index in 0.. {
            let key = format!("k{index}");
            let admin = admin_json(&cluster, 0, &format!("/admin/replicas/b/{key}")).await;
            if preference_list(&admin).contains(&"node3".to_string()) {
                keys.push(key);
            }
            if keys.len() == 20 {
                break;
            }
        }
    });
    cluster.nodes[3].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        for key in &keys {
            let raw = node0.request(Method::PUT, &format!("/buckets/b/keys/{key}?w=3"), &[], Bytes::from("v")).await;
            let raw = raw.expect("put");
            assert_eq!(raw.status, 204, "w=3 with a replica down: {}", String::from_utf8_lossy(&raw.body));
        }
        let mut fallback_hints = 0;
        for via in 0..3 {
            fallback_hints += admin_json(&cluster, via, "/admin/hints").await["hints"]["stored"].as_u64().unwrap_or(0);
        }
        assert_eq!(fallback_hints, 20, "each key's write to node3 is held once, by its fallback");
    });
    cluster.nodes[3].restart();
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        for key in &keys {
            while !holds(&cluster, 0, key, "node3").await {
                assert!(Instant::now() < deadline, "node3 did not receive {key} from its fallback");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

#[test]
fn the_failure_detector_marks_a_killed_peer_down_and_a_restarted_one_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &["--probe-interval-ms=200"]);
    block_on(async {
        assert_eq!(peer_state(&cluster, 0, "node1").await, "up");
    });
    cluster.nodes[1].kill_9();
    block_on(async {
        // Traffic is what the detector learns from.
        let mut node0 = cluster.nodes[0].connect().await;
        node0.put("b", b"k", Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        assert_eq!(peer_state(&cluster, 0, "node1").await, "down");
        let metrics = node0.request(Method::GET, "/metrics", &[], Bytes::new()).await.expect("metrics");
        let text = String::from_utf8_lossy(&metrics.body).into_owned();
        assert!(text.contains("dynamo_peer_up{node=\"node0\",peer=\"node1\"} 0"), "{text}");
        assert!(text.contains("dynamo_peer_up{node=\"node0\",peer=\"node2\"} 1"), "{text}");
    });
    cluster.nodes[1].restart();
    block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while peer_state(&cluster, 0, "node1").await != "up" {
            assert!(Instant::now() < deadline, "the probes never marked node1 up again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// How many replicas hold any version of `key` (tombstones included).
async fn replicas_with_versions(cluster: &TestCluster, via: usize, key: &str) -> usize {
    let admin = admin_json(cluster, via, &format!("/admin/replicas/b/{key}")).await;
    admin["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|replica| replica["versions"].as_array().is_some_and(|versions| !versions.is_empty()))
        .count()
}

async fn wait_until_collected(cluster: &TestCluster, key: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while replicas_with_versions(cluster, 0, key).await > 0 {
        assert!(Instant::now() < deadline, "the tombstone of {key} was not collected everywhere within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_tombstone_every_replica_holds_is_collected_after_its_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--tombstone-grace-ms=1000", "--tombstone-gc-interval-ms=200"];
    let cluster = TestCluster::start(dir.path(), 3, &args);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let context = node0.put("b", b"gone", Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        let delete = WriteOptions { query: vec![("w".into(), "3".into())], context, ..WriteOptions::default() };
        node0.delete("b", b"gone", &delete).await.expect("delete with the context of the put");
        let deleted_at = Instant::now();
        assert_eq!(replicas_with_versions(&cluster, 0, "gone").await, 3, "every replica holds the tombstone");
        wait_until_collected(&cluster, "gone", Duration::from_secs(15)).await;
        assert!(deleted_at.elapsed() >= Duration::from_millis(900), "collected before its grace period");
        let read = node0.get("b", b"gone", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert!(matches!(read, dynamo_client::GetResult::NotFound { .. }), "{read:?}");
        // A new write after collection starts a fresh history.
        node0.put("b", b"gone", Bytes::from("again"), &WriteOptions::default()).await.expect("put again");
        let read = node0.get("b", b"gone", &[]).await.expect("get");
        assert!(matches!(read, dynamo_client::GetResult::Found { .. }), "{read:?}");
    });
}

/// Writes `key` to all three replicas, kills node2, and deletes `key` (with
/// the write's context) on the two others: node2 keeps the value.
fn delete_while_node2_is_down(cluster: &mut TestCluster, key: &str) {
    let context = block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let w3 = WriteOptions { query: vec![("w".into(), "3".into())], ..WriteOptions::default() };
        node0.put("b", key.as_bytes(), Bytes::from("item"), &w3).await.expect("put")
    });
    cluster.nodes[2].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let delete = WriteOptions { context, ..WriteOptions::default() };
        node0.delete("b", key.as_bytes(), &delete).await.expect("w=2 delete with one replica down");
    });
}

/// Whether `node`'s copy of `key` is exactly one version, a tombstone.
async fn holds_only_a_tombstone(cluster: &TestCluster, key: &str, node: &str) -> bool {
    let admin = admin_json(cluster, 0, &format!("/admin/replicas/b/{key}")).await;
    admin["replicas"].as_array().expect("replicas").iter().any(|replica| {
        replica["node"] == node
            && replica["versions"].as_array().is_some_and(|versions| {
                !versions.is_empty() && versions.iter().all(|version| version["deleted"] == true)
            })
    })
}

#[test]
fn a_delete_a_replica_missed_is_not_undone_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Hinted handoff off and the tombstone kept: anti-entropy alone must
    // bring the delete to the returning replica.
    let args = [
        "--hint-delivery-interval-ms=3600000",
        "--anti-entropy-interval-ms=20",
        "--partitions=16",
        "--tombstone-grace-ms=600000",
    ];
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    delete_while_node2_is_down(&mut cluster, "cart");
    cluster.nodes[2].restart();
    block_on(async {
        assert!(!holds_only_a_tombstone(&cluster, "cart", "node2").await, "node2 came back with the value");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !holds_only_a_tombstone(&cluster, "cart", "node2").await {
            assert!(Instant::now() < deadline, "anti-entropy did not bring the delete to node2");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut node2 = cluster.nodes[2].connect().await;
        let read = node2.get("b", b"cart", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert!(matches!(read, dynamo_client::GetResult::NotFound { .. }), "the deleted value came back: {read:?}");
    });
}

#[test]
fn a_delete_a_replica_missed_is_collected_only_after_it_has_the_tombstone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--tombstone-grace-ms=1000", "--tombstone-gc-interval-ms=200", "--anti-entropy-interval-ms=0"];
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    delete_while_node2_is_down(&mut cluster, "cart");
    block_on(async {
        // Past the grace period, but node2 does not hold the tombstone:
        // nothing may be collected.
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(replicas_with_versions(&cluster, 0, "cart").await, 2, "collected while a replica was missing");
    });
    cluster.nodes[2].restart();
    block_on(async {
        wait_until_collected(&cluster, "cart", Duration::from_secs(20)).await;
        let mut node2 = cluster.nodes[2].connect().await;
        let read = node2.get("b", b"cart", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert!(matches!(read, dynamo_client::GetResult::NotFound { .. }), "the deleted value came back: {read:?}");
    });
}
