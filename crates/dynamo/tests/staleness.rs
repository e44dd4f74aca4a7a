//! Staleness measured on real processes (issue 16, PBS): t-visibility of
//! writes on a healthy cluster, no stale answers when R + W > N, and stale
//! answers counted (with how many versions they lag) when a replica that
//! missed a write answers a read with R = 1.

mod common;

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::WriteOptions;
use hyper::Method;

async fn staleness(cluster: &TestCluster, via: usize) -> serde_json::Value {
    let mut http = cluster.nodes[via].connect().await;
    let raw = http.request(Method::GET, "/admin/staleness", &[], Bytes::new()).await.expect("staleness");
    assert_eq!(raw.status, 200);
    serde_json::from_slice(&raw.body).expect("json")
}

#[test]
fn writes_become_visible_everywhere_and_quorum_reads_are_never_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        for index in 0..200 {
            let key = format!("k{index}");
            node0.put("b", key.as_bytes(), Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        }
        for index in 0..200 {
            node0.get("b", format!("k{index}").as_bytes(), &[]).await.expect("get");
        }
        // The write tails and read-repair waits end in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let report = loop {
            let report = staleness(&cluster, 0).await;
            if report["t_visibility_ms"]["writes"] == 200 && report["reads_checked"] == 200 {
                break report;
            }
            assert!(std::time::Instant::now() < deadline, "not every write or read was measured: {report}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let visibility = &report["t_visibility_ms"];
        let (p50, p99) = (visibility["p50"].as_f64().expect("p50"), visibility["p99"].as_f64().expect("p99"));
        assert!(0.0 < p50 && p50 <= p99 && p99 <= 5_000.0, "implausible visibility: {report}");
        assert_eq!(report["writes_not_visible_by_deadline"], 0, "{report}");
        assert_eq!(report["stale_reads"], 0, "R + W > N: no read may miss an acknowledged write: {report}");
        let mut http = cluster.nodes[0].connect().await;
        let metrics = http.request(Method::GET, "/metrics", &[], Bytes::new()).await.expect("metrics");
        let text = String::from_utf8_lossy(&metrics.body);
        assert!(text.contains("dynamo_write_visibility_seconds_count{node=\"node0\"} 200"), "{text}");
        assert!(text.contains("dynamo_reads_stale_total{node=\"node0\"} 0"));
        // A quiet test cluster keeps background work at its full rate.
        assert!(text.contains("dynamo_background_budget{node=\"node0\"} 1"), "{text}");
    });
}

#[test]
fn a_replica_that_missed_writes_gives_stale_answers_to_r1_reads_and_they_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No hints or anti-entropy: only read repair fixes node2.
    let args = ["--hint-delivery-interval-ms=3600000", "--anti-entropy-interval-ms=0"];
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    let keys: Vec<String> = (0..20).map(|index| format!("cart{index}")).collect();
    let contexts = block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let w3 = WriteOptions { query: vec![("w".into(), "3".into())], ..WriteOptions::default() };
        let mut contexts = Vec::new();
        for key in &keys {
            contexts.push(node0.put("b", key.as_bytes(), Bytes::from("old"), &w3).await.expect("put"));
        }
        contexts
    });
    cluster.nodes[2].kill_9();
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        for (key, context) in keys.iter().zip(contexts) {
            let write = WriteOptions { context, ..WriteOptions::default() };
            node0.put("b", key.as_bytes(), Bytes::from("new"), &write).await.expect("w=2 put with node2 down");
        }
    });
    cluster.nodes[2].restart();
    cluster.wait_until_peers_up();
    block_on(async {
        let mut node2 = cluster.nodes[2].connect().await;
        for key in &keys {
            node2.get("b", key.as_bytes(), &[("r".to_string(), "1".to_string())]).await.expect("r=1 get");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let report = loop {
            let report = staleness(&cluster, 2).await;
            if report["reads_checked"] == 20 {
                break report;
            }
            assert!(std::time::Instant::now() < deadline, "reads not measured: {report}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        // node2 answers from its own copy first, one write behind.
        let stale = report["stale_reads"].as_u64().expect("count");
        assert!(stale >= 1, "no stale answer counted: {report}");
        assert_eq!(report["stale_reads_by_versions_behind"]["1"].as_u64(), Some(stale), "{report}");
        assert!(report["stale_replica_replies"].as_u64().expect("count") >= stale, "{report}");
    });
}

#[test]
fn the_visibility_probe_sees_every_write_at_every_delay_when_r_plus_w_exceeds_n() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    let nodes: Vec<String> = cluster.nodes.iter().map(|node| node.addr()).collect();
    let json = dir.path().join("probe.json");
    let output = std::process::Command::new(common::dynamo_bin())
        .args(["bench", "--visibility-probe", "--probe-samples", "20", "--probe-delays-ms", "0,5"])
        .arg("--nodes")
        .arg(nodes.join(","))
        .arg("--json")
        .arg(&json)
        .output()
        .expect("dynamo bench runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let delays = report["delays"].as_array().expect("delays");
    assert_eq!(delays.len(), 2, "{report}");
    for delay in delays {
        assert_eq!(delay["samples"], 20, "{report}");
        assert_eq!(delay["probability"], 1.0, "W=2, R=2, N=3: every read overlaps the write's quorum: {report}");
    }
    assert!(String::from_utf8_lossy(&output.stdout).contains("P(consistent)"));
}
