//! The contexts a worker remembers, so that its updates behave like a real
//! client's.
//!
//! Why: in a `siblings` bucket a put without context is concurrent with
//! every stored version, so a benchmark of blind puts grows a sibling on
//! every update of a key and ends up measuring sibling explosion (hundreds
//! of siblings on hot keys within seconds). A real client writes with the
//! context of its last read. So each worker keeps the context of its last
//! read (or write: the server answers a put with the context of the merged
//! object) of a key and sends it with the next update of that key; without
//! one it puts without context. The map is bounded (oldest entry evicted
//! first) so memory does not grow with the keyspace.
//!
//! The price: a cached context is often stale (other workers wrote the key
//! since), so such an update still adds a sibling, bounded by about the
//! number of workers. With 16 workers on 2,000 keys, most reads of a
//! workload A run return siblings. `--read-before-write` (a read right
//! before every update) cuts that to the truly concurrent updates.

use std::collections::{HashMap, VecDeque};

/// Contexts kept per worker by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A bounded map from key index to the last context seen for it.
#[derive(Debug)]
pub struct ContextCache {
    /// Most entries kept; the oldest insertion is evicted beyond it.
    capacity: usize,
    /// Key index to (context, generation of its insertion).
    contexts: HashMap<u64, (String, u64)>,
    /// Insertions in order, for eviction: (key, generation). Never longer
    /// than `capacity`. An entry whose generation no longer matches the
    /// map's is stale (the key was taken or re-inserted since), and evicting
    /// it must leave the live context alone.
    order: VecDeque<(u64, u64)>,
    /// Generation of the next insertion.
    next_generation: u64,
}

impl ContextCache {
    /// An empty cache holding at most `capacity` (at least one) contexts.
    pub fn new(capacity: usize) -> ContextCache {
        let capacity = capacity.max(1);
        ContextCache {
            capacity,
            contexts: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            next_generation: 0,
        }
    }

    /// Remembers `context` for `key`, replacing an older one.
    pub fn insert(&mut self, key: u64, context: String) {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.contexts.insert(key, (context, generation));
        self.order.push_back((key, generation));
        while self.order.len() > self.capacity {
            if let Some((oldest, oldest_generation)) = self.order.pop_front()
                && self.contexts.get(&oldest).is_some_and(|(_, live)| *live == oldest_generation)
            {
                self.contexts.remove(&oldest);
            }
        }
    }

    /// Takes the context of `key` out: once a write used it, it is stale.
    pub fn take(&mut self, key: u64) -> Option<String> {
        self.contexts.remove(&key).map(|(context, _)| context)
    }

    /// Forgets `key` (a read found no context for it).
    pub fn remove(&mut self, key: u64) {
        self.contexts.remove(&key);
    }

    /// Number of contexts held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.contexts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_context_is_gone() {
        let mut cache = ContextCache::new(4);
        cache.insert(1, "a".into());
        cache.insert(1, "b".into());
        assert_eq!(cache.take(1).as_deref(), Some("b"));
        assert_eq!(cache.take(1), None);
    }

    #[test]
    fn the_oldest_entry_is_evicted_beyond_capacity() {
        let mut cache = ContextCache::new(2);
        cache.insert(1, "a".into());
        cache.insert(2, "b".into());
        cache.insert(3, "c".into());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.take(1), None);
        assert_eq!(cache.take(3).as_deref(), Some("c"));
    }

    #[test]
    fn a_stale_order_entry_never_evicts_a_fresh_context() {
        let mut cache = ContextCache::new(2);
        cache.insert(7, "old".into());
        assert_eq!(cache.take(7).as_deref(), Some("old"));
        cache.insert(8, "x".into());
        cache.insert(7, "fresh".into());
        assert_eq!(cache.take(7).as_deref(), Some("fresh"), "evicting the stale (7, old) entry kept the fresh one");
    }

    #[test]
    fn insert_take_cycles_stay_bounded() {
        let mut cache = ContextCache::new(8);
        for round in 0..10_000 {
            cache.insert(round % 3, format!("{round}"));
            cache.take(round % 3);
            cache.insert(round, "x".into());
        }
        assert!(cache.len() <= 8);
        assert!(cache.order.len() <= 8);
    }
}
