//! Parsing of untrusted request-line parts: percent-decoded path segments and
//! query strings. Pure functions over bytes, fuzzed and unit-tested, with a
//! message for every way input can be wrong.

/// Longest query string accepted.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most parameters in one query string.
pub const MAX_QUERY_PARAMS: usize = 32;

/// Decodes `%XX` escapes. `+` is kept as is (it is a literal in paths).
pub fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] != b'%' {
            out.push(bytes[index]);
            index += 1;
            continue;
        }
        let high = bytes.get(index + 1).and_then(|byte| hex_value(*byte));
        let low = bytes.get(index + 2).and_then(|byte| hex_value(*byte));
        match (high, low) {
            (Some(high), Some(low)) => out.push(high << 4 | low),
            _ => {
                return Err(format!("invalid percent-escape at byte {index} of {text:?}; use %XX with two hex digits"));
            }
        }
        index += 3;
    }
    Ok(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Parses a query string into (name, value) pairs, refusing names not in
/// `allowed`, repeated names, and anything beyond the limits.
pub fn parse_query(query: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let Some(query) = query.filter(|query| !query.is_empty()) else {
        return Ok(Vec::new());
    };
    if query.len() > MAX_QUERY_LEN {
        return Err(format!("query string is {} bytes; the limit is {MAX_QUERY_LEN}", query.len()));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|part| !part.is_empty()) {
        if pairs.len() == MAX_QUERY_PARAMS {
            return Err(format!("more than {MAX_QUERY_PARAMS} query parameters"));
        }
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let name = decode_text(raw_name)?;
        let value = decode_text(raw_value)?;
        if !allowed.contains(&name.as_str()) {
            return Err(format!("unknown query parameter {name:?}; allowed here: {}", allowed.join(", ")));
        }
        if pairs.iter().any(|(existing, _)| *existing == name) {
            return Err(format!("query parameter {name:?} is given more than once"));
        }
        if value.is_empty() {
            return Err(format!("query parameter {name:?} has no value"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn decode_text(text: &str) -> Result<String, String> {
    String::from_utf8(percent_decode(text)?).map_err(|_| format!("query part {text:?} is not UTF-8 after decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode_to_bytes_including_slashes() {
        assert_eq!(percent_decode("a%2Fb%20c").expect("valid"), b"a/b c");
        assert_eq!(percent_decode("%ff").expect("valid"), vec![0xff]);
    }

    #[test]
    fn broken_percent_escapes_are_refused() {
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("%").is_err());
    }

    #[test]
    fn query_with_allowed_names_parses() {
        let pairs = parse_query(Some("w=2&dw=one"), &["w", "dw"]).expect("valid");
        assert_eq!(pairs, vec![("w".into(), "2".into()), ("dw".into(), "one".into())]);
    }

    #[test]
    fn unknown_repeated_or_empty_parameters_are_refused_with_their_name() {
        assert!(parse_query(Some("x=1"), &["w"]).expect_err("unknown").contains("\"x\""));
        assert!(parse_query(Some("w=1&w=2"), &["w"]).expect_err("repeated").contains("more than once"));
        assert!(parse_query(Some("w="), &["w"]).expect_err("empty").contains("no value"));
    }
}
