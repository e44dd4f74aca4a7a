//! Listing on real processes (issue 14): a full paged pass over 20,000 keys
//! lists each live key exactly once, deleted keys not at all, also when the
//! node the client pages through is killed halfway and the pass goes on
//! through another node with the same continuation; `GET /buckets` lists
//! buckets with live keys or props only; bad parameters are `400`; and
//! `dynamo keys` prints every key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use common::{TestCluster, block_on, dynamo_bin};
use dynamo_client::{Connection, WriteOptions};
use hyper::Method;
use serde_json::Value;

/// Keys written for the full-pass test.
const KEYS: usize = 20_000;
/// Concurrent writers (connections) while loading them.
const WRITERS: usize = 32;
/// Every this many keys, one is deleted before the passes.
const DELETE_EVERY: usize = 40;
/// Page size of the passes.
const LIMIT: usize = 500;

async fn get_json(http: &mut Connection, path: &str) -> (u16, Value) {
    let raw = http.request(Method::GET, path, &[], Bytes::new()).await.expect("request");
    let body = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    (raw.status, body)
}

/// One page through `http`, from `continuation`.
async fn page(http: &mut Connection, bucket: &str, continuation: Option<&str>) -> (Vec<String>, Option<String>) {
    let mut path = format!("/buckets/{bucket}/keys?limit={LIMIT}");
    if let Some(token) = continuation {
        path.push_str(&format!("&continuation={token}"));
    }
    let (status, body) = get_json(http, &path).await;
    assert_eq!(status, 200, "{path}: {body}");
    let keys: Vec<String> =
        body["keys"].as_array().expect("keys").iter().map(|key| key.as_str().expect("text").to_string()).collect();
    assert!(keys.len() <= LIMIT, "a page of {} keys with limit {LIMIT}", keys.len());
    (keys, body["continuation"].as_str().map(str::to_string))
}

/// Counts how often each key was listed; fails on a key listed twice.
fn count(listed: &mut BTreeMap<String, usize>, keys: Vec<String>) {
    for key in keys {
        *listed.entry(key).or_default() += 1;
    }
}

