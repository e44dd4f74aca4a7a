//! `dynamo bench`: a YCSB-style, closed-loop load generator for the HTTP API,
//! and a disk fsync probe.
//!
//! Why it exists: the specification asks for benchmarks that report
//! throughput and p50/p99/p99.9 latency (paper section 6 judges Dynamo by its
//! 99.9th percentile), and for evidence that group commit makes durable
//! writes (`dw`) cheaper than one fsync per put. `dynamo bench` produces the
//! first; `dynamo bench --fsync-probe DIR` measures the disk's raw fsync rate
//! so the second can be shown by comparison.
//!
//! How a run goes: check every node answers `/ping`; optionally `--load`
//! every key once; start `--concurrency` workers, each with one kept-alive
//! connection to a node (round-robin over `--nodes`); run `--warmup` seconds
//! unrecorded, then `--duration` seconds (or `--ops` operations) recorded;
//! print a report, optionally write it as JSON. Each worker issues one
//! request at a time (closed loop), so throughput is what the cluster gives
//! `--concurrency` clients, not an offered rate.
//!
//! Exit codes: 0 success; 1 the benchmark could not run; 3 it ran but the
//! error rate exceeded `--max-error-rate`; 130 Ctrl-C stopped it early
//! (the partial report is still printed).
//!
//! Map: [`rng`] (deterministic PRNG), [`zipfian`] (YCSB's skewed key
//! chooser), [`workload`] (key and operation choice), [`context_cache`] (the
//! per-worker causal contexts), [`stats`] (histograms and error counts),
//! [`link`] (a connection that reopens itself), [`worker`] (one client
//! connection's loop), [`driver`] (phases and progress), [`load`]
//! (`--load`), [`report`] (text and JSON), [`fsync_probe`],
//! [`visibility_probe`] (the PBS read-after-write curve), [`table`]
//! (Markdown summary of result files).

mod context_cache;
mod driver;
mod fsync_probe;
mod link;
mod load;
mod pacing;
mod report;
mod rng;
mod stats;
mod table;
#[cfg(test)]
mod testing;
mod visibility_probe;
mod worker;
mod workload;
mod zipfian;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Serialize;

use report::{Report, RunInfo};
use workload::{Distribution, Workload};

/// Exit code when the run completed but too many operations failed.
const EXIT_TOO_MANY_ERRORS: u8 = 3;
/// Exit code when Ctrl-C cut the run short (the partial report is still
/// printed and written): the shell's code for SIGINT.
const EXIT_INTERRUPTED: u8 = 130;
/// Default bucket of a run.
const DEFAULT_BUCKET: &str = "bench";
/// Default measured duration of a benchmark run, in seconds.
const DEFAULT_DURATION_S: f64 = 30.0;
/// Default duration of the fsync probe, in seconds.
const DEFAULT_PROBE_DURATION_S: f64 = 5.0;
/// Upper bound on `--concurrency`: every worker owns a connection and three
/// latency histograms (about 300 KB), so this keeps memory and the server's
/// connection limit (1024 by default) in check.
const MAX_CONCURRENCY: usize = 1024;
/// Upper bound on `--keys`: the zipfian generator sums the keyspace once at
/// start (about a second per 50 million keys).
const MAX_KEYS: u64 = 100_000_000;
/// Upper bound on `--value-size`: far above the server's default 1 MiB
/// limit, low enough that the per-worker value pool stays small.
const MAX_VALUE_BYTES: usize = 16 << 20;

