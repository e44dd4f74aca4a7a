//! Buckets, keys and where they live: validation and limits, the MD5 position
//! of a key on the 128-bit ring, its partition (paper section 4.2, strategy
//! 3: Q equal partitions), and the byte layout of keys in storage, which puts
//! the partition first so that a whole partition is one contiguous range
//! (for Merkle rebuilds and partition transfers).

use md5::{Digest, Md5};
use thiserror::Error;

/// Longest bucket name, in bytes. Bucket names are also path segments and
/// metric labels, so they are short and plain.
pub const MAX_BUCKET_LEN: usize = 255;
/// Longest key, in bytes (after percent-decoding).
pub const MAX_KEY_LEN: usize = 1024;
/// Default number of ring partitions (Q) at cluster creation.
pub const DEFAULT_PARTITIONS: u32 = 256;
/// Largest partition count (Q). Partition numbers must fit the 16 bits that
/// operators and metrics use, and a ring of 65536 partitions is already
/// finer than any cluster needs.
pub const MAX_PARTITIONS: u32 = 65536;
/// Bytes before the bucket name in a storage key: partition (u32) and bucket
/// length (u8).
const STORAGE_HEADER_LEN: usize = 5;

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
        validate_bucket(bucket)?;
        validate_key(key)?;
        Ok(Self { bucket: bucket.to_string(), key: key.to_vec() })
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
        let mut hasher = Md5::new();
        hasher.update([self.bucket_len()]);
        hasher.update(self.bucket.as_bytes());
        hasher.update(&self.key);
        u128::from_be_bytes(hasher.finalize().into())
    }

    /// Partition index in `0..partitions`: the top log2(Q) bits of the ring
    /// position. `partitions` must be a valid partition count.
    pub fn partition(&self, partitions: u32) -> u32 {
        debug_assert!(validate_partition_count(partitions).is_ok(), "bad partition count {partitions}");
        // floor(log2) keeps the result below `partitions` even if a caller
        // breaks the precondition; Q = 1 (zero bits) is partition 0.
        let bits = partitions.checked_ilog2().unwrap_or(0).min(MAX_PARTITIONS.ilog2());
        if bits == 0 {
            return 0;
        }
        (self.ring_position() >> (128 - bits)) as u32
    }

    /// Storage layout: partition (u32 BE), bucket length (u8), bucket, key.
    pub fn storage_key(&self, partitions: u32) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(STORAGE_HEADER_LEN + self.bucket.len() + self.key.len());
        bytes.extend_from_slice(&self.partition(partitions).to_be_bytes());
        bytes.push(self.bucket_len());
        bytes.extend_from_slice(self.bucket.as_bytes());
        bytes.extend_from_slice(&self.key);
        bytes
    }

    /// Inverse of [`ObjectKey::storage_key`]: (partition, key).
    pub fn from_storage_key(bytes: &[u8]) -> Result<(u32, ObjectKey), KeyError> {
        let Some((header, rest)) = bytes.split_first_chunk::<STORAGE_HEADER_LEN>() else {
            return Err(KeyError::MalformedStorageKey("shorter than its 5-byte header"));
        };
        let partition = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let bucket_len = usize::from(header[4]);
        if rest.len() < bucket_len {
            return Err(KeyError::MalformedStorageKey("shorter than its bucket length says"));
        }
        let (bucket, key) = rest.split_at(bucket_len);
        let bucket = std::str::from_utf8(bucket).map_err(|_| KeyError::MalformedStorageKey("bucket is not UTF-8"))?;
        Ok((partition, ObjectKey::new(bucket, key)?))
    }

    /// Bucket length as stored in the key layouts; validation keeps it <= 255.
    fn bucket_len(&self) -> u8 {
        u8::try_from(self.bucket.len()).unwrap_or(u8::MAX)
    }
}

/// Checks that a partition count is a power of two in `1..=65536`.
pub fn validate_partition_count(partitions: u32) -> Result<(), KeyError> {
    if partitions.is_power_of_two() && partitions <= MAX_PARTITIONS {
        Ok(())
    } else {
        Err(KeyError::BadPartitionCount(partitions))
    }
}

/// Checks a bucket name.
pub fn validate_bucket(bucket: &str) -> Result<(), KeyError> {
    if bucket.is_empty() {
        return Err(KeyError::EmptyBucket);
    }
    if bucket.len() > MAX_BUCKET_LEN {
        return Err(KeyError::BucketTooLong(bucket.len()));
    }
    match bucket.chars().find(|c| !is_bucket_char(*c)) {
        Some(bad) => Err(KeyError::BucketCharacter(bad)),
        None => Ok(()),
    }
}

