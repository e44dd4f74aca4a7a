//! The run's timeline: check the nodes, optionally load the keys, start the
//! workers, switch them from warmup to measurement and then to stop, print
//! a progress line every interval, and merge what the workers measured.
//!
//! Throughput is computed over the measured window: from the switch to
//! `Measure` until the last worker has finished its last operation (at most
//! one operation per worker runs past the deadline; it is counted, and so
//! is the time it took). Ctrl-C stops the run early and still reports.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::Config;
use super::load::{self, LoadSummary};
use super::report::ms;
use super::rng::SplitMix64;
use super::stats::{IntervalStats, OpStats};
use super::worker::{Control, Phase, SharedStats, Worker, lock};
use super::workload::{KeyChooser, ValuePool};

/// Stream number of the shared value pool's PRNG (workers use 0..C).
const VALUE_STREAM: u64 = u64::MAX;

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    /// The `--load` phase, if there was one.
    pub load: Option<LoadSummary>,
    /// Length of the measured window, in seconds.
    pub elapsed_s: f64,
    /// Whether Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Measured reads, all workers merged.
    pub read: OpStats,
    /// Measured updates, all workers merged.
    pub update: OpStats,
}

/// When the measured window began, and whether Ctrl-C ended it.
struct Window {
    /// Switch to `Measure`; `None` if the run stopped during warmup.
    measure_started: Option<Instant>,
    /// Whether Ctrl-C cut the run short.
    interrupted: bool,
}

/// Runs the whole benchmark described by `config`.
pub async fn run(config: &Config) -> anyhow::Result<RunOutcome> {
    check_nodes(&config.nodes).await?;
    if let Some(datatype) = config.workload.datatype() {
        set_datatype(&config.nodes[0], &config.bucket, datatype).await?;
    }
    let load = if config.load { Some(load::run(config).await?) } else { None };
    let config = Arc::new(config.clone());
    let control = Arc::new(Control::new(config.ops));
    let stats: Vec<SharedStats> = (0..config.concurrency).map(|_| SharedStats::default()).collect();
    let workers = spawn_workers(&config, &control, &stats);
    let window = drive(&config, &control, &stats, workers).await?;
    let elapsed_s = window.measure_started.map_or(0.0, |started| started.elapsed().as_secs_f64());
    let (read, update) = merge(&stats)?;
    Ok(RunOutcome { load, elapsed_s, interrupted: window.interrupted, read, update })
}

/// Fails early, with a clear message, if a node does not answer `/ping`.
async fn check_nodes(nodes: &[String]) -> anyhow::Result<()> {
    for node in nodes {
        let mut connection = dynamo_client::connect(node).await.with_context(|| format!("node {node}"))?;
        connection.ping().await.with_context(|| format!("node {node} does not answer /ping"))?;
    }
    Ok(())
}

