//! The dashboard's server side on real processes (issue 16): `GET /ui`
//! serves the embedded page, and `/admin/series` fills with one sample a
//! second that counts the requests made. (The page itself, in a real
//! browser, is not driven here yet.)

mod common;

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
}
