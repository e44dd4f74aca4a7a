//! `--load`: write every key once before the run, so reads find data and
//! measure real lookups rather than misses.
//!
//! `--concurrency` tasks take key indexes from a shared counter, so the load
//! finishes as fast as the cluster allows whatever the speed of each node.
//! The puts carry no context: on a fresh bucket there is nothing to
//! supersede. Loading again over existing keys of a `siblings` bucket adds
//! one sibling per key; the first read-then-update of the run resolves it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use dynamo_client::WriteOptions;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::Config;
use super::link::{Link, is_broken};
use super::rng::SplitMix64;
use super::stats::keep_sample;
use super::worker::BROKEN_BACKOFF;
use super::workload::{ValuePool, key_name};

/// Stream numbers of loader PRNGs start here, away from the workers'.
const LOAD_STREAM_BASE: u64 = 1 << 40;

/// What the load phase did; part of the report.
#[derive(Clone, Debug, Serialize)]
pub struct LoadSummary {
    /// Keys written (successfully or not).
    pub keys: u64,
    /// Failed puts.
    pub errors: u64,
    /// How long it took, in seconds.
    pub elapsed_s: f64,
    /// Keys per second.
    pub keys_per_s: f64,
    /// The first distinct error messages.
    pub error_samples: Vec<String>,
}

/// Progress shared by the loader tasks.
#[derive(Default)]
struct LoadState {
    /// Next key index to write.
    next: AtomicU64,
    /// Keys attempted.
    done: AtomicU64,
    /// Failed puts.
    errors: AtomicU64,
    /// First distinct error messages.
    samples: Mutex<Vec<String>>,
}

impl LoadState {
    fn failed(&self, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        keep_sample(&mut self.samples.lock().unwrap_or_else(PoisonError::into_inner), message);
    }
}

/// Writes keys `0..config.keys` once, printing progress; fails if more than
/// `--max-error-rate` of the puts failed.
pub async fn run(config: &Config) -> anyhow::Result<LoadSummary> {
    let state = Arc::new(LoadState::default());
    let config = Arc::new(config.clone());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let values = ValuePool::new(&mut SplitMix64::for_stream(config.seed, LOAD_STREAM_BASE - 1), config.value_size);
    let loaders = (config.concurrency as u64).min(config.keys);
    for index in 0..loaders {
        tasks.spawn(load_keys(index, config.clone(), state.clone(), values.clone()));
    }
    let period = Duration::from_secs_f64(config.progress_interval_s);
    let mut ticker = tokio::time::interval_at(started + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(result) => result.context("a loader task panicked")?,
            },
            _ = ticker.tick() => eprintln!("{}", progress_line(&state, config.keys, started)),
        }
    }
    let summary = summarize(&state, config.keys, started.elapsed().as_secs_f64());
    eprintln!(
        "loaded {} keys in {:.1} s ({:.0} keys/s), {} errors",
        summary.keys, summary.elapsed_s, summary.keys_per_s, summary.errors
    );
    check_errors(&summary, config.max_error_rate)?;
    Ok(summary)
}

/// One loader: takes key indexes until none are left.
async fn load_keys(index: u64, config: Arc<Config>, state: Arc<LoadState>, values: ValuePool) {
    let mut rng = SplitMix64::for_stream(config.seed, LOAD_STREAM_BASE + index);
    let options = WriteOptions { query: config.write_query.clone(), ..WriteOptions::default() };
    let mut link = Link::new(config.nodes[index as usize % config.nodes.len()].clone());
    loop {
        let key = state.next.fetch_add(1, Ordering::Relaxed);
        if key >= config.keys {
            break;
        }
        let result = link.put(&config.bucket, &key_name(key), values.pick(&mut rng), &options).await;
        if let Err(error) = result {
            let broken = is_broken(&error);
            state.failed(&error.to_string());
            if broken {
                tokio::time::sleep(BROKEN_BACKOFF).await;
            }
        }
        state.done.fetch_add(1, Ordering::Relaxed);
    }
}

fn progress_line(state: &LoadState, keys: u64, started: Instant) -> String {
    let done = state.done.load(Ordering::Relaxed);
    let elapsed_s = started.elapsed().as_secs_f64();
    format!(
        "[{elapsed_s:7.1} s] load    {done:>10}/{keys} keys ({:5.1}%)  {:7.0} keys/s  errors {}",
        done as f64 * 100.0 / keys as f64,
        done as f64 / elapsed_s.max(1e-9),
        state.errors.load(Ordering::Relaxed)
    )
}

fn summarize(state: &LoadState, keys: u64, elapsed_s: f64) -> LoadSummary {
    LoadSummary {
        keys,
        errors: state.errors.load(Ordering::Relaxed),
        elapsed_s,
        keys_per_s: keys as f64 / elapsed_s.max(1e-9),
        error_samples: state.samples.lock().unwrap_or_else(PoisonError::into_inner).clone(),
    }
}

fn check_errors(summary: &LoadSummary, max_error_rate: f64) -> anyhow::Result<()> {
    let rate = summary.errors as f64 / summary.keys.max(1) as f64;
    if rate > max_error_rate {
        bail!(
            "loading failed for {} of {} keys ({:.2}% > --max-error-rate); first errors:\n  {}",
            summary.errors,
            summary.keys,
            rate * 100.0,
            summary.error_samples.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(errors: u64) -> LoadSummary {
        LoadSummary { keys: 100, errors, elapsed_s: 1.0, keys_per_s: 100.0, error_samples: vec!["boom".into()] }
    }

    #[test]
    fn a_load_with_too_many_errors_fails_and_says_why() {
        assert!(check_errors(&summary(1), 0.01).is_ok());
        let error = check_errors(&summary(2), 0.01).expect_err("2% > 1%");
        assert!(error.to_string().contains("boom"));
    }

    #[test]
    fn error_samples_are_bounded_and_distinct() {
        let state = LoadState::default();
        for index in 0..50 {
            state.failed(&format!("error {}", index % 10));
        }
        state.failed("error 0");
        assert_eq!(state.errors.load(Ordering::Relaxed), 51);
        assert_eq!(summarize(&state, 100, 1.0).error_samples.len(), super::super::stats::MAX_ERROR_SAMPLES);
    }
}
