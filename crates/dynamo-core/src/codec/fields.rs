//! The primitive fields that every hand codec of this crate is built from:
//! the object format ([`super`]), the node-to-node messages
//! ([`crate::messages`]) and the gossiped cluster state
//! ([`crate::membership`]). One copy, so that "a text field" or "a flag"
//! means the same bytes, the same bounds and the same refusals in every
//! format.
//!
//! Writing is infallible: a value outside its field's bound is written as
//! bytes that reading refuses (a clamped count or length), never as bytes
//! that read back as another value. Reading goes through [`Reader`], which
//! checks the bytes present before every field and names the field it was
//! reading when they run out, and refuses a length above its bound before
//! allocating anything.
//!
//! Errors are [`CodecError`]s; each format maps them into its own error
//! type (`?` through a `From` impl), so a truncated field of a message is
//! reported as a truncated message.
//!
//! The layouts, all integers big-endian:
//! - flag: one byte, 0 or 1 (so each value has one encoding);
//! - field: `length u8 | UTF-8`, 1 to 255 bytes (a longer text is written
//!   with length 0, which reading refuses, rather than cut into another);
//! - optional field: flag, then the field when present;
//! - `u32`-prefixed bytes: `length u32 | bytes`, the length clamped to
//!   `u32::MAX` (so anything larger fails to read).

use super::CodecError;

/// `count` as a `u16` count field. A count above `u16::MAX` is above every
/// bound a decoder checks, so clamping makes it fail to decode (or the bytes
/// after it do) instead of decoding as a smaller count.
pub(crate) fn clamped_u16(count: usize) -> u16 {
    u16::try_from(count).unwrap_or(u16::MAX)
}