/// Gives the bucket of a data-type workload its datatype (a no-op when it
/// has it already; refused when it holds another).
async fn set_datatype(node: &str, bucket: &str, datatype: &str) -> anyhow::Result<()> {
    let mut connection = dynamo_client::connect(node).await.with_context(|| format!("node {node}"))?;
    let path = format!("/buckets/{}/props", dynamo_client::encode::path_segment(bucket.as_bytes()));
    let body = bytes::Bytes::from(format!(r#"{{"datatype":"{datatype}"}}"#));
    let response = connection.request(hyper::Method::PUT, &path, &[], body).await?;
    if response.status != 204 {
        bail!(
            "could not make bucket {bucket} a {datatype} bucket ({}): {}; pick another with --bucket",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(())
}

fn spawn_workers(config: &Arc<Config>, control: &Arc<Control>, stats: &[SharedStats]) -> JoinSet<()> {
    let keys = KeyChooser::new(config.distribution, config.keys, config.zipf_theta);
    let values = ValuePool::new(&mut SplitMix64::for_stream(config.seed, VALUE_STREAM), config.value_size);
    let mut workers = JoinSet::new();
    for (index, stats) in stats.iter().enumerate() {
        let worker = Worker::new(index, config.clone(), control.clone(), stats.clone(), keys.clone(), values.clone());
        workers.spawn(worker.run());
    }
    workers
}

/// Moves the workers through the phases until all of them have exited.
async fn drive(
    config: &Config,
    control: &Control,
    stats: &[SharedStats],
    mut workers: JoinSet<()>,
) -> anyhow::Result<Window> {
    let started = Instant::now();
    let warmup_end = started + seconds(config.warmup_s);
    let mut window = Window { measure_started: None, interrupted: false };
    let mut progress = Progress::new(started);
    let period = seconds(config.progress_interval_s);
    let mut ticker = tokio::time::interval_at(started + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut signal_armed = true;
    loop {
        let deadline = match control.phase() {
            Phase::Warmup => Some(warmup_end),
            Phase::Measure => window.measure_started.zip(config.duration_s).map(|(at, s)| at + seconds(s)),
            Phase::Stop => None,
        };
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(result) => result.context("a benchmark worker panicked")?,
            },
            _ = ticker.tick() => progress.print(control.phase(), stats)?,
            _ = sleep_until(deadline) => advance(control, &mut window),
            signal = &mut ctrl_c, if signal_armed => {
                signal_armed = false;
                if signal.is_ok() {
                    eprintln!("interrupted: finishing the operations in flight");
                    window.interrupted = true;
                    control.set(Phase::Stop);
                }
            }
        }
    }
    Ok(window)
}

/// Warmup → Measure → Stop.
fn advance(control: &Control, window: &mut Window) {
    match control.phase() {
        Phase::Warmup => {
            window.measure_started = Some(Instant::now());
            control.set(Phase::Measure);
        }
        Phase::Measure => control.set(Phase::Stop),
        Phase::Stop => {}
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

fn merge(stats: &[SharedStats]) -> anyhow::Result<(OpStats, OpStats)> {
    let mut read = OpStats::default();
    let mut update = OpStats::default();
    for worker in stats {
        let worker = lock(worker);
        read.merge(&worker.read).context("merging read latencies")?;
        update.merge(&worker.update).context("merging update latencies")?;
    }
    Ok((read, update))
}

/// The progress line's memory: when the last line was printed.
struct Progress {
    /// Start of the run (warmup included).
    started: Instant,
    /// Time of the previous line.
    last: Instant,
}

impl Progress {
    fn new(started: Instant) -> Progress {
        Progress { started, last: started }
    }

    /// Collects the interval from every worker and prints one line.
    fn print(&mut self, phase: Phase, stats: &[SharedStats]) -> anyhow::Result<()> {
        let mut interval = IntervalStats::default();
        let (mut ops, mut errors) = (0, 0);
        for worker in stats {
            let mut worker = lock(worker);
            interval.drain_from(&mut worker.interval).context("merging interval latencies")?;
            let (worker_ops, worker_errors) = worker.measured_ops_and_errors();
            ops += worker_ops;
            errors += worker_errors;
        }
        let now = Instant::now();
        let line = progress_line(
            (now - self.started).as_secs_f64(),
            phase,
            &interval,
            (now - self.last).as_secs_f64(),
            (ops, errors),
        );
        self.last = now;
        eprintln!("{line}");
        Ok(())
    }
}

/// One progress line: elapsed time, phase, interval throughput, measured
/// operations and errors so far, interval p99.
fn progress_line(
    elapsed_s: f64,
    phase: Phase,
    interval: &IntervalStats,
    interval_s: f64,
    (ops, errors): (u64, u64),
) -> String {
    let label = match phase {
        Phase::Warmup => "warmup",
        Phase::Measure => "measure",
        Phase::Stop => "drain",
    };
    let rate = if interval_s > 0.0 { interval.ops as f64 / interval_s } else { 0.0 };
    let p99 =
        if interval.latency_us.is_empty() { "-".to_string() } else { ms(interval.latency_us.value_at_quantile(0.99)) };
    format!("[{elapsed_s:7.1} s] {label:<7} {rate:9.0} ops/s  ops {ops:>10}  errors {errors:>6}  p99 {p99} ms")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::bench::testing::{self, Behaviour, FakeNode};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_measures_reads_and_updates_and_writes_with_cached_contexts() {
        let node = FakeNode::start(Behaviour::Healthy).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        config.load = true;
        let outcome = run(&config).await.expect("the run completes");
        assert!(outcome.load.as_ref().is_some_and(|load| load.keys == 20 && load.errors == 0));
        assert!(outcome.read.succeeded() > 0 && outcome.update.succeeded() > 0);
        assert_eq!(outcome.read.errors + outcome.update.errors, 0);
        assert!((0.35..3.0).contains(&outcome.elapsed_s), "measured {} s", outcome.elapsed_s);
        // The load's 20 puts carry no context; most run updates reuse one.
        assert!(node.seen.puts_with_context.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blind_writes_never_send_a_context() {
        let node = FakeNode::start(Behaviour::Healthy).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        config.blind_writes = true;
        let outcome = run(&config).await.expect("the run completes");
        assert!(outcome.update.succeeded() > 0);
        assert_eq!(node.seen.puts_with_context.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_before_write_sends_a_fresh_context_with_every_update() {
        let node = FakeNode::start(Behaviour::Healthy).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        (config.read_fraction, config.read_before_write) = (0.0, true);
        let outcome = run(&config).await.expect("the run completes");
        assert!(outcome.update.succeeded() > 0);
        assert_eq!(outcome.read.attempted(), 0, "the reads belong to the updates");
        assert_eq!(node.seen.puts_without_context.load(Ordering::Relaxed), 0);
        let puts = node.seen.puts_with_context.load(Ordering::Relaxed);
        assert_eq!(node.seen.gets.load(Ordering::Relaxed), puts);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ops_bound_run_measures_exactly_that_many_operations() {
        let node = FakeNode::start(Behaviour::Healthy).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        (config.ops, config.duration_s, config.warmup_s) = (Some(300), None, 0.0);
        let outcome = run(&config).await.expect("the run completes");
        assert_eq!(outcome.read.attempted() + outcome.update.attempted(), 300);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_spread_over_nodes_and_reads_only_never_write() {
        let (first, second) = (FakeNode::start(Behaviour::Healthy).await, FakeNode::start(Behaviour::Healthy).await);
        let mut config = testing::config(vec![first.addr.clone(), second.addr.clone()]);
        config.read_fraction = 1.0;
        let outcome = run(&config).await.expect("the run completes");
        assert_eq!(outcome.update.attempted(), 0);
        assert!(first.seen.gets.load(Ordering::Relaxed) > 0 && second.seen.gets.load(Ordering::Relaxed) > 0);
        let puts = |node: &FakeNode| node.seen.puts_without_context.load(Ordering::Relaxed);
        assert_eq!(puts(&first) + puts(&second), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rejected_writes_are_counted_with_the_server_message() {
        let node = FakeNode::start(Behaviour::RejectWrites).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        config.read_fraction = 0.0;
        let outcome = run(&config).await.expect("the run completes");
        assert_eq!(outcome.update.succeeded(), 0);
        assert!(outcome.update.errors > 0);
        assert!(
            outcome.update.error_samples.iter().any(|message| message.contains("503")),
            "{:?}",
            outcome.update.error_samples
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_that_fails_stops_the_benchmark() {
        let node = FakeNode::start(Behaviour::RejectWrites).await;
        let mut config = testing::config(vec![node.addr.clone()]);
        config.load = true;
        let error = run(&config).await.expect_err("every load put fails");
        assert!(format!("{error:#}").contains("loading failed"), "{error:#}");
    }

    #[tokio::test]
    async fn an_unreachable_node_is_reported_before_the_run() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        drop(listener);
        let error = run(&testing::config(vec![addr.clone()])).await.expect_err("nothing listens");
        assert!(format!("{error:#}").contains(&addr), "{error:#}");
    }

    #[test]
    fn the_progress_line_names_rate_totals_and_p99() {
        let mut interval = IntervalStats { ops: 500, ..IntervalStats::default() };
        for _ in 0..100 {
            interval.latency_us.saturating_record(2_000);
        }
        let line = progress_line(12.0, Phase::Measure, &interval, 0.5, (4_000, 3));
        assert!(line.contains("12.0 s"), "{line}");
        assert!(line.contains("1000 ops/s"), "{line}");
        assert!(line.contains("4000") && line.contains("errors      3"), "{line}");
        assert!(line.contains("p99 2.0"), "{line}");
        let idle = progress_line(1.0, Phase::Warmup, &IntervalStats::default(), 1.0, (0, 0));
        assert!(idle.contains("warmup") && idle.contains("p99 - ms"), "{idle}");
    }
}
