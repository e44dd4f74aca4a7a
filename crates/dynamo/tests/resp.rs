//! The Redis protocol front end (issue 13) as real clients see it:
//! redis-cli (Debian's redis-tools), redis-py (PyPI) and ioredis (npm), installed by
//! `tests/clients/install_redis_clients.sh` when missing, against a real
//! three-node cluster; and the raw bytes a client library may send
//! (inline commands, pipelines, RESP3, malformed frames).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use common::TestCluster;

static CLIENTS: Once = Once::new();

fn install_clients() {
    CLIENTS.call_once(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/install_redis_clients.sh");
        let output = Command::new("bash").arg(&script).output().expect("bash runs");
        assert!(
            output.status.success(),
            "installing redis-cli and redis-py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// `redis-cli -p PORT args...`: its output, trimmed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Sends `bytes` then a `PING` on a fresh connection, and returns the
/// replies to `bytes` (everything before the `PING`'s `+PONG`).
fn exchange(port: u16, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(bytes).expect("write");
    stream.write_all(b"PING\r\n").expect("write");
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !received.ends_with(b"+PONG\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) => panic!("connection closed after {:?}", String::from_utf8_lossy(&received)),
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) => panic!("reading the reply: {error} (got {:?})", String::from_utf8_lossy(&received)),
        }
    }
    received.truncate(received.len() - b"+PONG\r\n".len());
    String::from_utf8_lossy(&received).into_owned()
}

/// Whether the server closed the connection (a read returns nothing).
fn closed_after(port: u16, bytes: &[u8], reply: &str) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut received = vec![0u8; reply.len()];
    stream.read_exact(&mut received).expect("the error reply");
    assert_eq!(String::from_utf8_lossy(&received), reply);
    matches!(stream.read(&mut [0u8; 16]), Ok(0))
}

#[test]
fn redis_clients_read_and_write_strings_through_every_node() {
    install_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cluster, ports) = TestCluster::start_with_resp(dir.path(), 3, &[], true);

    // redis-py with its defaults, RESP2 and RESP3, pipelines, errors.
    let all: Vec<String> = ports.iter().map(u16::to_string).collect();
    common::run_client("python3", "resp_strings.py", &all, &[]);
    common::run_client("python3", "resp_types.py", &all, &[]);
    // ioredis (Node.js), with its defaults.
    let node_clients = std::env::var("DYNAMO_NODE_CLIENTS").unwrap_or_else(|_| "/var/tmp/dynamo-test-clients".into());
    let node_path = Path::new(&node_clients).join("node_modules");
    common::run_client("node", "resp_strings.js", &all[..2], &[("NODE_PATH", node_path)]);

    // redis-cli, one command per process, as scripts use it.
    assert_eq!(redis_cli(ports[0], &["SET", "cli", "from the shell"]), "OK");
    assert_eq!(redis_cli(ports[2], &["GET", "cli"]), "from the shell");
    assert_eq!(redis_cli(ports[1], &["EXISTS", "cli", "nope"]), "1");
    assert!(redis_cli(ports[1], &["FLUSHALL"]).contains("unknown command 'FLUSHALL'"));
    assert_eq!(redis_cli(ports[0], &["INCRBY", "cli:n", "7"]), "7");
    assert_eq!(redis_cli(ports[1], &["SADD", "cli:s", "a", "b"]), "2");
    assert_eq!(redis_cli(ports[2], &["SMEMBERS", "cli:s"]), "a\nb");
    assert_eq!(redis_cli(ports[0], &["HSET", "cli:h", "f", "v"]), "1");
    assert_eq!(redis_cli(ports[1], &["HGETALL", "cli:h"]), "f\nv");
    assert!(redis_cli(ports[2], &["INCR", "cli:h"]).starts_with("WRONGTYPE"));

    // One node down: with N=3, W=2 the others go on.
    cluster.nodes[2].kill_9();
    assert_eq!(redis_cli(ports[0], &["SET", "during", "an outage"]), "OK");
    assert_eq!(redis_cli(ports[1], &["GET", "during"]), "an outage");
}

