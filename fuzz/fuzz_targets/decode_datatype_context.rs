//! Fuzzes `dynamo_core::context::decode_datatype_context`, the parser of
//! the `"context"` a client hands back with a set remove (issue 12).
//!
//! Checks: it never panics; whatever decodes encodes again to exactly the
//! input text (one context, one encoding) and decodes to the same context.
//!
//! Input: the first byte picks the mode. Even: the rest, when it is UTF-8,
//! is the text as sent. Odd: the rest is the causal context's raw bytes;
//! the harness adds the format byte and the CRC-32 and base64-encodes them,
//! so the fuzzer reaches the context checks behind a checksum it could not
//! guess.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dynamo_core::context::{decode_datatype_context, encode_datatype_context};
use libfuzzer_sys::fuzz_target;

/// Format byte of a data-type context.
const FORMAT_DATATYPE: u8 = 3;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        }
    } else {
        let mut raw = vec![FORMAT_DATATYPE];
        raw.extend_from_slice(rest);
        let checksum = crc32fast::hash(&raw);
        raw.extend_from_slice(&checksum.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    };
    if let Ok(context) = decode_datatype_context(&text) {
        let again = encode_datatype_context(&context);
        assert_eq!(again, text, "a context has exactly one encoding");
        assert_eq!(decode_datatype_context(&again), Ok(context));
    }
});
