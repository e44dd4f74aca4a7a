//! The client context (`X-Dynamo-Context`): a version vector made opaque.
//! Clients must hand it back unchanged, and a context is untrusted input, so
//! the encoding is versioned and checksummed and the decoder checks every
//! bound: a malformed context is rejected, never half-used.
//!
//! Layout before base64 (URL-safe alphabet, no padding):
//! `format (u8 = 1) | entry count (u16 BE) | entries (actor u64 BE, counter u64 BE)* | crc32 (u32 BE) of everything before`.

use thiserror::Error;

use crate::version::VersionVector;

/// Most actors a context may name. Bounds header size and decode work.
pub const MAX_CONTEXT_ENTRIES: usize = 1024;
/// Longest accepted header value, in characters.
pub const MAX_CONTEXT_LEN: usize = 32 * 1024;

/// Why a context was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContextError {
    /// Longer than [`MAX_CONTEXT_LEN`].
    #[error("context is {0} characters; the limit is {MAX_CONTEXT_LEN}")]
    TooLong(usize),
    /// Not valid base64.
    #[error("context is not valid base64; pass the X-Dynamo-Context value from a read unchanged")]
    NotBase64,
    /// Unknown format marker.
    #[error("context has unknown format version {0}; it was not issued by this version of dynamo")]
    UnknownFormat(u8),
    /// Shorter or longer than its entry count says.
    #[error("context is truncated or has trailing bytes")]
    BadLength,
    /// Checksum mismatch.
    #[error("context checksum does not match; it was modified or truncated")]
    BadChecksum,
    /// Too many entries, a zero counter, or actors out of order.
    #[error("context content is invalid: {0}")]
    Invalid(&'static str),
}

/// Encodes a context for a client.
pub fn encode_context(clock: &VersionVector) -> String {
    todo!()
}

/// Decodes and fully validates a context from a client.
pub fn decode_context(text: &str) -> Result<VersionVector, ContextError> {
    todo!()
}
