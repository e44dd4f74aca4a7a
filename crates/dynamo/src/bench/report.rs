//! The result of a run, for people (a text report on stdout) and for
//! scripts (the same numbers as JSON, plus the exact command line, the date
//! and the host, so a result file says how it was produced).
//!
//! Latencies are in milliseconds with three decimals (microsecond
//! resolution). `count` is the number of successful operations, the ones in
//! the latency histogram; throughput counts successful operations only.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::Config;
use super::driver::RunOutcome;
use super::load::LoadSummary;
use super::stats::OpStats;

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// Where and how a run was started.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// The exact argv.
    pub command_line: Vec<String>,
    /// Start time, in seconds since the Unix epoch.
    pub date_unix_s: u64,
    /// Contents of `/etc/hostname`, if readable.
    pub hostname: Option<String>,
}

impl RunInfo {
    /// Captures argv, the clock and the host name now.
    pub fn capture() -> RunInfo {
        let date_unix_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let hostname = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty());
        RunInfo {
            command_line: std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()).collect(),
            date_unix_s,
            hostname,
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile: the figure Dynamo's SLAs are written in.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of a µs histogram; `None` if it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let at = |quantile| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Some(Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: histogram.max() as f64 / 1000.0,
        })
    }
}

/// Results of one operation type.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// Successful operations.
    pub count: u64,
    /// Failed operations.
    pub errors: u64,
    /// Reads that found nothing (included in `count`).
    pub not_found: u64,
    /// Reads that returned siblings (included in `count`).
    pub siblings: u64,
    /// Most siblings returned by one read.
    pub siblings_max: u64,
    /// Successful operations per second.
    pub throughput_ops_per_s: f64,
    /// Latency of the successful operations; `null` when there were none.
    pub latency_ms: Option<Latency>,
    /// The first distinct error messages.
    pub error_samples: Vec<String>,
}

impl OpReport {
    fn new(stats: &OpStats, elapsed_s: f64) -> OpReport {
        OpReport {
            count: stats.succeeded(),
            errors: stats.errors,
            not_found: stats.not_found,
            siblings: stats.siblings,
            siblings_max: stats.siblings_max,
            throughput_ops_per_s: per_second(stats.succeeded(), elapsed_s),
            latency_ms: Latency::of(&stats.latency_us),
            error_samples: stats.error_samples.clone(),
        }
    }
}

fn per_second(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 { (count as f64 / elapsed_s * 10.0).round() / 10.0 } else { 0.0 }
}

/// The whole result of a load test.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How the run was started.
    #[serde(flatten)]
    pub info: RunInfo,
    /// The validated flags.
    pub config: Config,
    /// The `--load` phase, if any.
    pub load: Option<LoadSummary>,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Length of the measured window, in seconds.
    pub elapsed_s: f64,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// `errors / (ops + errors)`.
    pub error_rate: f64,
    /// Successful operations per second.
    pub throughput_ops_per_s: f64,
    /// Reads.
    pub read: OpReport,
    /// Updates.
    pub update: OpReport,
}

