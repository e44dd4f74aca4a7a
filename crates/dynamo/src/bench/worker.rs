//! One benchmark client: a loop that picks a key and an operation, runs it
//! on its own connection, and records the latency. Closed loop: one request
//! in flight per worker, the next sent when the previous one is answered,
//! or, with `--rate`, at its scheduled start (see [`super::pacing`]).
//!
//! Updates carry the context of this worker's last read (or write) of the
//! key when it has one, else none (see [`super::context_cache`] for why);
//! `--read-before-write` reads the key right before every update instead
//! (read-modify-write), `--blind-writes` never sends a context. A latency
//! includes reopening the connection when the previous operation broke it,
//! as a real client would pay it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dynamo_client::{ClientError, GetResult, WriteOptions};

use super::Config;
use super::context_cache::{self, ContextCache};
use super::link::{Link, is_broken};
use super::pacing::{self, Schedule};
use super::rng::SplitMix64;
use super::stats::{Outcome, WorkerStats};
use super::workload::{KeyChooser, OpKind, ValuePool, Workload, key_name};

/// Pause after an operation that broke the connection, so a dead node costs
/// a few failed attempts a second per worker, not a busy loop.
pub const BROKEN_BACKOFF: Duration = Duration::from_millis(100);

/// Where the run is. Workers read it before every operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Running, not recorded.
    Warmup,
    /// Running and recorded.
    Measure,
    /// Finish the operation in flight and exit.
    Stop,
}

/// What the driver tells every worker.
#[derive(Debug)]
pub struct Control {
    /// The current [`Phase`], as its index.
    phase: AtomicU8,
    /// Measured operations still to start, when the run is count-bound.
    ops_left: Option<AtomicU64>,
}

impl Control {
    /// Starts in warmup; `ops` bounds the measured operations if given.
    pub fn new(ops: Option<u64>) -> Control {
        Control { phase: AtomicU8::new(0), ops_left: ops.map(AtomicU64::new) }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            _ => Phase::Stop,
        }
    }

    /// Moves every worker to `phase`.
    pub fn set(&self, phase: Phase) {
        let index = match phase {
            Phase::Warmup => 0,
            Phase::Measure => 1,
            Phase::Stop => 2,
        };
        self.phase.store(index, Ordering::Release);
    }

    /// Takes the right to run one measured operation; false when the
    /// `--ops` budget is spent.
    pub fn claim(&self) -> bool {
        match &self.ops_left {
            None => true,
            Some(left) => left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok(),
        }
    }
}

/// A worker's statistics, shared with the driver (which locks it once per
/// progress interval; the worker once per operation, uncontended).
pub type SharedStats = Arc<Mutex<WorkerStats>>;

/// Locks `stats`; a worker that panicked mid-update leaves counts that are
/// still worth reporting, so poisoning is ignored.
pub fn lock(stats: &Mutex<WorkerStats>) -> MutexGuard<'_, WorkerStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One benchmark client.
pub struct Worker {
    /// Its number, from 0.
    index: usize,
    /// The validated flags.
    config: Arc<Config>,
    /// Phase and `--ops` budget.
    control: Arc<Control>,
    /// Where this worker records.
    stats: SharedStats,
    /// The connection to this worker's node.
    link: Link,
    /// Key and operation choices (seeded per worker).
    rng: SplitMix64,
    /// The key distribution.
    keys: KeyChooser,
    /// Values to write.
    values: ValuePool,
    /// Contexts of this worker's last reads and writes.
    contexts: ContextCache,
    /// Query of every put; its context is set per operation.
    write_options: WriteOptions,
    /// Data-type updates sent so far (names a set workload's fresh elements).
    updates: u64,
}

impl Worker {
    /// Worker number `index`, connected (lazily) to a node chosen
    /// round-robin.
    pub fn new(
        index: usize,
        config: Arc<Config>,
        control: Arc<Control>,
        stats: SharedStats,
        keys: KeyChooser,
        values: ValuePool,
    ) -> Worker {
        let node = config.nodes[index % config.nodes.len()].clone();
        let write_options = WriteOptions { query: config.write_query.clone(), ..WriteOptions::default() };
        Worker {
            index,
            rng: SplitMix64::for_stream(config.seed, index as u64),
            link: Link::new(node),
            contexts: ContextCache::new(context_cache::DEFAULT_CAPACITY),
            config,
            control,
            stats,
            keys,
            values,
            write_options,
            updates: 0,
        }
    }

    /// Runs operations until the driver says stop or the `--ops` budget is
    /// spent.
    pub async fn run(mut self) {
        let mut schedule =
            self.config.rate.map(|rate| Schedule::new(Instant::now(), rate, self.config.concurrency, self.index));
        loop {
            let measured = match self.control.phase() {
                Phase::Stop => break,
                Phase::Warmup => false,
                Phase::Measure if self.control.claim() => true,
                Phase::Measure => break,
            };
            let started = match &mut schedule {
                None => Instant::now(),
                Some(schedule) => {
                    let scheduled = schedule.take();
                    let ready = Instant::now();
                    tokio::time::sleep_until(scheduled.into()).await;
                    pacing::latency_origin(scheduled, ready, Instant::now())
                }
            };
            self.one_operation(measured, started).await;
        }
    }

