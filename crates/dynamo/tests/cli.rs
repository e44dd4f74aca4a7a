//! The command line as a user meets it: `dynamo dev` and the client
//! commands, run as real processes.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestNode, dynamo_bin, free_port};

fn dynamo(args: &[&str]) -> std::process::Output {
    Command::new(dynamo_bin()).args(args).stdin(Stdio::null()).output().expect("run dynamo")
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn put_get_delete_commands_show_values_siblings_and_carry_contexts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    let addr = node.addr();
    let node_flag = format!("--node={addr}");

    let put = dynamo(&["put", &node_flag, "b", "k", "first"]);
    assert!(put.status.success(), "{put:?}");
    assert!(dynamo(&["put", &node_flag, "b", "k", "second"]).status.success());

    let get = dynamo(&["get", &node_flag, "b", "k"]);
    assert!(get.status.success());
    let listing = stdout(&get);
    assert!(listing.contains("2 siblings"), "{listing}");
    assert!(listing.contains("first") && listing.contains("second"), "{listing}");
    let context = listing
        .lines()
        .find_map(|line| line.strip_prefix("context: "))
        .expect("the listing shows the context")
        .to_string();

    let resolve = dynamo(&["put", &node_flag, "--context", &context, "b", "k", "merged"]);
    assert!(resolve.status.success(), "{resolve:?}");
    let get = dynamo(&["get", &node_flag, "b", "k"]);
    assert_eq!(stdout(&get), "merged", "a lone value is printed exactly as stored");
    let stderr = String::from_utf8_lossy(&get.stderr).into_owned();
    let context =
        stderr.lines().find_map(|line| line.strip_prefix("context: ")).expect("context on stderr").to_string();

    let json = dynamo(&["get", &node_flag, "--json", "b", "k"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(parsed["status"], "found");
    assert_eq!(parsed["siblings"][0]["value"], "merged");

    assert!(dynamo(&["delete", &node_flag, "--context", &context, "b", "k"]).status.success());
    let get = dynamo(&["get", &node_flag, "b", "k"]);
    assert_eq!(get.status.code(), Some(2), "not found exits with 2");

    let bad = dynamo(&["put", &node_flag, "--context", "garbage!", "b", "k", "v"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("400"), "{bad:?}");
}

#[test]
fn dt_commands_update_and_read_counters_and_sets_and_refuse_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    let node_flag = format!("--node={}", node.addr());
    for (bucket, datatype) in [("hits", "counter"), ("tags", "set")] {
        let url = format!("http://{}/buckets/{bucket}/props", node.addr());
        let body = format!("{{\"datatype\":\"{datatype}\"}}");
        let set = Command::new("curl").args(["-s", "-f", "-X", "PUT", "-d", &body, &url]).output().expect("curl runs");
        assert!(set.status.success(), "{set:?}");
    }

    let update = dynamo(&["dt", "update", &node_flag, "hits", "home", r#"{"increment":3}"#]);
    assert!(update.status.success(), "{update:?}");
    assert_eq!(stdout(&update).trim(), r#"{"type":"counter","value":3}"#);
    assert!(dynamo(&["dt", "update", &node_flag, "hits", "home", r#"{"increment":-1}"#]).status.success());
    let get = dynamo(&["dt", "get", &node_flag, "hits", "home"]);
    assert_eq!(stdout(&get).trim(), r#"{"type":"counter","value":2}"#);

    assert!(dynamo(&["dt", "update", &node_flag, "tags", "t", r#"{"add_all":["a","b"]}"#]).status.success());
    let read: serde_json::Value =
        serde_json::from_slice(&dynamo(&["dt", "get", &node_flag, "tags", "t"]).stdout).unwrap();
    assert_eq!(read["value"], serde_json::json!(["a", "b"]));
    let remove = format!(r#"{{"remove":"a","context":{}}}"#, read["context"]);
    let removed = dynamo(&["dt", "update", &node_flag, "tags", "t", &remove]);
    assert!(stdout(&removed).contains(r#""value":["b"]"#), "{removed:?}");

    let absent = dynamo(&["dt", "get", &node_flag, "hits", "nobody"]);
    assert_eq!(absent.status.code(), Some(2), "not found exits with 2");
    let mismatch = dynamo(&["dt", "update", &node_flag, "hits", "home", r#"{"add":"x"}"#]);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&mismatch.stderr).contains("409"), "{mismatch:?}");
    let not_json = dynamo(&["dt", "update", &node_flag, "hits", "home", "{increment"]);
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("not JSON"), "{not_json:?}");
}

#[test]
fn dev_starts_a_node_writes_cluster_json_and_a_killed_node_restarts_from_its_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // Not the default 6379: a Redis server on this machine must not fail the test.
    let resp_port = free_port();
    let mut dev = Command::new(dynamo_bin())
        .args(["dev", "--nodes", "1", "--http-port-base", &port.to_string()])
        .args(["--resp-port-base", &resp_port.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn dev");
    let cluster_file = dir.path().join("cluster.json");
    let addr = format!("127.0.0.1:{port}");
    // Wait for dev to say the cluster is running: killing a node while dev
    // is still checking start-up would (rightly) make dev give up.
    let stdout_pipe = dev.stdout.take().expect("piped stdout");
    let (lines, running) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
            if line.starts_with("cluster running") {
                let _ = lines.send(());
            }
        }
    });
    running.recv_timeout(Duration::from_secs(30)).expect("dev reports the cluster running");
    assert!(cluster_file.exists());
    let cluster: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cluster_file).expect("read cluster.json")).expect("valid json");
    let node = &cluster["nodes"][0];
    assert_eq!(node["id"], "node0");
    assert_eq!(node["http_addr"], addr);
    assert_eq!(node["resp"], format!("127.0.0.1:{resp_port}"), "cluster.json lists the Redis address");
    assert!(node["rpc_addr"].as_str().is_some_and(|rpc| rpc.starts_with("127.0.0.1:")));
    assert!(node["data_dir"].as_str().is_some());
    let pid = node["pid"].as_u64().expect("pid") as libc::pid_t;
    let argv: Vec<String> =
        node["argv"].as_array().expect("argv").iter().map(|arg| arg.as_str().expect("string").to_string()).collect();

    let node_flag = format!("--node={addr}");
    let put = dynamo(&["put", &node_flag, "--dw=1", "b", "k", "kept"]);
    assert!(put.status.success(), "{put:?}");

    // SAFETY: kill(2) on the node's pid, as a test script would.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    while std::net::TcpStream::connect(&addr).is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut restarted =
        Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).spawn().expect("restart from argv");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "restarted node did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stdout(&dynamo(&["get", &node_flag, "b", "k"])), "kept");
    let _ = restarted.kill();
    let _ = restarted.wait();

    // SAFETY: SIGINT to our own child, as Ctrl-C would.
    unsafe {
        libc::kill(dev.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = dev.try_wait().expect("try_wait") {
            assert!(status.success(), "dev exits cleanly on Ctrl-C: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "dev did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dev_refuses_an_impossible_node_count_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(dynamo_bin())
        .args(["dev", "--nodes", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run dev");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--nodes 0"), "{output:?}");
}

#[test]
fn server_rejects_an_unknown_config_key_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("dynamo.toml");
    std::fs::write(&config, "max_valu_bytes = 3\n").expect("write config");
    let output = Command::new(dynamo_bin()).args(["server", "--config"]).arg(&config).output().expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("max_valu_bytes"), "{output:?}");
}

#[test]
fn the_example_config_file_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/dynamo.example.toml");
    let settings = dynamo_node::config::Settings::from_file(std::path::Path::new(example)).expect("example parses");
    settings.resolve().expect("example resolves");
}

#[test]
fn admin_replicas_peers_and_hints_show_what_the_node_knows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    let node_flag = format!("--node={}", node.addr());
    assert!(dynamo(&["put", &node_flag, "b", "k", "value"]).status.success());
    let replicas = dynamo(&["admin", "replicas", &node_flag, "b", "k"]);
    assert!(replicas.status.success(), "{replicas:?}");
    let text = stdout(&replicas);
    assert!(text.starts_with("b/k: partition "), "{text}");
    assert!(text.contains("5 bytes"), "the stored version is shown: {text}");
    let json = dynamo(&["admin", "replicas", &node_flag, "--json", "b", "k"]);
    let body: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(body["replicas"][0]["versions"][0]["size"], 5);
    let peers = stdout(&dynamo(&["admin", "peers", &node_flag]));
    assert!(peers.starts_with("PEER"), "{peers}");
    let hints = stdout(&dynamo(&["admin", "hints", &node_flag]));
    assert!(hints.starts_with("STORED") && hints.lines().count() == 2, "{hints}");
    let refused = dynamo(&["admin", "replicas", "--node=127.0.0.1:1", "b", "k"]);
    assert!(!refused.status.success(), "an unreachable node is an error");
}
