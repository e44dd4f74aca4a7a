//! Membership on real processes (paper sections 4.8 and 4.9): joining
//! through a seed, gossip spreading changes without any central node,
//! persistence across restarts, the cluster secret at the door, and ring
//! changes (join, leave, remove) whose partition transfers keep every
//! acknowledged write under a continuous load.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{TestCluster, TestNode, block_on, dynamo_bin};
use dynamo_client::{GetResult, WriteOptions};
use hyper::Method;
use serde_json::Value;

/// Gossip five times a second, so changes spread in well under a second.
const GOSSIP: &str = "--gossip-interval-ms=200";
/// What "within a few seconds" allows on a loaded 2-core machine.
const SPREAD_DEADLINE: Duration = Duration::from_secs(10);

fn dynamo(args: &[&str]) -> Output {
    Command::new(dynamo_bin()).args(args).stdin(Stdio::null()).output().expect("run dynamo")
}

/// `dynamo admin <args> --node <node> --json`, which must succeed.
fn admin_json(node: &TestNode, args: &[&str]) -> Value {
    let node_flag = format!("--node={}", node.addr());
    let output = dynamo(&[&["admin"], args, &[&node_flag, "--json"]].concat());
    assert!(output.status.success(), "admin {args:?} on {}: {}", node.addr(), String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("admin --json prints JSON")
}

/// `dynamo admin <args> --node <node>` (a table), whatever its outcome.
fn admin(node: &TestNode, args: &[&str]) -> Output {
    let node_flag = format!("--node={}", node.addr());
    dynamo(&[&["admin"], args, &[&node_flag]].concat())
}

/// Each member's status as `dynamo admin members` on `node` shows it.
fn statuses(node: &TestNode) -> BTreeMap<String, String> {
    let cluster = admin_json(node, &["members"]);
    cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| (member["id"].as_str().unwrap_or_default().to_string(), text(&member["status"])))
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_string)
}

/// Writes every key through `node`, each with the value `value_of` gives it.
fn put_keys(node: &TestNode, keys: &[String], value_of: impl Fn(&str) -> Bytes) {
    block_on(async {
        let mut http = node.connect().await;
        for key in keys {
            http.put("b", key.as_bytes(), value_of(key), &WriteOptions::default()).await.expect("put");
        }
    });
}

/// Polls `done` until it holds; panics after `deadline` with `what`.
fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "not within {deadline:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// A node that is not (yet) a member of anything, sharing the test's
/// defaults: n=3, r=2, w=2, fast gossip.
fn lone_node(dir: &Path, id: &str, secret_file: &Path, extra: &[&str]) -> TestNode {
    let id_flag = format!("--node-id={id}");
    let secret_flag = format!("--cluster-secret-file={}", secret_file.display());
    let mut args = vec![id_flag.as_str(), secret_flag.as_str(), GOSSIP, "--default-n=3", "--default-r=2"];
    args.push("--default-w=2");
    args.extend_from_slice(extra);
    TestNode::start(&dir.join(id), &args)
}

