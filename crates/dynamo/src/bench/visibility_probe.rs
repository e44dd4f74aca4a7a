//! `dynamo bench --visibility-probe`: the probability that a read sees a
//! write made `t` ms before it, through another node — the
//! read-after-write curve of the PBS paper (Bailis et al., VLDB 2012,
//! figures 5 and 6), measured on the running cluster rather than modelled.
//!
//! Each sample writes a fresh key (a value unique to it) through one node
//! with the run's W, waits `t`, and reads it through the next node with
//! the run's R; the sample *saw the write* when any version read back is
//! that value. Samples for every delay are interleaved and run by a few
//! workers at once, so a drift of the machine during the probe hits every
//! delay alike. Failed requests are counted, never taken as "not seen".

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::{GetResult, WriteOptions};
use serde::Serialize;

use super::report::RunInfo;

/// Samples run at once.
const WORKERS: usize = 4;
/// Most samples per delay.
pub const MAX_SAMPLES: usize = 100_000;
/// Longest delay accepted.
pub const MAX_DELAY_MS: u64 = 60_000;

/// What the probe measures, from the command line.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// HTTP addresses: sample `i` writes through `nodes[i % len]` and reads
    /// through the next one.
    pub nodes: Vec<String>,
    /// Delays between the write's acknowledgement and the read.
    pub delays_ms: Vec<u64>,
    /// Samples per delay.
    pub samples: usize,
    /// The bucket written.
    pub bucket: String,
    /// Query pairs of every write (`w`, `dw`) and read (`r`).
    pub write_query: Vec<(String, String)>,
    /// Query pairs of every read.
    pub read_query: Vec<(String, String)>,
}

/// One delay's outcome.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DelayOutcome {
    /// The delay, ms.
    pub delay_ms: u64,
    /// Samples that completed (write and read answered).
    pub samples: u64,
    /// Of those, reads that returned the write.
    pub saw_write: u64,
    /// `saw_write / samples`.
    pub probability: f64,
    /// Samples whose write or read failed.
    pub failed: u64,
}

/// What the probe measured.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// How the probe was started.
    #[serde(flatten)]
    pub info: RunInfo,
    /// Always `"visibility-probe"`.
    pub mode: &'static str,
    /// Per delay, in the order given.
    pub delays: Vec<DelayOutcome>,
    /// Wall time of the whole probe, seconds.
    pub elapsed_s: f64,
}

impl ProbeReport {
    /// The report as a table, one line per delay.
    pub fn to_text(&self) -> String {
        let mut out = String::from("delay_ms  samples  saw_write  P(consistent)  failed\n");
        for delay in &self.delays {
            out.push_str(&format!(
                "{:>8}  {:>7}  {:>9}  {:>13.4}  {:>6}\n",
                delay.delay_ms, delay.samples, delay.saw_write, delay.probability, delay.failed
            ));
        }
        out.push_str(&format!("({:.1} s)\n", self.elapsed_s));
        out
    }
}

/// Checks the probe's settings.
pub fn check(config: &ProbeConfig) -> anyhow::Result<()> {
    if config.nodes.len() < 2 {
        bail!("--visibility-probe writes through one node and reads through another: give at least two --nodes");
    }
    if config.delays_ms.is_empty() || config.delays_ms.iter().any(|delay| *delay > MAX_DELAY_MS) {
        bail!("--probe-delays-ms needs one to many delays of at most {MAX_DELAY_MS} ms");
    }
    if config.samples == 0 || config.samples > MAX_SAMPLES {
        bail!("--probe-samples must be between 1 and {MAX_SAMPLES}, not {}", config.samples);
    }
    Ok(())
}

/// Whether a read returned the value written.
fn saw(read: &GetResult, written: &[u8]) -> bool {
    match read {
        GetResult::Found { sibling, .. } => sibling.value == written,
        GetResult::Siblings { siblings, .. } => siblings.iter().any(|sibling| sibling.value == written),
        GetResult::NotFound { .. } => false,
    }
}

