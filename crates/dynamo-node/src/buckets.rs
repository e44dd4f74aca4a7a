//! Bucket properties: per-bucket N, R, W, DW and conflict mode, persisted in
//! the node's metadata namespace and cached in memory. Buckets without props
//! of their own use the node's configured defaults.

use std::collections::HashMap;
use std::sync::RwLock;

use dynamo_core::props::{BucketProps, ConflictMode};
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
}

impl PropsPatch {
    fn apply(&self, current: BucketProps) -> BucketProps {
        BucketProps {
            n: self.n.unwrap_or(current.n),
            r: self.r.unwrap_or(current.r),
            w: self.w.unwrap_or(current.w),
            dw: self.dw.unwrap_or(current.dw),
            conflict: self.conflict.unwrap_or(current.conflict),
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
    cache: RwLock<HashMap<String, StoredProps>>,
    /// Serializes updates so two concurrent patches cannot lose each other.
    update_lock: tokio::sync::Mutex<()>,
}

impl BucketRegistry {
    /// A registry over `store` with `defaults` for buckets without props.
    pub fn new(store: Store, defaults: BucketProps) -> Self {
        Self { store, defaults, cache: RwLock::new(HashMap::new()), update_lock: tokio::sync::Mutex::new(()) }
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
            None => StoredProps { props: self.defaults, version: 0 },
            Some(bytes) => parse_stored(&bytes)
                .map_err(|detail| PropsStoreError::Unreadable { bucket: bucket.to_string(), detail })?,
        };
        self.write_cache().insert(bucket.to_string(), stored);
        Ok(stored)
    }

    /// The props of buckets that have their own: `(bucket, props,
    /// version)` in bucket order. Stored props that do not parse are left
    /// out (a request to their bucket reports them).
    pub fn stored(&self) -> Result<Vec<(String, BucketProps, u64)>, PropsStoreError> {
        let prefix = PROPS_KEY_PREFIX.as_bytes();
        let mut all = Vec::new();
        let mut start = prefix.to_vec();
        loop {
            let page = self.store.scan(Namespace::Meta, prefix, &start, PROPS_SCAN_PAGE)?;
            for (key, bytes) in &page {
                let bucket = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                if let Ok(stored) = parse_stored(bytes) {
                    all.push((bucket, stored.props, stored.version));
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == PROPS_SCAN_PAGE => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(all),
            }
        }
    }

    /// The props of buckets without their own (this node's configured
    /// defaults).
    pub fn defaults(&self) -> BucketProps {
        self.defaults
    }

    /// The largest n of any bucket: the default, or one stored with a
    /// bucket's props. Stored props that do not parse are left out (a
    /// request to their bucket reports them).
    pub fn largest_n(&self) -> Result<u8, PropsStoreError> {
        let prefix = PROPS_KEY_PREFIX.as_bytes();
        let mut largest = self.defaults.n;
        let mut start = prefix.to_vec();
        loop {
            let page = self.store.scan(Namespace::Meta, prefix, &start, PROPS_SCAN_PAGE)?;
            for (_, bytes) in &page {
                if let Ok(stored) = parse_stored(bytes) {
                    largest = largest.max(stored.props.n);
                }
            }
            match page.last() {
                Some((last, _)) if page.len() == PROPS_SCAN_PAGE => {
                    start = last.clone();
                    start.push(0);
                }
                _ => return Ok(largest),
            }
        }
    }

    /// Applies `patch` to `bucket`'s props as a change of `version`,
    /// validates, and stores durably. Returns the new props.
    pub async fn update(&self, bucket: &str, patch: &PropsPatch, version: u64) -> Result<BucketProps, PropsStoreError> {
        let _serialized = self.update_lock.lock().await;
        let props = patch.apply(self.get(bucket)?);
        props.validate().map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        self.store_props(bucket, StoredProps { props, version }).await?;
        Ok(props)
    }

    /// Stores props decided on another node, unless a newer change is
    /// already stored (so concurrent changes converge everywhere).
    pub async fn apply(&self, bucket: &str, props: BucketProps, version: u64) -> Result<(), PropsStoreError> {
        let _serialized = self.update_lock.lock().await;
        props.validate().map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        if self.get_stored(bucket)?.version >= version {
            return Ok(());
        }
        self.store_props(bucket, StoredProps { props, version }).await
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
