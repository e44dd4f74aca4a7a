//! What every route of the HTTP front end answers with: the response and
//! request types, JSON error bodies that say what went wrong and what to
//! do, and the status code of each error of the layers below.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::buckets::PropsStoreError;
use crate::coordinator::CoordinatorError;
use crate::http::body::TrackedBody;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// The request type of every handler.
pub(crate) type ApiRequest = Request<TrackedBody>;

/// A client-facing failure: a status and a message saying what is wrong,
/// turned into a JSON body at the edge.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// A failure answered with `status` and `{"error": message}`.
    pub(crate) fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    /// The status and the message.
    pub(crate) fn parts(&self) -> (StatusCode, &str) {
        (self.status, &self.message)
    }

    /// The answer to the client.
    pub(crate) fn into_response(self) -> HttpResponse {
        error(self.status, self.message)
    }
}

pub(crate) fn props_error(problem: PropsStoreError) -> HttpResponse {
    match problem {
        PropsStoreError::Invalid(message) => error(StatusCode::BAD_REQUEST, message),
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

pub(crate) fn error(status: StatusCode, message: String) -> HttpResponse {
    json_response(status, &json!({ "error": message }))
}

pub(crate) fn method_not_allowed(allowed: &str) -> HttpResponse {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allowed}"));
    set_header(&mut response, "Allow", allowed);
    response
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    set_header(&mut response, CONTENT_TYPE.as_str(), "application/json");
    response
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    set_header(&mut response, CONTENT_TYPE.as_str(), "text/plain");
    response
}

pub(crate) fn empty(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub(crate) fn set_header(response: &mut HttpResponse, name: &str, value: &str) {
    // Every value set here is ASCII built by this module (contexts are
    // base64, content types were checked on the way in).
    if let (Ok(name), Ok(value)) =
        (hyper::header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
    {
        response.headers_mut().insert(name, value);
    }
}

/// A coordinator error as the client reads it: its status and JSON body
/// ([`CoordinatorError::status_and_body`]).
pub(crate) fn coordinator_error(problem: CoordinatorError) -> HttpResponse {
    let (status, body) = problem.status_and_body();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut response, CONTENT_TYPE.as_str(), "application/json");
    response
}