#[test]
fn a_joining_node_appears_everywhere_by_gossip_even_when_its_seed_dies_and_a_restart_keeps_what_was_learned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let join0 = format!("--join={}", cluster.nodes[0].rpc_addr());
    let mut node3 = lone_node(dir.path(), "node3", &cluster.secret_file, &[&join0]);

    let took = wait_until("node3 listed as joining by every node", SPREAD_DEADLINE, || {
        cluster
            .nodes
            .iter()
            .chain([&node3])
            .all(|node| statuses(node).get("node3").map(String::as_str) == Some("joining"))
    });
    println!("a join reached all four nodes in {took:?}");
    let status = admin_json(&node3, &["status"]);
    assert_eq!(status["epoch"], 1, "a join commits nothing: {status}");
    let node3_row = status["members"].as_array().expect("members").iter().find(|m| m["id"] == "node3").cloned();
    assert_eq!(node3_row.expect("node3 listed")["partitions"], 0, "a joining node owns nothing");

    // The seed node3 joined through dies. A change taken at node1 (another
    // join) still reaches node2 and node3: gossip has no central node.
    cluster.nodes[0].kill_9();
    let join1 = format!("--join={}", cluster.nodes[1].rpc_addr());
    let mut node4 = lone_node(dir.path(), "node4", &cluster.secret_file, &[&join1]);
    let took = wait_until("node4 listed as joining by node2 and node3 with node0 dead", SPREAD_DEADLINE, || {
        [&cluster.nodes[2], &node3]
            .iter()
            .all(|node| statuses(node).get("node4").map(String::as_str) == Some("joining"))
    });
    println!("with the seed dead, a join reached node2 and node3 in {took:?}");

    // node2 learned node3 and node4 from gossip only. Restarted while every
    // other node is down, it still knows them: the state is persisted.
    for node in [&mut cluster.nodes[1], &mut node3, &mut node4] {
        node.stop();
    }
    cluster.nodes[2].stop();
    cluster.nodes[2].restart();
    let after = statuses(&cluster.nodes[2]);
    let expected: BTreeMap<String, String> =
        [("node0", "member"), ("node1", "member"), ("node2", "member"), ("node3", "joining"), ("node4", "joining")]
            .into_iter()
            .map(|(id, status)| (id.to_string(), status.to_string()))
            .collect();
    assert_eq!(after, expected, "the restarted node's view");
}

#[test]
fn a_node_with_the_wrong_secret_cannot_join_and_the_seed_logs_the_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let right = dir.path().join("right.secret");
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&right, common::TEST_SECRET).expect("secret");
    std::fs::write(&wrong, "not-the-cluster-secret-at-all").expect("secret");
    let seed_log = dir.path().join("seed.log");
    let secret_flag = format!("--cluster-secret-file={}", right.display());
    let seed = TestNode::start_logged(
        &dir.path().join("seed"),
        &["--node-id=seed", &secret_flag, GOSSIP, "--log-level=warn"],
        Some(seed_log.clone()),
    );
    let join = format!("--join={}", seed.rpc_addr());
    let intruder = lone_node(dir.path(), "intruder", &wrong, &[&join]);

    wait_until("the intruder reports the refused handshake", SPREAD_DEADLINE, || {
        let status = admin_json(&intruder, &["status"]);
        status["join"]["last_error"].as_str().is_some_and(|error| error.contains("cluster secret"))
    });
    let status = admin_json(&intruder, &["status"]);
    assert_eq!(status["join"]["state"], "pending", "it keeps trying (the secret may be fixed): {status}");
    assert_eq!(statuses(&seed).into_keys().collect::<Vec<_>>(), ["seed"], "the seed admitted nobody");
    let log = std::fs::read_to_string(&seed_log).expect("seed log");
    assert!(log.contains("authentication failed"), "the seed logs the refusal: {log}");

    // Until it has joined, a node started with --join serves no data: it
    // would otherwise take writes as a cluster of one and strand them.
    block_on(async {
        let mut http = intruder.connect().await;
        let put = http.request(Method::PUT, "/buckets/b/keys/k", &[], Bytes::from_static(b"v")).await.expect("put");
        assert_eq!(put.status, 503);
        assert!(String::from_utf8_lossy(&put.body).contains("joining a cluster"), "{put:?}");
    });
}

