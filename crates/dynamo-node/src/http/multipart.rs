//! `multipart/mixed` encoding of siblings (RFC 2046), the way Riak's HTTP API
//! returns them with `300 Multiple Choices`. Each part carries the sibling's
//! content type, its vtag (the dot that created it), its timestamp, and
//! `X-Dynamo-Deleted: true` for a tombstone (whose body is empty).

use std::fmt::Write as _;

use dynamo_core::object::{Payload, Sibling};

/// Header naming a sibling's identity (`actor-counter` of its dot).
pub const VTAG_HEADER: &str = "X-Dynamo-Vtag";
/// Header marking a tombstone part.
pub const DELETED_HEADER: &str = "X-Dynamo-Deleted";
/// Header with the sibling's write time (milliseconds since the epoch).
pub const TIMESTAMP_HEADER: &str = "X-Dynamo-Timestamp-Ms";
/// Header of a value with a TTL: when it expires (unix ms).
pub const EXPIRES_HEADER: &str = "X-Dynamo-Expires";

/// Content type of values stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The vtag of a sibling: its dot, printable.
pub fn vtag(sibling: &Sibling) -> String {
    format!("{}-{}", sibling.dot.actor, sibling.dot.counter)
}

/// Encodes siblings as a multipart body; returns (boundary, body). The
/// boundary is chosen so it occurs in no part's data.
/// A sibling dead at `now_ms` (a tombstone, or a value past its expiry) is
/// a part marked deleted, with no data.
pub fn encode(siblings: &[Sibling], now_ms: u64, seed: u64) -> (String, Vec<u8>) {
    let boundary = choose_boundary(siblings, seed);
    let mut body = Vec::new();
    for sibling in siblings {
        let mut head = format!("--{boundary}\r\n");
        let dead = sibling.is_dead_at(now_ms);
        let (content_type, data): (&str, &[u8]) = match &sibling.payload {
            Payload::Value { data, content_type, .. } if !dead => {
                (content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE), data)
            }
            Payload::Value { .. } => (DEFAULT_CONTENT_TYPE, &[]),
            // Never served here: a data-type key is read at its own
            // endpoint (`/buckets/{b}/datatypes/{k}`).
            Payload::Tombstone | Payload::Datatype(_) => (DEFAULT_CONTENT_TYPE, &[]),
        };
        let _ = write!(head, "Content-Type: {content_type}\r\n{VTAG_HEADER}: {}\r\n", vtag(sibling));
        let _ = write!(head, "{TIMESTAMP_HEADER}: {}\r\n", sibling.timestamp.wall_ms());
        if let Some(expires_ms) = sibling.expires_ms() {
            let _ = write!(head, "{EXPIRES_HEADER}: {expires_ms}\r\n");
        }
        if dead {
            let _ = write!(head, "{DELETED_HEADER}: true\r\n");
        }
        head.push_str("\r\n");
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (boundary, body)
}

fn choose_boundary(siblings: &[Sibling], seed: u64) -> String {
    let mut attempt = seed;
    loop {
        let boundary = format!("dynamo-{:016x}", attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let collides = siblings.iter().any(|sibling| match &sibling.payload {
            Payload::Value { data, .. } => contains(data, boundary.as_bytes()),
            Payload::Tombstone | Payload::Datatype(_) => false,
        });
        if !collides {
            return boundary;
        }
        attempt = attempt.wrapping_add(1);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
