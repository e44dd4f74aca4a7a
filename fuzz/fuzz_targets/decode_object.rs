//! Fuzzes `dynamo_core::codec::decode_object`, which reads versioned objects
//! from disk and from other nodes.
//!
//! Checks: it never panics (nor allocates beyond what the input can hold);
//! whatever decodes is within the format's bounds (`check_encodable`);
//! `encode_object` of it decodes back to an equal object; the re-encoding is
//! a fixed point (encoding the re-decoded object gives the same bytes); and
//! it has the input's length (decode accepts no slack: only the sibling
//! order may differ from the canonical encoding).
//!
//! Input: the bytes as stored.

#![no_main]

use dynamo_core::codec::{check_encodable, decode_object, encode_object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = decode_object(data) else {
        return;
    };
    assert_eq!(check_encodable(&object), Ok(()), "a decoded object must be encodable");
    let encoded = encode_object(&object);
    assert_eq!(encoded.len(), data.len(), "re-encoding changed the length");
    let decoded = decode_object(&encoded).expect("a re-encoded object must decode");
    assert_eq!(decoded, object, "decode(encode(object)) must equal object");
    assert_eq!(encode_object(&decoded), encoded, "encoding must be deterministic");
});
