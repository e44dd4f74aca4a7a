//! Per-bucket replication settings (paper section 4.5: N, R, W; plus DW, how
//! many of the W acknowledgements must be on disk) and the conflict mode.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest replication factor a bucket may ask for.
pub const MAX_N: u8 = 16;
/// Longest TTL, per write or per bucket: ten years, far below where unix
/// milliseconds overflow.
pub const MAX_TTL_S: u64 = 10 * 365 * 24 * 3600;

/// How concurrent writes to one key are reconciled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConflictMode {
    /// Keep concurrent versions as siblings; the client merges (default).
    #[default]
    Siblings,
    /// Keep only the version with the highest hybrid logical clock timestamp.
    Lww,
}

/// What a bucket stores: opaque values (the default) or one of the
/// convergent data types of [`crate::crdt`] (SPEC section 4: fixed once
/// the bucket holds data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Opaque values with siblings or last-write-wins (default).
    #[default]
    None,
    /// PN-counters.
    Counter,
    /// Add-wins sets.
    Set,
    /// Maps of named fields.
    Map,
}

impl DataType {
    /// The name used in the API (`none`, `counter`, `set`, `map`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::None => "none",
            DataType::Counter => "counter",
            DataType::Set => "set",
            DataType::Map => "map",
        }
    }

    /// The byte of this datatype in messages.
    pub fn byte(self) -> u8 {
        match self {
            DataType::None => 0,
            DataType::Counter => 1,
            DataType::Set => 2,
            DataType::Map => 3,
        }
    }

    /// The datatype of a message byte.
    pub fn from_byte(byte: u8) -> Option<DataType> {
        [DataType::None, DataType::Counter, DataType::Set, DataType::Map].into_iter().find(|kind| kind.byte() == byte)
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Replication settings of a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketProps {
    /// Replicas per key.
    pub n: u8,
    /// Replies a read waits for.
    pub r: u8,
    /// Acknowledgements a write waits for.
    pub w: u8,
    /// How many of the W acknowledgements must be durable (fsynced).
    pub dw: u8,
    /// Conflict mode.
    pub conflict: ConflictMode,
    /// What the bucket stores.
    #[serde(default)]
    pub datatype: DataType,
    /// The expiry, in seconds, of a write that gives none (issue 14): 0
    /// for none. Opaque values and maps only (a counter or set cannot
    /// expire).
    #[serde(default)]
    pub ttl_s: u64,
}

impl Default for BucketProps {
    fn default() -> Self {
        Self { n: 3, r: 2, w: 2, dw: 0, conflict: ConflictMode::Siblings, datatype: DataType::None, ttl_s: 0 }
    }
}

/// Why bucket props or a per-request quorum were refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PropsError {
    /// n outside 1..=MAX_N.
    #[error("n={0} is out of range; n must be between 1 and {MAX_N}")]
    BadN(u8),
    /// A quorum value larger than n or zero where at least one is needed.
    #[error("{name}={value} is out of range; it must be between {min} and n={n}")]
    QuorumOutOfRange {
        /// Which parameter (`r`, `w`, `dw`).
        name: &'static str,
        /// The value given.
        value: u8,
        /// The smallest allowed value.
        min: u8,
        /// The bucket's n.
        n: u8,
    },
    /// dw larger than w.
    #[error("dw={dw} is larger than w={w}; durable acknowledgements are a subset of w")]
    DwAboveW {
        /// dw given.
        dw: u8,
        /// w in effect.
        w: u8,
    },
    /// A default TTL beyond [`MAX_TTL_S`].
    #[error("ttl_s={0} is out of range; it must be at most {MAX_TTL_S} (ten years), or 0 for no expiry")]
    TtlOutOfRange(u64),
    /// A default TTL on a bucket whose values cannot expire.
    #[error("ttl_s applies to buckets of opaque values and maps; a {0} cannot expire (keep it in a map field)")]
    TtlOnDatatype(DataType),
    /// A quorum value that is not a number or one of one|quorum|all.
    #[error("{name}={value:?} is not a number or one of one, quorum, all, default")]
    Unparsable {
        /// Which parameter.
        name: &'static str,
        /// The text given.
        value: String,
    },
}

