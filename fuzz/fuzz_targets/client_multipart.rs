//! Fuzzes `dynamo_client::multipart`: `boundary` (reads the boundary from a
//! response's `Content-Type`) and `parse` (splits a `300 Multiple Choices`
//! body into sibling parts). Both read what a server, or anything between the
//! client and it, sends.
//!
//! Checks: neither panics. `boundary`: only a `multipart/mixed` type yields
//! one, and it never keeps surrounding quotes. `parse`: header names come out
//! trimmed and lowercase, every part body is a slice of the input body (no
//! copies, no bytes invented), the bodies together are no longer than the
//! input; and writing the parts back out with the same boundary parses to
//! the same parts.
//!
//! Input: everything before the first `\n` is the content type (UTF-8 only);
//! the rest is the body. When the content type yields no boundary the body is
//! still parsed, with boundary `b`, so no input is wasted.

#![no_main]

use bytes::Bytes;
use dynamo_client::multipart::{Part, boundary, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|byte| *byte == b'\n') else {
        return;
    };
    let Ok(content_type) = std::str::from_utf8(&data[..newline]) else {
        return;
    };
    let body = Bytes::copy_from_slice(&data[newline + 1..]);

    let found = boundary(content_type);
    if let Some(found) = &found {
        let kind = content_type.split(';').next().unwrap_or("");
        assert!(kind.trim().eq_ignore_ascii_case("multipart/mixed"), "boundary from {content_type:?}");
        assert!(!found.starts_with('"') && !found.ends_with('"'), "boundary kept its quotes: {found:?}");
    }
    check_parse(&body, found.as_deref().unwrap_or("b"));
});

fn check_parse(body: &Bytes, boundary: &str) {
    let Ok(parts) = parse(body, boundary) else {
        return;
    };
    let body_range = body.as_ptr() as usize..=body.as_ptr() as usize + body.len();
    let mut total = 0;
    for part in &parts {
        for (name, _) in &part.headers {
            assert_eq!(name.trim(), name, "header name not trimmed");
            assert_eq!(name.to_ascii_lowercase(), *name, "header name not lowercase");
        }
        let start = part.body.as_ptr() as usize;
        assert!(
            part.body.is_empty() || (body_range.contains(&start) && body_range.contains(&(start + part.body.len()))),
            "part body is not a slice of the input"
        );
        total += part.body.len();
    }
    assert!(total <= body.len(), "{total} bytes of parts from a {}-byte body", body.len());

    if let Some(rewritten) = write_parts(&parts, boundary) {
        assert_eq!(parse(&rewritten, boundary), Ok(parts), "rewritten body {rewritten:?}");
    }
}

/// Writes parts in the layout `parse` reads: `--B`, then per part CRLF,
/// header lines joined by CRLF, a blank line and the body, each closed by
/// CRLF `--B`, and `--` after the last.
///
/// `None` when a rewritten header block contains the delimiter (CRLF `--B`):
/// names come back trimmed and lowercased, so under boundary `b` a later
/// header line `--B: x` or ` --b: x`, harmless in the input, becomes
/// `--b: x` and would close the part early once rewritten. Boundaries compare case-sensitively
/// (RFC 2046), so that is the writer's ambiguity, not a parser bug.
fn write_parts(parts: &[Part], boundary: &str) -> Option<Bytes> {
    let delimiter = format!("\r\n--{boundary}");
    let mut out = format!("--{boundary}").into_bytes();
    for part in parts {
        out.extend_from_slice(b"\r\n");
        let lines: Vec<String> = part.headers.iter().map(|(name, value)| format!("{name}: {value}")).collect();
        let head = lines.join("\r\n");
        if head.contains(&delimiter) {
            return None;
        }
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&part.body);
        out.extend_from_slice(format!("\r\n--{boundary}").as_bytes());
    }
    out.extend_from_slice(b"--");
    Some(Bytes::from(out))
}
