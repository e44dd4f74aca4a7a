//! Time and randomness for simulated nodes.
//!
//! - [`SimClock`]: a node's wall clock, derived from simulated time, a
//!   fixed epoch, a fixed per-node skew (machines disagree about the time)
//!   and step changes injected as faults (an NTP step, possibly backwards).
//!   It belongs to the simulated *machine*, so it keeps its skew and jumps
//!   across crashes and restarts of the node process.
//! - [`SeededNonces`]: handshake nonces from a seeded generator, so that
//!   the bytes on the simulated wire (and so every run) follow from the seed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use dynamo_node::clock::WallClock;
use dynamo_rpc::NonceSource;
use dynamo_rpc::auth::NONCE_BYTES;

use crate::rng::SplitMix64;

/// Wall-clock time at simulated time zero (2026-01-01T00:00:00Z), fixed so
/// that a seed replays the same timestamps.
pub const SIM_EPOCH_MS: u64 = 1_767_225_600_000;

/// A node's skewed, jumpy wall clock.
#[derive(Debug)]
pub struct SimClock {
    /// Constant offset from true simulated time, in milliseconds.
    skew_ms: i64,
    /// Sum of every step injected so far, in milliseconds.
    jumps_ms: AtomicI64,
}

impl SimClock {
    /// A clock `skew_ms` ahead of true time (behind when negative).
    pub fn new(skew_ms: i64) -> Self {
        Self { skew_ms, jumps_ms: AtomicI64::new(0) }
    }

    /// Steps the clock by `delta_ms` (negative: backwards), as an NTP step
    /// correction would.
    pub fn jump(&self, delta_ms: i64) {
        self.jumps_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    /// Current total offset from true simulated time, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.skew_ms + self.jumps_ms.load(Ordering::Relaxed)
    }
}

impl WallClock for SimClock {
    /// Simulated time of the simulation (not of this host's runtime, which
    /// restarts from zero with every incarnation) plus the offset.
    fn now_ms(&self) -> u64 {
        let elapsed_ms = turmoil::sim_elapsed().map_or(0, |elapsed| elapsed.as_millis() as i64);
        let now = SIM_EPOCH_MS as i64 + elapsed_ms + self.offset_ms();
        now.max(0) as u64
    }
}

/// Handshake nonces from a seeded generator. Never repeats within a run
/// (SplitMix64 has period 2^64 and every nonce takes four fresh outputs).
#[derive(Debug)]
pub struct SeededNonces {
    rng: Mutex<SplitMix64>,
}

impl SeededNonces {
    /// Nonces determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { rng: Mutex::new(SplitMix64::new(seed)) }
    }
}

impl NonceSource for SeededNonces {
    fn nonce(&self) -> [u8; NONCE_BYTES] {
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut nonce = [0u8; NONCE_BYTES];
        for chunk in nonce.chunks_mut(8) {
            let bytes = rng.next_u64().to_be_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        nonce
    }
}
