//! Counters and sets (issue 12) as an application uses them: a shopping
//! cart built by two clients adding through different nodes at once, read
//! through a third, with no client-side merge; a counter incremented
//! through every node; and the refusals a client can get wrong. Driven by
//! Python's `requests` against a real three-node cluster.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestCluster;

#[test]
fn a_cart_built_through_two_nodes_at_once_holds_every_item_and_counters_count_every_increment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TestCluster::start(dir.path(), 3, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/datatypes.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(cluster.nodes.iter().map(|node| node.port.to_string()))
        .output()
        .expect("python3 runs (the tests need Python 3 with `requests`)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