fn assert_exactly_once(listed: &BTreeMap<String, usize>, live: &BTreeSet<String>, pass: &str) {
    let twice: Vec<&String> = listed.iter().filter(|(_, times)| **times > 1).map(|(key, _)| key).collect();
    assert!(
        twice.is_empty(),
        "{pass}: {} keys listed more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let seen: BTreeSet<String> = listed.keys().cloned().collect();
    let missing: Vec<&String> = live.difference(&seen).collect();
    let extra: Vec<&String> = seen.difference(live).collect();
    assert!(
        missing.is_empty(),
        "{pass}: {} live keys missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        extra.is_empty(),
        "{pass}: {} keys listed that are not live (deleted?), e.g. {:?}",
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

#[test]
fn a_full_pass_lists_each_live_key_once_even_when_its_node_is_killed_halfway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &["--partitions=64"]);
    let keys: Vec<String> = (0..KEYS).map(|index| format!("key-{index:05}")).collect();
    let deleted: BTreeSet<String> = keys.iter().step_by(DELETE_EVERY).cloned().collect();
    let live: BTreeSet<String> = keys.iter().filter(|key| !deleted.contains(*key)).cloned().collect();

    let loaded = Instant::now();
    block_on(async {
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let mut http = cluster.nodes[writer % 3].connect().await;
            let mine: Vec<String> = keys.iter().skip(writer).step_by(WRITERS).cloned().collect();
            let deleted = deleted.clone();
            writers.push(tokio::spawn(async move {
                for key in mine {
                    let context = http
                        .put("people", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default())
                        .await
                        .unwrap_or_else(|error| panic!("put {key}: {error}"));
                    if deleted.contains(&key) {
                        // With the put's context, so the tombstone supersedes the value.
                        http.delete("people", key.as_bytes(), &WriteOptions { context, ..WriteOptions::default() })
                            .await
                            .unwrap_or_else(|error| panic!("delete {key}: {error}"));
                    }
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
    });
    eprintln!("wrote {KEYS} keys and deleted {} in {:?}", deleted.len(), loaded.elapsed());

    // Pass 1: every node up.
    let passed = Instant::now();
    let pages = block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let (mut listed, mut continuation, mut pages) = (BTreeMap::new(), None, 0);
        loop {
            let (keys, next) = page(&mut http, "people", continuation.as_deref()).await;
            count(&mut listed, keys);
            pages += 1;
            match next {
                Some(token) => continuation = Some(token),
                None => break,
            }
        }
        assert_exactly_once(&listed, &live, "pass with every node up");
        pages
    });
    let rate = live.len() as f64 / passed.elapsed().as_secs_f64();
    eprintln!("listed {} keys in {pages} pages in {:?} ({rate:.0} keys/s)", live.len(), passed.elapsed());
    assert!(pages >= live.len() / LIMIT, "pages hold at most {LIMIT} keys");

    // Pass 2: page through node1, kill it halfway, go on through node0
    // with the same continuation (a token is a position, valid anywhere).
    let mut listed = BTreeMap::new();
    let continuation = block_on(async {
        let mut http = cluster.nodes[1].connect().await;
        let mut continuation = None;
        for _ in 0..pages / 2 {
            let (keys, next) = page(&mut http, "people", continuation.as_deref()).await;
            count(&mut listed, keys);
            continuation = Some(next.expect("the pass is not over halfway"));
        }
        continuation
    });
    cluster.nodes[1].kill_9();
    block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let mut continuation = continuation;
        loop {
            let (keys, next) = page(&mut http, "people", continuation.as_deref()).await;
            count(&mut listed, keys);
            match next {
                Some(token) => continuation = Some(token),
                None => break,
            }
        }
    });
    assert_exactly_once(&listed, &live, "pass with node1 killed halfway");
}

#[test]
fn buckets_are_listed_while_they_hold_live_keys_or_have_props() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &["--partitions=16"]);
    block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let options = WriteOptions::default();
        http.put("alive", b"k", Bytes::from_static(b"v"), &options).await.expect("put");
        for index in 0..5 {
            let key = format!("k{index}");
            let context = http.put("gone", key.as_bytes(), Bytes::from_static(b"v"), &options).await.expect("put");
            let superseding = WriteOptions { context, ..WriteOptions::default() };
            http.delete("gone", key.as_bytes(), &superseding).await.expect("delete");
        }
        let raw = http
            .request(
                Method::PUT,
                "/buckets/configured/props",
                &[("content-type", "application/json")],
                Bytes::from_static(b"{\"n\":3}"),
            )
            .await
            .expect("props");
        assert_eq!(raw.status, 204, "{}", String::from_utf8_lossy(&raw.body));

        let mut other = cluster.nodes[2].connect().await;
        let (status, body) = get_json(&mut other, "/buckets").await;
        assert_eq!(status, 200, "{body}");
        let buckets: Vec<&str> =
            body["buckets"].as_array().expect("buckets").iter().filter_map(Value::as_str).collect();
        assert_eq!(buckets, ["alive", "configured"], "a bucket whose keys are all deleted is not listed: {body}");
        assert_eq!(body["complete"], true);

        // A key that is not UTF-8 is listed in base64, never altered.
        http.put("alive", &[0xff, 0x00, b'x'], Bytes::from_static(b"v"), &options).await.expect("put");
        let (status, body) = get_json(&mut http, "/buckets/alive/keys").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["keys"], serde_json::json!(["k"]));
        assert_eq!(body["keys_b64"], serde_json::json!(["/wB4"]));
        assert_eq!(body["continuation"], Value::Null);
    });

    // `dynamo keys` prints the UTF-8 keys one per line and counts the rest.
    let output = Command::new(dynamo_bin())
        .args(["keys", "alive", "--limit=1", &format!("--node={}", cluster.nodes[1].addr())])
        .output()
        .expect("run dynamo keys");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "k\n");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 of 2 keys"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(dynamo_bin())
        .args(["keys", "alive", "--json", &format!("--node={}", cluster.nodes[1].addr())])
        .output()
        .expect("run dynamo keys --json");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: BTreeSet<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    let expected: BTreeSet<String> =
        ["{\"key\":\"k\"}", "{\"key_b64\":\"/wB4\"}"].iter().map(|line| line.to_string()).collect();
    assert_eq!(lines, expected);
}