#[test]
fn growing_from_one_node_to_four_copies_every_partition_to_its_new_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, common::TEST_SECRET).expect("secret");
    // W=1: the founding node takes writes alone.
    let node0 = lone_node(dir.path(), "node0", &secret, &["--default-r=1", "--default-w=1"]);
    let keys: Vec<String> = (0..60).map(|index| format!("k{index}")).collect();
    put_keys(&node0, &keys, |key| Bytes::from(format!("v-{key}")));

    // Each join is committed once the previous one's copies are done.
    let mut nodes = vec![node0];
    for (id, seed) in [("node1", 0), ("node2", 1), ("node3", 2)] {
        let join = format!("--join={}", nodes[seed].rpc_addr());
        nodes.push(lone_node(dir.path(), id, &secret, &[&join, "--default-r=1", "--default-w=1"]));
        wait_until(&format!("{id} known to the committing node"), SPREAD_DEADLINE, || {
            statuses(&nodes[0]).get(id).map(String::as_str) == Some("joining")
        });
        let plan = admin_json(&nodes[0], &["plan"]);
        assert!(plan["transfers"].as_u64().is_some_and(|copies| copies > 0), "{plan}");
        assert!(text(&plan["commit"]).starts_with("moves"), "{plan}");
        let commit = admin_json(&nodes[0], &["commit"]);
        assert_eq!(commit["committed"], true, "{commit}");
        wait_until(&format!("the copies to {id} are done"), SPREAD_DEADLINE, || {
            nodes.iter().all(|node| admin_json(node, &["transfers"])["pending"] == 0)
        });
    }
    let refused = admin(&nodes[0], &["commit"]);
    assert!(String::from_utf8_lossy(&refused.stdout).contains("nothing to commit"), "{refused:?}");
    let table = String::from_utf8_lossy(&admin(&nodes[3], &["transfers"]).stdout).into_owned();
    assert!(table.contains("no partition transfers in progress"), "{table}");

    // Every key is on all three of its replicas: readable with r=3 through
    // any node, and each node holds exactly the keys it replicates.
    block_on(async {
        for node in &nodes {
            let mut http = node.connect().await;
            for key in &keys {
                let all = [("r".to_string(), "3".to_string())];
                match http.get("b", key.as_bytes(), &all).await.expect("get") {
                    GetResult::Found { sibling, .. } => assert_eq!(sibling.value, format!("v-{key}")),
                    other => panic!("{key} via {}: {other:?}", node.addr()),
                }
            }
        }
    });
    let report = admin_json(&nodes[3], &["transfers"]);
    assert!(report["totals"]["keys"].as_u64().is_some_and(|keys| keys > 0), "node3 copied keys: {report}");
    assert_eq!(report["totals"]["pulls_completed"], report["local"].as_array().map_or(0, Vec::len), "{report}");
}