/// One sample's outcome: `Some(seen)`, or `None` when a request failed.
async fn sample(config: &ProbeConfig, run_id: u64, index: usize, delay_ms: u64) -> Option<bool> {
    let writer = &config.nodes[index % config.nodes.len()];
    let reader = &config.nodes[(index + 1) % config.nodes.len()];
    let key = format!("probe-{run_id}-{index}");
    let value = Bytes::from(format!("v-{run_id}-{index}"));
    let mut write_to = dynamo_client::connect(writer).await.ok()?;
    let mut read_from = dynamo_client::connect(reader).await.ok()?;
    let options = WriteOptions { query: config.write_query.clone(), ..WriteOptions::default() };
    write_to.put(&config.bucket, key.as_bytes(), value.clone(), &options).await.ok()?;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let read = read_from.get(&config.bucket, key.as_bytes(), &config.read_query).await.ok()?;
    Some(saw(&read, &value))
}

/// Runs the probe.
pub async fn run(config: &ProbeConfig, info: RunInfo) -> anyhow::Result<ProbeReport> {
    check(config)?;
    let started = Instant::now();
    let run_id = info.date_unix_s;
    // Sample i is for delay i % delays: every delay spread over the run.
    let total = config.samples * config.delays_ms.len();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (config, next) = (config.clone(), next.clone());
        workers.spawn(async move {
            let mut outcomes = vec![DelayOutcome::default(); config.delays_ms.len()];
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= total {
                    return outcomes;
                }
                let slot = index % config.delays_ms.len();
                let outcome = &mut outcomes[slot];
                match sample(&config, run_id, index, config.delays_ms[slot]).await {
                    Some(seen) => {
                        outcome.samples += 1;
                        outcome.saw_write += u64::from(seen);
                    }
                    None => outcome.failed += 1,
                }
            }
        });
    }
    let mut delays: Vec<DelayOutcome> = config
        .delays_ms
        .iter()
        .map(|delay_ms| DelayOutcome { delay_ms: *delay_ms, ..DelayOutcome::default() })
        .collect();
    while let Some(outcomes) = workers.join_next().await {
        for (total, part) in delays.iter_mut().zip(outcomes.context("a probe worker panicked")?) {
            total.samples += part.samples;
            total.saw_write += part.saw_write;
            total.failed += part.failed;
        }
    }
    for delay in &mut delays {
        delay.probability = if delay.samples == 0 { 0.0 } else { delay.saw_write as f64 / delay.samples as f64 };
    }
    Ok(ProbeReport { info, mode: "visibility-probe", delays, elapsed_s: started.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sibling(value: &'static [u8]) -> dynamo_client::Sibling {
        dynamo_client::Sibling {
            value: Bytes::from_static(value),
            content_type: None,
            vtag: None,
            deleted: false,
            expires_ms: None,
        }
    }

    #[test]
    fn a_read_saw_the_write_when_any_version_is_its_value() {
        let found = GetResult::Found { sibling: sibling(b"v-1"), context: String::new() };
        assert!(saw(&found, b"v-1") && !saw(&found, b"v-2"));
        let siblings = GetResult::Siblings { siblings: vec![sibling(b"old"), sibling(b"v-1")], context: String::new() };
        assert!(saw(&siblings, b"v-1"));
        assert!(!saw(&GetResult::NotFound { context: None }, b"v-1"));
    }

    #[test]
    fn the_probe_needs_two_nodes_and_bounded_delays_and_samples() {
        let config = ProbeConfig {
            nodes: vec!["a:1".into(), "b:1".into()],
            delays_ms: vec![0, 10],
            samples: 10,
            bucket: "probe".into(),
            write_query: Vec::new(),
            read_query: Vec::new(),
        };
        assert!(check(&config).is_ok());
        assert!(check(&ProbeConfig { nodes: vec!["a:1".into()], ..config.clone() }).is_err());
        assert!(check(&ProbeConfig { delays_ms: vec![MAX_DELAY_MS + 1], ..config.clone() }).is_err());
        assert!(check(&ProbeConfig { delays_ms: Vec::new(), ..config.clone() }).is_err());
        assert!(check(&ProbeConfig { samples: 0, ..config }).is_err());
    }
}
