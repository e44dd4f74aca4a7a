//! In-memory engine for tests and the deterministic simulation. It keeps
//! synced and unsynced writes apart so [`MemoryEngine::crash`] can drop the
//! unsynced ones, exactly what a power loss does to a real disk.
//!
//! Each namespace holds a `durable` map (what a disk would still have after
//! a power loss) and the `pending` writes made since (puts and removes, in
//! order, each with a sequence number). Reads see the latest pending write of
//! a key over its durable value. [`Engine::sync`] folds into `durable` every
//! pending write made before the sync started; [`MemoryEngine::crash`]
//! discards the rest.
//!
//! A sync can be slowed down ([`MemoryEngine::set_sync_delay`]) to model a
//! real fsync in flight: writes made while it sleeps are *not* covered by it,
//! just as a real fsync may or may not include them. That is what lets the
//! group-commit tests prove a request is never answered by an fsync that
//! started before the request arrived.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::engine::{Engine, Namespace, Records, StorageError};

/// The in-memory engine. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    /// Shared by every clone: the node's store holds one clone, the test or
    /// the simulation keeps another to crash it. A std mutex is fine: every
    /// critical section is a few map operations and never awaits.
    inner: Arc<Mutex<State>>,
}

/// Everything behind the engine's lock.
#[derive(Default)]
struct State {
    /// One space per [`Namespace`], indexed by [`space_index`].
    spaces: [Space; Namespace::ALL.len()],
    /// Sequence number of the next write, across namespaces (one sync covers
    /// all of them, like one fjall journal does).
    next_seq: u64,
    /// Completed successful syncs, for group-commit tests.
    sync_count: u64,
    /// Syncs started and not yet finished (only ever above zero while a
    /// sync sleeps for `sync_delay`).
    syncs_in_flight: u64,
    /// Crashes so far; a sync that straddles a crash fails.
    crash_count: u64,
    /// Test knob: how long a sync takes (models fsync latency).
    sync_delay: Duration,
    /// Test knob: syncs fail (models a failing disk).
    fail_syncs: bool,
}

/// One namespace's data.
#[derive(Default)]
struct Space {
    /// What survives a crash.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Writes not yet synced, oldest first. Kept in order (not only the
    /// latest per key) so that a sync folds exactly the writes made before it
    /// started, even when a key is overwritten while the sync is in flight.
    pending: VecDeque<PendingWrite>,
    /// The latest pending write of each key (`None` = removed), with its
    /// sequence number: what reads see over `durable`.
    overlay: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
}

/// One unsynced put (`Some`) or remove (`None`).
struct PendingWrite {
    seq: u64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash: every write not covered by a `sync` is lost.
    pub fn crash(&self) {
        let mut state = self.lock();
        state.crash_count += 1;
        for space in &mut state.spaces {
            space.pending.clear();
            space.overlay.clear();
        }
    }

    /// Number of syncs performed (for tests of group commit).
    pub fn sync_count(&self) -> u64 {
        self.lock().sync_count
    }

    /// Number of syncs currently running (sleeping for the sync delay): lets
    /// a test act exactly while an fsync is in flight.
    pub fn syncs_in_flight(&self) -> u64 {
        self.lock().syncs_in_flight
    }

    /// Test knob: makes every later sync take `delay`, to model fsync latency
    /// (so that concurrent durability requests pile up and must be batched).
    /// Writes made while a sync sleeps are not covered by that sync.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }

    /// Test knob: when `fail` is true every later sync returns an engine
    /// error and makes nothing durable (models a failing disk).
    pub fn set_fail_syncs(&self, fail: bool) {
        self.lock().fail_syncs = fail;
    }

    /// Number of writes (puts and removes) not yet covered by a sync.
    pub fn pending_writes(&self) -> usize {
        self.lock().spaces.iter().map(|space| space.pending.len()).sum()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters to a test double; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, ns: Namespace, key: &[u8], value: Option<&[u8]>) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let space = &mut state.spaces[space_index(ns)];
        let value = value.map(<[u8]>::to_vec);
        space.overlay.insert(key.to_vec(), (seq, value.clone()));
        space.pending.push_back(PendingWrite { seq, key: key.to_vec(), value });
    }
}

impl State {
    fn fold_pending_before(&mut self, seq_end: u64) {
        for space in &mut self.spaces {
            space.fold_pending_before(seq_end);
        }
    }
}

impl Space {
    /// Makes durable every pending write with `seq < seq_end`, in order.
    fn fold_pending_before(&mut self, seq_end: u64) {
        while self.pending.front().is_some_and(|write| write.seq < seq_end) {
            let Some(write) = self.pending.pop_front() else {
                break;
            };
            if self.overlay.get(&write.key).is_some_and(|(seq, _)| *seq == write.seq) {
                // This was the key's latest write: reads now find it in
                // `durable`.
                self.overlay.remove(&write.key);
            }
            match write.value {
                Some(value) => self.durable.insert(write.key, value),
                None => self.durable.remove(&write.key),
            };
        }
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.overlay.get(key) {
            Some((_, value)) => value.clone(),
            None => self.durable.get(key).cloned(),
        }
    }

