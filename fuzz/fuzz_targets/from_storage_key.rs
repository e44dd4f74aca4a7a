//! Fuzzes `dynamo_core::keys::ObjectKey::from_storage_key`, which reads keys
//! back from storage scans (Merkle rebuilds, partition transfers).
//!
//! Checks: it never panics; a decoded key passes bucket and key validation;
//! rebuilding the layout from the decoded parts (stored partition, bucket
//! length, bucket, key) gives back the input byte for byte. The stored
//! partition need not be the one the key hashes to, so for every valid
//! partition count Q the harness checks that `storage_key(Q)` keeps the
//! input's bucket and key bytes, carries `partition(Q)` (which is below Q),
//! equals the input exactly when that partition is the stored one, and
//! decodes back to the same key.
//!
//! Input: the storage key bytes.

#![no_main]

use dynamo_core::keys::{MAX_PARTITIONS, ObjectKey, validate_bucket, validate_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((partition, key)) = ObjectKey::from_storage_key(data) else {
        return;
    };
    assert_eq!(validate_bucket(key.bucket()), Ok(()));
    assert_eq!(validate_key(key.key()), Ok(()));

    let bucket_len = u8::try_from(key.bucket().len()).expect("a valid bucket is at most 255 bytes");
    let mut rebuilt = partition.to_be_bytes().to_vec();
    rebuilt.push(bucket_len);
    rebuilt.extend_from_slice(key.bucket().as_bytes());
    rebuilt.extend_from_slice(key.key());
    assert_eq!(rebuilt, data, "layout rebuilt from the decoded parts differs from the input");

    let finest = key.partition(MAX_PARTITIONS);
    for bits in 0..=MAX_PARTITIONS.ilog2() {
        let partitions = 1u32 << bits;
        let computed = key.partition(partitions);
        assert!(computed < partitions, "partition {computed} of Q={partitions}");
        assert_eq!(computed, finest >> (MAX_PARTITIONS.ilog2() - bits), "partitions must nest as Q doubles");
        let storage_key = key.storage_key(partitions);
        assert_eq!(storage_key[..4], computed.to_be_bytes());
        assert_eq!(storage_key[4..], data[4..], "bucket and key bytes must be kept");
        assert_eq!(storage_key == data, computed == partition);
        assert_eq!(ObjectKey::from_storage_key(&storage_key), Ok((computed, key.clone())));
    }
});
