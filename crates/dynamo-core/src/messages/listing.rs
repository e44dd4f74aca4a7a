//! Listing (issue 14): a coordinator walking a bucket's keys asks one
//! partition's replica for a page of the live keys it stores
//! ([`Request::ListKeys`]), and a node listing buckets asks every member
//! which buckets it holds live keys of ([`Request::ListBuckets`]). See
//! [`crate::listing`] for how the pages are merged and resumed.
//!
//! Layouts (after the format byte; a raw key is `key length u16 | key`,
//! 1 to [`MAX_KEY_LEN`] bytes):
//! - [`Request::ListKeys`] (method 16): `partition u32 | bucket length u8 |
//!   bucket | after flag u8 | raw key? | max keys u16 | max bytes u32`,
//!   with `1 <= max keys <= MAX_PAGE_KEYS` and
//!   `1 <= max bytes <= PAGE_KEY_BYTES`;
//! - [`Response::ListedKeys`] (kind 14): `count u16 | raw key * | covered
//!   flag u8 | raw key?`, at most [`MAX_PAGE_KEYS`] keys of at most
//!   [`PAGE_KEY_BYTES`] bytes in all, strictly increasing, none above the
//!   covered key (the merge relies on both, so they are checked here);
//! - [`Request::ListBuckets`] (method 17): no fields;
//! - [`Response::Buckets`] (kind 15): `complete u8 | count u16 | (bucket
//!   length u8 | bucket) *`, at most [`MAX_LISTED_BUCKETS`] valid bucket
//!   names, strictly increasing.

use super::props::{decode_bucket, encode_bucket};
use super::{MessageError, Request, Response};
use crate::codec::{Reader, clamped_u16};
use crate::keys::{KeyError, MAX_KEY_LEN};
use crate::listing::{MAX_PAGE_KEYS, PAGE_KEY_BYTES};

/// Most buckets one node reports in a [`Response::Buckets`] (at most 255
/// bytes each: about 1 MiB). A node holding more says it is incomplete.
pub const MAX_LISTED_BUCKETS: usize = 4096;

/// Appends the fields of [`Request::ListKeys`].
pub(super) fn encode_list_keys(
    partition: u32,
    bucket: &str,
    after: Option<&[u8]>,
    max_keys: u16,
    max_bytes: u32,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&partition.to_be_bytes());
    encode_bucket(bucket, out);
    encode_optional_raw_key(after, out);
    out.extend_from_slice(&max_keys.to_be_bytes());
    out.extend_from_slice(&max_bytes.to_be_bytes());
}

/// Reads the fields of [`Request::ListKeys`].
pub(super) fn decode_list_keys(reader: &mut Reader<'_>) -> Result<Request, MessageError> {
    let partition = super::fields::decode_partition(reader)?;
    let bucket = decode_bucket(reader)?;
    let after = decode_optional_raw_key(reader)?;
    let max_keys = reader.u16("max keys")?;
    if max_keys == 0 || usize::from(max_keys) > MAX_PAGE_KEYS {
        return Err(MessageError::Invalid("max keys out of range"));
    }
    let max_bytes = reader.u32("max bytes")?;
    if max_bytes == 0 || max_bytes as usize > PAGE_KEY_BYTES {
        return Err(MessageError::Invalid("max bytes out of range"));
    }
    Ok(Request::ListKeys { partition, bucket, after, max_keys, max_bytes })
}

/// Appends the body of [`Response::ListedKeys`] (after its kind byte).
pub(super) fn encode_listed_keys(keys: &[Vec<u8>], covered: Option<&[u8]>, out: &mut Vec<u8>) {
    // A count above the bound encodes clamped: the keys then outnumber it
    // and decoding refuses the trailing bytes.
    out.extend_from_slice(&clamped_u16(keys.len()).to_be_bytes());
    for key in keys {
        encode_raw_key(key, out);
    }
    encode_optional_raw_key(covered, out);
}

/// Reads the body of [`Response::ListedKeys`].
pub(super) fn decode_listed_keys(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let count = usize::from(reader.u16("key count")?);
    if count > MAX_PAGE_KEYS {
        return Err(MessageError::Invalid("more keys than a listing page holds"));
    }
    // The smallest raw key is three bytes.
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(count.min(reader.remaining() / 3));
    let mut bytes = 0usize;
    for _ in 0..count {
        let key = decode_raw_key(reader)?;
        bytes += key.len();
        if bytes > PAGE_KEY_BYTES {
            return Err(MessageError::Invalid("more key bytes than a listing page holds"));
        }
        if keys.last().is_some_and(|last| *last >= key) {
            return Err(MessageError::Invalid("listed keys out of order"));
        }
        keys.push(key);
    }
    let covered = decode_optional_raw_key(reader)?;
    if let (Some(covered), Some(last)) = (&covered, keys.last())
        && last > covered
    {
        return Err(MessageError::Invalid("a listed key above the covered key"));
    }
    Ok(Response::ListedKeys { keys, covered })
}

