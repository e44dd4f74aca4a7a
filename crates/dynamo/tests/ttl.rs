//! Time to live on real processes: a write with `?ttl_s=N` carries its
//! expiry in the versioned object, reads of it carry `X-Dynamo-Expires`, it
//! reads `404` on every node once expired, and the tombstone collector
//! reclaims it only after every replica holds the expiring version and the
//! grace period has passed, so a replica that was away cannot bring it back.
//! Replica contents are read through `/admin/replicas`, which repairs
//! nothing.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::{Connection, GetResult, WriteOptions};
use hyper::Method;

const GRACE_ARGS: [&str; 2] = ["--tombstone-grace-ms=1000", "--tombstone-gc-interval-ms=200"];

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

async fn admin_json(cluster: &TestCluster, via: usize, path: &str) -> serde_json::Value {
    let mut http = cluster.nodes[via].connect().await;
    let raw = http.request(Method::GET, path, &[], Bytes::new()).await.expect("admin request");
    assert_eq!(raw.status, 200, "{path}: {}", String::from_utf8_lossy(&raw.body));
    serde_json::from_slice(&raw.body).expect("json")
}

async fn replicas_with_versions(cluster: &TestCluster, via: usize, key: &str) -> usize {
    let admin = admin_json(cluster, via, &format!("/admin/replicas/b/{key}")).await;
    admin["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter(|replica| replica["versions"].as_array().is_some_and(|versions| !versions.is_empty()))
        .count()
}

/// Whether every replica of `key` answered `via`'s direct read and none
/// holds a version: a replica that did not answer proves nothing.
async fn collected_everywhere(cluster: &TestCluster, via: usize, key: &str) -> bool {
    let admin = admin_json(cluster, via, &format!("/admin/replicas/b/{key}")).await;
    admin["replicas"].as_array().expect("replicas").iter().all(|replica| {
        replica["status"] == "ok" && replica["versions"].as_array().is_some_and(|versions| versions.is_empty())
    })
}

async fn wait_until_collected(cluster: &TestCluster, via: usize, key: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !collected_everywhere(cluster, via, key).await {
        assert!(Instant::now() < deadline, "expired {key} was not collected everywhere within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(http: &mut Connection, key: &str, query: &str, context: Option<&str>) -> u16 {
    let path = format!("/buckets/b/keys/{key}{query}");
    let headers: Vec<(&str, &str)> = context.map(|context| ("x-dynamo-context", context)).into_iter().collect();
    let raw = http.request(Method::PUT, &path, &headers, Bytes::from("session")).await.expect("put");
    raw.status
}

/// Status and expiry of a read of `key` with read quorum `r`.
async fn get_status(http: &mut Connection, key: &str, r: u8) -> (u16, Option<String>) {
    let path = format!("/buckets/b/keys/{key}?r={r}");
    let raw = http.request(Method::GET, &path, &[], Bytes::new()).await.expect("get");
    (raw.status, raw.header("x-dynamo-expires").map(String::from))
}

#[test]
fn a_key_with_a_ttl_reads_404_everywhere_after_expiry_and_is_reclaimed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &GRACE_ARGS);
    block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        for bad in ["?ttl_s=0", "?ttl_s=abc", "?ttl_s=-1", "?ttl_s=1.5", "?ttl_s=999999999999"] {
            let status = put(&mut node0, "bad", bad, None).await;
            assert_eq!(status, 400, "PUT {bad} was accepted");
        }
        let raw =
            node0.request(Method::DELETE, "/buckets/b/keys/bad?ttl_s=1", &[], Bytes::new()).await.expect("delete");
        assert_eq!(raw.status, 400, "DELETE with ttl_s: {}", String::from_utf8_lossy(&raw.body));
        assert_eq!(replicas_with_versions(&cluster, 0, "bad").await, 0, "a refused write stored something");

        let before = unix_ms();
        assert_eq!(put(&mut node0, "session", "?ttl_s=2&w=3", None).await, 204);
        let written = Instant::now();
        assert_eq!(put(&mut node0, "permanent", "?w=3", None).await, 204);
        for node in &cluster.nodes {
            let mut http = node.connect().await;
            let (status, expires) = get_status(&mut http, "session", 3).await;
            assert_eq!(status, 200, "{} before expiry", node.addr());
            let expires: u64 = expires.expect("X-Dynamo-Expires on a key with a TTL").parse().expect("unix ms");
            assert!(
                (before + 2_000..=unix_ms() + 2_000).contains(&expires),
                "expiry {expires} is not two seconds after the write ({before})"
            );
            let (status, expires) = get_status(&mut http, "permanent", 3).await;
            assert_eq!((status, expires), (200, None), "a key without a TTL has no expiry");
        }

        tokio::time::sleep(Duration::from_millis(2_100).saturating_sub(written.elapsed())).await;
        for node in &cluster.nodes {
            let mut http = node.connect().await;
            let (status, _) = get_status(&mut http, "session", 3).await;
            assert_eq!(status, 404, "{} still serves the expired key", node.addr());
        }
        let mut node1 = cluster.nodes[1].connect().await;
        let read = node1.get("b", b"session", &[("r".to_string(), "3".to_string())]).await.expect("get");
        assert!(matches!(read, GetResult::NotFound { .. }), "{read:?}");

        wait_until_collected(&cluster, 0, "session", Duration::from_secs(20)).await;
        assert!(written.elapsed() >= Duration::from_millis(2_900), "collected before expiry plus grace");
        let (status, _) = get_status(&mut node1, "permanent", 3).await;
        assert_eq!(status, 200, "a key without a TTL was lost");
        assert_eq!(replicas_with_versions(&cluster, 0, "permanent").await, 3);
    });
}

