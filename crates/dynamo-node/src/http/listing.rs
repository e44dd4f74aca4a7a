//! The listing routes of SPEC section 4 (issue 14): `GET /buckets` and
//! `GET /buckets/{bucket}/keys?limit=N&continuation=T`. Each parses the
//! query, makes one coordinator call ([`Coordinator::list_buckets`],
//! [`Coordinator::list_keys`]) and answers JSON.
//!
//! **Keys are bytes, JSON wants text.** A key that is UTF-8 goes into
//! `keys` as a string; any other goes into `keys_b64`, standard base64 with
//! padding, so that no key is silently altered or dropped. Both arrays are
//! always present (`keys_b64` is almost always empty); together they are
//! the page. A page's keys are in listing order, which is partition order,
//! not name order.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dynamo_core::listing::{DEFAULT_PAGE_KEYS, MAX_PAGE_KEYS};
use hyper::StatusCode;
use serde_json::json;

use crate::coordinator::Coordinator;
use crate::http::params;
use crate::http::responses::{ApiError, ApiRequest, HttpResponse, coordinator_error, json_response};

/// The listing routes, over the coordinator.
pub(crate) struct ListingApi {
    coordinator: Arc<Coordinator>,
}

impl ListingApi {
    /// The routes over `coordinator`.
    pub(crate) fn new(coordinator: Arc<Coordinator>) -> Self {
        Self { coordinator }
    }

    /// `GET /buckets`: `{"buckets": [...], "complete": bool}`.
    pub(crate) async fn list_buckets(&self, request: &ApiRequest) -> HttpResponse {
        if let Err(message) = params::parse_query(request.uri().query(), &[]) {
            return ApiError::new(StatusCode::BAD_REQUEST, message).into_response();
        }
        match self.coordinator.list_buckets().await {
            Ok(listing) => {
                json_response(StatusCode::OK, &json!({"buckets": listing.buckets, "complete": listing.complete}))
            }
            Err(problem) => coordinator_error(problem),
        }
    }

    /// `GET /buckets/{bucket}/keys`: one page, `{"keys": [...], "keys_b64":
    /// [...], "continuation": "..." | null}`.
    pub(crate) async fn list_keys(&self, bucket: &str, request: &ApiRequest) -> HttpResponse {
        let (bucket, limit, continuation) = match parse_list_keys(bucket, request.uri().query()) {
            Ok(parsed) => parsed,
            Err(problem) => return problem.into_response(),
        };
        match self.coordinator.list_keys(&bucket, limit, continuation.as_deref()).await {
            Ok(page) => {
                let (mut text, mut binary) = (Vec::new(), Vec::new());
                for key in page.keys {
                    match String::from_utf8(key) {
                        Ok(key) => text.push(key),
                        Err(error) => binary.push(STANDARD.encode(error.into_bytes())),
                    }
                }
                json_response(
                    StatusCode::OK,
                    &json!({"keys": text, "keys_b64": binary, "continuation": page.continuation}),
                )
            }
            Err(problem) => coordinator_error(problem),
        }
    }
}

/// The bucket (percent-decoded), limit and continuation of a key listing.
pub(crate) fn parse_list_keys(bucket: &str, query: Option<&str>) -> Result<(String, usize, Option<String>), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let bucket = params::percent_decode(bucket)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad(format!("bucket {bucket:?} is not valid percent-encoded UTF-8")))?;
    let pairs = params::parse_query(query, &["limit", "continuation"]).map_err(bad)?;
    let mut limit = DEFAULT_PAGE_KEYS;
    let mut continuation = None;
    for (name, value) in pairs {
        if name == "limit" {
            limit = value
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE_KEYS).contains(limit))
                .ok_or_else(|| bad(format!("limit={value:?} is not a number from 1 to {MAX_PAGE_KEYS}; omit it for {DEFAULT_PAGE_KEYS} keys per page")))?;
        } else if value.is_empty() {
            return Err(bad(
                "continuation is empty; omit it to start the listing, or pass the continuation of the previous page"
                    .to_string(),
            ));
        } else {
            continuation = Some(value);
        }
    }
    Ok((bucket, limit, continuation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_outside_one_to_ten_thousand_is_refused_saying_the_range() {
        assert_eq!(parse_list_keys("b", None).map(|parsed| parsed.1).ok(), Some(DEFAULT_PAGE_KEYS));
        assert_eq!(parse_list_keys("b", Some("limit=10000")).map(|parsed| parsed.1).ok(), Some(10_000));
        for bad in ["limit=0", "limit=10001", "limit=-1", "limit=ten"] {
            let problem = parse_list_keys("b", Some(bad)).expect_err(bad);
            let (status, message) = problem.parts();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains("from 1 to 10000"), "{message}");
        }
        for bad in ["offset=3", "limit=", "continuation="] {
            assert_eq!(parse_list_keys("b", Some(bad)).expect_err(bad).parts().0, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn the_continuation_is_passed_on_as_sent() {
        let (bucket, _, continuation) = parse_list_keys("my%2Dbucket", Some("continuation=AbC-_")).expect("parsed");
        assert_eq!(bucket, "my-bucket");
        assert_eq!(continuation.as_deref(), Some("AbC-_"));
    }
}