/// Appends the body of [`Response::Buckets`] (after its kind byte).
pub(super) fn encode_buckets(buckets: &[String], complete: bool, out: &mut Vec<u8>) {
    out.push(u8::from(complete));
    out.extend_from_slice(&clamped_u16(buckets.len()).to_be_bytes());
    for bucket in buckets {
        encode_bucket(bucket, out);
    }
}

/// Reads the body of [`Response::Buckets`].
pub(super) fn decode_buckets(reader: &mut Reader<'_>) -> Result<Response, MessageError> {
    let complete = reader.flag("complete flag")?;
    let count = usize::from(reader.u16("bucket count")?);
    if count > MAX_LISTED_BUCKETS {
        return Err(MessageError::Invalid("more buckets than a bucket listing holds"));
    }
    // The smallest bucket entry is two bytes.
    let mut buckets: Vec<String> = Vec::with_capacity(count.min(reader.remaining() / 2));
    for _ in 0..count {
        let bucket = decode_bucket(reader)?;
        if buckets.last().is_some_and(|last| *last >= bucket) {
            return Err(MessageError::Invalid("listed buckets out of order"));
        }
        buckets.push(bucket);
    }
    Ok(Response::Buckets { buckets, complete })
}

fn encode_raw_key(key: &[u8], out: &mut Vec<u8>) {
    // Validation keeps keys within MAX_KEY_LEN; a longer one clamps and
    // then fails to decode.
    out.extend_from_slice(&clamped_u16(key.len()).to_be_bytes());
    out.extend_from_slice(key);
}

fn decode_raw_key(reader: &mut Reader<'_>) -> Result<Vec<u8>, MessageError> {
    let len = usize::from(reader.u16("key length")?);
    if len == 0 {
        return Err(KeyError::EmptyKey.into());
    }
    if len > MAX_KEY_LEN {
        return Err(KeyError::KeyTooLong(len).into());
    }
    Ok(reader.take(len, "key")?.to_vec())
}

fn encode_optional_raw_key(key: Option<&[u8]>, out: &mut Vec<u8>) {
    match key {
        None => out.push(0),
        Some(key) => {
            out.push(1);
            encode_raw_key(key, out);
        }
    }
}

fn decode_optional_raw_key(reader: &mut Reader<'_>) -> Result<Option<Vec<u8>>, MessageError> {
    if reader.flag("key flag")? { Ok(Some(decode_raw_key(reader)?)) } else { Ok(None) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(bytes: &[u8]) -> Result<Response, MessageError> {
        let mut all = vec![1, 14];
        all.extend_from_slice(bytes);
        Response::decode(&all)
    }

    #[test]
    fn a_listing_page_out_of_order_or_past_its_covered_key_is_refused() {
        // Two keys "b", "a": out of order.
        assert_eq!(listed(&[0, 2, 0, 1, b'b', 0, 1, b'a', 0]), Err(MessageError::Invalid("listed keys out of order")));
        // "b" listed, covered only up to "a".
        assert_eq!(
            listed(&[0, 1, 0, 1, b'b', 1, 0, 1, b'a']),
            Err(MessageError::Invalid("a listed key above the covered key"))
        );
        assert_eq!(
            listed(&[0, 1, 0, 1, b'a', 1, 0, 1, b'a']),
            Ok(Response::ListedKeys { keys: vec![b"a".to_vec()], covered: Some(b"a".to_vec()) })
        );
        assert_eq!(listed(&[0, 1, 0, 0, 0]), Err(MessageError::Key(KeyError::EmptyKey)));
    }

    #[test]
    fn a_list_keys_request_outside_its_bounds_is_refused() {
        let request = |max_keys: u16, max_bytes: u32| {
            let mut out = vec![1];
            encode_list_keys(0, "b", None, max_keys, max_bytes, &mut out);
            Request::decode(super::super::METHOD_LIST_KEYS, &out)
        };
        assert!(request(1, 1).is_ok());
        assert_eq!(request(0, 1), Err(MessageError::Invalid("max keys out of range")));
        assert_eq!(request(MAX_PAGE_KEYS as u16 + 1, 1), Err(MessageError::Invalid("max keys out of range")));
        assert_eq!(request(1, PAGE_KEY_BYTES as u32 + 1), Err(MessageError::Invalid("max bytes out of range")));
    }

    #[test]
    fn a_bucket_listing_out_of_order_is_refused() {
        let mut all = vec![1, 15, 1, 0, 2];
        encode_bucket("b", &mut all);
        encode_bucket("a", &mut all);
        assert_eq!(Response::decode(&all), Err(MessageError::Invalid("listed buckets out of order")));
    }
}
