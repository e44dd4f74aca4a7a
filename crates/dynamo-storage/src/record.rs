//! Framing of every stored record: `format (u8 = 1) | crc32 (u32 BE) of payload | payload`.
//! Checked on every read; a mismatch is reported as corruption with the key,
//! never returned as data.

use crate::engine::{Namespace, StorageError};

/// Current record format.
pub const RECORD_FORMAT: u8 = 1;
/// Bytes of framing before the payload.
pub const HEADER_LEN: usize = 5;

/// Frames a payload for storage.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    todo!()
}

/// Checks and strips the framing. `key` is only used in the error.
pub fn unframe(ns: Namespace, key: &[u8], record: &[u8]) -> Result<Vec<u8>, StorageError> {
    todo!()
}
