//! Bucket properties: per-bucket N, R, W, DW and conflict mode, persisted in
//! the node's metadata namespace and cached in memory. Buckets without props
//! of their own use the node's configured defaults.

use std::collections::HashMap;
use std::sync::RwLock;

use dynamo_core::props::{BucketProps, ConflictMode, DataType, MAX_N};
use dynamo_storage::{Durability, Namespace, StorageError, Store};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of bucket-props records in the metadata namespace.
const PROPS_KEY_PREFIX: &str = "bucket-props/";
/// Props records read per storage scan call.
const PROPS_SCAN_PAGE: usize = 256;

/// A partial update of bucket props: fields left out keep their value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropsPatch {
    /// New n.
    pub n: Option<u8>,
    /// New r.
    pub r: Option<u8>,
    /// New w.
    pub w: Option<u8>,
    /// New dw.
    pub dw: Option<u8>,
    /// New conflict mode.
    pub conflict: Option<ConflictMode>,
    /// New datatype.
    pub datatype: Option<DataType>,
    /// New default TTL in seconds (0: none).
    pub ttl_s: Option<u64>,
}

impl PropsPatch {
    /// Whether the patch leaves nothing of the current props.
    fn sets_every_field(&self) -> bool {
        self.n.is_some() && self.r.is_some() && self.w.is_some() && self.dw.is_some() && self.conflict.is_some()
    }

    fn apply(&self, current: BucketProps) -> BucketProps {
        BucketProps {
            n: self.n.unwrap_or(current.n),
            r: self.r.unwrap_or(current.r),
            w: self.w.unwrap_or(current.w),
            dw: self.dw.unwrap_or(current.dw),
            conflict: self.conflict.unwrap_or(current.conflict),
            datatype: self.datatype.unwrap_or(current.datatype),
            ttl_s: self.ttl_s.unwrap_or(current.ttl_s),
        }
    }
}

/// Why props could not be read or changed.
#[derive(Debug, Error)]
pub enum PropsStoreError {
    /// The new props are invalid.
    #[error("invalid bucket props: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored props do not parse (corruption or a newer format).
    #[error("stored props of bucket {bucket} are unreadable: {detail}")]
    Unreadable {
        /// The bucket.
        bucket: String,
        /// The parse error.
        detail: String,
    },
}

/// What [`BucketRegistry::listing`] found.
#[derive(Clone, Debug, Default)]
pub struct PropsListing {
    /// `(bucket, props, version)` of the readable records, in bucket order.
    pub readable: Vec<(String, BucketProps, u64)>,
    /// Buckets whose stored props are unreadable.
    pub unreadable: Vec<String>,
}

/// Props as stored: the props and the version of the change that set them
/// (an HLC timestamp; the newest change wins on every node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StoredProps {
    props: BucketProps,
    version: u64,
}

/// The props of every bucket this node knows.
pub struct BucketRegistry {
    store: Store,
    defaults: BucketProps,
    /// Built-in props of particular buckets without props of their own
    /// (the Redis front end's: last write wins).
    bucket_defaults: HashMap<String, BucketProps>,
    cache: RwLock<HashMap<String, StoredProps>>,
    /// Serializes updates so two concurrent patches cannot lose each other.
    update_lock: tokio::sync::Mutex<()>,
}