#[test]
fn admin_join_adds_a_running_empty_node_and_the_commit_moves_a_quarter_of_the_ring_to_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let node3 = lone_node(dir.path(), "node3", &cluster.secret_file, &[]);
    let seed = cluster.nodes[0].rpc_addr();

    let joined = admin(&node3, &["join", "--seed", &seed]);
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
    assert!(String::from_utf8_lossy(&joined.stdout).contains("joined cluster"), "{joined:?}");
    let again = admin(&node3, &["join", "--seed", &seed]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already belongs"), "{again:?}");
    wait_until("node3 listed as joining by every node", SPREAD_DEADLINE, || {
        cluster.nodes.iter().all(|node| statuses(node).get("node3").map(String::as_str) == Some("joining"))
    });

    let plan = admin_json(&cluster.nodes[1], &["plan"]);
    assert_eq!((plan["committed_epoch"].clone(), plan["planned_epoch"].clone()), (1.into(), 2.into()), "{plan}");
    assert_eq!(plan["moved"], 64, "one quarter of 256 partitions, all to node3: {plan}");
    assert!(plan["moves"].as_array().expect("moves").iter().all(|step| step["to"] == "node3"));
    let table = String::from_utf8_lossy(&admin(&cluster.nodes[1], &["plan"]).stdout).into_owned();
    assert!(table.contains("64 of 256 partitions move (25.0%)"), "{table}");
    let commit = admin_json(&cluster.nodes[1], &["commit", "--force"]);
    assert_eq!((commit["committed"].clone(), commit["epoch"].clone()), (true.into(), 2.into()), "{commit}");

    wait_until("every node sees node3 as a member owning 64 partitions", SPREAD_DEADLINE, || {
        cluster.nodes.iter().chain([&node3]).all(|node| {
            let status = admin_json(node, &["status"]);
            status["epoch"] == 2
                && status["members"].as_array().is_some_and(|members| {
                    members.iter().any(|m| m["id"] == "node3" && m["status"] == "member" && m["partitions"] == 64)
                })
        })
    });
    let status = String::from_utf8_lossy(&admin(&node3, &["status"]).stdout).into_owned();
    assert!(status.contains("epoch 2") && status.contains("node3  member"), "{status}");

    // The new ring serves data: written through node3, read through node0.
    block_on(async {
        let mut via3 = node3.connect().await;
        let mut via0 = cluster.nodes[0].connect().await;
        for index in 0..30 {
            let key = format!("after-{index}");
            via3.put("b", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await.expect("put");
            match via0.get("b", key.as_bytes(), &[]).await.expect("get") {
                GetResult::Found { sibling, .. } => assert_eq!(sibling.value, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    });
}

/// Writes unique keys through the nodes in `targets` (round robin) until
/// `stop`, with the bucket's defaults (n=3, w=2); returns the keys whose
/// write was acknowledged. Failed writes (a node leaving, killed, or a
/// quorum out of reach) are simply not acknowledged.
fn write_until_stopped(
    targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, usize)> {
    std::thread::spawn(move || {
        block_on(async move {
            let mut acknowledged = Vec::new();
            let mut failed = 0;
            let mut index = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let addr = {
                    let targets = targets.lock().expect("targets");
                    targets[index % targets.len()].clone()
                };
                let key = format!("load-{index}");
                index += 1;
                let Ok(mut http) = dynamo_client::connect(&addr).await else {
                    failed += 1;
                    continue;
                };
                let written =
                    http.put("load", key.as_bytes(), Bytes::from(key.clone()), &WriteOptions::default()).await;
                match written {
                    Ok(_) => acknowledged.push(key),
                    Err(_) => failed += 1,
                }
            }
            (acknowledged, failed)
        })
    })
}

/// Waits until every node in `nodes` reports no pending partition copy.
fn wait_for_transfers(nodes: &[&TestNode], what: &str) {
    wait_until(what, Duration::from_secs(60), || {
        nodes.iter().all(|node| admin_json(node, &["transfers"])["pending"] == 0)
    });
}

/// Asserts, through `node`'s `/admin/replicas`, that each of `keys` in
/// `bucket` is held by every one of its n replicas and that its partition
/// is no longer moving (read replica by replica: nothing is repaired).
/// Returns the answers, for further checks.
fn assert_on_every_replica<'a>(node: &TestNode, bucket: &str, keys: impl Iterator<Item = &'a String>) -> Vec<Value> {
    block_on(async {
        let mut http = node.connect().await;
        let mut answers = Vec::new();
        for key in keys {
            let path = format!("/admin/replicas/{bucket}/{key}");
            let answer = http.request(Method::GET, &path, &[], Bytes::new()).await.expect("replicas");
            let body: Value = serde_json::from_slice(&answer.body).expect("json");
            assert_eq!(body["moving"], false, "{body}");
            let replicas = body["replicas"].as_array().expect("replicas");
            assert_eq!(replicas.len() as u64, body["n"].as_u64().expect("n"), "{body}");
            for replica in replicas {
                let held = replica["versions"].as_array().is_some_and(|versions| !versions.is_empty());
                assert!(held, "{key} missing on {}: {body}", replica["node"]);
            }
            answers.push(body);
        }
        answers
    })
}

/// Joins a lone node through `seed` and commits the plan on `committer`.
fn join_and_commit(dir: &Path, id: &str, secret: &Path, seed: &TestNode, committer: &TestNode) -> TestNode {
    let join = format!("--join={}", seed.rpc_addr());
    let node = lone_node(dir, id, secret, &[&join]);
    wait_until(&format!("{id} known to {}", committer.addr()), SPREAD_DEADLINE, || {
        statuses(committer).get(id).map(String::as_str) == Some("joining")
    });
    let commit = admin_json(committer, &["commit"]);
    assert_eq!(commit["committed"], true, "{commit}");
    node
}

/// The issue's "done" scenario, on real processes under a continuous write
/// load: grow 3 -> 4 -> 5, shrink 5 -> 4 by a graceful leave, kill a node
/// and remove it (4 -> 3). No acknowledged write is lost, every key reads
/// with R = N at the end, and each node owns its ideal share of the ring
/// within one partition.
#[test]
fn grow_leave_and_remove_under_load_lose_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let secret = cluster.secret_file.clone();
    let targets =
        std::sync::Arc::new(std::sync::Mutex::new(cluster.nodes.iter().map(TestNode::addr).collect::<Vec<String>>()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = write_until_stopped(targets.clone(), stop.clone());

    // 3 -> 4 -> 5.
    let node3 = join_and_commit(dir.path(), "node3", &secret, &cluster.nodes[0], &cluster.nodes[1]);
    targets.lock().expect("targets").push(node3.addr());
    let everyone: Vec<&TestNode> = cluster.nodes.iter().chain([&node3]).collect();
    wait_for_transfers(&everyone, "the copies to node3");
    // The partitions node0 gave to node3 are deleted from it once the
    // change has settled and stayed so for ten gossip rounds.
    wait_until("node0 dropped the partitions that moved to node3", SPREAD_DEADLINE, || {
        admin_json(&cluster.nodes[0], &["transfers"])["totals"]["purged"].as_u64().is_some_and(|purged| purged > 0)
    });
    let mut node4 = join_and_commit(dir.path(), "node4", &secret, &node3, &cluster.nodes[2]);
    targets.lock().expect("targets").push(node4.addr());
    let everyone: Vec<&TestNode> = cluster.nodes.iter().chain([&node3, &node4]).collect();
    wait_for_transfers(&everyone, "the copies to node4");
    assert_eq!(admin_json(&node4, &["ring"])["shares"].as_array().map(Vec::len), Some(5));

    // 5 -> 4: node4 leaves, hands its partitions over, and stops by itself.
    targets.lock().expect("targets").retain(|addr| *addr != node4.addr());
    let left = admin_json(&node4, &["leave"]);
    assert_eq!(left["committed"], true, "{left}");
    assert!(node4.wait_exit(Duration::from_secs(60)), "node4 stops once its partitions have moved");
    let everyone: Vec<&TestNode> = cluster.nodes.iter().chain([&node3]).collect();
    wait_for_transfers(&everyone, "the copies away from node4");
    wait_until("node4 removed everywhere", SPREAD_DEADLINE, || {
        everyone.iter().all(|node| statuses(node).get("node4").map(String::as_str) == Some("removed"))
    });

    // 4 -> 3: node1 dies; an operator removes it.
    targets.lock().expect("targets").retain(|addr| *addr != cluster.nodes[1].addr());
    cluster.nodes[1].kill_9();
    let removed = admin_json(&cluster.nodes[0], &["remove", "node1"]);
    assert_eq!(removed["committed"], true, "{removed}");
    let survivors: Vec<&TestNode> = [&cluster.nodes[0], &cluster.nodes[2], &node3].into_iter().collect();
    wait_for_transfers(&survivors, "the re-replication of node1's partitions");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, failed) = writer.join().expect("writer");
    assert!(acknowledged.len() > 100, "the load ran: {} acknowledged, {failed} failed", acknowledged.len());

    // Ownership: each of the three within one partition of its ideal share.
    let ring = admin_json(&cluster.nodes[0], &["ring"]);
    let shares = ring["shares"].as_array().expect("shares");
    assert_eq!(shares.len(), 3, "{ring}");
    for share in shares {
        let owned = share["partitions"].as_f64().expect("partitions");
        let ideal = share["ideal"].as_f64().expect("ideal");
        assert!((owned - ideal).abs() < 1.0, "{share}");
    }
    // Transfers (not read repair, not yet anti-entropy) put every
    // acknowledged write on each of its three replicas: a sample, checked
    // replica by replica before any read.
    assert_on_every_replica(&cluster.nodes[0], "load", acknowledged.iter().step_by(7));
    // Every acknowledged write reads back with R = N, through every survivor.
    block_on(async {
        let all = [("r".to_string(), "3".to_string())];
        for node in &survivors {
            let mut http = node.connect().await;
            for key in &acknowledged {
                match http.get("load", key.as_bytes(), &all).await.expect("get") {
                    GetResult::Found { sibling, .. } => assert_eq!(sibling.value, key.as_bytes()),
                    other => panic!("acknowledged write {key} lost (via {}): {other:?}", node.addr()),
                }
            }
        }
    });
    eprintln!("{} writes acknowledged, {failed} refused, none lost", acknowledged.len());
}

/// Transfers survive crashes: the new owner is killed in the middle of
/// copying (pulls are throttled so that they take seconds) and a source is
/// killed too; both come back, the copies finish without redoing the pulls
/// completed before the crash, and every key is on all its replicas.
#[test]
fn an_interrupted_transfer_resumes_after_the_puller_and_a_source_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let keys: Vec<String> = (0..600).map(|index| format!("k{index}")).collect();
    put_keys(&cluster.nodes[0], &keys, |_| Bytes::from(vec![b'x'; 1024]));
    // About 150 KiB/s: node3's copies (3/4 of the partitions, from three
    // sources each, ~1.4 MB) take about ten seconds.
    let join = format!("--join={}", cluster.nodes[0].rpc_addr());
    let mut node3 =
        lone_node(dir.path(), "node3", &cluster.secret_file, &[&join, "--transfer-max-bytes-per-sec=150000"]);
    wait_until("node3 joining", SPREAD_DEADLINE, || statuses(&cluster.nodes[1]).contains_key("node3"));
    let commit = admin_json(&cluster.nodes[1], &["commit"]);
    let pulls = commit["transfers"].as_u64().expect("transfers");
    assert!(pulls > 100, "{commit}");

    wait_until("node3 has finished some pulls", Duration::from_secs(30), || {
        admin_json(&node3, &["transfers"])["totals"]["pulls_completed"].as_u64().unwrap_or(0) >= 10
    });
    node3.kill_9();
    cluster.nodes[2].kill_9();
    let pending_at_crash = admin_json(&cluster.nodes[0], &["transfers"])["pending"].as_u64().expect("pending");
    assert!(pending_at_crash > 0 && pending_at_crash < pulls, "{pending_at_crash} of {pulls}");
    std::thread::sleep(Duration::from_millis(500));
    node3.restart();
    // With a source down, the pulls that need it wait and are retried.
    wait_until("node3 retries the pulls that need node2", Duration::from_secs(30), || {
        let report = admin_json(&node3, &["transfers"]);
        report["local"].as_array().is_some_and(|pulls| pulls.iter().any(|pull| pull["state"] == "retrying"))
    });
    cluster.nodes[2].restart();
    let everyone: Vec<&TestNode> = cluster.nodes.iter().chain([&node3]).collect();
    wait_for_transfers(&everyone, "the interrupted copies");
    let after = admin_json(&node3, &["transfers"]);
    let redone = after["totals"]["pulls_completed"].as_u64().expect("completed");
    assert!(redone <= pending_at_crash, "pulls done before the crash were not redone: {redone} > {pending_at_crash}");

    assert_on_every_replica(&node3, "b", keys.iter().step_by(5));
}

/// Hints held for a node that is then removed are not stranded: once the
/// node is out of the ring they go to the keys' current replicas, and are
/// dropped only when all of them have the write.
#[test]
fn hints_for_a_removed_node_reach_the_keys_current_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 4, &[GOSSIP, "--hint-delivery-interval-ms=200"]);
    cluster.nodes[3].kill_9();
    let keys: Vec<String> = (0..80).map(|index| format!("h{index}")).collect();
    put_keys(&cluster.nodes[0], &keys, |key| Bytes::from(key.to_string()));
    let survivors: Vec<&TestNode> = cluster.nodes[..3].iter().collect();
    let held = |nodes: &[&TestNode]| -> u64 {
        block_on(async {
            let mut total = 0;
            for node in nodes {
                let mut http = node.connect().await;
                let answer = http.request(Method::GET, "/admin/hints", &[], Bytes::new()).await.expect("hints");
                let body: Value = serde_json::from_slice(&answer.body).expect("json");
                total += body["hints"]["stored"].as_u64().expect("stored");
            }
            total
        })
    };
    assert!(held(&survivors) > 0, "writes for node3 left hints");

    let removed = admin_json(&cluster.nodes[0], &["remove", "node3"]);
    assert_eq!(removed["committed"], true, "{removed}");
    wait_for_transfers(&survivors, "the re-replication of node3's partitions");
    wait_until("every hint for node3 delivered elsewhere", Duration::from_secs(30), || held(&survivors) == 0);
    assert_on_every_replica(&cluster.nodes[0], "b", keys.iter());
}