    async fn one_operation(&mut self, measured: bool, started: Instant) {
        let index = self.keys.next(&mut self.rng);
        let op = OpKind::choose(&mut self.rng, self.config.read_fraction);
        let outcome = match (op, self.config.workload.datatype()) {
            (OpKind::Read, None) => self.read(index).await,
            (OpKind::Update, None) => self.update(index).await,
            (OpKind::Read, Some(_)) => self.datatype_read(index).await,
            (OpKind::Update, Some(_)) => self.datatype_update(index).await,
        };
        let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        lock(&self.stats).record(measured, op, &outcome, latency_us);
        if let Outcome::Failed { broken: true, .. } = outcome {
            tokio::time::sleep(BROKEN_BACKOFF).await;
        }
    }

    async fn read(&mut self, index: u64) -> Outcome {
        let result = self.link.get(&self.config.bucket, &key_name(index), &self.config.read_query).await;
        match result {
            Err(error) => failure(&error),
            Ok(answer) => {
                self.remember(index, answer.context());
                match answer {
                    GetResult::Found { .. } => Outcome::Found,
                    GetResult::Siblings { siblings, .. } => Outcome::Siblings(siblings.len()),
                    GetResult::NotFound { .. } => Outcome::NotFound,
                }
            }
        }
    }

    async fn update(&mut self, index: u64) -> Outcome {
        self.write_options.context = match self.context_for_update(index).await {
            Ok(context) => context,
            Err(failed) => return failed,
        };
        let value = self.values.pick(&mut self.rng);
        let result = self.link.put(&self.config.bucket, &key_name(index), value, &self.write_options).await;
        match result {
            Err(error) => failure(&error),
            Ok(context) => {
                self.remember(index, context.as_deref());
                Outcome::Written
            }
        }
    }

    /// Reads a counter or set (`--workload counter|set`).
    async fn datatype_read(&mut self, index: u64) -> Outcome {
        let path = datatype_path(&self.config.bucket, index, &self.config.read_query);
        match self.link.datatype_get(&path).await {
            Ok(404) => Outcome::NotFound,
            Ok(_) => Outcome::Found,
            Err(error) => failure(&error),
        }
    }

    /// Increments a counter by one, or adds an element no worker added
    /// before to a set.
    async fn datatype_update(&mut self, index: u64) -> Outcome {
        self.updates += 1;
        let op = match self.config.workload {
            Workload::Set => format!(r#"{{"add":"w{}-{}"}}"#, self.index, self.updates),
            _ => r#"{"increment":1}"#.to_string(),
        };
        let path = datatype_path(&self.config.bucket, index, &self.config.write_query);
        match self.link.datatype_update(&path, op).await {
            Ok(_) => Outcome::Written,
            Err(error) => failure(&error),
        }
    }

    /// The context to write `index` with, by `--blind-writes`,
    /// `--read-before-write` or (default) the cache. A context is taken out
    /// of the cache: after this write it no longer covers the key's newest
    /// version; the server's answer supplies the next one.
    async fn context_for_update(&mut self, index: u64) -> Result<Option<String>, Outcome> {
        if self.config.blind_writes {
            return Ok(None);
        }
        if self.config.read_before_write
            && let Outcome::Failed { message, broken } = self.read(index).await
        {
            return Err(Outcome::Failed { message: format!("read before write: {message}"), broken });
        }
        Ok(self.contexts.take(index))
    }

    /// Caches the context the server just gave for `index` (none: forget).
    fn remember(&mut self, index: u64, context: Option<&str>) {
        match context {
            _ if self.config.blind_writes => {}
            Some(context) => self.contexts.insert(index, context.to_string()),
            None => self.contexts.remove(index),
        }
    }
}

/// `/buckets/{bucket}/datatypes/{key}?query`, percent-encoded.
fn datatype_path(bucket: &str, index: u64, query: &[(String, String)]) -> String {
    let object = dynamo_client::connection::object_path(bucket, &key_name(index), query);
    object.replacen("/keys/", "/datatypes/", 1)
}

/// The outcome of an operation that failed with `error`.
pub fn failure(error: &ClientError) -> Outcome {
    Outcome::Failed { message: error.to_string(), broken: is_broken(error) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ops_budget_is_claimed_exactly_once_per_operation() {
        let control = Control::new(Some(3));
        let claimed = (0..10).filter(|_| control.claim()).count();
        assert_eq!(claimed, 3);
        assert!(Control::new(None).claim());
    }

    #[test]
    fn phases_round_trip() {
        let control = Control::new(None);
        assert_eq!(control.phase(), Phase::Warmup);
        for phase in [Phase::Measure, Phase::Stop, Phase::Warmup] {
            control.set(phase);
            assert_eq!(control.phase(), phase);
        }
    }
}