/// Flags of `dynamo bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Node HTTP addresses, comma-separated; workers are spread over them
    /// round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    pub nodes: Vec<String>,
    /// YCSB core workload: a = 50% read / 50% update, b = 95/5, c = 100% read;
    /// counter = 50% reads / 50% increments, set = 50% reads / 50% adds.
    #[arg(long, value_enum, default_value_t = Workload::A)]
    pub workload: Workload,
    /// Fraction of operations that are reads (0..=1); overrides --workload.
    #[arg(long)]
    pub read_fraction: Option<f64>,
    /// How keys are chosen.
    #[arg(long, value_enum, default_value_t = Distribution::Zipfian)]
    pub distribution: Distribution,
    /// Skew of the zipfian distribution (0 < theta < 1; YCSB uses 0.99).
    #[arg(long, default_value_t = zipfian::YCSB_THETA)]
    pub zipf_theta: f64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Size of every written value, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Number of workers, each with one connection and one request in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Measured duration in seconds [default: 30; 5 for --fsync-probe].
    #[arg(long, conflicts_with = "ops")]
    pub duration: Option<f64>,
    /// Stop after this many measured operations instead of after --duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Offer this many operations per second in total, evenly spaced in
    /// time (each worker's schedule is offset from the others'), instead of
    /// running flat out. A worker behind schedule measures latency from the
    /// operation's scheduled start, so a server that falls behind shows the
    /// queueing delay (no coordinated omission); a worker on schedule
    /// measures from when its timer woke it to send.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load before measuring (not recorded).
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// Bucket the keys live in [default: bench; bench-counter and
    /// bench-set for those workloads].
    #[arg(long, default_value = DEFAULT_BUCKET)]
    pub bucket: String,
    /// Before the run, write every key once (in parallel) so reads find data.
    #[arg(long)]
    pub load: bool,
    /// Write quorum sent with every put (number, one, quorum or all).
    #[arg(long)]
    pub w: Option<String>,
    /// Durable-write count sent with every put.
    #[arg(long)]
    pub dw: Option<String>,
    /// Read quorum sent with every get.
    #[arg(long)]
    pub r: Option<String>,
    /// Server-side request timeout in ms sent with every request.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Put without any context, even when a read of the key supplied one
    /// (every update of an existing key then adds a sibling in `siblings`
    /// buckets).
    #[arg(long)]
    pub blind_writes: bool,
    /// Read the key right before every update and write with that read's
    /// context (read-modify-write: two requests per update, both inside its
    /// latency). Only truly concurrent updates then make siblings.
    #[arg(long, conflicts_with = "blind_writes")]
    pub read_before_write: bool,
    /// Seed of the key and operation choices (same seed, same choices per
    /// worker).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 1.0)]
    pub progress_interval: f64,
    /// Exit with code 3 if more than this fraction of operations failed.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Instead of a load test, print a Markdown table of earlier --json
    /// results (load tests and fsync probes), one row per file.
    #[arg(long, value_name = "JSON", num_args = 1..)]
    pub table: Vec<PathBuf>,
    /// Instead of a load test, measure the fsync rate of the disk holding DIR
    /// (1 KiB appends, each followed by fdatasync) for --duration seconds.
    #[arg(long, value_name = "DIR")]
    pub fsync_probe: Option<PathBuf>,
    /// Instead of a load test, measure the read-after-write probability
    /// (PBS): write a fresh key through one node, wait, read it through
    /// the next, for each of --probe-delays-ms (uses --nodes, --w, --r,
    /// --bucket).
    #[arg(long)]
    pub visibility_probe: bool,
    /// Delays (ms) between write and read of --visibility-probe.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,5,10,20,50,100")]
    pub probe_delays_ms: Vec<u64>,
    /// Samples per delay of --visibility-probe.
    #[arg(long, default_value_t = 200)]
    pub probe_samples: usize,
}

/// A validated benchmark configuration; also the `config` object of the
/// JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// Node addresses, in the order workers are assigned to them.
    pub nodes: Vec<String>,
    /// The workload named on the command line.
    pub workload: Workload,
    /// Fraction of operations that are reads.
    pub read_fraction: f64,
    /// Key distribution.
    pub distribution: Distribution,
    /// Zipfian skew (unused for uniform).
    pub zipf_theta: f64,
    /// Keyspace size.
    pub keys: u64,
    /// Bytes per written value.
    pub value_size: usize,
    /// Number of workers.
    pub concurrency: usize,
    /// Measured duration in seconds, when the run is time-bound.
    pub duration_s: Option<f64>,
    /// Measured operations, when the run is count-bound.
    pub ops: Option<u64>,
    /// Unrecorded seconds before measuring.
    pub warmup_s: f64,
    /// Bucket.
    pub bucket: String,
    /// Whether every key is written once before the run.
    pub load: bool,
    /// Query parameters of reads (`r`, `timeout_ms`); a JSON object.
    #[serde(serialize_with = "query_as_object")]
    pub read_query: Vec<(String, String)>,
    /// Query parameters of writes (`w`, `dw`, `timeout_ms`); a JSON object.
    #[serde(serialize_with = "query_as_object")]
    pub write_query: Vec<(String, String)>,
    /// Whether updates ignore cached contexts.
    pub blind_writes: bool,
    /// Whether every update reads the key first.
    pub read_before_write: bool,
    /// Offered operations per second in total, if rate-limited.
    pub rate: Option<f64>,
    /// PRNG seed.
    pub seed: u64,
    /// Seconds between progress lines.
    pub progress_interval_s: f64,
    /// Error rate above which the exit code is non-zero.
    pub max_error_rate: f64,
}