#[test]
fn a_replica_away_while_a_key_expired_does_not_bring_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = GRACE_ARGS.to_vec();
    // Hinted handoff off: anti-entropy must carry the expiring version to
    // the returning replica before anything is collected.
    args.extend(["--hint-delivery-interval-ms=3600000", "--anti-entropy-interval-ms=20", "--partitions=16"]);
    let mut cluster = TestCluster::start(dir.path(), 3, &args);
    let context = block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        let w3 = WriteOptions { query: vec![("w".into(), "3".into())], ..WriteOptions::default() };
        node0.put("b", b"cart", Bytes::from("permanent"), &w3).await.expect("put").expect("context")
    });
    cluster.nodes[2].kill_9();
    let written = block_on(async {
        let mut node0 = cluster.nodes[0].connect().await;
        assert_eq!(put(&mut node0, "cart", "?ttl_s=2&w=2", Some(&context)).await, 204);
        let written = Instant::now();
        // Past expiry plus grace, but node2 holds the permanent value and
        // not the expiring one: nothing may be collected.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(replicas_with_versions(&cluster, 0, "cart").await, 2, "collected while a replica was away");
        let (status, _) = get_status(&mut node0, "cart", 2).await;
        assert_eq!(status, 404, "the expired key is served while a replica is away");
        written
    });
    cluster.nodes[2].restart();
    cluster.wait_until_peers_up();
    block_on(async {
        wait_until_collected(&cluster, 2, "cart", Duration::from_secs(30)).await;
        assert!(written.elapsed() >= Duration::from_millis(2_900));
        for node in &cluster.nodes {
            let mut http = node.connect().await;
            let read = http.get("b", b"cart", &[("r".to_string(), "3".to_string())]).await.expect("get");
            assert!(matches!(read, GetResult::NotFound { .. }), "{}: the expired key came back: {read:?}", node.addr());
        }
    });
}