#[test]
fn scan_lists_every_live_key_once_through_every_client() {
    install_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_cluster, ports) = TestCluster::start_with_resp(dir.path(), 3, &["--partitions=32"], true);
    let all: Vec<String> = ports.iter().map(u16::to_string).collect();
    common::run_client("python3", "resp_scan.py", &all, &[]);
    // redis-cli's own iteration, as operators use it.
    let listed = redis_cli(ports[1], &["--scan", "--pattern", "str:*"]);
    let mut keys: Vec<&str> = listed.lines().collect();
    let before = keys.len();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), before, "redis-cli --scan listed a key twice");
    // 100 strings written, every tenth key (n = 0, 30, 60, 90: strings)
    // deleted.
    assert_eq!(keys.len(), 100 - 10, "{listed}");
    assert!(keys.iter().all(|key| key.starts_with("str:")));
}

/// Whether every replica of the Redis key `key` answered a direct read
/// (which repairs nothing) and none holds a version.
fn collected_everywhere(cluster: &TestCluster, key: &str) -> bool {
    common::block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        let path = format!("/admin/replicas/redis/{key}");
        let raw = http.request(hyper::Method::GET, &path, &[], bytes::Bytes::new()).await.expect("admin");
        let admin: serde_json::Value = serde_json::from_slice(&raw.body).expect("json");
        admin["replicas"].as_array().expect("replicas").iter().all(|replica| {
            replica["status"] == "ok" && replica["versions"].as_array().is_some_and(|versions| versions.is_empty())
        })
    })
}

#[test]
fn keys_expire_through_every_client_and_their_storage_is_reclaimed() {
    install_clients();
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--tombstone-grace-ms=1000", "--tombstone-gc-interval-ms=200"];
    let (cluster, ports) = TestCluster::start_with_resp(dir.path(), 3, &args, true);
    let all: Vec<String> = ports.iter().map(u16::to_string).collect();
    common::run_client("python3", "resp_expiry.py", &all, &[]);

    // redis-cli, as a shell script sets and checks a session.
    assert_eq!(redis_cli(ports[0], &["SET", "session", "cart=1", "EX", "1"]), "OK");
    assert_eq!(redis_cli(ports[1], &["TTL", "session"]), "1");
    assert_eq!(redis_cli(ports[2], &["HSET", "profile", "name", "ann"]), "1");
    assert_eq!(redis_cli(ports[0], &["EXPIRE", "profile", "1"]), "1");
    assert!(redis_cli(ports[1], &["SET", "k", "v", "EX", "0"]).contains("invalid expire time in 'set' command"));
    let written = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(1_200));
    for port in &ports {
        assert_eq!(redis_cli(*port, &["EXISTS", "session", "profile"]), "0");
        assert_eq!(redis_cli(*port, &["TTL", "profile"]), "-2");
    }
    // Reclaimed once every replica holds the expired key and the grace
    // period has passed, and not before.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(collected_everywhere(&cluster, "session") && collected_everywhere(&cluster, "profile")) {
        assert!(std::time::Instant::now() < deadline, "expired keys were not collected");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(written.elapsed() >= Duration::from_millis(1_900), "collected before expiry plus grace");
    assert_eq!(redis_cli(ports[2], &["HGETALL", "profile"]), "");
}

