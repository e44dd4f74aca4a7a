//! Fuzzes `dynamo_core::messages::{Request, Response}::decode`, which read
//! every node-to-node RPC body (untrusted until proven otherwise: a peer
//! may be buggy, or not a peer at all).
//!
//! Checks: decoding never panics; whatever decodes re-encodes and decodes to
//! an equal message.
//!
//! Input: first two bytes = method (big-endian), rest = request body; the
//! same bytes are also tried as a response body.

#![no_main]

use dynamo_core::messages::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 2 {
        let method = u16::from_be_bytes([data[0], data[1]]);
        if let Ok(request) = Request::decode(method, &data[2..]) {
            let again = Request::decode(request.method(), &request.encode()).expect("re-encoded request decodes");
            assert_eq!(again, request);
        }
    }
    if let Ok(response) = Response::decode(data) {
        let again = Response::decode(&response.encode()).expect("re-encoded response decodes");
        assert_eq!(again, response);
    }
});
