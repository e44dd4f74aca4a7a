//! Reading RESP commands from a connection's bytes: the multibulk form
//! every client library sends (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and the
//! inline form telnet and `redis-cli`'s inline mode send (`GET k\r\n`),
//! with Redis's quoting rules for the inline form.
//!
//! Why a parser of our own rather than a crate: the bytes come from the
//! network, and every length must be checked against its limit *before*
//! anything is allocated or waited for (a client announcing a 4 GiB bulk
//! string must be refused at the header, not after we buffered it). The
//! parser is pure: it looks at the bytes buffered so far and says "a whole
//! command, this long", "not yet", or "malformed, here is why". It never
//! copies an argument: it returns their ranges, so the connection slices
//! them out of the frame it already holds.
//!
//! Errors follow Redis's wording (`Protocol error: invalid bulk length`),
//! which clients and people recognise; after one the connection is closed,
//! as Redis does, since the stream's framing can no longer be trusted.

use std::ops::Range;

/// Bounds on what one command may announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest argument (a bulk string), in bytes.
    pub max_bulk_len: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest inline command line, in bytes (Redis: 64 KiB).
    pub max_inline_len: usize,
    /// Most bytes one multibulk command may take in all (what a connection
    /// may have to buffer before it can run the command).
    pub max_command_bytes: usize,
}

/// Longest header line (`*<count>` or `$<length>`) accepted: far more
/// digits than any count fits in.
const MAX_HEADER_LINE: usize = 32;

/// A command found at the start of the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the command takes, to drop from the buffer.
    pub consumed: usize,
    /// Each argument's bytes, as ranges of the buffer, for a multibulk
    /// command; empty for an empty command (`*0`, a blank inline line),
    /// which is skipped.
    pub args: Vec<Range<usize>>,
    /// An inline command's arguments, unquoted (they may differ from the
    /// buffer's bytes, so they are copied; inline lines are short).
    pub inline: Option<Vec<Vec<u8>>>,
}

/// A malformed command; the text follows Redis's `Protocol error: ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn protocol(what: impl Into<String>) -> ProtocolError {
    ProtocolError(what.into())
}

/// Looks for one whole command at the start of `buf`: `Ok(None)` when more
/// bytes are needed (and within the limits, so waiting for them is
/// bounded), `Ok(Some(frame))` when one is there, `Err` when the bytes can
/// never be a command within the limits.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// The line at `start` (without its `\r\n`) and where the next begins, or
/// `None` if its end has not arrived; `Err` if it is longer than `max`.
/// Exactly the lines of at most `max` bytes pass, however the bytes
/// arrive: a prefix waits as long as its line could still end within the
/// limit (a fuzzed line of `max + 1` bytes ending in a bare `\n` passed
/// whole but was refused in pieces).
fn line(buf: &[u8], start: usize, max: usize, too_long: &str) -> Result<Option<(Range<usize>, usize)>, ProtocolError> {
    let window = &buf[start..buf.len().min(start.saturating_add(max + 2))];
    match window.iter().position(|byte| *byte == b'\n') {
        Some(newline) => {
            let end = if newline > 0 && window[newline - 1] == b'\r' { newline - 1 } else { newline };
            if end > max {
                return Err(protocol(too_long));
            }
            Ok(Some((start..start + end, start + newline + 1)))
        }
        // `max` bytes and a `\r` may still be followed by the `\n`.
        None if window.len() > max + 1 || (window.len() == max + 1 && window[max] != b'\r') => Err(protocol(too_long)),
        None => Ok(None),
    }
}

