//! Anti-entropy on a real three-node cluster (paper section 4.7): a node
//! that lost its whole data directory gets every key back from its peers
//! with no client read at all (so no read repair), and the admin endpoint
//! reports what was done.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::WriteOptions;
use hyper::Method;

/// Keys written before the wipe.
const KEYS: usize = 300;
/// A small ring and a short interval, so each node compares all of its
/// partitions about every second.
const FLAGS: [&str; 3] = ["--partitions=32", "--anti-entropy-interval-ms=30", "--anti-entropy-max-keys-per-sec=100000"];

async fn get_json(cluster: &TestCluster, via: usize, path: &str) -> serde_json::Value {
    let mut http = cluster.nodes[via].connect().await;
    let raw = http.request(Method::GET, path, &[], Bytes::new()).await.expect("request");
    assert_eq!(raw.status, 200, "{path}: {}", String::from_utf8_lossy(&raw.body));
    serde_json::from_slice(&raw.body).expect("json")
}

/// Whether node2's own copy of the key (read directly by
/// `/admin/replicas`, which repairs nothing) holds a version.
async fn node2_holds(cluster: &TestCluster, key: &str) -> bool {
    let admin = get_json(cluster, 0, &format!("/admin/replicas/b/{key}")).await;
    let replicas = admin["replicas"].as_array().expect("replicas");
    assert_eq!(replicas.len(), 3, "n=3 on three nodes: every node is a replica: {admin}");
    replicas
        .iter()
        .find(|replica| replica["node"] == "node2")
        .is_some_and(|replica| replica["versions"].as_array().is_some_and(|versions| !versions.is_empty()))
}

#[test]
fn a_wiped_node_gets_every_key_back_from_anti_entropy_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &FLAGS);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let all = WriteOptions { query: vec![("w".to_string(), "3".to_string())], ..WriteOptions::default() };
        for index in 0..KEYS {
            let key = format!("k{index}");
            node0.put("b", key.as_bytes(), Bytes::from(format!("v{index}")), &all).await.expect("put w=3");
        }
    });

    cluster.nodes[2].stop();
    std::fs::remove_dir_all(&cluster.nodes[2].data_dir).expect("wipe node2's data");
    cluster.nodes[2].restart();

    let started = Instant::now();
    block_on(async {
        let mut missing: Vec<String> = (0..KEYS).map(|index| format!("k{index}")).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !missing.is_empty() {
            let mut still = Vec::new();
            for key in missing {
                if !node2_holds(&cluster, &key).await {
                    still.push(key);
                }
            }
            missing = still;
            assert!(
                missing.is_empty() || Instant::now() < deadline,
                "anti-entropy did not restore {} keys on node2 within 60 s, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("node2 had all {KEYS} keys back {:.1} s after its restart", started.elapsed().as_secs_f64());

        // What the operator sees: repairs counted on the nodes that made them.
        let (mut repaired, mut bytes) = (0, 0);
        for via in 0..3 {
            let status = get_json(&cluster, via, "/admin/anti-entropy").await;
            assert_eq!(status["enabled"], true);
            assert!(status["partitions"].as_array().is_some_and(|partitions| !partitions.is_empty()), "{status}");
            let totals = &status["totals"];
            repaired += totals["keys_repaired"].as_u64().expect("totals");
            bytes +=
                totals["bytes_sent"].as_u64().expect("totals") + totals["bytes_received"].as_u64().expect("totals");
        }
        assert!(repaired >= KEYS as u64, "every key was repaired by some exchange: {repaired}");
        println!(
            "anti-entropy on all three nodes: {repaired} keys repaired, {bytes} bytes exchanged, {} bytes per repaired key",
            bytes / repaired
        );
        let metrics = cluster.nodes[2].connect().await.request(Method::GET, "/metrics", &[], Bytes::new()).await;
        let metrics = String::from_utf8_lossy(&metrics.expect("metrics").body).into_owned();
        assert!(metrics.contains("dynamo_anti_entropy_keys_repaired_total{node=\"node2\"}"), "{metrics}");

        // A triggered exchange of one partition answers when done; the
        // replicas agree by now, so it finds nothing to repair.
        let mut node2 = cluster.nodes[2].connect().await;
        let raw = node2.request(Method::POST, "/admin/anti-entropy?partition=3", &[], Bytes::new()).await;
        let raw = raw.expect("trigger");
        assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
        let result: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        let exchanges = result["exchanges"].as_array().expect("exchanges");
        assert_eq!(exchanges.len(), 1, "{result}");
        assert_eq!(exchanges[0]["partition"], 3);
        assert_eq!(result["totals"]["keys_differing"], 0, "{result}");
        let raw = node2.request(Method::POST, "/admin/anti-entropy?partition=99", &[], Bytes::new()).await;
        assert_eq!(raw.expect("trigger").status, 400, "partition 99 does not exist in a ring of 32");
    });
}

#[test]
fn the_admin_command_prints_the_status_and_runs_a_triggered_sweep() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::TestNode::start(dir.path(), &["--anti-entropy-interval-ms=0"]);
    let node_flag = format!("--node={}", node.addr());
    let run =
        |args: &[&str]| std::process::Command::new(common::dynamo_bin()).args(args).output().expect("run dynamo admin");
    let status = run(&["admin", "anti-entropy", &node_flag]);
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json on stdout");
    assert_eq!(status["enabled"], false, "interval 0 disables the scheduler: {status}");
    // A single node has no other replica to exchange with.
    let sweep = run(&["admin", "anti-entropy", &node_flag, "--trigger"]);
    assert!(sweep.status.success(), "{sweep:?}");
    let sweep: serde_json::Value = serde_json::from_slice(&sweep.stdout).expect("json on stdout");
    assert_eq!(sweep["exchanges"], serde_json::json!([]), "{sweep}");
    let refused = run(&["admin", "anti-entropy", &node_flag, "--trigger", "--partition=100000"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("400"), "{refused:?}");
}
