//! Fuzzes `dynamo_node::resp::frame`: the reader of Redis-protocol commands
//! from a connection's bytes (multibulk and inline).
//!
//! Checks: `parse` never panics; a frame consumes at least one byte and no
//! more than the buffer holds; its argument ranges lie inside what it
//! consumed and respect the limits; parsing a prefix of the buffer either
//! waits, fails the same way, or finds the same frame (so bytes arriving in
//! pieces never change what a command means); and a multibulk frame's
//! arguments, re-encoded, parse back to themselves.
//!
//! Input: the bytes a client sent, consumed frame after frame until the
//! buffer ends or a protocol error.

#![no_main]

use dynamo_node::resp::frame::{Frame, Limits, parse};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_bulk_len: 512, max_args: 64, max_inline_len: 256, max_command_bytes: 4096 };

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    while at < data.len() {
        let buffer = &data[at..];
        let Ok(Some(frame)) = parse(buffer, &LIMITS) else {
            break;
        };
        check(buffer, &frame);
        at += frame.consumed;
    }
});

fn check(buffer: &[u8], frame: &Frame) {
    assert!(frame.consumed > 0 && frame.consumed <= buffer.len(), "consumed {} of {}", frame.consumed, buffer.len());
    assert!(frame.args.len() <= LIMITS.max_args);
    for range in &frame.args {
        assert!(range.start <= range.end && range.end <= frame.consumed, "argument {range:?} outside the frame");
        assert!(range.len() <= LIMITS.max_bulk_len);
    }
    if let Some(inline) = &frame.inline {
        assert!(inline.len() <= LIMITS.max_args);
        assert!(frame.consumed <= LIMITS.max_inline_len + 2);
    }
    // The same command whatever way its bytes were cut.
    for cut in [frame.consumed / 2, frame.consumed.saturating_sub(1)] {
        match parse(&buffer[..cut], &LIMITS) {
            Ok(None) => {}
            Ok(Some(early)) => panic!("a prefix of {cut} bytes already made a frame: {early:?} vs {frame:?}"),
            Err(error) => panic!("a prefix of {cut} bytes was refused ({error}) but the whole was not"),
        }
    }
    if frame.inline.is_none() && !frame.args.is_empty() {
        let mut encoded = format!("*{}\r\n", frame.args.len()).into_bytes();
        for range in &frame.args {
            encoded.extend_from_slice(format!("${}\r\n", range.len()).as_bytes());
            encoded.extend_from_slice(&buffer[range.clone()]);
            encoded.extend_from_slice(b"\r\n");
        }
        let again = parse(&encoded, &LIMITS).expect("re-encoded parses").expect("complete");
        let args: Vec<&[u8]> = again.args.iter().map(|range| &encoded[range.clone()]).collect();
        let original: Vec<&[u8]> = frame.args.iter().map(|range| &buffer[range.clone()]).collect();
        assert_eq!(args, original);
    }
}
