//! `dynamo bench --fsync-probe DIR`: how many durable appends per second the
//! disk holding DIR sustains, one `fdatasync` per 1 KiB append.
//!
//! Why: this is the ceiling of a store that fsyncs once per put. Durable
//! writes (`dw >= 1`) in dynamo are group-committed, so their throughput
//! should exceed this figure; comparing the two shows the batching works.
//!
//! The probe appends to a fresh file in DIR (removed at the end), so each
//! sync also flushes the size change, as a write-ahead log's appends do. The
//! file is truncated whenever it reaches [`MAX_PROBE_FILE_BYTES`], so a fast
//! (or fake-fsync) disk cannot fill up.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use super::report::{Latency, RunInfo};
use super::stats::latency_histogram;

/// Bytes appended before each sync, the size of a small put's log record.
pub const APPEND_BYTES: usize = 1024;
/// Size at which the probe file is truncated and appending starts over.
pub const MAX_PROBE_FILE_BYTES: u64 = 64 << 20;

/// What the probe measured.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    /// How the probe was started.
    #[serde(flatten)]
    pub info: RunInfo,
    /// Always `"fsync-probe"`, to tell these files from load-test results.
    pub mode: &'static str,
    /// The directory probed.
    pub dir: String,
    /// Measured time, in seconds.
    pub elapsed_s: f64,
    /// Bytes appended before each sync.
    pub append_bytes: usize,
    /// Syncs done.
    pub fsyncs: u64,
    /// Syncs per second.
    pub fsyncs_per_s: f64,
    /// Latency of one append plus its sync.
    pub latency_ms: Option<Latency>,
}

impl ProbeReport {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let latency = self.latency_ms.as_ref().map_or("no syncs completed".to_string(), |l| {
            format!(
                "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
                l.p50, l.p90, l.p99, l.p999, l.max
            )
        });
        format!(
            "fsync probe of {}: {} syncs of {}-byte appends in {:.3} s: {:.1} fsyncs/s\nlatency (append + fdatasync): {latency}\n",
            self.dir, self.fsyncs, self.append_bytes, self.elapsed_s, self.fsyncs_per_s
        )
    }
}

/// Removes the probe file however the probe ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Probes `dir` for `duration_s` seconds.
pub fn run(dir: &Path, duration_s: f64, info: RunInfo) -> anyhow::Result<ProbeReport> {
    let path = dir.join(format!(".dynamo-fsync-probe-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let _remove = RemoveOnDrop(path.clone());
    let mut latency_us = latency_histogram(3);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(duration_s);
    let mut written = 0u64;
    while Instant::now() < deadline {
        if written >= MAX_PROBE_FILE_BYTES {
            file.set_len(0).with_context(|| format!("truncating {}", path.display()))?;
            written = 0;
        }
        let sync_us = append_and_sync(&mut file).with_context(|| format!("appending to {}", path.display()))?;
        latency_us.saturating_record(sync_us.max(1));
        written += APPEND_BYTES as u64;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    Ok(ProbeReport {
        info,
        mode: "fsync-probe",
        dir: dir.display().to_string(),
        elapsed_s,
        append_bytes: APPEND_BYTES,
        fsyncs: latency_us.len(),
        fsyncs_per_s: (latency_us.len() as f64 / elapsed_s * 10.0).round() / 10.0,
        latency_ms: Latency::of(&latency_us),
    })
}

/// Appends one block and waits for it to be on disk; returns the time in µs.
fn append_and_sync(file: &mut File) -> std::io::Result<u64> {
    let block = [0xA5u8; APPEND_BYTES];
    let started = Instant::now();
    file.write_all(&block)?;
    file.sync_data()?;
    Ok(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo { command_line: vec![], date_unix_s: 0, hostname: None }
    }

    #[test]
    fn the_probe_syncs_reports_a_rate_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = run(dir.path(), 0.2, info()).expect("probe runs");
        assert!(report.fsyncs > 0);
        assert!(report.fsyncs_per_s > 0.0);
        assert!(report.latency_ms.is_some());
        assert!(report.to_text().contains("fsyncs/s"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("readable").count(), 0);
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let error = run(Path::new("/nonexistent/dynamo-probe"), 0.1, info()).expect_err("no such dir");
        assert!(format!("{error:#}").contains("/nonexistent/dynamo-probe"));
    }
}
