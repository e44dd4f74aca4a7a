//! Percent-encoding of bucket and key path segments: every byte outside
//! the RFC 3986 unreserved set is escaped, so keys may hold any bytes
//! (slashes, spaces, binary).

/// Encodes bytes for use as one path segment.
pub fn path_segment(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_and_binary_bytes_are_escaped() {
        assert_eq!(super::path_segment(b"a/b c\xff~"), "a%2Fb%20c%FF~");
    }
}
