//! Fuzzes `dynamo_core::listing::decode_token`, the parser of the
//! `continuation` a client hands back to resume a key listing.
//!
//! Checks: it never panics; a decoded position is inside the ring (its
//! partition below Q, its key 1 to `MAX_KEY_LEN` bytes); `encode_token` of
//! it gives back exactly the input text (one position has one token); and
//! the token is refused for any other bucket.
//!
//! Input: the first byte picks the mode. Even: the rest, when it is UTF-8,
//! is the token text as sent (exercises the length and base64 checks). Odd:
//! the rest is the raw layout before the checksum; the harness appends its
//! CRC-32 (over the bucket, then the layout) and base64url-encodes it, so
//! the fuzzer reaches the field checks behind a checksum it could not
//! guess.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dynamo_core::keys::MAX_KEY_LEN;
use dynamo_core::listing::{decode_token, encode_token};
use libfuzzer_sys::fuzz_target;

/// The bucket and ring every input is read against.
const BUCKET: &str = "b";
const PARTITIONS: u32 = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check(text);
        }
    } else {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(BUCKET.as_bytes());
        hasher.update(rest);
        let mut raw = rest.to_vec();
        raw.extend_from_slice(&hasher.finalize().to_be_bytes());
        check(&URL_SAFE_NO_PAD.encode(raw));
    }
});

fn check(text: &str) {
    let Ok(position) = decode_token(text, BUCKET, PARTITIONS) else {
        return;
    };
    assert!(position.partition < PARTITIONS, "partition {} outside the ring", position.partition);
    if let Some(after) = &position.after {
        assert!((1..=MAX_KEY_LEN).contains(&after.len()), "a resume key of {} bytes", after.len());
    }
    assert_eq!(encode_token(BUCKET, PARTITIONS, &position), text, "a decoded token must re-encode to the same text");
    assert!(decode_token(text, "other", PARTITIONS).is_err(), "a token is refused for another bucket");
}