/// `len` as a `u8` length field, clamped like [`clamped_u16`].
pub(crate) fn clamped_u8(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

/// `len` as a `u32` length field, clamped like [`clamped_u16`].
pub(crate) fn clamped_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The longest prefix of `text` of at most `max_len` bytes that ends on a
/// character boundary: how advisory text (a content type, a failure reason)
/// is cut to its field.
pub(crate) fn truncate_at_char(text: &str, max_len: usize) -> &str {
    let mut end = text.len().min(max_len);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The first 128 bits of a SHA-256 hash: the ids and digests that travel
/// in 16 bytes.
pub(crate) fn first_128_bits(hash: [u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// Appends a field: `length u8 | UTF-8`. Text that does not fit in 1 to 255
/// bytes gets length 0 (and no bytes), which [`Reader::field`] refuses.
pub(crate) fn encode_field(text: &str, out: &mut Vec<u8>) {
    let len = u8::try_from(text.len()).unwrap_or(0);
    out.push(len);
    if len > 0 {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Appends an optional field: `0`, or `1` then the field.
pub(crate) fn encode_optional_field(text: Option<&str>, out: &mut Vec<u8>) {
    match text {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            encode_field(text, out);
        }
    }
}

/// Appends `length u32 | bytes`, for an encoding embedded in another.
pub(crate) fn encode_u32_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&clamped_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes: every read checks the remaining length
/// first and names the field it was reading when input runs out.
pub(crate) struct Reader<'a> {
    /// The bytes not read yet.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let Some((taken, rest)) = self.rest.split_at_checked(len) else {
            return Err(CodecError::Truncated(what));
        };
        self.rest = rest;
        Ok(taken)
    }

    /// The next `N` bytes, as an array (ids, digests, hashes).
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N, what)?;
        bytes.try_into().map_err(|_| CodecError::Truncated(what))
    }

    /// A `u8`.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `u16`.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// A big-endian `u64`.
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A flag: only 0 and 1, so every encoding is the only one of its value.
    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid("a flag is neither 0 nor 1")),
        }
    }

    /// `len` bytes of UTF-8 text, refusing `len` above `max` before reading
    /// or allocating anything.
    pub(crate) fn text(&mut self, len: usize, max: usize, what: &'static str) -> Result<String, CodecError> {
        if len > max {
            return Err(CodecError::Invalid("text longer than its field allows"));
        }
        let bytes = self.take(len, what)?;
        let text = std::str::from_utf8(bytes).map_err(|_| CodecError::Invalid("text is not UTF-8"))?;
        Ok(text.to_string())
    }

    /// A field written by [`encode_field`]: `length u8 | UTF-8`, not empty.
    pub(crate) fn field(&mut self, what: &'static str) -> Result<String, CodecError> {
        let len = usize::from(self.u8(what)?);
        if len == 0 {
            return Err(CodecError::Invalid("empty text field"));
        }
        self.text(len, usize::from(u8::MAX), what)
    }

    /// An optional field written by [`encode_optional_field`].
    pub(crate) fn optional_field(&mut self, what: &'static str) -> Result<Option<String>, CodecError> {
        if self.flag(what)? { self.field(what).map(Some) } else { Ok(None) }
    }

    /// Bytes written by [`encode_u32_prefixed`]. The length is checked only
    /// against the bytes present: the embedded decoder bounds its own
    /// allocations, and nothing is allocated here.
    pub(crate) fn u32_prefixed(&mut self, length: &'static str, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.u32(length)?).unwrap_or(usize::MAX);
        self.take(len, what)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_field_is_its_length_byte_then_its_bytes_and_an_oversized_one_is_refused() {
        let mut out = Vec::new();
        encode_field("ab", &mut out);
        encode_optional_field(None, &mut out);
        encode_optional_field(Some("c"), &mut out);
        assert_eq!(out, [2, b'a', b'b', 0, 1, 1, b'c']);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.field("a"), Ok("ab".to_string()));
        assert_eq!(reader.optional_field("b"), Ok(None));
        assert_eq!(reader.optional_field("c"), Ok(Some("c".to_string())));
        assert_eq!(reader.remaining(), 0);

        let mut long = Vec::new();
        encode_field(&"x".repeat(256), &mut long);
        assert_eq!(long, [0], "written as length 0, not cut");
        assert_eq!(Reader::new(&long).field("long"), Err(CodecError::Invalid("empty text field")));
    }

    #[test]
    fn flags_other_than_zero_and_one_and_bad_text_are_refused() {
        assert_eq!(Reader::new(&[2]).flag("f"), Err(CodecError::Invalid("a flag is neither 0 nor 1")));
        assert_eq!(Reader::new(&[1, 0xff]).field("t"), Err(CodecError::Invalid("text is not UTF-8")));
        assert_eq!(Reader::new(&[]).text(5, 4, "t"), Err(CodecError::Invalid("text longer than its field allows")));
        assert_eq!(Reader::new(&[3, b'a']).field("t"), Err(CodecError::Truncated("t")));
    }

    #[test]
    fn u32_prefixed_bytes_are_checked_against_the_bytes_present() {
        let mut out = Vec::new();
        encode_u32_prefixed(b"xyz", &mut out);
        assert_eq!(out, [0, 0, 0, 3, b'x', b'y', b'z']);
        assert_eq!(Reader::new(&out).u32_prefixed("len", "blob"), Ok(&b"xyz"[..]));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).u32_prefixed("len", "blob"),
            Err(CodecError::Truncated("blob"))
        );
    }

    #[test]
    fn counts_and_lengths_clamp_instead_of_wrapping() {
        assert_eq!(clamped_u16(70_000), u16::MAX);
        assert_eq!(clamped_u8(300), u8::MAX);
        assert_eq!(clamped_u32(7), 7);
        assert_eq!(truncate_at_char("éé", 3), "é");
        assert_eq!(first_128_bits(std::array::from_fn(|i| i as u8)), std::array::from_fn(|i| i as u8));
    }

    proptest! {
        #[test]
        fn fields_roundtrip(text in "\\PC{1,60}") {
            prop_assume!(text.len() <= 255);
            let mut out = Vec::new();
            encode_field(&text, &mut out);
            let mut reader = Reader::new(&out);
            prop_assert_eq!(reader.field("t"), Ok(text));
            prop_assert_eq!(reader.remaining(), 0);
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut reader = Reader::new(&bytes);
            let _ = reader.optional_field("a");
            let _ = reader.u32_prefixed("b", "c");
            let _ = reader.array::<16>("d");
        }
    }
}