impl BucketProps {
    /// Checks 1 <= n <= MAX_N, 1 <= r <= n, 1 <= w <= n, 0 <= dw <= w,
    /// and a default TTL within [`MAX_TTL_S`] on a bucket that can expire.
    pub fn validate(&self) -> Result<(), PropsError> {
        let n = self.n;
        if !(1..=MAX_N).contains(&n) {
            return Err(PropsError::BadN(n));
        }
        check_quorum("r", self.r, 1, n)?;
        check_quorum("w", self.w, 1, n)?;
        // dw counts durable acknowledgements among the w ones, so it is
        // bounded by w (and thereby by n).
        if self.dw > self.w {
            return Err(PropsError::DwAboveW { dw: self.dw, w: self.w });
        }
        if self.ttl_s > MAX_TTL_S {
            return Err(PropsError::TtlOutOfRange(self.ttl_s));
        }
        if self.ttl_s > 0 && matches!(self.datatype, DataType::Counter | DataType::Set) {
            return Err(PropsError::TtlOnDatatype(self.datatype));
        }
        Ok(())
    }
}

/// Checks `min <= value <= n` for one quorum parameter.
fn check_quorum(name: &'static str, value: u8, min: u8, n: u8) -> Result<(), PropsError> {
    if (min..=n).contains(&value) { Ok(()) } else { Err(PropsError::QuorumOutOfRange { name, value, min, n }) }
}

/// Parses a per-request quorum value: a number, or `one`, `quorum`
/// (n/2 + 1), `all` (n), `default` (`default_value`). Range checks are left to
/// [`BucketProps::validate`] on the resulting props.
pub fn parse_quorum(name: &'static str, text: &str, n: u8, default_value: u8) -> Result<u8, PropsError> {
    let named = |word: &str| text.eq_ignore_ascii_case(word);
    if named("one") {
        Ok(1)
    } else if named("quorum") {
        Ok(n / 2 + 1)
    } else if named("all") {
        Ok(n)
    } else if named("default") {
        Ok(default_value)
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: `parse` alone would also take a leading '+'.
        text.parse().map_err(|_| unparsable(name, text))
    } else {
        Err(unparsable(name, text))
    }
}

/// Longest part of a bad quorum value echoed back in the error message.
const MAX_ECHOED_CHARS: usize = 64;

