//! The partition-aware client ([`dynamo_client::Client`], paper section
//! 6.4, issue 15) against real node processes: writes go straight to a
//! replica so no node forwards, reads coordinated in the client answer
//! what the nodes' own reads answer, and a killed node is routed around.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, block_on};
use dynamo_client::{Client, Connection, GetResult, WriteOptions};
use hyper::Method;

/// Gossip five times a second, so HTTP addresses spread quickly.
const GOSSIP: &str = "--gossip-interval-ms=200";
/// What "within a few seconds" allows on a loaded 2-core machine.
const SPREAD_DEADLINE: Duration = Duration::from_secs(15);

/// A client over every node as seeds, once its ring knows every member's
/// HTTP address (they arrive by gossip).
async fn client_of(cluster: &TestCluster) -> Client {
    client_with(cluster, dynamo_client::client::DEFAULT_DOWN_INTERVAL).await
}

/// [`client_of`], routing around an unreachable node for `down_interval`.
async fn client_with(cluster: &TestCluster, down_interval: Duration) -> Client {
    let seeds: Vec<String> = cluster.nodes.iter().map(|node| node.addr()).collect();
    let started = Instant::now();
    loop {
        let client = Client::builder(seeds.clone())
            .request_timeout(Duration::from_secs(5))
            .down_interval(down_interval)
            .build()
            .await
            .expect("a seed answers GET /ring");
        if client.ring().members().all(|member| member.http_addr.is_some()) {
            return client;
        }
        assert!(started.elapsed() < SPREAD_DEADLINE, "members' HTTP addresses did not spread");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the first `/metrics` line of `http`'s node that starts
/// with `prefix`.
async fn metric(http: &mut Connection, prefix: &str) -> u64 {
    let answer = http.request(Method::GET, "/metrics", &[], Bytes::new()).await.expect("GET /metrics");
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let line = text.lines().find(|line| line.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in /metrics"));
    line.rsplit(' ').next().and_then(|value| value.parse().ok()).expect("a counter value")
}

/// `dynamo_forwarded_requests_total` of `http`'s node.
async fn forwarded(http: &mut Connection) -> u64 {
    metric(http, "dynamo_forwarded_requests_total{").await
}

fn value_of(read: &GetResult) -> &[u8] {
    match read {
        GetResult::Found { sibling, .. } => &sibling.value,
        other => panic!("expected one value, got {other:?}"),
    }
}

#[test]
fn puts_and_gets_through_the_client_round_trip_and_no_node_forwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    block_on(async {
        let client = client_of(&cluster).await;
        let mut conns = Vec::new();
        for node in &cluster.nodes {
            conns.push(node.connect().await);
        }
        for index in 0..200 {
            let key = format!("key-{index}");
            let value = Bytes::from(format!("value-{index}"));
            client.put("cart", key.as_bytes(), value, &WriteOptions::default()).await.expect("put");
        }
        for index in 0..200 {
            let key = format!("key-{index}");
            let read = client.get("cart", key.as_bytes(), None).await.expect("get");
            assert_eq!(value_of(&read), format!("value-{index}").as_bytes(), "{key}");
        }
        // A node that does not replicate a key would forward its write:
        // the client only ever wrote to replicas.
        for http in &mut conns {
            assert_eq!(forwarded(http).await, 0, "{} forwarded requests", http.addr());
        }
        // The counter does count: a write sent to a node outside the
        // key's preference list is forwarded.
        // In a one-replica bucket, find a key node0 does not hold.
        let props = Bytes::from_static(br#"{"n":1,"r":1,"w":1}"#);
        let answer = conns[0]
            .request(Method::PUT, "/buckets/single/props", &[("content-type", "application/json")], props)
            .await
            .expect("set props");
        assert_eq!(answer.status, 204, "{}", String::from_utf8_lossy(&answer.body));
        let ring = client.ring();
        let node0 = conns[0].addr().to_string();
        let key = (0..100)
            .map(|index| format!("probe-{index}"))
            .find(|key| {
                let replicas = ring.preference_list("single", key.as_bytes(), 1).expect("list");
                ring.http_addr(&replicas[0]) != Some(node0.as_str())
            })
            .expect("a key node0 does not replicate");
        let outsider = 0;
        conns[0].put("single", key.as_bytes(), Bytes::from_static(b"x"), &WriteOptions::default()).await.expect("put");
        assert!(forwarded(&mut conns[outsider]).await > 0, "a write to a non-replica is counted as forwarded");
    });
}

#[test]
fn client_coordinated_reads_answer_the_same_siblings_and_context_as_the_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    block_on(async {
        let client = client_of(&cluster).await;
        let mut conns = Vec::new();
        for node in &cluster.nodes {
            conns.push(node.connect().await);
        }
        let blind = WriteOptions::default();
        for index in 0..10 {
            let key = format!("key-{index}");
            // Two writes without a context, through two different nodes:
            // concurrent, so two siblings.
            conns[0].put("cart", key.as_bytes(), Bytes::from(format!("a-{index}")), &blind).await.expect("put a");
            if index % 3 == 2 {
                // A concurrent delete: a tombstone sibling beside a value.
                conns[1].delete("cart", key.as_bytes(), &blind).await.expect("delete");
            } else {
                conns[1].put("cart", key.as_bytes(), Bytes::from(format!("b-{index}")), &blind).await.expect("put b");
            }
            let all = vec![("r".to_string(), "3".to_string())];
            let server = conns[2].get("cart", key.as_bytes(), &all).await.expect("server get");
            let ours = client.get("cart", key.as_bytes(), Some(3)).await.expect("client get");
            match &ours {
                GetResult::Siblings { siblings, .. } => assert_eq!(siblings.len(), 2, "{key}: {ours:?}"),
                other => panic!("{key}: expected two siblings, got {other:?}"),
            }
            assert_eq!(ours, server, "{key}: the client's read differs from the node's");
        }
        // A key never written: not found, no context, on both sides.
        let server = conns[0].get("cart", b"never", &[]).await.expect("server get");
        let ours = client.get("cart", b"never", None).await.expect("client get");
        assert_eq!((ours, server.clone()), (GetResult::NotFound { context: None }, server));
    });
}

#[test]
fn with_one_node_killed_puts_and_gets_through_the_client_keep_succeeding_and_it_is_probed_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    block_on(async {
        let client = client_with(&cluster, Duration::from_millis(300)).await;
        for index in 0..20 {
            let key = format!("before-{index}");
            client.put("cart", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await.expect("put");
        }
        let killed_addr = cluster.nodes[2].addr();
        cluster.nodes[2].kill_9();
        let started = Instant::now();
        for index in 0..50 {
            let key = format!("after-{index}");
            client.put("cart", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await.expect("put");
            let read = client.get("cart", key.as_bytes(), None).await.expect("get");
            assert_eq!(value_of(&read), key.as_bytes());
        }
        for index in 0..20 {
            let key = format!("before-{index}");
            let read = client.get("cart", key.as_bytes(), None).await.expect("get");
            assert_eq!(value_of(&read), key.as_bytes());
        }
        assert!(client.is_marked_down(&killed_addr), "the killed node is routed around");
        // Routing around it costs no timeouts: a refused connect is
        // immediate.
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());

        // Back up: once the down interval is over, the next write whose
        // preference list starts with it probes it, and it coordinates
        // writes again.
        cluster.nodes[2].restart();
        tokio::time::sleep(Duration::from_millis(400)).await;
        for index in 0..30 {
            let key = format!("back-{index}");
            client.put("cart", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await.expect("put");
        }
        assert!(!client.is_marked_down(&killed_addr), "the restarted node answered its probe");
        let mut restarted = cluster.nodes[2].connect().await;
        let puts = metric(&mut restarted, "dynamo_requests_total{node=\"node2\",op=\"put\",status=\"2xx\"}").await;
        assert!(puts > 0, "the restarted node coordinated none of 30 writes");
    });
}

#[test]
fn update_merges_the_siblings_of_a_cart_into_one_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    block_on(async {
        let client = client_of(&cluster).await;
        let blind = WriteOptions::default();
        // Two shoppers add at once, through two nodes: two siblings.
        let mut node0 = cluster.nodes[0].connect().await;
        let mut node1 = cluster.nodes[1].connect().await;
        node0.put("carts", b"ann", Bytes::from("apple"), &blind).await.expect("put");
        node1.put("carts", b"ann", Bytes::from("pear"), &blind).await.expect("put");
        let union = |versions: &[dynamo_client::Sibling]| {
            let mut items: Vec<Vec<u8>> = versions
                .iter()
                .flat_map(|version| version.value.split(|byte| *byte == b',').map(<[u8]>::to_vec))
                .collect();
            items.push(b"fig".to_vec());
            items.sort();
            items.dedup();
            Bytes::from(items.join(&b','))
        };
        let mut seen = Vec::new();
        client
            .update("carts", b"ann", &blind, 5, |versions| {
                seen.push(versions.len());
                union(versions)
            })
            .await
            .expect("update");
        assert_eq!(seen.first(), Some(&2), "the merge saw both siblings");
        let read = client.get("carts", b"ann", Some(3)).await.expect("get");
        assert_eq!(value_of(&read), b"apple,fig,pear", "one version holding every item: {read:?}");
        // An absent key: the merge gets no version.
        client.update("carts", b"bob", &blind, 1, |versions| union(versions)).await.expect("update of nothing");
        assert_eq!(value_of(&client.get("carts", b"bob", None).await.expect("get")), b"fig");
    });
}