/// A node dies while a join's copies are still running: removing it takes
/// effect at once (no copy waits for it), the ring without it is committed
/// once the join's copies are done, and every key ends on all its replicas.
#[test]
fn a_node_removed_while_a_join_is_copying_is_re_replicated_afterwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = TestCluster::start(dir.path(), 4, &[GOSSIP]);
    let keys: Vec<String> = (0..400).map(|index| format!("r{index}")).collect();
    put_keys(&cluster.nodes[0], &keys, |_| Bytes::from(vec![b'y'; 1024]));
    let join = format!("--join={}", cluster.nodes[0].rpc_addr());
    let node4 = lone_node(dir.path(), "node4", &cluster.secret_file, &[&join, "--transfer-max-bytes-per-sec=100000"]);
    wait_until("node4 joining", SPREAD_DEADLINE, || statuses(&cluster.nodes[1]).contains_key("node4"));
    assert_eq!(admin_json(&cluster.nodes[1], &["commit"])["committed"], true);
    assert!(admin_json(&cluster.nodes[0], &["transfers"])["pending"].as_u64().is_some_and(|pending| pending > 0));

    cluster.nodes[3].kill_9();
    let removed = admin_json(&cluster.nodes[0], &["remove", "node3"]);
    assert_eq!(removed["committed"], false, "{removed}");
    assert!(text(&removed["note"]).contains("node3 is removed"), "{removed}");
    let everyone: Vec<&TestNode> = cluster.nodes[..3].iter().chain([&node4]).collect();
    wait_for_transfers(&everyone, "the join's copies, without node3");
    let commit = admin_json(&cluster.nodes[0], &["commit"]);
    assert_eq!(commit["committed"], true, "{commit}");
    wait_for_transfers(&everyone, "the re-replication of node3's partitions");

    for body in assert_on_every_replica(&cluster.nodes[0], "b", keys.iter().step_by(4)) {
        let replicas = body["replicas"].as_array().expect("replicas");
        assert!(replicas.iter().all(|replica| replica["node"] != "node3"), "{body}");
    }
}

/// `dynamo admin join --commit`: join and commit in one step (the plan
/// applied directly, without looking at it first).
#[test]
fn admin_join_with_commit_applies_the_plan_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[GOSSIP]);
    let node3 = lone_node(dir.path(), "node3", &cluster.secret_file, &[]);
    let both = admin_json(&node3, &["join", "--seed", &cluster.nodes[2].rpc_addr(), "--commit"]);
    assert_eq!(both["join"]["node"], "node3", "{both}");
    assert_eq!(both["commit"]["committed"], true, "{both}");
    assert_eq!(both["commit"]["epoch"], 2, "{both}");
    let everyone: Vec<&TestNode> = cluster.nodes.iter().chain([&node3]).collect();
    wait_for_transfers(&everyone, "the copies to node3");
    wait_until("node3 a member everywhere", SPREAD_DEADLINE, || {
        everyone.iter().all(|node| statuses(node).get("node3").map(String::as_str) == Some("member"))
    });
}