impl BucketRegistry {
    /// A registry over `store` with `defaults` for buckets without props.
    pub fn new(store: Store, defaults: BucketProps) -> Self {
        Self {
            store,
            defaults,
            bucket_defaults: HashMap::new(),
            cache: RwLock::new(HashMap::new()),
            update_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// This registry with `props` in effect for `bucket` until props are
    /// set for it. Every node must be given the same (they come from the
    /// configuration).
    pub fn with_bucket_default(mut self, bucket: &str, props: BucketProps) -> Self {
        self.bucket_defaults.insert(bucket.to_string(), props);
        self
    }

    fn defaults_of(&self, bucket: &str) -> BucketProps {
        self.bucket_defaults.get(bucket).copied().unwrap_or(self.defaults)
    }

    /// The props in effect for `bucket`.
    pub fn get(&self, bucket: &str) -> Result<BucketProps, PropsStoreError> {
        Ok(self.get_stored(bucket)?.props)
    }

    fn get_stored(&self, bucket: &str) -> Result<StoredProps, PropsStoreError> {
        if let Some(stored) = self.read_cache().get(bucket) {
            return Ok(*stored);
        }
        let stored = match self.store.get(Namespace::Meta, props_key(bucket).as_bytes())? {
            None => StoredProps { props: self.defaults_of(bucket), version: 0 },
            Some(bytes) => parse_stored(&bytes)
                .map_err(|detail| PropsStoreError::Unreadable { bucket: bucket.to_string(), detail })?,
        };
        self.write_cache().insert(bucket.to_string(), stored);
        Ok(stored)
    }

    /// Every bucket's stored props, with the buckets whose props are
    /// unreadable (failing their checksum, or not parsing) named apart, so
    /// that one bad record does not hide the others and callers decide
    /// what an unreadable n means for them.
    pub fn listing(&self) -> Result<PropsListing, PropsStoreError> {
        let prefix = PROPS_KEY_PREFIX.as_bytes();
        let mut listing = PropsListing::default();
        let mut start = prefix.to_vec();
        loop {
            let page = self.store.scan_records(Namespace::Meta, prefix, &start, PROPS_SCAN_PAGE)?;
            for (key, bytes) in &page {
                let bucket = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                match bytes.as_ref().ok().and_then(|bytes| parse_stored(bytes).ok()) {
                    Some(stored) => listing.readable.push((bucket, stored.props, stored.version)),
                    None => listing.unreadable.push(bucket),
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == PROPS_SCAN_PAGE => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(listing),
            }
        }
    }

    /// The props of buckets without their own (this node's configured
    /// defaults).
    pub fn defaults(&self) -> BucketProps {
        self.defaults
    }

    /// The largest n of any bucket: the default, or one stored with a
    /// bucket's props. A bucket whose props are unreadable could have any
    /// n, so it counts as [`MAX_N`]: callers (anti-entropy, the purge of
    /// partitions that moved away) then keep and repair more, never less.
    pub fn largest_n(&self) -> Result<u8, PropsStoreError> {
        let listing = self.listing()?;
        if !listing.unreadable.is_empty() {
            return Ok(MAX_N);
        }
        let built_in = self.bucket_defaults.values().map(|props| props.n);
        Ok(listing.readable.iter().map(|(_, props, _)| props.n).chain(built_in).fold(self.defaults.n, u8::max))
    }

    /// Applies `patch` to `bucket`'s props as a change of `version`,
    /// validates, and stores durably. Returns the new props.
    ///
    /// Over stored props that are unreadable (corrupt), only a patch that
    /// sets every field can apply: there is nothing to keep the others from.
    pub async fn update(&self, bucket: &str, patch: &PropsPatch, version: u64) -> Result<BucketProps, PropsStoreError> {
        let _serialized = self.update_lock.lock().await;
        let current = match self.readable_stored(bucket)? {
            Ok(stored) => stored.props,
            Err(_) if patch.sets_every_field() => self.defaults_of(bucket),
            Err(detail) => {
                return Err(PropsStoreError::Unreadable {
                    bucket: bucket.to_string(),
                    detail: format!("{detail}; set every field (n, r, w, dw, conflict) to replace them"),
                });
            }
        };
        let props = patch.apply(current);
        props.validate().map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        self.store_props(bucket, StoredProps { props, version }).await?;
        Ok(props)
    }

    /// Stores props decided on another node, unless a newer change is
    /// already stored (so concurrent changes converge everywhere).
    pub async fn apply(&self, bucket: &str, props: BucketProps, version: u64) -> Result<(), PropsStoreError> {
        let _serialized = self.update_lock.lock().await;
        props.validate().map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        // Unreadable (corrupt) stored props are replaced by any change.
        if let Ok(stored) = self.readable_stored(bucket)?
            && stored.version >= version
        {
            return Ok(());
        }
        self.store_props(bucket, StoredProps { props, version }).await
    }

    /// The stored props of `bucket`, or why they are unreadable (a record
    /// failing its checksum, or one that does not parse). Other storage
    /// failures are errors.
    fn readable_stored(&self, bucket: &str) -> Result<Result<StoredProps, String>, PropsStoreError> {
        match self.get_stored(bucket) {
            Ok(stored) => Ok(Ok(stored)),
            Err(PropsStoreError::Unreadable { detail, .. }) => Ok(Err(detail)),
            Err(PropsStoreError::Storage(error @ StorageError::Corruption { .. })) => Ok(Err(error.to_string())),
            Err(error) => Err(error),
        }
    }

    async fn store_props(&self, bucket: &str, stored: StoredProps) -> Result<(), PropsStoreError> {
        let json = serde_json::to_vec(&stored).map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        self.store.put(Namespace::Meta, props_key(bucket).as_bytes(), &json, Durability::Durable).await?;
        self.write_cache().insert(bucket.to_string(), stored);
        Ok(())
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, StoredProps>> {
        self.cache.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, StoredProps>> {
        self.cache.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Reads stored props; records written before props carried a version
/// (plain props JSON) read as version 0.
fn parse_stored(bytes: &[u8]) -> Result<StoredProps, String> {
    serde_json::from_slice::<StoredProps>(bytes).or_else(|error| {
        serde_json::from_slice::<BucketProps>(bytes)
            .map(|props| StoredProps { props, version: 0 })
            .map_err(|_| error.to_string())
    })
}

fn props_key(bucket: &str) -> String {
    format!("{PROPS_KEY_PREFIX}{bucket}")
}

#[cfg(test)]
mod tests {
    use dynamo_storage::MemoryEngine;

    use super::*;

    fn defaults() -> BucketProps {
        BucketProps { n: 3, r: 2, w: 2, dw: 0, conflict: ConflictMode::Siblings, ..BucketProps::default() }
    }

    /// Flips a bit of `bucket`'s stored props record below the store, so
    /// its checksum fails.
    fn corrupt(store: &Store, bucket: &str) {
        let engine = store.engine().expect("engine");
        dynamo_storage::record::damage(engine.as_ref(), Namespace::Meta, props_key(bucket).as_bytes()).expect("damage");
    }

    fn every_field(n: u8) -> PropsPatch {
        PropsPatch {
            n: Some(n),
            r: Some(1),
            w: Some(1),
            dw: Some(0),
            conflict: Some(ConflictMode::Lww),
            datatype: None,
            ttl_s: None,
        }
    }

    #[tokio::test]
    async fn corrupt_props_are_left_out_of_listings_and_replaced_by_a_newer_change() {
        let store = Store::memory(MemoryEngine::new());
        let registry = BucketRegistry::new(store.clone(), defaults());
        registry.update("rotten", &every_field(5), 1).await.expect("set");
        registry.update("fine", &every_field(4), 1).await.expect("set");
        corrupt(&store, "rotten");
        let registry = BucketRegistry::new(store.clone(), defaults());

        let listing = registry.listing().expect("listing");
        let listed: Vec<&str> = listing.readable.iter().map(|(bucket, ..)| bucket.as_str()).collect();
        assert_eq!(listed, ["fine"]);
        assert_eq!(listing.unreadable, ["rotten"]);
        assert_eq!(registry.largest_n().expect("largest n"), MAX_N, "an unreadable n could be anything");
        let error = registry.get("rotten").expect_err("corrupt props are reported").to_string();
        assert!(error.contains("corruption"), "{error}");

        let props = BucketProps { n: 3, r: 1, w: 1, dw: 0, conflict: ConflictMode::Lww, ..BucketProps::default() };
        registry.apply("rotten", props, 2).await.expect("a change from another node replaces them");
        assert_eq!(registry.get("rotten").expect("readable again"), props);
    }

    #[tokio::test]
    async fn a_bucket_with_a_built_in_default_keeps_it_until_props_are_set_and_under_a_partial_patch() {
        let lww = BucketProps { conflict: ConflictMode::Lww, ..defaults() };
        let registry =
            BucketRegistry::new(Store::memory(MemoryEngine::new()), defaults()).with_bucket_default("redis", lww);
        assert_eq!(registry.get("redis").expect("props"), lww);
        assert_eq!(registry.get("other").expect("props"), defaults());
        let patch = PropsPatch { n: Some(2), ..PropsPatch::default() };
        let patched = registry.update("redis", &patch, 1).await.expect("patch");
        assert_eq!(patched, BucketProps { n: 2, r: 2, w: 2, ..lww }, "a patch applies over the built-in default");
    }

    #[tokio::test]
    async fn over_corrupt_props_only_a_patch_of_every_field_applies() {
        let store = Store::memory(MemoryEngine::new());
        let registry = BucketRegistry::new(store.clone(), defaults());
        registry.update("rotten", &every_field(5), 1).await.expect("set");
        corrupt(&store, "rotten");
        let registry = BucketRegistry::new(store, defaults());

        let partial = PropsPatch { n: Some(2), ..PropsPatch::default() };
        let error = registry.update("rotten", &partial, 2).await.expect_err("nothing to keep the rest from");
        assert!(error.to_string().contains("set every field"), "{error}");
        let props = registry.update("rotten", &every_field(2), 3).await.expect("every field replaces them");
        assert_eq!(registry.get("rotten").expect("readable again"), props);
    }
}
