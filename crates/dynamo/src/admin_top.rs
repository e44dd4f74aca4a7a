//! `dynamo admin top`: the dashboard's data in a terminal, refreshed in
//! place every second: the members as the node sees them, then the node's
//! last seconds from `/admin/series` (requests, latency, siblings,
//! repairs, hints, write visibility, admission budget). `--once` prints
//! one frame and exits, for scripts.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Seconds of history shown.
const ROWS: usize = 10;
/// ANSI: cursor home, clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// One frame from `/admin/cluster` and `/admin/series`.
pub fn render(cluster: &Value, series: &Value) -> String {
    let mut out = format!(
        "dynamo top — node {}   ring epoch {}\n\n{:<10} {:<8} {:<8} {:>10} {:>7}  {}\n",
        series["node"].as_str().unwrap_or("?"),
        cluster["epoch"],
        "NODE",
        "STATUS",
        "ZONE",
        "PARTITIONS",
        "SHARE",
        "REACHABLE"
    );
    for member in cluster["members"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<10} {:<8} {:<8} {:>10} {:>6.1}%  {}\n",
            member["id"].as_str().unwrap_or("?"),
            member["status"].as_str().unwrap_or("?"),
            member["zone"].as_str().unwrap_or("-"),
            member["partitions"],
            member["share"].as_f64().unwrap_or(0.0) * 100.0,
            member["reachable"].as_str().unwrap_or("?"),
        ));
    }
    out.push_str(&format!(
        "\n{:>8} {:>7} {:>7} {:>7} {:>10} {:>10} {:>9} {:>8} {:>6} {:>9} {:>7}\n",
        "AGO", "GET/S", "PUT/S", "DEL/S", "GET P99", "PUT P99", "SIBLINGS", "REPAIRS", "HINTS", "VIS P99", "BUDGET"
    ));
    let samples = series["samples"].as_array().map(Vec::as_slice).unwrap_or_default();
    let ms = |value: &Value| value.as_f64().map_or("-".to_string(), |ms| format!("{ms} ms"));
    for (age, sample) in samples.iter().rev().take(ROWS).enumerate() {
        out.push_str(&format!(
            "{:>7}s {:>7} {:>7} {:>7} {:>10} {:>10} {:>9} {:>8} {:>6} {:>9} {:>7.2}\n",
            age + 1,
            sample["get"]["ops"],
            sample["put"]["ops"],
            sample["delete"]["ops"],
            ms(&sample["get"]["p99_ms"]),
            ms(&sample["put"]["p99_ms"]),
            sample["reads_with_siblings"],
            sample["anti_entropy_repairs"],
            sample["hints_delivered"],
            ms(&sample["visibility_p99_ms"]),
            sample["background_budget"].as_f64().unwrap_or(0.0),
        ));
    }
    if samples.is_empty() {
        out.push_str("(no samples yet: the node takes one a second)\n");
    }
    out
}

/// Runs the view: `fetch` reads a path as JSON from the node.
pub fn run(once: bool, fetch: impl Fn(&str) -> anyhow::Result<Value>) -> anyhow::Result<ExitCode> {
    loop {
        let frame = render(&fetch("/admin/cluster")?, &fetch("/admin/series")?);
        if once {
            print!("{frame}");
            return Ok(ExitCode::SUCCESS);
        }
        print!("{CLEAR}{frame}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_frame_shows_members_and_the_newest_seconds_first() {
        let cluster = json!({"epoch": 3, "members": [
            {"id": "node0", "status": "member", "zone": null, "partitions": 86, "share": 0.336, "reachable": "self"},
            {"id": "node1", "status": "member", "zone": "b", "partitions": 85, "share": 0.332, "reachable": "down"}]});
        let sample = |ops: u64| {
            json!({"get": {"ops": ops, "p99_ms": 2.0}, "put": {"ops": 1, "p99_ms": null},
            "delete": {"ops": 0}, "reads_with_siblings": 0, "anti_entropy_repairs": 0, "hints_delivered": 0,
            "visibility_p99_ms": 5.0, "background_budget": 1.0})
        };
        let series = json!({"node": "node0", "samples": [sample(10), sample(20)]});
        let frame = render(&cluster, &series);
        assert!(frame.contains("ring epoch 3"));
        assert!(frame.contains("node1") && frame.contains("down"));
        let rows: Vec<&str> =
            frame.lines().filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
        assert!(rows[0].contains(" 20 "), "newest first: {frame}");
        assert!(rows[0].contains("2 ms") && rows[0].contains("5 ms"));
        assert!(render(&cluster, &json!({"node": "node0", "samples": []})).contains("no samples yet"));
    }
}