#[test]
fn a_map_updated_with_a_ttl_expires_and_its_next_update_starts_it_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &GRACE_ARGS);
    block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        for (bucket, datatype) in [("carts", "map"), ("hits", "counter")] {
            let props = Bytes::from(format!(r#"{{"datatype":"{datatype}"}}"#));
            let raw = http.request(Method::PUT, &format!("/buckets/{bucket}/props"), &[], props).await.expect("props");
            assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
        }
        let increment = Bytes::from_static(br#"{"increment":1}"#);
        let raw = http.request(Method::POST, "/buckets/hits/datatypes/k?ttl_s=1", &[], increment).await.expect("post");
        assert_eq!(raw.status, 400, "a counter cannot expire: {}", String::from_utf8_lossy(&raw.body));

        let add = Bytes::from_static(br#"{"update":{"items_set":{"add":"old"}}}"#);
        let raw = http.request(Method::POST, "/buckets/carts/datatypes/ann?ttl_s=1&w=3", &[], add).await.expect("post");
        assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
        let written = Instant::now();
        let raw = http.request(Method::GET, "/buckets/carts/datatypes/ann", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.status, 200);
        assert!(raw.header("x-dynamo-expires").is_some(), "a map with a TTL carries X-Dynamo-Expires");
        let value: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!(value["value"], serde_json::json!({"items_set": ["old"]}), "the expiry is not a field: {value}");

        tokio::time::sleep(Duration::from_millis(1_100).saturating_sub(written.elapsed())).await;
        for node in &cluster.nodes {
            let mut http = node.connect().await;
            let raw =
                http.request(Method::GET, "/buckets/carts/datatypes/ann?r=3", &[], Bytes::new()).await.expect("get");
            assert_eq!(raw.status, 404, "{} serves the expired map", node.addr());
        }
        let add = Bytes::from_static(br#"{"update":{"items_set":{"add":"new"}}}"#);
        let raw =
            http.request(Method::POST, "/buckets/carts/datatypes/ann?returnbody=true", &[], add).await.expect("post");
        assert_eq!(raw.status, 200);
        let value: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!(value["value"], serde_json::json!({"items_set": ["new"]}), "the expired items came back: {value}");
        let mut node2 = cluster.nodes[2].connect().await;
        let raw = node2.request(Method::GET, "/buckets/carts/datatypes/ann?r=3", &[], Bytes::new()).await.expect("get");
        assert_eq!((raw.status, raw.header("x-dynamo-expires")), (200, None), "the fresh map is permanent");
    });
}

#[test]
fn a_bucket_default_ttl_applies_to_writes_that_give_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &GRACE_ARGS);
    block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let set_props = |bucket: &'static str, json: &'static str| {
            let path = format!("/buckets/{bucket}/props");
            (path, Bytes::from_static(json.as_bytes()))
        };
        for (bucket, json, status) in [
            ("sessions", r#"{"ttl_s":3600}"#, 204),
            ("hits", r#"{"datatype":"counter","ttl_s":60}"#, 400),
            ("sessions", r#"{"ttl_s":999999999999}"#, 400),
            ("carts", r#"{"datatype":"map","ttl_s":3600}"#, 204),
        ] {
            let (path, body) = set_props(bucket, json);
            let raw = http.request(Method::PUT, &path, &[], body).await.expect("props");
            assert_eq!(raw.status, status, "{json}: {}", String::from_utf8_lossy(&raw.body));
        }
        let raw = http.request(Method::GET, "/buckets/sessions/props", &[], Bytes::new()).await.expect("props");
        let props: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        assert_eq!(props["ttl_s"], 3600, "{props}");

        // Props reach every member; each node applies the default.
        let mut node2 = cluster.nodes[2].connect().await;
        let before = unix_ms();
        let raw = node2.request(Method::PUT, "/buckets/sessions/keys/s1", &[], Bytes::from("v")).await.expect("put");
        assert_eq!(raw.status, 204);
        let raw = http.request(Method::GET, "/buckets/sessions/keys/s1", &[], Bytes::new()).await.expect("get");
        let expires: u64 = raw.header("x-dynamo-expires").expect("the bucket's TTL").parse().expect("ms");
        assert!((before + 3_600_000..=unix_ms() + 3_600_000).contains(&expires), "{expires}");
        // A write's own ttl_s wins over the bucket's.
        let raw =
            node2.request(Method::PUT, "/buckets/sessions/keys/s2?ttl_s=5", &[], Bytes::from("v")).await.expect("put");
        assert_eq!(raw.status, 204);
        let raw = http.request(Method::GET, "/buckets/sessions/keys/s2", &[], Bytes::new()).await.expect("get");
        let expires: u64 = raw.header("x-dynamo-expires").expect("its own TTL").parse().expect("ms");
        assert!(expires <= unix_ms() + 5_000, "{expires}");
        // A map update gets the bucket's TTL too.
        let add = Bytes::from_static(br#"{"update":{"items_set":{"add":"x"}}}"#);
        let raw = node2.request(Method::POST, "/buckets/carts/datatypes/ann", &[], add).await.expect("post");
        assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));
        let raw = http.request(Method::GET, "/buckets/carts/datatypes/ann", &[], Bytes::new()).await.expect("get");
        assert!(raw.header("x-dynamo-expires").is_some(), "a map in a bucket with a TTL expires");
        // Without a default, writes stay permanent.
        let raw = http.request(Method::PUT, "/buckets/plain/keys/k", &[], Bytes::from("v")).await.expect("put");
        assert_eq!(raw.status, 204);
        let raw = http.request(Method::GET, "/buckets/plain/keys/k", &[], Bytes::new()).await.expect("get");
        assert_eq!(raw.header("x-dynamo-expires"), None);
    });
}