impl Config {
    /// Checks the flags and resolves the workload and stop condition.
    pub fn from_args(args: &BenchArgs) -> anyhow::Result<Config> {
        let read_fraction = args.read_fraction.unwrap_or_else(|| args.workload.read_fraction());
        check_fraction("--read-fraction", read_fraction)?;
        check_fraction("--max-error-rate", args.max_error_rate)?;
        check_limits(args)?;
        let duration_s = match args.ops {
            Some(_) => None,
            None => Some(positive_seconds("--duration", args.duration.unwrap_or(DEFAULT_DURATION_S))?),
        };
        Ok(Config {
            nodes: parse_nodes(&args.nodes)?,
            workload: args.workload,
            read_fraction,
            distribution: args.distribution,
            zipf_theta: args.zipf_theta,
            keys: args.keys,
            value_size: args.value_size,
            concurrency: args.concurrency,
            duration_s,
            ops: args.ops,
            warmup_s: non_negative_seconds("--warmup", args.warmup)?,
            bucket: bucket_for(args),
            load: args.load,
            read_query: query(&[("r", &args.r)], args.timeout_ms),
            write_query: query(&[("w", &args.w), ("dw", &args.dw)], args.timeout_ms),
            blind_writes: args.blind_writes,
            read_before_write: args.read_before_write,
            rate: args.rate.map(|rate| positive_seconds("--rate", rate)).transpose()?,
            seed: args.seed,
            progress_interval_s: positive_seconds("--progress-interval", args.progress_interval)?,
            max_error_rate: args.max_error_rate,
        })
    }
}

/// Query pairs as a JSON object (`{"dw": "1"}`), easier to pick apart in a
/// script than a list of pairs.
fn query_as_object<S: serde::Serializer>(pairs: &[(String, String)], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(pairs.iter().map(|(name, value)| (name, value)))
}

fn check_limits(args: &BenchArgs) -> anyhow::Result<()> {
    if args.keys == 0 || args.keys > MAX_KEYS {
        bail!("--keys must be between 1 and {MAX_KEYS}, not {}", args.keys);
    }
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY}, not {}", args.concurrency);
    }
    if args.value_size > MAX_VALUE_BYTES {
        bail!("--value-size must be at most {MAX_VALUE_BYTES} bytes, not {}", args.value_size);
    }
    if args.ops == Some(0) {
        bail!("--ops must be at least 1");
    }
    if !(args.zipf_theta > 0.0 && args.zipf_theta < 1.0) {
        bail!("--zipf-theta must be strictly between 0 and 1, not {}", args.zipf_theta);
    }
    if args.bucket.is_empty() {
        bail!("--bucket must not be empty");
    }
    if args.load && args.workload.datatype().is_some() {
        bail!("--load writes opaque values; it is for workloads a, b and c, not counter or set");
    }
    Ok(())
}

/// The bucket of the run: a data-type workload left on the default bucket
/// gets its own (`bench-counter`, `bench-set`), since a bucket's datatype
/// is fixed once set and workload A writes opaque values to `bench`.
fn bucket_for(args: &BenchArgs) -> String {
    match args.workload.datatype() {
        Some(datatype) if args.bucket == DEFAULT_BUCKET => format!("{DEFAULT_BUCKET}-{datatype}"),
        _ => args.bucket.clone(),
    }
}

fn check_fraction(flag: &str, value: f64) -> anyhow::Result<()> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { bail!("{flag} must be between 0 and 1, not {value}") }
}

fn positive_seconds(flag: &str, value: f64) -> anyhow::Result<f64> {
    if value.is_finite() && value > 0.0 && value <= 1e7 {
        Ok(value)
    } else {
        bail!("{flag} must be a positive number of seconds, not {value}")
    }
}

fn non_negative_seconds(flag: &str, value: f64) -> anyhow::Result<f64> {
    if value == 0.0 { Ok(0.0) } else { positive_seconds(flag, value) }
}

fn parse_nodes(nodes: &[String]) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = nodes.iter().map(|node| node.trim().to_string()).filter(|node| !node.is_empty()).collect();
    if nodes.is_empty() {
        bail!("--nodes needs at least one address");
    }
    Ok(nodes)
}

fn query(pairs: &[(&str, &Option<String>)], timeout_ms: Option<u64>) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| (name.to_string(), value.clone())))
        .collect();
    if let Some(timeout_ms) = timeout_ms {
        query.push(("timeout_ms".to_string(), timeout_ms.to_string()));
    }
    query
}