/// A decimal integer as Redis writes them (optional `-`, digits only).
fn integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let Some((header, mut at)) = line(buf, 0, MAX_HEADER_LINE, "too big mbulk count string")? else {
        return Ok(None);
    };
    let count = integer(&buf[header.start + 1..header.end]).ok_or_else(|| protocol("invalid multibulk length"))?;
    if count <= 0 {
        return Ok(Some(Frame { consumed: at, args: Vec::new(), inline: None }));
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > limits.max_args {
        return Err(protocol("invalid multibulk length"));
    }
    let mut args = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let Some(&first) = buf.get(at) else { return Ok(None) };
        if first != b'$' {
            return Err(protocol(format!("expected '$', got '{}'", char::from(first).escape_default())));
        }
        let Some((header, data)) = line(buf, at, MAX_HEADER_LINE, "too big bulk count string")? else {
            return Ok(None);
        };
        let len = integer(&buf[header.start + 1..header.end])
            .and_then(|len| usize::try_from(len).ok())
            .filter(|len| *len <= limits.max_bulk_len)
            .ok_or_else(|| protocol("invalid bulk length"))?;
        let end = data + len;
        if end + 2 > limits.max_command_bytes {
            return Err(protocol("command too large"));
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(protocol("bulk string not followed by CRLF"));
        }
        args.push(data..end);
        at = end + 2;
    }
    Ok(Some(Frame { consumed: at, args, inline: None }))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    let Some((text, consumed)) = line(buf, 0, limits.max_inline_len, "too big inline request")? else {
        return Ok(None);
    };
    let args = split_args(&buf[text])?;
    if args.len() > limits.max_args {
        return Err(protocol("invalid multibulk length"));
    }
    Ok(Some(Frame { consumed, args: Vec::new(), inline: Some(args) }))
}