impl Report {
    /// Assembles the report of a finished run.
    pub fn new(info: RunInfo, config: Config, outcome: RunOutcome) -> Report {
        let elapsed_s = outcome.elapsed_s;
        let ops = outcome.read.succeeded() + outcome.update.succeeded();
        let errors = outcome.read.errors + outcome.update.errors;
        let attempted = ops + errors;
        Report {
            info,
            config,
            load: outcome.load,
            interrupted: outcome.interrupted,
            elapsed_s,
            ops,
            errors,
            error_rate: if attempted == 0 { 0.0 } else { errors as f64 / attempted as f64 },
            throughput_ops_per_s: per_second(ops, elapsed_s),
            read: OpReport::new(&outcome.read, elapsed_s),
            update: OpReport::new(&outcome.update, elapsed_s),
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut text = self.config_summary();
        if let Some(load) = &self.load {
            let _ = writeln!(
                text,
                "load: {} keys in {:.1} s ({:.0} keys/s), {} errors",
                load.keys, load.elapsed_s, load.keys_per_s, load.errors
            );
        }
        let _ = writeln!(
            text,
            "\n{} ops in {:.3} s: {:.1} ops/s; {} errors ({:.3}%){}\n",
            self.ops,
            self.elapsed_s,
            self.throughput_ops_per_s,
            self.errors,
            self.error_rate * 100.0,
            if self.interrupted { " [interrupted]" } else { "" }
        );
        let _ = writeln!(
            text,
            "{:<7} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "count", "errors", "not found", "siblings", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        text.push_str(&op_row("read", &self.read));
        text.push_str(&op_row("update", &self.update));
        text.push_str(&sibling_note(&self.read));
        text.push_str(&error_samples("read", &self.read));
        text.push_str(&error_samples("update", &self.update));
        text
    }

    fn config_summary(&self) -> String {
        let config = &self.config;
        let distribution = match config.distribution {
            super::workload::Distribution::Uniform => "uniform".to_string(),
            super::workload::Distribution::Zipfian => format!("zipfian (theta {})", config.zipf_theta),
        };
        let stop = match (config.duration_s, config.ops) {
            (_, Some(ops)) => format!("{ops} ops"),
            (Some(duration_s), None) => format!("{duration_s} s"),
            (None, None) => "until stopped".to_string(),
        };
        let query = |pairs: &[(String, String)]| -> String {
            if pairs.is_empty() {
                "bucket defaults".to_string()
            } else {
                pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(" ")
            }
        };
        format!(
            "dynamo bench: workload {:?} ({:.0}% reads), {distribution} over {} keys, {}-byte values\n\
             nodes {} | concurrency {} | {stop} measured after {} s warmup | bucket {} | seed {}\n\
             writes: {} ({}) | reads: {}\n",
            config.workload,
            config.read_fraction * 100.0,
            config.keys,
            config.value_size,
            config.nodes.join(","),
            config.concurrency,
            config.warmup_s,
            config.bucket,
            config.seed,
            query(&config.write_query),
            match (config.workload.datatype(), config.blind_writes, config.read_before_write) {
                (Some(_), _, _) => "data-type operations, no context",
                (None, true, _) => "blind, no context",
                (None, false, true) => "read-modify-write",
                (None, false, false) => "with the worker's last context for the key, else none",
            },
            query(&config.read_query),
        )
    }
}

fn op_row(name: &str, op: &OpReport) -> String {
    let cell = |pick: fn(&Latency) -> f64| {
        op.latency_ms.as_ref().map_or("-".to_string(), |latency| format!("{:.3}", pick(latency)))
    };
    format!(
        "{name:<7} {:>10} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        op.count,
        op.errors,
        op.not_found,
        op.siblings,
        cell(|l| l.p50),
        cell(|l| l.p90),
        cell(|l| l.p99),
        cell(|l| l.p999),
        cell(|l| l.max),
    )
}

/// How often reads met siblings: in a `siblings` bucket, the price of
/// updates made without an up-to-date context.
fn sibling_note(read: &OpReport) -> String {
    if read.siblings == 0 {
        return String::new();
    }
    format!(
        "\n{} of {} reads ({:.1}%) returned siblings, at most {} in one read\n",
        read.siblings,
        read.count,
        read.siblings as f64 * 100.0 / read.count.max(1) as f64,
        read.siblings_max
    )
}

fn error_samples(name: &str, op: &OpReport) -> String {
    if op.error_samples.is_empty() {
        return String::new();
    }
    let mut text = format!("\nfirst {name} errors:\n");
    for message in &op.error_samples {
        let _ = writeln!(text, "  {message}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Outcome;
    use crate::bench::testing;

    fn report() -> Report {
        let mut read = OpStats::default();
        for latency_us in 1..=1000 {
            read.record(&Outcome::Found, latency_us);
        }
        let mut update = OpStats::default();
        update.record(&Outcome::Written, 2_500);
        update.record(&Outcome::Failed { message: "node answered 503".into(), broken: false }, 1);
        let info = RunInfo {
            command_line: vec!["dynamo".into(), "bench".into()],
            date_unix_s: 1_700_000_000,
            hostname: Some("box".into()),
        };
        let outcome = RunOutcome { load: None, elapsed_s: 10.0, interrupted: false, read, update };
        Report::new(info, testing::config(vec!["127.0.0.1:8080".into()]), outcome)
    }

    #[test]
    fn totals_and_rates_add_up() {
        let report = report();
        assert_eq!((report.ops, report.errors), (1001, 1));
        assert!((report.error_rate - 1.0 / 1002.0).abs() < 1e-12);
        assert_eq!(report.throughput_ops_per_s, 100.1);
        let latency = report.read.latency_ms.expect("reads succeeded");
        assert!((latency.p50 - 0.5).abs() < 0.002 && (latency.max - 1.0).abs() < 0.002, "{latency:?}");
    }

    #[test]
    fn the_text_report_has_the_config_totals_and_percentiles() {
        let text = report().to_text();
        for needle in [
            "workload A",
            "50% reads",
            "zipfian",
            "dw=1",
            "1001 ops",
            "100.1 ops/s",
            "p99.9 ms",
            "max ms",
            "read",
            "update",
            "2.50",
            "node answered 503",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn the_json_report_has_every_field() {
        let json = serde_json::to_value(report()).expect("serializable");
        for field in [
            "command_line",
            "date_unix_s",
            "hostname",
            "config",
            "elapsed_s",
            "ops",
            "errors",
            "error_rate",
            "throughput_ops_per_s",
            "read",
            "update",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        for field in ["p50", "p90", "p99", "p999", "max"] {
            assert!(json["read"]["latency_ms"][field].is_f64(), "missing read.latency_ms.{field}");
        }
        assert_eq!(json["update"]["count"], 1);
        assert_eq!(json["update"]["errors"], 1);
        assert_eq!(json["config"]["workload"], "a");
        assert_eq!(json["config"]["write_query"]["dw"], "1");
        assert_eq!(json["config"]["distribution"], "zipfian");
        assert_eq!(json["hostname"], "box");
    }

    #[test]
    fn an_op_type_without_successes_shows_dashes_and_null() {
        let mut report = report();
        report.read = OpReport::new(&OpStats::default(), 1.0);
        assert!(report.to_text().lines().any(|line| line.starts_with("read") && line.contains(" - ")));
        assert!(serde_json::to_value(&report).expect("serializable")["read"]["latency_ms"].is_null());
    }
}
