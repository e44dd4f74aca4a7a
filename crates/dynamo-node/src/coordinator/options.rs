//! What a request may set for itself (`r`, `w`, `dw`, `n`, `timeout_ms`,
//! as the client sent them), and the settings it runs with once resolved
//! against its bucket's props.

use std::time::Duration;

use dynamo_core::hlc::Hlc;
use dynamo_core::messages::ForwardOptions;
use dynamo_core::props::BucketProps;

use crate::config::MAX_REQUEST_TIMEOUT_MS;

use super::errors::CoordinatorError;

/// Per-request overrides, as the client sent them (unparsed text).
#[derive(Clone, Debug, Default)]
pub struct RequestOptions {
    /// `r`: a number or one|quorum|all|default.
    pub r: Option<String>,
    /// `w`.
    pub w: Option<String>,
    /// `dw`.
    pub dw: Option<String>,
    /// `n`: a number not above the bucket's n.
    pub n: Option<String>,
    /// `timeout_ms`.
    pub timeout_ms: Option<String>,
    /// The greatest version timestamp the client's read saw (carried in its
    /// context; 0 without one). Writes are stamped above it.
    pub context_timestamp: u64,
    /// The exact timestamp for the new version, when a forwarding node
    /// chose it (see [`ForwardOptions::stamp`]).
    pub stamp: Option<Hlc>,
}

impl From<ForwardOptions> for RequestOptions {
    /// The options a forwarding node relayed (forwarded requests are
    /// writes, so there is no `r`).
    fn from(options: ForwardOptions) -> Self {
        RequestOptions {
            r: None,
            w: options.w,
            dw: options.dw,
            n: options.n,
            timeout_ms: options.timeout_ms,
            context_timestamp: options.seen_timestamp,
            stamp: (options.stamp != 0).then_some(Hlc(options.stamp)),
        }
    }
}

/// Resolved settings of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    /// Bucket props with the request's overrides applied.
    pub props: BucketProps,
    /// Deadline for the request.
    pub timeout: Duration,
}

pub(super) fn parse_timeout(text: &str) -> Result<Duration, CoordinatorError> {
    match text.parse::<u64>() {
        Ok(ms) if (1..=MAX_REQUEST_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(CoordinatorError::BadRequest(format!(
            "timeout_ms={text:?} must be a whole number of milliseconds between 1 and {MAX_REQUEST_TIMEOUT_MS}"
        ))),
    }
}