/// Splits an inline line as Redis's `sdssplitargs` does: words separated
/// by blanks; `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes; `'...'`
/// with `\'`; a closing quote must be followed by a blank or the end.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let unbalanced = || protocol("unbalanced quotes in request");
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while at < line.len() && line[at].is_ascii_whitespace() {
            at += 1;
        }
        if at == line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        match line[at] {
            b'"' => {
                at += 1;
                loop {
                    match line.get(at) {
                        None => return Err(unbalanced()),
                        Some(b'"') => break,
                        Some(b'\\')
                            if at + 3 < line.len()
                                && line[at + 1] == b'x'
                                && hex_pair(&line[at + 2..at + 4]).is_some() =>
                        {
                            word.push(hex_pair(&line[at + 2..at + 4]).unwrap_or_default());
                            at += 3;
                        }
                        Some(b'\\') if at + 1 < line.len() => {
                            at += 1;
                            word.push(match line[at] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                        }
                        Some(byte) => word.push(*byte),
                    }
                    at += 1;
                }
                at += 1;
                if line.get(at).is_some_and(|byte| !byte.is_ascii_whitespace()) {
                    return Err(unbalanced());
                }
            }
            b'\'' => {
                at += 1;
                loop {
                    match line.get(at) {
                        None => return Err(unbalanced()),
                        Some(b'\'') => break,
                        Some(b'\\') if line.get(at + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            at += 1;
                        }
                        Some(byte) => word.push(*byte),
                    }
                    at += 1;
                }
                at += 1;
                if line.get(at).is_some_and(|byte| !byte.is_ascii_whitespace()) {
                    return Err(unbalanced());
                }
            }
            _ => {
                while at < line.len() && !line[at].is_ascii_whitespace() {
                    word.push(line[at]);
                    at += 1;
                }
            }
        }
        args.push(word);
    }
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |byte: u8| char::from(byte).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: Limits = Limits { max_bulk_len: 1024, max_args: 16, max_inline_len: 64, max_command_bytes: 4096 };

    fn args(buf: &[u8]) -> Vec<Vec<u8>> {
        let frame = parse(buf, &LIMITS).expect("well formed").expect("complete");
        assert_eq!(frame.consumed, buf.len(), "the whole command is consumed");
        match frame.inline {
            Some(inline) => inline,
            None => frame.args.into_iter().map(|range| buf[range].to_vec()).collect(),
        }
    }

    fn refusal(buf: &[u8]) -> String {
        parse(buf, &LIMITS).expect_err("refused").to_string()
    }

    #[test]
    fn a_multibulk_command_is_found_whole_or_not_yet() {
        let command = b"*2\r\n$3\r\nGET\r\n$5\r\nk\r\nx!\r\n";
        assert_eq!(args(command), vec![b"GET".to_vec(), b"k\r\nx!".to_vec()], "a bulk string may hold CRLF");
        for cut in 0..command.len() {
            assert_eq!(parse(&command[..cut], &LIMITS), Ok(None), "cut at {cut}");
        }
        let mut pipelined = command.to_vec();
        pipelined.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let first = parse(&pipelined, &LIMITS).unwrap().unwrap();
        assert_eq!(first.consumed, command.len(), "pipelined commands are taken one at a time");
        assert_eq!(args(b"*1\r\n$0\r\n\r\n"), vec![Vec::<u8>::new()], "an empty argument");
        assert_eq!(args(b"*0\r\n"), Vec::<Vec<u8>>::new(), "an empty command is skipped");
    }

    #[test]
    fn inline_commands_split_and_unquote_as_redis_does() {
        assert_eq!(args(b"PING\r\n"), vec![b"PING".to_vec()]);
        assert_eq!(args(b"set  k \"a b\\n\\x41\"\n"), vec![b"set".to_vec(), b"k".to_vec(), b"a b\nA".to_vec()]);
        assert_eq!(args(b"echo 'it\\'s'\r\n"), vec![b"echo".to_vec(), b"it's".to_vec()]);
        assert_eq!(args(b"   \r\n"), Vec::<Vec<u8>>::new(), "a blank line is skipped");
        assert_eq!(parse(b"PING", &LIMITS), Ok(None), "no line end yet");
        assert_eq!(refusal(b"echo \"open\r\n"), "Protocol error: unbalanced quotes in request");
        assert_eq!(refusal(b"echo \"a\"b\r\n"), "Protocol error: unbalanced quotes in request");
    }

    #[test]
    fn bad_and_oversized_input_is_refused_before_it_is_buffered() {
        assert_eq!(refusal(b"*x\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(refusal(b"*17\r\n"), "Protocol error: invalid multibulk length", "more arguments than allowed");
        assert_eq!(refusal(b"*1\r\n+OK\r\n"), "Protocol error: expected '$', got '+'");
        assert_eq!(refusal(b"*1\r\n$-1\r\n"), "Protocol error: invalid bulk length");
        // Refused at the header: the 1025 bytes are never waited for.
        assert_eq!(refusal(b"*1\r\n$1025\r\n"), "Protocol error: invalid bulk length");
        assert_eq!(refusal(b"*1\r\n$2\r\nabXY"), "Protocol error: bulk string not followed by CRLF");
        let big = b"*5\r\n$1000\r\n".to_vec();
        let mut five = big.clone();
        for _ in 0..4 {
            five.extend_from_slice(&[b'x'; 1000]);
            five.extend_from_slice(b"\r\n$1000\r\n");
        }
        assert_eq!(refusal(&five), "Protocol error: command too large", "refused at the header past the total");
        assert_eq!(refusal(&[b'*'; 40]), "Protocol error: too big mbulk count string");
        assert_eq!(refusal(&[b'a'; 70]), "Protocol error: too big inline request");
        // The limit is exact, whichever way the line ends (found by fuzzing).
        let mut longest = vec![b'a'; 64];
        assert_eq!(parse(&longest, &LIMITS), Ok(None));
        longest.push(b'\r');
        assert_eq!(parse(&longest, &LIMITS), Ok(None), "the \\n may follow");
        longest.push(b'\n');
        assert!(parse(&longest, &LIMITS).unwrap().is_some());
        let mut over = vec![b'a'; 65];
        over.push(b'\n');
        assert_eq!(refusal(&over), "Protocol error: too big inline request");
        assert_eq!(refusal(&over[..65]), "Protocol error: too big inline request");
        assert_eq!(refusal(b"a b c d e f g h i j k l m n o p q\r\n"), "Protocol error: invalid multibulk length");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_frames_stay_inside_the_buffer(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(Some(frame)) = parse(&bytes, &LIMITS) {
                prop_assert!(frame.consumed <= bytes.len() && frame.consumed > 0);
                for range in frame.args {
                    prop_assert!(range.end <= frame.consumed);
                }
            }
        }

        #[test]
        fn any_arguments_encoded_as_multibulk_parse_back(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..16)) {
            let mut encoded = format!("*{}\r\n", parts.len()).into_bytes();
            for part in &parts {
                encoded.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
                encoded.extend_from_slice(part);
                encoded.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(args(&encoded), parts);
        }
    }
}
