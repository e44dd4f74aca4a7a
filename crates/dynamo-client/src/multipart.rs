//! Parsing of `multipart/mixed` bodies as the server sends them for
//! siblings. The body comes from the network, so every step is checked and
//! a malformed body is an error, never a panic.

use bytes::Bytes;

/// One part: its headers (names lowercased) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The part's bytes.
    pub body: Bytes,
}

impl Part {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Extracts the boundary from a `multipart/mixed; boundary=...` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, rest) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    rest.split(';').find_map(|parameter| {
        let (name, value) = parameter.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary").then(|| value.trim_matches('"').to_string())
    })
}

/// Splits a multipart body into parts.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    if !body.starts_with(opening.as_bytes()) {
        return Err("multipart body does not start with its boundary".to_string());
    }
    let mut parts = Vec::new();
    let mut position = opening.len();
    loop {
        let rest = &body[position..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err("multipart boundary not followed by CRLF".to_string());
        }
        let part_start = position + 2;
        let end = find(&body[part_start..], delimiter.as_bytes())
            .ok_or_else(|| "multipart part has no closing boundary".to_string())?;
        parts.push(parse_part(body.slice(part_start..part_start + end))?);
        position = part_start + end + delimiter.len();
    }
}

fn parse_part(raw: Bytes) -> Result<Part, String> {
    let split = find(&raw, b"\r\n\r\n");
    let (head, body) = match split {
        Some(index) => (&raw[..index], raw.slice(index + 4..)),
        // A part whose headers are immediately followed by the blank line.
        None if raw.starts_with(b"\r\n") => (&raw[..0], raw.slice(2..)),
        None => return Err("multipart part has no blank line after its headers".to_string()),
    };
    let head = std::str::from_utf8(head).map_err(|_| "multipart part headers are not UTF-8".to_string())?;
    let mut headers = Vec::new();
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed part header {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Part { headers, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(boundary("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("multipart/mixed; boundary=\"q\"").as_deref(), Some("q"));
        assert_eq!(boundary("text/plain"), None);
    }

    #[test]
    fn parts_keep_their_bytes_including_crlf_inside_values() {
        let body =
            Bytes::from_static(b"--b\r\nContent-Type: text/plain\r\n\r\none\r\n\r\n--b\r\nX-A: 1\r\n\r\n\r\n--b--\r\n");
        let parts = parse(&body, "b").expect("valid");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, Bytes::from_static(b"one\r\n"));
        assert_eq!(parts[0].header("content-type"), Some("text/plain"));
        assert_eq!(parts[1].body, Bytes::new());
        assert_eq!(parts[1].header("x-a"), Some("1"));
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let body = Bytes::from_static(b"--b\r\nX: 1\r\n\r\nvalue");
        assert!(parse(&body, "b").is_err());
        assert!(parse(&Bytes::from_static(b"junk"), "b").is_err());
    }
}