    /// Merges `durable` and `overlay` in key order, the overlay winning.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        // Every key with `prefix` is >= `prefix`, so starting at the larger of
        // the two bounds and stopping at the first key without the prefix
        // visits exactly the wanted range.
        let lower = Bound::Included(prefix.max(start));
        let mut durable = self
            .durable
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .peekable();
        let mut overlay = self
            .overlay
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let take_durable = match (durable.peek(), overlay.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((durable_key, _)), Some((overlay_key, _))) => {
                    if durable_key == overlay_key {
                        // Shadowed by a pending write.
                        durable.next();
                        false
                    } else {
                        durable_key < overlay_key
                    }
                }
            };
            if take_durable {
                if let Some((key, value)) = durable.next() {
                    out.push((key.clone(), value.clone()));
                }
            } else if let Some((key, (_, Some(value)))) = overlay.next() {
                out.push((key.clone(), value.clone()));
            }
        }
        out
    }
}

fn space_index(ns: Namespace) -> usize {
    match ns {
        Namespace::Objects => 0,
        Namespace::Meta => 1,
        Namespace::Hints => 2,
    }
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().spaces[space_index(ns)].get(key))
    }

    fn put(&self, ns: Namespace, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.write(ns, key, Some(value));
        Ok(())
    }

    fn remove(&self, ns: Namespace, key: &[u8]) -> Result<(), StorageError> {
        self.write(ns, key, None);
        Ok(())
    }

    fn scan(&self, ns: Namespace, prefix: &[u8], start: &[u8], limit: usize) -> Result<Records, StorageError> {
        Ok(self.lock().spaces[space_index(ns)].scan(prefix, start, limit))
    }

    fn sync(&self) -> Result<(), StorageError> {
        // The sync covers exactly the writes that exist when it starts.
        let (seq_end, crash_count, delay, fail) = {
            let mut state = self.lock();
            state.syncs_in_flight += 1;
            (state.next_seq, state.crash_count, state.sync_delay, state.fail_syncs)
        };
        if fail {
            self.lock().syncs_in_flight -= 1;
            return Err(StorageError::Engine {
                engine: "memory",
                operation: "sync",
                detail: "injected sync failure (set_fail_syncs)".to_owned(),
            });
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut state = self.lock();
        state.syncs_in_flight -= 1;
        if state.crash_count != crash_count {
            return Err(StorageError::Engine {
                engine: "memory",
                operation: "sync",
                detail: "the engine crashed while the sync was in flight".to_owned(),
            });
        }
        state.fold_pending_before(seq_end);
        state.sync_count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(engine: &MemoryEngine, key: &[u8]) -> Option<Vec<u8>> {
        engine.get(Namespace::Objects, key).expect("memory get")
    }

    fn put(engine: &MemoryEngine, key: &[u8], value: &[u8]) {
        engine.put(Namespace::Objects, key, value).expect("memory put");
    }

    fn keys(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        rows.iter().map(|(key, _)| key.as_slice()).collect()
    }

    #[test]
    fn unsynced_writes_are_lost_on_crash_and_synced_ones_survive() {
        let engine = MemoryEngine::new();
        put(&engine, b"a", b"1");
        engine.sync().expect("sync");
        put(&engine, b"b", b"2");
        put(&engine, b"a", b"overwritten");
        assert_eq!(get(&engine, b"a").as_deref(), Some(&b"overwritten"[..]));
        assert_eq!(get(&engine, b"b").as_deref(), Some(&b"2"[..]));
        assert_eq!(engine.pending_writes(), 2);

        engine.crash();

        assert_eq!(get(&engine, b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(get(&engine, b"b"), None);
        assert_eq!(engine.sync_count(), 1);
        assert_eq!(engine.pending_writes(), 0);
    }

    #[test]
    fn removes_are_lost_on_crash_unless_synced() {
        let engine = MemoryEngine::new();
        put(&engine, b"a", b"1");
        put(&engine, b"b", b"2");
        engine.sync().expect("sync");

        engine.remove(Namespace::Objects, b"a").expect("remove");
        assert_eq!(get(&engine, b"a"), None);
        engine.crash();
        assert_eq!(get(&engine, b"a").as_deref(), Some(&b"1"[..]), "unsynced remove is undone");

        engine.remove(Namespace::Objects, b"b").expect("remove");
        engine.sync().expect("sync");
        engine.crash();
        assert_eq!(get(&engine, b"b"), None, "synced remove survives");
    }

    #[test]
    fn clones_share_data() {
        let engine = MemoryEngine::new();
        let clone = engine.clone();
        put(&clone, b"k", b"v");
        clone.sync().expect("sync");
        assert_eq!(get(&engine, b"k").as_deref(), Some(&b"v"[..]));
        assert_eq!(engine.sync_count(), 1);
    }

    #[test]
    fn namespaces_are_separate() {
        let engine = MemoryEngine::new();
        engine.put(Namespace::Meta, b"k", b"meta").expect("put");
        assert_eq!(engine.get(Namespace::Objects, b"k").expect("get"), None);
        assert_eq!(engine.get(Namespace::Hints, b"k").expect("get"), None);
        assert_eq!(engine.scan(Namespace::Objects, b"", b"", 10).expect("scan"), vec![]);
    }

    #[test]
    fn scan_merges_synced_and_unsynced_writes_in_key_order() {
        let engine = MemoryEngine::new();
        for key in [&b"p/3"[..], b"p/1", b"q/1", b"o/9", b"p/5"] {
            put(&engine, key, key);
        }
        engine.sync().expect("sync");
        put(&engine, b"p/2", b"p/2");
        put(&engine, b"p/4", b"p/4");
        put(&engine, b"p/5", b"new");
        engine.remove(Namespace::Objects, b"p/3").expect("remove");
        engine.remove(Namespace::Objects, b"p/9").expect("remove of an absent key");

        let rows = engine.scan(Namespace::Objects, b"p/", b"", 100).expect("scan");
        assert_eq!(keys(&rows), vec![&b"p/1"[..], b"p/2", b"p/4", b"p/5"]);
        assert_eq!(rows[3].1, b"new");

        let all = engine.scan(Namespace::Objects, b"", b"", 100).expect("scan");
        assert_eq!(keys(&all), vec![&b"o/9"[..], b"p/1", b"p/2", b"p/4", b"p/5", b"q/1"]);
    }

    #[test]
    fn scan_honours_start_and_limit() {
        let engine = MemoryEngine::new();
        for i in 0..10u8 {
            put(&engine, &[b'k', b'0' + i], &[i]);
            if i % 3 == 0 {
                engine.sync().expect("sync");
            }
        }
        let page = engine.scan(Namespace::Objects, b"k", b"k3", 4).expect("scan");
        assert_eq!(keys(&page), vec![&b"k3"[..], b"k4", b"k5", b"k6"]);
        // Paging: restart just after the last key returned.
        let mut next_start = page[3].0.clone();
        next_start.push(0);
        let page = engine.scan(Namespace::Objects, b"k", &next_start, 4).expect("scan");
        assert_eq!(keys(&page), vec![&b"k7"[..], b"k8", b"k9"]);
        // A start before the prefix is clamped to the prefix.
        let page = engine.scan(Namespace::Objects, b"k8", b"a", 10).expect("scan");
        assert_eq!(keys(&page), vec![&b"k8"[..]]);
        assert!(engine.scan(Namespace::Objects, b"k", b"", 0).expect("scan").is_empty());
        assert!(engine.scan(Namespace::Objects, b"z", b"", 10).expect("scan").is_empty());
    }

    #[test]
    fn a_write_made_during_a_slow_sync_is_not_covered_by_it() {
        let engine = MemoryEngine::new();
        engine.set_sync_delay(Duration::from_millis(200));
        put(&engine, b"before", b"1");
        let syncing = engine.clone();
        let sync = std::thread::spawn(move || syncing.sync());
        std::thread::sleep(Duration::from_millis(50));
        put(&engine, b"during", b"2");
        put(&engine, b"before", b"overwritten during");
        sync.join().expect("sync thread").expect("sync");

        engine.crash();
        assert_eq!(get(&engine, b"before").as_deref(), Some(&b"1"[..]));
        assert_eq!(get(&engine, b"during"), None);
    }

    #[test]
    fn a_sync_interrupted_by_a_crash_fails() {
        let engine = MemoryEngine::new();
        engine.set_sync_delay(Duration::from_millis(100));
        put(&engine, b"k", b"v");
        let syncing = engine.clone();
        let sync = std::thread::spawn(move || syncing.sync());
        std::thread::sleep(Duration::from_millis(20));
        engine.crash();
        let result = sync.join().expect("sync thread");
        assert!(matches!(result, Err(StorageError::Engine { operation: "sync", .. })), "{result:?}");
        assert_eq!(get(&engine, b"k"), None);
    }

    #[test]
    fn failing_syncs_make_nothing_durable() {
        let engine = MemoryEngine::new();
        engine.set_fail_syncs(true);
        put(&engine, b"k", b"v");
        assert!(engine.sync().is_err());
        engine.crash();
        assert_eq!(get(&engine, b"k"), None);
        assert_eq!(engine.sync_count(), 0);
    }
}
