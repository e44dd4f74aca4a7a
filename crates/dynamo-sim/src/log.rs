//! What a run observed, shared by the clients, the fault injector and the
//! checker: every acknowledged and failed write (the history the
//! invariants are checked against), every crash (which excuses some losses
//! of non-durable writes), and a trace of every event with its simulated
//! time.
//!
//! The trace is what the determinism check compares: one seed must produce
//! the same trace, byte for byte, every time. It is kept as text (written
//! to a file when a run fails) and folded into a 64-bit FNV-1a hash.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// A write of one element into a set-valued key (siblings mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetWrite {
    /// Client that wrote it.
    pub client: usize,
    /// Index of the key in the run's set keys.
    pub key: usize,
    /// The element this write added (unique in the run).
    pub element: u64,
    /// Acknowledgements asked for.
    pub w: u8,
    /// Durable acknowledgements asked for.
    pub dw: u8,
    /// Written without a context (a blind put).
    pub blind: bool,
    /// Simulated time the put was sent, in milliseconds.
    pub start_ms: u64,
    /// Simulated time the answer (or the client's timeout) came.
    pub end_ms: u64,
    /// Whether the write was acknowledged.
    pub acked: bool,
}

/// A write to a last-write-wins key. Each such key has a single writer,
/// which tracks which of its earlier writes each write causally follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LwwWrite {
    /// Index of the key in the run's LWW keys.
    pub key: usize,
    /// The value written (unique in the run).
    pub id: u64,
    /// Earlier writes that the context of this write had seen, so that
    /// this write causally supersedes them (a lower bound: the context may
    /// have seen more).
    pub supersedes: BTreeSet<u64>,
    /// Acknowledgements asked for.
    pub w: u8,
    /// Durable acknowledgements asked for.
    pub dw: u8,
    /// Simulated time the put was sent.
    pub start_ms: u64,
    /// Whether the write was acknowledged.
    pub acked: bool,
}

/// A node crash (power loss: unsynced writes are gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The node.
    pub node: usize,
    /// When, in simulated milliseconds.
    pub at_ms: u64,
}

/// Operation counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Client reads answered.
    pub reads_ok: u64,
    /// Client reads that failed or timed out.
    pub reads_failed: u64,
    /// Client writes acknowledged.
    pub writes_acked: u64,
    /// Client writes that failed or timed out (outcome unknown).
    pub writes_failed: u64,
    /// Fault episodes applied.
    pub faults: u64,
}

/// Everything a run observed.
#[derive(Debug)]
pub struct Log {
    /// Set writes, in the order their answers came.
    pub set_writes: Vec<SetWrite>,
    /// LWW writes, in the order their answers came.
    pub lww_writes: Vec<LwwWrite>,
    /// Crashes, in time order.
    pub crashes: Vec<Crash>,
    /// Operation counts.
    pub counters: Counters,
    /// Problems noticed during the run (not only at the end), e.g. a value
    /// that does not parse.
    pub violations: Vec<String>,
    trace: Vec<String>,
    trace_hash: u64,
}

/// FNV-1a offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for Log {
    fn default() -> Self {
        Self {
            set_writes: Vec::new(),
            lww_writes: Vec::new(),
            crashes: Vec::new(),
            counters: Counters::default(),
            violations: Vec::new(),
            trace: Vec::new(),
            trace_hash: FNV_OFFSET,
        }
    }
}

impl Log {
    /// Appends one line to the trace.
    pub fn event(&mut self, at_ms: u64, text: impl AsRef<str>) {
        let line = format!("{at_ms:>7} {}", text.as_ref());
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.trace_hash = (self.trace_hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
        self.trace.push(line);
    }

    /// Records a broken invariant noticed during the run.
    pub fn violation(&mut self, at_ms: u64, text: String) {
        self.event(at_ms, format!("VIOLATION {text}"));
        self.violations.push(format!("at {at_ms} ms: {text}"));
    }

    /// Hash of the trace so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    /// The trace lines.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Distinct nodes among `replicas` that crashed at or after `since_ms`.
    pub fn crashed_since(&self, replicas: &[usize], since_ms: u64) -> usize {
        let crashed: BTreeSet<usize> = self
            .crashes
            .iter()
            .filter(|crash| crash.at_ms >= since_ms && replicas.contains(&crash.node))
            .map(|crash| crash.node)
            .collect();
        crashed.len()
    }
}

/// The log, shared by everything in one run (one thread: the lock is never
/// contended, it only satisfies `Send` bounds).
#[derive(Clone, Debug, Default)]
pub struct SharedLog(Arc<Mutex<Log>>);

impl SharedLog {
    /// Locks the log.
    pub fn lock(&self) -> MutexGuard<'_, Log> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Simulated time now, in milliseconds (inside a turmoil host or client).
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |elapsed| elapsed.as_millis() as u64)
}
