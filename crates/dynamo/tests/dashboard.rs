//! The dashboard on real processes (issue 16): `GET /ui` serves the
//! embedded page, `/admin/series` fills with one sample a second that
//! counts the requests made, and real headless Chromium (Debian's
//! `chromium`, installed by `tests/clients/install_chromium.sh`) runs the
//! page: the ring's partitions split among the owners, charts with points,
//! and a killed node shown down within 10 s.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::WriteOptions;
use hyper::Method;

#[test]
fn the_ui_is_served_and_the_series_counts_requests_second_by_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    block_on(async {
        let mut http = cluster.nodes[1].connect().await;
        let page = http.request(Method::GET, "/ui", &[], Bytes::new()).await.expect("ui");
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        let html = String::from_utf8_lossy(&page.body);
        assert!(html.contains("<svg id=\"ring\"") && html.contains("/admin/series"), "not the dashboard");
        assert!(!html.contains("<script src") && !html.contains("<link"), "the page loads nothing from elsewhere");
        for index in 0..50 {
            let key = format!("k{index}");
            http.put("b", key.as_bytes(), Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let raw = http.request(Method::GET, "/admin/series", &[], Bytes::new()).await.expect("series");
            assert_eq!(raw.status, 200);
            let series: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
            let samples = series["samples"].as_array().expect("samples");
            let puts: u64 = samples.iter().map(|sample| sample["put"]["ops"].as_u64().unwrap_or(0)).sum();
            if puts >= 50 {
                assert_eq!(series["node"], "node1");
                assert_eq!(series["interval_ms"], 1000);
                let busy =
                    samples.iter().find(|sample| sample["put"]["ops"].as_u64() > Some(0)).expect("a busy second");
                assert!(busy["put"]["p99_ms"].as_f64().is_some(), "a second with puts has their latency: {busy}");
                assert_eq!(busy["background_budget"], 1.0);
                break;
            }
            assert!(Instant::now() < deadline, "the series never counted the 50 puts: {series}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // The same data in the terminal.
    let top = Command::new(common::dynamo_bin())
        .args(["admin", "top", "--once", "--node", &cluster.nodes[1].addr()])
        .output()
        .expect("dynamo admin top runs");
    assert!(top.status.success(), "{}", String::from_utf8_lossy(&top.stderr));
    let frame = String::from_utf8_lossy(&top.stdout);
    assert!(frame.contains("node node1") && frame.contains("PUT/S") && frame.contains("node2"), "{frame}");
}

/// The page at `url` after headless Chromium ran its script for a while:
/// the DOM it built.
fn rendered_dom(url: &str) -> String {
    let output = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", "--dump-dom", url])
        .output()
        .expect("chromium runs");
    assert!(output.status.success(), "chromium: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of every `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle).filter_map(|(at, _)| html[at + needle.len()..].split('"').next()).collect()
}

#[test]
fn headless_chromium_draws_the_ring_the_charts_and_a_killed_node_down() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/install_chromium.sh");
    let installed = Command::new("bash").arg(&script).output().expect("bash runs");
    assert!(installed.status.success(), "installing chromium: {}", String::from_utf8_lossy(&installed.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[]);
    let partitions = block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        for index in 0..30 {
            let key = format!("k{index}");
            http.put("b", key.as_bytes(), Bytes::from("v"), &WriteOptions::default()).await.expect("put");
        }
        let raw = http.request(Method::GET, "/ring", &[], Bytes::new()).await.expect("ring");
        let ring: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        ring["partitions"].as_u64().expect("partitions") as usize
    });
    // Let the series take a sample with the puts in it.
    std::thread::sleep(Duration::from_millis(1_500));
    let url = format!("http://{}/ui", cluster.nodes[0].addr());
    let dom = rendered_dom(&url);
    assert_eq!(attribute_values(&dom, "data-partition").len(), partitions, "one arc per partition");
    let mut owners = attribute_values(&dom, "data-owner");
    owners.sort_unstable();
    owners.dedup();
    assert_eq!(owners, ["node0", "node1", "node2"], "the ring split among three owners");
    let points: Vec<usize> = attribute_values(&dom, "data-points").iter().filter_map(|n| n.parse().ok()).collect();
    assert!(points.iter().any(|count| *count > 0), "the charts have points: {points:?}");
    assert!(dom.contains("reachable up"), "the peers show up");

    cluster.nodes[2].kill_9();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dom = rendered_dom(&url);
        if dom.contains("reachable down") {
            break;
        }
        assert!(Instant::now() < deadline, "node2 not shown down within 10 s");
    }
}
