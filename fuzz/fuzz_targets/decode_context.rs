//! Fuzzes `dynamo_core::context::decode_context`, the parser of the
//! `X-Dynamo-Context` header that clients hand back on every write.
//!
//! Checks: it never panics; whatever decodes stays within the documented
//! bounds (at most `MAX_CONTEXT_ENTRIES` actors, counters in
//! `1..=MAX_CONTEXT_COUNTER`); encoding it again in the input's format
//! (`encode_context` for format 1, `encode_client_context` with the decoded
//! timestamp for format 2) gives back exactly the input text (one context
//! has one encoding); and that text decodes to the same context again.
//!
//! Input: the first byte picks the mode. Even: the rest, when it is UTF-8, is
//! the header text as sent (exercises the length and base64 checks). Odd: the
//! rest is the raw layout before base64; the harness appends its CRC-32 and
//! base64-encodes it, so the fuzzer reaches the entry checks behind a
//! checksum it could not guess.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dynamo_core::context::{
    MAX_CONTEXT_COUNTER, MAX_CONTEXT_ENTRIES, decode_client_context, decode_context, encode_client_context,
    encode_context,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            check(text);
        }
    } else {
        let mut raw = rest.to_vec();
        raw.extend_from_slice(&crc32fast::hash(rest).to_be_bytes());
        check(&URL_SAFE_NO_PAD.encode(raw));
    }
});

fn check(text: &str) {
    let Ok((clock, seen)) = decode_client_context(text) else {
        return;
    };
    assert_eq!(decode_context(text), Ok(clock.clone()), "both decoders agree on the vector");
    assert!(clock.len() <= MAX_CONTEXT_ENTRIES, "decoded {} entries", clock.len());
    for (actor, counter) in clock.iter() {
        assert!((1..=MAX_CONTEXT_COUNTER).contains(&counter), "actor {actor:?} has counter {counter}");
    }
    // The format is the first byte of the layout: 1 without, 2 with the timestamp.
    let format = URL_SAFE_NO_PAD.decode(text).expect("decoded above")[0];
    let encoded = if format == 1 { encode_context(&clock) } else { encode_client_context(&clock, seen) };
    assert_eq!(encoded, text, "a decoded context must re-encode to the same text");
    assert_eq!(decode_client_context(&encoded), Ok((clock, seen)), "re-encoded context must decode to the same");
}
