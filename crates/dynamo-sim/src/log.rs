//! What a run observed, shared by the clients, the fault injector and the
//! checker: every acknowledged and failed write and data-type update (the
//! history the invariants are checked against), every crash (which excuses
//! some losses of non-durable writes), every forwarded data-type update a
//! replica received (how many replicas may have applied it), and a
//! trace of every event with its simulated time.
//!
//! The trace is what the determinism check compares: one seed must produce
//! the same trace, byte for byte, every time. It is kept as text (written
//! to a file when a run fails) and folded into a 64-bit FNV-1a hash.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use dynamo_core::crdt::value::DataOp;
use dynamo_core::keys::ObjectKey;

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

/// An increment of a counter key (issue 12). Its amount is unique among
/// the run's increments (see [`crate::datatypes`]), so a
/// forwarded copy of it that a replica received names it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterUpdate {
    /// Client that sent it.
    pub client: usize,
    /// Index of the key in the run's counter keys.
    pub key: usize,
    /// The amount (negative: a decrement).
    pub amount: i64,
    /// Node the client sent it to.
    pub node: usize,
    /// Acknowledgements asked for.
    pub w: u8,
    /// Durable acknowledgements asked for.
    pub dw: u8,
    /// Simulated time it was sent.
    pub start_ms: u64,
    /// Whether an attempt was acknowledged (otherwise its outcome is
    /// unknown: it may have been applied, once).
    pub acked: bool,
    /// Whether it carried an operation id (then the client retries it).
    pub with_id: bool,
    /// Attempts the client made (retries go through other nodes, with the
    /// same id).
    pub attempts: u8,
}

/// One element change of a set operation on a set key (issue 12): an
/// operation that adds one element and removes another is two of these,
/// with the same outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetChange {
    /// Client that sent it.
    pub client: usize,
    /// Index of the key in the run's data-type set keys.
    pub key: usize,
    /// The element (an add's element is unique in the run; a remove's is
    /// one the client's read of the key returned).
    pub element: u64,
    /// Add or remove.
    pub add: bool,
    /// A remove sent with its read's causal context (without one, it acts
    /// on what the acting replica holds).
    pub with_context: bool,
    /// Acknowledgements asked for.
    pub w: u8,
    /// Durable acknowledgements asked for.
    pub dw: u8,
    /// Simulated time the operation was sent, or for a remove the time its
    /// read was sent (since when a crash may have lost what it observed).
    pub start_ms: u64,
    /// Whether the operation was acknowledged.
    pub acked: bool,
}

/// A data-type update that a replica received from another node (a
/// non-replica forwarding a client's update). A forwarder whose call to
/// one replica fails tries the next, and a replica that timed out may
/// have applied the update all the same: each copy received may have been
/// applied once. Increments name their client update by their amount, set
/// adds by their element (both unique in the run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedUpdate {
    /// The receiving node.
    pub node: usize,
    /// The forwarding node.
    pub from: String,
    /// The key.
    pub key: ObjectKey,
    /// The operation.
    pub op: DataOp,
    /// When it arrived.
    pub at_ms: u64,
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
    /// Data-type updates acknowledged.
    pub updates_acked: u64,
    /// Data-type updates that failed or timed out (outcome unknown).
    pub updates_failed: u64,
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
    /// Counter increments, in the order their answers came.
    pub counter_updates: Vec<CounterUpdate>,
    /// Changes of data-type sets, in the order their answers came.
    pub set_changes: Vec<SetChange>,
    /// Forwarded data-type updates received by replicas, in arrival order.
    pub forwarded_updates: Vec<ForwardedUpdate>,
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
            counter_updates: Vec::new(),
            set_changes: Vec::new(),
            forwarded_updates: Vec::new(),
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

    /// Distinct nodes that crashed at or after `since_ms`. Any node, not
    /// only a key's replicas: under the sloppy quorum a fallback holding a
    /// hint may be one of a write's W acknowledgements (seed 100258: a
    /// `dw=0` add acknowledged by its coordinating replica and a fallback,
    /// both of which crashed before the hint was delivered).
    pub fn crashed_since(&self, since_ms: u64) -> usize {
        let crashed: BTreeSet<usize> =
            self.crashes.iter().filter(|crash| crash.at_ms >= since_ms).map(|crash| crash.node).collect();
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