/// Runs the fsync probe or the load test, prints the report, writes the
/// JSON file if asked.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if !args.table.is_empty() {
        print!("{}", table::from_files(&args.table)?);
        return Ok(ExitCode::SUCCESS);
    }
    let info = RunInfo::capture();
    if let Some(dir) = &args.fsync_probe {
        let duration_s = positive_seconds("--duration", args.duration.unwrap_or(DEFAULT_PROBE_DURATION_S))?;
        let probe = fsync_probe::run(dir, duration_s, info)?;
        print!("{}", probe.to_text());
        write_json(args.json.as_deref(), &probe)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.visibility_probe {
        let config = visibility_probe::ProbeConfig {
            nodes: parse_nodes(&args.nodes)?,
            delays_ms: args.probe_delays_ms.clone(),
            samples: args.probe_samples,
            bucket: args.bucket.clone(),
            write_query: query(&[("w", &args.w), ("dw", &args.dw)], args.timeout_ms),
            read_query: query(&[("r", &args.r)], args.timeout_ms),
        };
        let runtime =
            tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
        let probe = runtime.block_on(visibility_probe::run(&config, info))?;
        print!("{}", probe.to_text());
        write_json(args.json.as_deref(), &probe)?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let outcome = runtime.block_on(driver::run(&config))?;
    let report = Report::new(info, config, outcome);
    print!("{}", report.to_text());
    write_json(args.json.as_deref(), &report)?;
    Ok(exit_code(&report))
}

fn exit_code(report: &Report) -> ExitCode {
    if report.error_rate > report.config.max_error_rate {
        eprintln!(
            "error rate {:.3}% exceeds --max-error-rate {:.3}%",
            report.error_rate * 100.0,
            report.config.max_error_rate * 100.0
        );
        ExitCode::from(EXIT_TOO_MANY_ERRORS)
    } else if report.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

fn write_json(path: Option<&std::path::Path>, value: &impl Serialize) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let mut text = serde_json::to_string_pretty(value).context("encoding the report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn config(argv: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(argv.iter().copied()))?;
        Config::from_args(&cli.args)
    }

    #[test]
    fn defaults_follow_the_documented_values() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.nodes, vec!["127.0.0.1:8080".to_string()]);
        assert_eq!(config.read_fraction, 0.5);
        assert_eq!(config.distribution, Distribution::Zipfian);
        assert_eq!((config.keys, config.value_size, config.concurrency), (10_000, 1024, 32));
        assert_eq!((config.duration_s, config.ops, config.warmup_s), (Some(30.0), None, 5.0));
        assert_eq!(config.bucket, "bench");
        assert!(config.read_query.is_empty() && config.write_query.is_empty());
    }

    #[test]
    fn workloads_set_the_read_fraction_and_the_flag_overrides_it() {
        assert_eq!(config(&["--workload", "b"]).expect("valid").read_fraction, 0.95);
        assert_eq!(config(&["--workload", "c"]).expect("valid").read_fraction, 1.0);
        assert_eq!(config(&["--workload", "c", "--read-fraction", "0"]).expect("valid").read_fraction, 0.0);
    }

    #[test]
    fn quorum_flags_become_query_parameters() {
        let config = config(&["--w", "2", "--dw", "1", "--r", "quorum", "--timeout-ms", "900"]).expect("valid");
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
        };
        assert_eq!(config.write_query, pairs(&[("w", "2"), ("dw", "1"), ("timeout_ms", "900")]));
        assert_eq!(config.read_query, pairs(&[("r", "quorum"), ("timeout_ms", "900")]));
    }

    #[test]
    fn nodes_are_split_on_commas() {
        let config = config(&["--nodes", "a:1,b:2, c:3"]).expect("valid");
        assert_eq!(config.nodes, vec!["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn ops_replace_the_duration() {
        let bounded = config(&["--ops", "500"]).expect("valid");
        assert_eq!((bounded.ops, bounded.duration_s), (Some(500), None));
        assert!(config(&["--ops", "5", "--duration", "3"]).is_err());
    }

    #[test]
    fn nonsense_is_rejected() {
        for argv in [
            &["--read-fraction", "1.5"][..],
            &["--keys", "0"],
            &["--concurrency", "0"],
            &["--duration", "0"],
            &["--duration", "NaN"],
            &["--warmup", "-1"],
            &["--zipf-theta", "1"],
            &["--ops", "0"],
            &["--nodes", ","],
        ] {
            assert!(config(argv).is_err(), "{argv:?} should be rejected");
        }
    }
}