/// Checks a key: 1 to [`MAX_KEY_LEN`] bytes, any bytes allowed.
pub fn validate_key(key: &[u8]) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// Bucket names are path segments, file-name-safe and metric labels.
fn is_bucket_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bucket() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,40}"
    }

    fn partitions() -> impl Strategy<Value = u32> {
        (0..=16u32).prop_map(|bits| 1 << bits)
    }

    #[test]
    fn empty_key_is_refused_with_the_allowed_range() {
        let error = ObjectKey::new("b", b"").unwrap_err();
        assert_eq!(error, KeyError::EmptyKey);
        assert_eq!(error.to_string(), "key is empty; keys are 1 to 1024 bytes");
    }

    #[test]
    fn key_one_byte_over_the_limit_is_refused() {
        assert!(ObjectKey::new("b", &[b'k'; MAX_KEY_LEN]).is_ok());
        let error = ObjectKey::new("b", &[b'k'; MAX_KEY_LEN + 1]).unwrap_err();
        assert_eq!(error, KeyError::KeyTooLong(1025));
        assert_eq!(error.to_string(), "key is 1025 bytes; the limit is 1024");
    }

    #[test]
    fn bucket_with_a_slash_or_space_is_refused_naming_the_character() {
        let error = ObjectKey::new("my/bucket", b"k").unwrap_err();
        assert_eq!(error, KeyError::BucketCharacter('/'));
        assert_eq!(error.to_string(), "bucket name contains '/'; only [A-Za-z0-9_.-] are allowed");
        assert_eq!(validate_bucket("a b"), Err(KeyError::BucketCharacter(' ')));
        assert_eq!(validate_bucket("é"), Err(KeyError::BucketCharacter('é')));
        assert_eq!(validate_bucket(""), Err(KeyError::EmptyBucket));
        assert_eq!(validate_bucket(&"b".repeat(256)), Err(KeyError::BucketTooLong(256)));
        assert_eq!(validate_bucket(&"b".repeat(255)), Ok(()));
    }

    #[test]
    fn keys_may_hold_any_bytes() {
        assert!(ObjectKey::new("b", &[0, 0xff, b'/', b' ']).is_ok());
    }

    #[test]
    fn partition_counts_must_be_powers_of_two_up_to_65536() {
        for good in [1, 2, 256, 65536] {
            assert_eq!(validate_partition_count(good), Ok(()));
        }
        for bad in [0, 3, 255, 131072] {
            assert_eq!(validate_partition_count(bad), Err(KeyError::BadPartitionCount(bad)));
        }
    }

    #[test]
    fn length_prefix_keeps_bucket_and_key_boundaries_apart() {
        let ab_c = ObjectKey::new("ab", b"c").unwrap();
        let a_bc = ObjectKey::new("a", b"bc").unwrap();
        assert_ne!(ab_c.ring_position(), a_bc.ring_position());
        assert_ne!(ab_c.storage_key(1), a_bc.storage_key(1));
    }

    #[test]
    fn ring_position_is_md5_of_length_bucket_and_key() {
        // md5("\x01bk") computed independently (printf '\x01bk' | md5sum).
        let key = ObjectKey::new("b", b"k").unwrap();
        assert_eq!(format!("{:032x}", key.ring_position()), "de3eae59b816fa23d898a13675a79ae6");
    }

    #[test]
    fn truncated_or_invalid_storage_keys_are_refused() {
        let malformed = |bytes: &[u8]| ObjectKey::from_storage_key(bytes).unwrap_err();
        assert_eq!(malformed(&[0, 0, 0]), KeyError::MalformedStorageKey("shorter than its 5-byte header"));
        assert_eq!(
            malformed(&[0, 0, 0, 1, 9, b'b']),
            KeyError::MalformedStorageKey("shorter than its bucket length says")
        );
        assert_eq!(malformed(&[0, 0, 0, 1, 1, b'b']), KeyError::EmptyKey);
        assert_eq!(malformed(&[0, 0, 0, 1, 1, b'/', b'k']), KeyError::BucketCharacter('/'));
    }

    proptest! {
        #[test]
        fn storage_key_roundtrips(bucket in bucket(), key in prop::collection::vec(any::<u8>(), 1..64), q in partitions()) {
            let object_key = ObjectKey::new(&bucket, &key).unwrap();
            let (partition, decoded) = ObjectKey::from_storage_key(&object_key.storage_key(q)).unwrap();
            prop_assert_eq!(partition, object_key.partition(q));
            prop_assert_eq!(decoded, object_key);
        }

        #[test]
        fn partition_is_in_range_and_nests_when_q_doubles(
            bucket in bucket(),
            key in prop::collection::vec(any::<u8>(), 1..64),
            q in partitions(),
        ) {
            let object_key = ObjectKey::new(&bucket, &key).unwrap();
            prop_assert!(object_key.partition(q) < q);
            if q < MAX_PARTITIONS {
                // Splitting every partition in two keeps keys in their half.
                prop_assert_eq!(object_key.partition(q * 2) / 2, object_key.partition(q));
            }
        }

        #[test]
        fn storage_keys_of_one_partition_share_its_prefix(
            bucket in bucket(),
            key in prop::collection::vec(any::<u8>(), 1..64),
            q in partitions(),
        ) {
            let object_key = ObjectKey::new(&bucket, &key).unwrap();
            let storage_key = object_key.storage_key(q);
            prop_assert_eq!(&storage_key[..4], &object_key.partition(q).to_be_bytes());
        }

        #[test]
        fn decoding_arbitrary_storage_keys_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = ObjectKey::from_storage_key(&bytes);
        }
    }
}
