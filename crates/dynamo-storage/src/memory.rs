//! In-memory engine for tests and the deterministic simulation. It keeps
//! synced and unsynced writes apart so [`MemoryEngine::crash`] can drop the
//! unsynced ones, exactly what a power loss does to a real disk.

/// The in-memory engine. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    // inner: Arc<Mutex<...>>
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash: every write not covered by a `sync` is lost.
    pub fn crash(&self) {
        todo!()
    }

    /// Number of syncs performed (for tests of group commit).
    pub fn sync_count(&self) -> u64 {
        todo!()
    }
}
