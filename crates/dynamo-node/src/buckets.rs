//! Bucket properties: per-bucket N, R, W, DW and conflict mode, persisted in
//! the node's metadata namespace and cached in memory. Buckets without props
//! of their own use the node's configured defaults.

use std::collections::HashMap;
use std::sync::RwLock;

use dynamo_core::props::{BucketProps, ConflictMode};
use dynamo_storage::{Durability, Namespace, StorageError, Store};
use serde::Deserialize;
use thiserror::Error;

/// Prefix of bucket-props records in the metadata namespace.
const PROPS_KEY_PREFIX: &str = "bucket-props/";

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

/// The props of every bucket this node knows.
pub struct BucketRegistry {
    store: Store,
    defaults: BucketProps,
    cache: RwLock<HashMap<String, BucketProps>>,
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
        if let Some(props) = self.read_cache().get(bucket) {
            return Ok(*props);
        }
        let props = match self.store.get(Namespace::Meta, props_key(bucket).as_bytes())? {
            None => self.defaults,
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|error| PropsStoreError::Unreadable {
                bucket: bucket.to_string(),
                detail: error.to_string(),
            })?,
        };
        self.write_cache().insert(bucket.to_string(), props);
        Ok(props)
    }

    /// Applies `patch` to `bucket`'s props, validates, and stores durably.
    pub async fn update(&self, bucket: &str, patch: &PropsPatch) -> Result<BucketProps, PropsStoreError> {
        let _serialized = self.update_lock.lock().await;
        let props = patch.apply(self.get(bucket)?);
        props.validate().map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        let json = serde_json::to_vec(&props).map_err(|error| PropsStoreError::Invalid(error.to_string()))?;
        self.store.put(Namespace::Meta, props_key(bucket).as_bytes(), &json, Durability::Durable).await?;
        self.write_cache().insert(bucket.to_string(), props);
        Ok(props)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, BucketProps>> {
        self.cache.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, BucketProps>> {
        self.cache.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn props_key(bucket: &str) -> String {
    format!("{PROPS_KEY_PREFIX}{bucket}")
}
