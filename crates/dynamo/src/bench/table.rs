//! `dynamo bench --table FILE...`: one Markdown table summarising earlier
//! `--json` results, so a benchmark script can print its findings without
//! depending on jq or Python. Load tests and fsync probes get a table each;
//! a row is named after its file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// Reads every file and renders the tables.
pub fn from_files(paths: &[PathBuf]) -> anyhow::Result<String> {
    let mut results = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a dynamo bench JSON file", path.display()))?;
        results.push((run_name(path), value));
    }
    Ok(markdown(&results))
}

fn run_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |stem| stem.to_string_lossy().into_owned())
}

/// The tables for `(name, result)` pairs; probes and load tests apart.
pub fn markdown(results: &[(String, Value)]) -> String {
    let is_probe = |value: &Value| value["mode"] == "fsync-probe";
    let mut text = String::new();
    let probes: Vec<_> = results.iter().filter(|(_, value)| is_probe(value)).collect();
    if !probes.is_empty() {
        text.push_str("| probe | fsyncs/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n");
        for (name, value) in probes {
            let latency = &value["latency_ms"];
            let _ = writeln!(
                text,
                "| {name} | {} | {} | {} | {} |",
                number(&value["fsyncs_per_s"], 0),
                number(&latency["p50"], 3),
                number(&latency["p99"], 3),
                number(&latency["max"], 3)
            );
        }
        text.push('\n');
    }
    let runs: Vec<_> = results.iter().filter(|(_, value)| !is_probe(value)).collect();
    if !runs.is_empty() {
        text.push_str(
            "| run | reads | dw | clients | ops/s | read p50 | read p99 | read p99.9 | update p50 | update p99 \
             | update p99.9 | errors | reads with siblings |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (name, value) in runs {
            text.push_str(&run_row(name, value));
        }
    }
    text
}

fn run_row(name: &str, value: &Value) -> String {
    let config = &value["config"];
    let dw = config["write_query"]["dw"].as_str().unwrap_or("-");
    let latency = |op: &str, quantile: &str| number(&value[op]["latency_ms"][quantile], 3);
    let reads = value["read"]["count"].as_u64().unwrap_or(0);
    let sibling_reads = value["read"]["siblings"].as_u64().unwrap_or(0);
    let siblings =
        if reads == 0 { "-".to_string() } else { format!("{:.1}%", sibling_reads as f64 * 100.0 / reads as f64) };
    format!(
        "| {name} | {}% | {dw} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {siblings} |\n",
        number(&(config["read_fraction"].as_f64().unwrap_or(0.0) * 100.0).into(), 0),
        number(&config["concurrency"], 0),
        number(&value["throughput_ops_per_s"], 0),
        latency("read", "p50"),
        latency("read", "p99"),
        latency("read", "p999"),
        latency("update", "p50"),
        latency("update", "p99"),
        latency("update", "p999"),
        number(&value["errors"], 0),
    )
}

/// A JSON number with `decimals` decimals, or `-` when absent.
fn number(value: &Value, decimals: usize) -> String {
    value.as_f64().map_or_else(|| "-".to_string(), |number| format!("{number:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn load_tests_and_probes_get_their_own_tables() {
        let probe =
            json!({"mode": "fsync-probe", "fsyncs_per_s": 812.4, "latency_ms": {"p50": 1.2, "p99": 3.4, "max": 9.0}});
        let run = json!({
            "config": {"read_fraction": 0.5, "concurrency": 32, "write_query": {"dw": "1"}},
            "throughput_ops_per_s": 4321.0,
            "errors": 2,
            "read": {"count": 200, "siblings": 50, "latency_ms": {"p50": 0.5, "p99": 2.0, "p999": 4.0}},
            "update": {"count": 200, "latency_ms": null},
        });
        let text = markdown(&[("fsync".into(), probe), ("a-dw1".into(), run)]);
        assert!(text.contains("| fsync | 812 | 1.200 | 3.400 | 9.000 |"), "{text}");
        assert!(
            text.contains("| a-dw1 | 50% | 1 | 32 | 4321 | 0.500 | 2.000 | 4.000 | - | - | - | 2 | 25.0% |"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_file_is_named_in_the_error() {
        let error = from_files(&[PathBuf::from("/nonexistent/result.json")]).expect_err("missing file");
        assert!(format!("{error:#}").contains("/nonexistent/result.json"));
    }
}
