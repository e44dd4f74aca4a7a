//! Counters and sets (issue 12) as an application uses them: a shopping
//! cart built by two clients adding through different nodes at once, read
//! through a third, with no client-side merge; a counter incremented
//! through every node; and the refusals a client can get wrong. Driven by
//! Python's `requests` against a real three-node cluster.

mod common;

use common::TestCluster;

#[test]
fn a_cart_built_through_two_nodes_at_once_holds_every_item_and_counters_count_every_increment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    let ports: Vec<String> = cluster.nodes.iter().map(|node| node.port.to_string()).collect();
    common::run_client("python3", "datatypes.py", &ports, &[]);
}

mod replication {
    //! Deltas through hinted handoff: no client read happens after the
    //! restart, so read repair cannot be what brings the node up to date;
    //! `/admin/replicas` reads each replica's own state directly.

    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use hyper::Method;

    use super::common::{TestCluster, block_on};

    async fn call(
        cluster: &TestCluster,
        via: usize,
        method: Method,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut http = cluster.nodes[via].connect().await;
        let raw = http.request(method, path, &[], Bytes::from(body.to_string())).await.expect("request");
        let json = serde_json::from_slice(&raw.body).unwrap_or(serde_json::Value::Null);
        (raw.status, json)
    }

    /// What each replica holds for the key: (node, datatype summary).
    async fn replica_values(cluster: &TestCluster, path: &str) -> Vec<(String, serde_json::Value)> {
        let (status, admin) = call(cluster, 0, Method::GET, path, "").await;
        assert_eq!(status, 200, "{admin}");
        admin["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .map(|replica| {
                let version = replica["versions"].get(0).cloned().unwrap_or_default();
                let summary = version.get("value").or(version.get("elements")).cloned().unwrap_or_default();
                (replica["node"].as_str().unwrap_or("?").to_string(), summary)
            })
            .collect()
    }

    #[test]
    fn a_killed_replica_gets_every_increment_and_add_back_from_hinted_deltas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = TestCluster::start(dir.path(), 3, &[]);
        block_on(async {
            for (bucket, datatype) in [("hits", "counter"), ("carts", "set")] {
                let body = format!(r#"{{"datatype":"{datatype}"}}"#);
                let (status, answer) = call(&cluster, 0, Method::PUT, &format!("/buckets/{bucket}/props"), &body).await;
                assert_eq!(status, 204, "{answer}");
            }
        });
        cluster.nodes[2].kill_9();
        block_on(async {
            for index in 0..30 {
                let via = index % 2;
                let (status, answer) =
                    call(&cluster, via, Method::POST, "/buckets/hits/datatypes/home", r#"{"increment":3}"#).await;
                assert_eq!(status, 204, "increment {index} with a node down: {answer}");
                let add = format!(r#"{{"add":"item-{index}"}}"#);
                let (status, answer) = call(&cluster, via, Method::POST, "/buckets/carts/datatypes/alice", &add).await;
                assert_eq!(status, 204, "add {index} with a node down: {answer}");
            }
        });
        let restarted = Instant::now();
        cluster.nodes[2].restart();
        block_on(async {
            let deadline = restarted + Duration::from_secs(30);
            for (path, expected) in [("/admin/replicas/hits/home", 90), ("/admin/replicas/carts/alice", 30)] {
                loop {
                    let values = replica_values(&cluster, path).await;
                    if values.len() == 3 && values.iter().all(|(_, value)| *value == expected) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{path}: replicas still differ after 30 s: {values:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            eprintln!("node2 caught up through hints {:?} after restarting", restarted.elapsed());
        });
    }
}