#[test]
fn a_bad_limit_or_continuation_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &["--partitions=16"]);
    block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        for index in 0..10 {
            let key = format!("k{index}");
            http.put("b", key.as_bytes(), Bytes::from_static(b"v"), &WriteOptions::default()).await.expect("put");
        }
        for (path, says) in [
            ("/buckets/b/keys?limit=0", "from 1 to 10000"),
            ("/buckets/b/keys?limit=10001", "from 1 to 10000"),
            ("/buckets/b/keys?limit=many", "from 1 to 10000"),
            ("/buckets/b/keys?continuation=not-a-token", "continuation"),
            ("/buckets/b/keys?continuation=", "continuation"),
            ("/buckets/b/keys?cursor=x", "cursor"),
        ] {
            let (status, body) = get_json(&mut http, path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body["error"].as_str().is_some_and(|error| error.contains(says)), "{path}: {body}");
        }
        // A token of bucket b is refused for another bucket, and when altered.
        let (_, body) = get_json(&mut http, "/buckets/b/keys?limit=1").await;
        let token = body["continuation"].as_str().expect("more than one key").to_string();
        let (status, body) = get_json(&mut http, &format!("/buckets/other/keys?continuation={token}")).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().is_some_and(|error| error.contains("another bucket")), "{body}");
        let mut altered = token.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        let (status, body) = get_json(&mut http, &format!("/buckets/b/keys?continuation={altered}")).await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = get_json(&mut http, &format!("/buckets/b/keys?continuation={token}")).await;
        assert_eq!(status, 200, "the token itself still works");
    });
}

/// Pages through `bucket` via `http` until the pass ends, counting keys.
async fn finish_pass(
    http: &mut Connection,
    bucket: &str,
    mut continuation: Option<String>,
    listed: &mut BTreeMap<String, usize>,
) {
    loop {
        let (keys, next) = page(http, bucket, continuation.as_deref()).await;
        count(listed, keys);
        match next {
            Some(token) => continuation = Some(token),
            None => return,
        }
    }
}

#[test]
fn a_pass_lists_each_key_once_while_a_fourth_node_joins_and_partitions_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gossip = "--gossip-interval-ms=200";
    let cluster = TestCluster::start(dir.path(), 3, &["--partitions=64", gossip]);
    let keys: Vec<String> = (0..6_000).map(|index| format!("item-{index:05}")).collect();
    let live: BTreeSet<String> = keys.iter().cloned().collect();
    block_on(async {
        let mut writers = Vec::new();
        for writer in 0..16 {
            let mut http = cluster.nodes[writer % 3].connect().await;
            let mine: Vec<String> = keys.iter().skip(writer).step_by(16).cloned().collect();
            writers.push(tokio::spawn(async move {
                for key in mine {
                    http.put("items", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default())
                        .await
                        .unwrap_or_else(|error| panic!("put {key}: {error}"));
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
    });
    // The first pages under the ring of three.
    let mut listed = BTreeMap::new();
    let continuation = block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let mut continuation = None;
        for _ in 0..4 {
            let (keys, next) = page(&mut http, "items", continuation.as_deref()).await;
            count(&mut listed, keys);
            continuation = Some(next.expect("the pass is not over"));
        }
        continuation
    });
    // node3 joins and the plan is committed: a quarter of the partitions
    // start moving to it while the pass goes on.
    let secret = format!("--cluster-secret-file={}", cluster.secret_file.display());
    let node3 = common::TestNode::start(
        &dir.path().join("node3"),
        &["--node-id=node3", &secret, gossip, "--partitions=64", "--default-n=3", "--default-r=2", "--default-w=2"],
    );
    let joined = Command::new(dynamo_bin())
        .args([
            "admin",
            "join",
            "--seed",
            &cluster.nodes[0].rpc_addr(),
            &format!("--node={}", node3.addr()),
            "--commit",
        ])
        .output()
        .expect("run dynamo admin join");
    assert!(
        joined.status.success(),
        "{}{}",
        String::from_utf8_lossy(&joined.stdout),
        String::from_utf8_lossy(&joined.stderr)
    );
    block_on(async {
        let mut http = cluster.nodes[1].connect().await;
        finish_pass(&mut http, "items", continuation, &mut listed).await;
    });
    assert_exactly_once(&listed, &live, "pass while node3 joins");
    // Once the partitions have moved, a pass through the new node too.
    let settled = Instant::now();
    block_on(async {
        let mut http = node3.connect().await;
        loop {
            let (status, body) = get_json(&mut http, "/admin/transfers").await;
            if status == 200 && body["pending"] == 0 && body["unsettled_partitions"] == 0 {
                break;
            }
            assert!(
                settled.elapsed().as_secs() < 30,
                "transfers did not settle: pending {}, unsettled {}",
                body["pending"],
                body["unsettled_partitions"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let mut listed = BTreeMap::new();
        finish_pass(&mut http, "items", None, &mut listed).await;
        assert_exactly_once(&listed, &live, "pass through node3 after the ring change");
    });
}