#[test]
fn raw_bytes_inline_pipelined_resp3_and_malformed_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_cluster, ports) =
        TestCluster::start_with_resp(dir.path(), 1, &["--default-n=1", "--default-r=1", "--default-w=1"], true);
    let port = ports[0];

    // Inline commands, as telnet sends them, with quoting.
    let inline = exchange(port, b"PING\r\nSET k \"two words\"\r\nGET k\r\n");
    assert_eq!(inline, "+PONG\r\n+OK\r\n$9\r\ntwo words\r\n");

    // Three multibulk commands in one write, answered in order.
    let pipelined =
        exchange(port, b"*1\r\n$4\r\nECHO\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n");
    assert_eq!(pipelined, "-ERR wrong number of arguments for 'echo' command\r\n$1\r\nx\r\n$-1\r\n");

    // Pipelined reads run at once, but never ahead of a write before them.
    let mut ordered = Vec::new();
    for round in 0..40 {
        ordered.extend_from_slice(format!("SET o {round}\r\nGET o\r\nGET o\r\n").as_bytes());
    }
    let expected: String = (0..40)
        .map(|round| format!("+OK\r\n${len}\r\n{round}\r\n${len}\r\n{round}\r\n", len = round.to_string().len()))
        .collect();
    assert_eq!(exchange(port, &ordered), expected);

    // HELLO 3 switches to RESP3: a map reply, and nulls as `_`.
    let resp3 = exchange(port, b"HELLO 3\r\nGET none\r\n");
    assert!(resp3.starts_with("%7\r\n") && resp3.ends_with("_\r\n"), "{resp3}");
    assert!(exchange(port, b"HELLO 4\r\n").starts_with("-NOPROTO"));

    // Malformed frames: an error reply, then the connection closes.
    assert!(closed_after(port, b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"));
    // Refused at the header: the announced 10 GB are never waited for.
    assert!(closed_after(port, b"*1\r\n$10000000000\r\n", "-ERR Protocol error: invalid bulk length\r\n"));
    assert!(closed_after(port, b"SET k \"unterminated\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"));
    // An unknown command is only an error: the connection stays.
    let unknown = exchange(port, b"EVAL x 0\r\n");
    assert_eq!(unknown, "-ERR unknown command 'EVAL', with args beginning with: 'x' '0'\r\n");
}

#[test]
fn the_keyspace_is_a_bucket_of_maps_that_http_reads_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--default-n=1", "--default-r=1", "--default-w=1", "--resp-bucket=tallies"];
    let (cluster, ports) = TestCluster::start_with_resp(dir.path(), 1, &args, true);
    assert_eq!(exchange(ports[0], b"INCRBY visits 5\r\n"), ":5\r\n");
    common::block_on(async {
        let mut http = cluster.nodes[0].connect().await;
        // The keyspace's datatype is fixed: it is what the commands need.
        let body = bytes::Bytes::from_static(br#"{"datatype":"counter"}"#);
        let answer = http.request(hyper::Method::PUT, "/buckets/tallies/props", &[], body).await.expect("props");
        assert_eq!(answer.status, 409, "{}", String::from_utf8_lossy(&answer.body));
        // A Redis key is a map through the HTTP data-type API.
        let path = "/buckets/tallies/datatypes/visits";
        let answer = http.request(hyper::Method::GET, path, &[], bytes::Bytes::new()).await.expect("read");
        assert_eq!(answer.status, 200);
        let value: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
        assert_eq!(value["value"], serde_json::json!({"string_map": {"value_counter": 5}}), "{value}");
    });
}

/// Sends `INCR key` `count` times on one connection, one at a time, and
/// checks each reply is an integer.
fn increment_many(port: u16, key: &str, count: usize) {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut replies = BufReader::new(stream);
    let command = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len());
    for sent in 0..count {
        writer.write_all(command.as_bytes()).expect("write");
        let mut line = String::new();
        replies.read_line(&mut line).expect("reply");
        assert!(line.starts_with(':'), "INCR number {sent} through port {port}: {line:?}");
    }
}

/// Runs `count` increments through each port at once.
fn increment_concurrently(ports: &[u16], key: &str, count: usize) {
    let workers: Vec<_> = ports
        .iter()
        .map(|&port| {
            let key = key.to_string();
            std::thread::spawn(move || increment_many(port, &key, count))
        })
        .collect();
    workers.into_iter().for_each(|worker| worker.join().expect("a client thread"));
}

#[test]
fn concurrent_increments_through_every_node_all_count_also_with_a_node_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cluster, ports) = TestCluster::start_with_resp(dir.path(), 3, &[], true);
    increment_concurrently(&ports, "total", 1000);
    for &port in &ports {
        assert_eq!(exchange(port, b"GET total\r\n"), "$4\r\n3000\r\n", "through port {port}");
    }
    // One node killed: with N=3, W=2 the other two go on counting.
    cluster.nodes[2].kill_9();
    increment_concurrently(&ports[..2], "total", 500);
    for &port in &ports[..2] {
        assert_eq!(exchange(port, b"GET total\r\n"), "$4\r\n4000\r\n", "through port {port}");
    }
}
