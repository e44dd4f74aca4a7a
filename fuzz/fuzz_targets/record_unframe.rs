//! Fuzzes `dynamo_storage::record::unframe`, the check every record read
//! from disk passes before anything decodes it (and `printable_key`, which
//! renders arbitrary key bytes into its error).
//!
//! Checks: neither panics; a record is accepted only with format byte 1 and
//! a matching CRC-32, and then `frame` of the returned payload is the input
//! record byte for byte; a refusal is always `Corruption` naming the
//! namespace and key it was given.
//!
//! Input: the first byte picks the mode. Even: the rest is the record as
//! stored. Odd: the rest is a format byte and a payload; the harness puts
//! the payload's correct CRC-32 between them, so the fuzzer also exercises
//! the accept path.

#![no_main]

use dynamo_storage::record::{HEADER_LEN, RECORD_FORMAT, frame, printable_key, unframe};
use dynamo_storage::{Namespace, StorageError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let _ = printable_key(rest);
    if mode & 1 == 0 {
        check(rest);
    } else if let Some((&format, payload)) = rest.split_first() {
        let mut record = vec![format];
        record.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
        record.extend_from_slice(payload);
        let accepted = check(&record);
        assert_eq!(accepted, format == RECORD_FORMAT, "format {format} with a right checksum");
    }
});

/// Unframes `record` and checks the outcome; returns whether it was accepted.
fn check(record: &[u8]) -> bool {
    match unframe(Namespace::Objects, b"k", record) {
        Ok(payload) => {
            assert_eq!(record[0], RECORD_FORMAT);
            assert_eq!(payload, record[HEADER_LEN..]);
            assert_eq!(frame(&payload), record, "frame(unframe(record)) must be the record");
            true
        }
        Err(StorageError::Corruption { namespace, key, detail }) => {
            assert_eq!(namespace, "objects");
            assert_eq!(key, "k");
            assert!(!detail.is_empty());
            false
        }
        Err(other) => panic!("unframe returned a non-corruption error: {other}"),
    }
}
