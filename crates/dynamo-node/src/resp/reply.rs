//! Writing RESP replies, in RESP2 (the default) or RESP3 (after `HELLO 3`).
//! One [`Reply`] type for both: a command builds the reply once, with its
//! meaning (a map, a set, a null, a boolean), and the encoder writes what
//! each protocol has for it — RESP2 flattens a map into an array and says
//! null with `$-1`, RESP3 has `%`, `~` and `_` for them.

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// RESP2, what every connection starts with.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`: the text starts with its code (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$n\r\n<bytes>`.
    Bulk(Vec<u8>),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*n` then each element.
    Array(Vec<Reply>),
    /// RESP3 `%n` (RESP2: an array of key, value, key, value ...).
    Map(Vec<(Reply, Reply)>),
    /// RESP3 `~n` (RESP2: an array).
    Set(Vec<Reply>),
    /// RESP3 `#t`/`#f` (RESP2: `:1`/`:0`).
    Boolean(bool),
    /// RESP3 `,<double>` (RESP2: a bulk string).
    Double(f64),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_string())
    }

    /// An error reply with Redis's generic code: `-ERR <message>`.
    pub fn err(message: impl std::fmt::Display) -> Reply {
        Reply::Error(format!("ERR {message}"))
    }

    /// A bulk string of `bytes`.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(bytes.into())
    }

    /// Appends the reply's bytes in `protocol`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(text) => line(out, b'+', &one_line(text)),
            Reply::Error(text) => line(out, b'-', &one_line(text)),
            Reply::Integer(value) => line(out, b':', &value.to_string()),
            Reply::Bulk(bytes) => bulk(out, bytes),
            Reply::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
            Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                line(out, b'*', &items.len().to_string());
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            Reply::Set(items) => {
                line(out, if resp3 { b'~' } else { b'*' }, &items.len().to_string());
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            Reply::Map(pairs) if resp3 => {
                line(out, b'%', &pairs.len().to_string());
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Reply::Map(pairs) => {
                line(out, b'*', &(pairs.len() * 2).to_string());
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Reply::Boolean(value) if resp3 => out.extend_from_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
            Reply::Boolean(value) => line(out, b':', if *value { "1" } else { "0" }),
            Reply::Double(value) if resp3 => line(out, b',', &double(*value)),
            Reply::Double(value) => bulk(out, double(*value).as_bytes()),
        }
    }
}

fn line(out: &mut Vec<u8>, marker: u8, text: &str) {
    out.push(marker);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    line(out, b'$', &bytes.len().to_string());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A simple string or error cannot hold a line break: one would end the
/// reply early and desynchronise the client.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A double as RESP3 spells it (`inf`, `-inf`, `nan`).
fn double(value: f64) -> String {
    match value {
        value if value.is_nan() => "nan".to_string(),
        value if value.is_infinite() && value > 0.0 => "inf".to_string(),
        value if value.is_infinite() => "-inf".to_string(),
        value => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: &Reply, protocol: Protocol) -> String {
        let mut out = Vec::new();
        reply.encode(protocol, &mut out);
        String::from_utf8(out).expect("these replies are text")
    }

    #[test]
    fn each_reply_encodes_as_its_protocol_spells_it() {
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))]);
        let cases = [
            (Reply::ok(), "+OK\r\n", "+OK\r\n"),
            (Reply::err("unknown command 'X'"), "-ERR unknown command 'X'\r\n", "-ERR unknown command 'X'\r\n"),
            (Reply::Integer(-3), ":-3\r\n", ":-3\r\n"),
            (Reply::bulk("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n"),
            (Reply::Null, "$-1\r\n", "_\r\n"),
            (Reply::NullArray, "*-1\r\n", "_\r\n"),
            (Reply::Array(vec![Reply::Integer(1), Reply::Null]), "*2\r\n:1\r\n$-1\r\n", "*2\r\n:1\r\n_\r\n"),
            (map, "*2\r\n$1\r\na\r\n:1\r\n", "%1\r\n$1\r\na\r\n:1\r\n"),
            (Reply::Set(vec![Reply::bulk("x")]), "*1\r\n$1\r\nx\r\n", "~1\r\n$1\r\nx\r\n"),
            (Reply::Boolean(true), ":1\r\n", "#t\r\n"),
            (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
        ];
        for (reply, resp2, resp3) in cases {
            assert_eq!(encoded(&reply, Protocol::Resp2), resp2, "{reply:?} in RESP2");
            assert_eq!(encoded(&reply, Protocol::Resp3), resp3, "{reply:?} in RESP3");
        }
    }

    #[test]
    fn a_line_break_in_an_error_cannot_end_the_reply_early() {
        assert_eq!(encoded(&Reply::err("a\r\nb"), Protocol::Resp2), "-ERR a  b\r\n");
    }
}
