//! Fuzzes `dynamo_node::http::params`: `percent_decode` (bucket and key path
//! segments) and `parse_query` (the query string of every request), with the
//! parameter names the object endpoints allow.
//!
//! Checks: neither panics. `percent_decode`: fails only on input with a `%`,
//! never grows the input, and fully escaping its output then decoding gives
//! the output back. `parse_query`: a success respects the limits (length,
//! count), names only allowed parameters, each once, each with a value; and
//! re-encoding the pairs as a fully escaped query parses back to the same
//! pairs.
//!
//! Input: the text (UTF-8 only: both functions take `&str`).

#![no_main]

use std::fmt::Write as _;

use dynamo_node::http::params::{MAX_QUERY_LEN, MAX_QUERY_PARAMS, parse_query, percent_decode};
use libfuzzer_sys::fuzz_target;

/// The names the object endpoints accept.
const ALLOWED: &[&str] = &["r", "w", "dw", "n", "timeout_ms"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_percent_decode(text);
    check_parse_query(text);
});

fn check_percent_decode(text: &str) {
    match percent_decode(text) {
        Ok(bytes) => {
            assert!(bytes.len() <= text.len(), "decoding grew {} bytes to {}", text.len(), bytes.len());
            if !text.contains('%') {
                assert_eq!(bytes, text.as_bytes(), "text without escapes must decode to itself");
            }
            assert_eq!(percent_decode(&escape_all(&bytes)), Ok(bytes), "escaped output must decode back");
        }
        Err(message) => {
            assert!(text.contains('%'), "refused text without any escape: {message}");
        }
    }
}

fn check_parse_query(text: &str) {
    let Ok(pairs) = parse_query(Some(text), ALLOWED) else {
        return;
    };
    assert!(text.len() <= MAX_QUERY_LEN, "accepted a {}-byte query", text.len());
    assert!(pairs.len() <= MAX_QUERY_PARAMS.min(ALLOWED.len()), "accepted {} parameters", pairs.len());
    for (index, (name, value)) in pairs.iter().enumerate() {
        assert!(ALLOWED.contains(&name.as_str()), "accepted unknown parameter {name:?}");
        assert!(!value.is_empty(), "accepted {name:?} without a value");
        assert!(pairs[..index].iter().all(|(earlier, _)| earlier != name), "accepted {name:?} twice");
    }
    let reencoded: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{}={}", escape_all(name.as_bytes()), escape_all(value.as_bytes())))
        .collect();
    let reencoded = reencoded.join("&");
    if reencoded.len() <= MAX_QUERY_LEN {
        assert_eq!(parse_query(Some(&reencoded), ALLOWED), Ok(pairs), "re-encoded query {reencoded:?}");
    }
}

/// Escapes every byte as `%XX`.
fn escape_all(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for byte in bytes {
        let _ = write!(text, "%{byte:02X}");
    }
    text
}
