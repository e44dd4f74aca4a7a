//! Buckets, keys and where they live: validation and limits, the MD5 position
//! of a key on the 128-bit ring, its partition (paper section 4.2, strategy
//! 3: Q equal partitions), and the byte layout of keys in storage, which puts
//! the partition first so that a whole partition is one contiguous range
//! (for Merkle rebuilds and partition transfers).

use thiserror::Error;

/// Longest bucket name, in bytes. Bucket names are also path segments and
/// metric labels, so they are short and plain.
pub const MAX_BUCKET_LEN: usize = 255;
/// Longest key, in bytes (after percent-decoding).
pub const MAX_KEY_LEN: usize = 1024;
/// Default number of ring partitions (Q) at cluster creation.
pub const DEFAULT_PARTITIONS: u32 = 256;

/// Why a bucket or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Empty bucket name.
    #[error("bucket name is empty; use 1 to {MAX_BUCKET_LEN} characters from [A-Za-z0-9_.-]")]
    EmptyBucket,
    /// Bucket name too long.
    #[error("bucket name is {0} bytes; the limit is {MAX_BUCKET_LEN}")]
    BucketTooLong(usize),
    /// Bucket name with a character outside `[A-Za-z0-9_.-]`.
    #[error("bucket name contains {0:?}; only [A-Za-z0-9_.-] are allowed")]
    BucketCharacter(char),
    /// Empty key.
    #[error("key is empty; keys are 1 to {MAX_KEY_LEN} bytes")]
    EmptyKey,
    /// Key too long.
    #[error("key is {0} bytes; the limit is {MAX_KEY_LEN}")]
    KeyTooLong(usize),
    /// Q is not a power of two in the allowed range.
    #[error("partition count {0} must be a power of two between 1 and 65536")]
    BadPartitionCount(u32),
    /// A storage key that does not follow the layout.
    #[error("malformed storage key: {0}")]
    MalformedStorageKey(&'static str),
}

/// A validated bucket and key pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    bucket: String,
    key: Vec<u8>,
}

impl ObjectKey {
    /// Validates and builds a key.
    pub fn new(bucket: &str, key: &[u8]) -> Result<Self, KeyError> {
        todo!()
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Position on the ring: MD5 of (bucket length as u8, bucket, key), as a
    /// big-endian u128. The length prefix keeps ("ab","c") and ("a","bc") apart.
    pub fn ring_position(&self) -> u128 {
        todo!()
    }

    /// Partition index in `0..partitions`: the top log2(Q) bits of the ring
    /// position. `partitions` must be a valid partition count.
    pub fn partition(&self, partitions: u32) -> u32 {
        todo!()
    }

    /// Storage layout: partition (u32 BE), bucket length (u8), bucket, key.
    pub fn storage_key(&self, partitions: u32) -> Vec<u8> {
        todo!()
    }

    /// Inverse of [`ObjectKey::storage_key`]: (partition, key).
    pub fn from_storage_key(bytes: &[u8]) -> Result<(u32, ObjectKey), KeyError> {
        todo!()
    }
}

/// Checks that a partition count is a power of two in `1..=65536`.
pub fn validate_partition_count(partitions: u32) -> Result<(), KeyError> {
    todo!()
}

/// Checks a bucket name.
pub fn validate_bucket(bucket: &str) -> Result<(), KeyError> {
    todo!()
}
