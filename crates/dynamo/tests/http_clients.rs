//! The HTTP API as ordinary clients see it: Python's `http.client` and
//! `requests`, and curl, run as real processes against the real binary.
//! An answer our own client reads may still be lost to theirs: these tests
//! catch what only their habits expose (writing the whole body before
//! reading, `Expect: 100-continue`).

mod common;

use std::path::Path;
use std::process::Command;

use common::TestNode;

/// What Python clients send before they read: the whole body, always.
fn run_refused_puts(node: &TestNode, size: usize, count: usize, client: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/refused_puts.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([node.port.to_string(), size.to_string(), count.to_string(), client.to_string()])
        .output()
        .expect("python3 runs (the tests need Python 3 with `requests`)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{client}, {size} bytes:\n{report}{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn python_clients_that_send_the_whole_body_first_read_every_413() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default limit, 1 MiB: the values below are 2 and 8 times over it.
    let node = TestNode::start(dir.path(), &[]);
    run_refused_puts(&node, 2 << 20, 50, "http.client");
    run_refused_puts(&node, 8 << 20, 50, "http.client");
    run_refused_puts(&node, 8 << 20, 10, "requests");
}

/// Runs curl with `args` and returns (status code, body).
fn curl(args: &[&str]) -> (String, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30", "--write-out", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or_default();
    (status.to_string(), body.to_string())
}

#[test]
fn curl_reads_its_413_with_and_without_expect_100_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(dir.path(), &[]);
    let value = dir.path().join("value.bin");
    std::fs::write(&value, vec![b'x'; 8 << 20]).expect("write the value");
    let upload = format!("@{}", value.display());
    for (key, expect) in [("with-expect", "Expect: 100-continue"), ("without-expect", "Expect:")] {
        let url = format!("http://{}/buckets/refused/keys/{key}", node.addr());
        let (status, body) = curl(&["-X", "PUT", "-H", expect, "--data-binary", &upload, &url]);
        assert_eq!(status, "413", "{expect}: {body}");
        let message: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(message["error"].as_str().is_some_and(|text| text.contains("max_value_bytes")), "{body}");
        let (status, _) = curl(&[&url]);
        assert_eq!(status, "404", "{expect}: nothing was stored");
    }
}