fn unparsable(name: &'static str, text: &str) -> PropsError {
    PropsError::Unparsable { name, value: text.chars().take(MAX_ECHOED_CHARS).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(n: u8, r: u8, w: u8, dw: u8) -> BucketProps {
        BucketProps { n, r, w, dw, ..BucketProps::default() }
    }

    #[test]
    fn default_props_are_valid_and_overlap() {
        let default = BucketProps::default();
        assert_eq!(default.validate(), Ok(()));
        assert!(default.r + default.w > default.n);
    }

    #[test]
    fn edge_quorums_are_accepted() {
        assert_eq!(props(1, 1, 1, 1).validate(), Ok(()));
        assert_eq!(props(3, 1, 3, 0).validate(), Ok(()));
        assert_eq!(props(MAX_N, MAX_N, MAX_N, MAX_N).validate(), Ok(()));
    }

    #[test]
    fn n_outside_one_to_sixteen_is_refused() {
        assert_eq!(props(0, 1, 1, 0).validate(), Err(PropsError::BadN(0)));
        let error = props(17, 1, 1, 0).validate().unwrap_err();
        assert_eq!(error.to_string(), "n=17 is out of range; n must be between 1 and 16");
    }

    #[test]
    fn zero_or_above_n_read_and_write_quorums_are_refused() {
        assert_eq!(
            props(3, 0, 2, 0).validate(),
            Err(PropsError::QuorumOutOfRange { name: "r", value: 0, min: 1, n: 3 })
        );
        let error = props(3, 2, 4, 0).validate().unwrap_err();
        assert_eq!(error.to_string(), "w=4 is out of range; it must be between 1 and n=3");
    }

    #[test]
    fn dw_above_w_is_refused() {
        let error = props(3, 2, 2, 3).validate().unwrap_err();
        assert_eq!(error, PropsError::DwAboveW { dw: 3, w: 2 });
        assert_eq!(error.to_string(), "dw=3 is larger than w=2; durable acknowledgements are a subset of w");
    }

    #[test]
    fn quorum_names_resolve_against_n() {
        assert_eq!(parse_quorum("r", "one", 5, 3), Ok(1));
        assert_eq!(parse_quorum("r", "quorum", 5, 3), Ok(3));
        assert_eq!(parse_quorum("r", "quorum", 4, 3), Ok(3));
        assert_eq!(parse_quorum("r", "all", 5, 3), Ok(5));
        assert_eq!(parse_quorum("r", "default", 5, 3), Ok(3));
        assert_eq!(parse_quorum("w", "ALL", 5, 3), Ok(5));
    }

    #[test]
    fn quorum_numbers_parse_and_range_is_left_to_validate() {
        assert_eq!(parse_quorum("w", "0", 3, 2), Ok(0));
        assert_eq!(parse_quorum("w", "255", 3, 2), Ok(255));
        assert_eq!(
            props(3, 2, 0, 0).validate().map_err(|e| e.to_string()).unwrap_err(),
            "w=0 is out of range; it must be between 1 and n=3"
        );
    }

    #[test]
    fn garbage_quorum_is_refused_quoting_it() {
        for bad in ["", "256", "+1", "-1", " 2", "two", "1.5"] {
            let error = parse_quorum("r", bad, 3, 2).unwrap_err();
            assert_eq!(error, PropsError::Unparsable { name: "r", value: bad.to_string() });
        }
        let error = parse_quorum("dw", "most", 3, 2).unwrap_err();
        assert_eq!(error.to_string(), r#"dw="most" is not a number or one of one, quorum, all, default"#);
        let long = "x".repeat(10_000);
        let PropsError::Unparsable { value, .. } = parse_quorum("r", &long, 3, 2).unwrap_err() else {
            panic!("expected Unparsable");
        };
        assert!(value.len() <= 64, "errors do not echo unbounded input");
    }

    #[test]
    fn props_json_uses_lowercase_conflict_names_and_refuses_unknown_fields() {
        let lww = BucketProps { conflict: ConflictMode::Lww, ..BucketProps::default() };
        let json = serde_json::to_string(&lww).unwrap();
        assert_eq!(json, r#"{"n":3,"r":2,"w":2,"dw":0,"conflict":"lww","datatype":"none","ttl_s":0}"#);
        assert_eq!(serde_json::from_str::<BucketProps>(&json).unwrap(), lww);
        let without_datatype = r#"{"n":3,"r":2,"w":2,"dw":0,"conflict":"lww"}"#; // nor ttl_s
        assert_eq!(serde_json::from_str::<BucketProps>(without_datatype).unwrap(), lww, "older props read as none");
        let counters: BucketProps =
            serde_json::from_str(r#"{"n":3,"r":2,"w":2,"dw":0,"conflict":"siblings","datatype":"counter"}"#).unwrap();
        assert_eq!(counters.datatype, DataType::Counter);
        assert_eq!(DataType::from_byte(DataType::Set.byte()), Some(DataType::Set));
        assert_eq!(DataType::from_byte(9), None);
        let unknown = r#"{"n":3,"r":2,"w":2,"dw":0,"conflict":"siblings","x":1}"#;
        assert!(serde_json::from_str::<BucketProps>(unknown).is_err());
    }
}
