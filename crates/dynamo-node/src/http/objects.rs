//! The object API of SPEC section 4 (modelled on Riak's HTTP API): get,
//! put and delete of a key, and a bucket's props. Each route parses what
//! the client sent (key, query, context header, body), makes one call to
//! the [`Coordinator`], and turns the outcome into a status and body:
//! `200` with the value, `300` with every sibling as `multipart/mixed`,
//! `204` after a write, `404`, or the error with what to do about it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dynamo_core::context::{decode_client_context, encode_client_context};
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{MAX_CONTENT_TYPE_LEN, Payload, VersionedObject};
use dynamo_core::props::DataType;
use dynamo_core::props::MAX_TTL_S;
use dynamo_core::version::VersionVector;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::buckets::PropsPatch;
use crate::coordinator::{Coordinator, RequestOptions};
use crate::http::responses::{
    ApiError, ApiRequest, HttpResponse, coordinator_error, empty, error, json_response, props_error, set_header,
};
use crate::http::{multipart, params};
use crate::metrics::Metrics;

/// Header carrying the opaque causal context.
pub const CONTEXT_HEADER: &str = "X-Dynamo-Context";
/// Largest bucket-props body accepted.
const MAX_PROPS_BODY: usize = 64 * 1024;

/// The object routes, over the coordinator.
pub(crate) struct ObjectApi {
    coordinator: Arc<Coordinator>,
    metrics: Arc<Metrics>,
    max_value_bytes: usize,
    /// Varies the `multipart/mixed` boundary from answer to answer.
    boundary_seed: AtomicU64,
}

impl ObjectApi {
    /// The routes over `coordinator`, refusing values over
    /// `max_value_bytes` and counting siblings and refusals in `metrics`.
    pub(crate) fn new(coordinator: Arc<Coordinator>, metrics: Arc<Metrics>, max_value_bytes: usize) -> Self {
        Self { coordinator, metrics, max_value_bytes, boundary_seed: AtomicU64::new(1) }
    }

    pub(crate) async fn get_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        let options = match request_options(&request, &["r", "n", "timeout_ms"]) {
            Ok(options) => options,
            Err(problem) => return problem.into_response(),
        };
        match self.coordinator.get(key, &options).await {
            Ok(object) => self.object_response(key, &object),
            Err(error) => coordinator_error(error),
        }
    }

    /// Refuses an opaque write to a data-type bucket: the value
    /// would sit beside the data type and make it unreadable.
    fn refuse_datatype_bucket(&self, key: &ObjectKey) -> Result<(), ApiError> {
        let props = self
            .coordinator
            .props(key.bucket())
            .map_err(|problem| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string()))?;
        match props.datatype {
            DataType::None => Ok(()),
            datatype => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "bucket {} holds {datatype} values; change them with POST /buckets/{}/datatypes/{{key}}",
                    key.bucket(),
                    key.bucket()
                ),
            )),
        }
    }

    fn object_response(&self, key: &ObjectKey, object: &VersionedObject) -> HttpResponse {
        if object.is_convergent() {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "the key holds a data type; read it with GET /buckets/{}/datatypes/{}",
                    key.bucket(),
                    String::from_utf8_lossy(key.key())
                ),
            );
        }
        let context = encode_client_context(object.context(), object.latest_timestamp());
        if object.is_empty() {
            return error(StatusCode::NOT_FOUND, "not found".to_string());
        }
        self.metrics.record_siblings(object.siblings().len());
        let now_ms = self.coordinator.wall_ms();
        if object.is_dead_at(now_ms) {
            let reason = if object.is_deleted() { "not found (deleted)" } else { "not found (expired)" };
            let mut response = error(StatusCode::NOT_FOUND, reason.to_string());
            set_header(&mut response, CONTEXT_HEADER, &context);
            return response;
        }
        if let [only] = object.siblings()
            && let Payload::Value { data, content_type, expires_ms } = &only.payload
        {
            let mut response = Response::new(Full::new(data.clone()));
            let content_type = content_type.as_deref().unwrap_or(multipart::DEFAULT_CONTENT_TYPE);
            set_header(&mut response, CONTENT_TYPE.as_str(), content_type);
            set_header(&mut response, CONTEXT_HEADER, &context);
            set_header(&mut response, multipart::VTAG_HEADER, &multipart::vtag(only));
            set_header(&mut response, multipart::TIMESTAMP_HEADER, &only.timestamp.wall_ms().to_string());
            if let Some(expires_ms) = expires_ms {
                set_header(&mut response, multipart::EXPIRES_HEADER, &expires_ms.to_string());
            }
            return response;
        }
        let seed = self.boundary_seed.fetch_add(1, Ordering::Relaxed);
        let (boundary, body) = multipart::encode(object.siblings(), now_ms, seed);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = StatusCode::MULTIPLE_CHOICES;
        set_header(&mut response, CONTENT_TYPE.as_str(), &format!("multipart/mixed; boundary={boundary}"));
        set_header(&mut response, CONTEXT_HEADER, &context);
        response
    }

    pub(crate) async fn put_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        if let Err(problem) = self.refuse_datatype_bucket(key) {
            return problem.into_response();
        }
        let (options, context) = match write_preamble(&request, PUT_PARAMS) {
            Ok(parts) => parts,
            Err(problem) => return problem.into_response(),
        };
        let ttl_s =
            request_ttl(&request, PUT_PARAMS).and_then(|ttl_s| write_ttl(&self.coordinator, key.bucket(), ttl_s));
        let expires_ms = match ttl_s {
            Ok(ttl_s) => ttl_s.map(|ttl_s| self.coordinator.wall_ms().saturating_add(ttl_s.saturating_mul(1000))),
            Err(problem) => return problem.into_response(),
        };
        let content_type = match request_content_type(&request) {
            Ok(content_type) => content_type,
            Err(problem) => return problem.into_response(),
        };
        let data = match self.read_value(request).await {
            Ok(data) => data,
            Err(problem) => return problem.into_response(),
        };
        let payload = Payload::Value { data, content_type, expires_ms };
        self.write(key, &context, payload, &options).await
    }

    pub(crate) async fn delete_object(&self, key: &ObjectKey, request: ApiRequest) -> HttpResponse {
        if let Err(problem) = self.refuse_datatype_bucket(key) {
            return problem.into_response();
        }
        match write_preamble(&request, DELETE_PARAMS) {
            Ok((options, context)) => self.write(key, &context, Payload::Tombstone, &options).await,
            Err(problem) => problem.into_response(),
        }
    }

    async fn write(
        &self,
        key: &ObjectKey,
        context: &VersionVector,
        payload: Payload,
        options: &RequestOptions,
    ) -> HttpResponse {
        match self.coordinator.put(key, context, payload, options).await {
            Ok((context, timestamp)) => {
                let mut response = empty(StatusCode::NO_CONTENT);
                set_header(&mut response, CONTEXT_HEADER, &encode_client_context(&context, timestamp));
                response
            }
            Err(error) => coordinator_error(error),
        }
    }

    /// Reads a value body, refusing it (413) as soon as it is known to be
    /// larger than the limit: from Content-Length before reading, or while
    /// streaming a chunked body.
    async fn read_value(&self, request: ApiRequest) -> Result<Bytes, ApiError> {
        let limit = self.max_value_bytes;
        let too_large = |size: String| {
            self.metrics.record_value_too_large();
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("value is {size} bytes; the limit is {limit} bytes (max_value_bytes); nothing was stored"),
            )
        };
        if let Some(length) = declared_length(&request)?
            && length > limit as u64
        {
            return Err(too_large(length.to_string()));
        }
        match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(too_large(format!("more than {limit}")))
            }
            Err(error) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, format!("could not read the request body: {error}")))
            }
        }
    }

    pub(crate) fn get_props(&self, bucket: &str) -> HttpResponse {
        if let Err(message) = dynamo_core::keys::validate_bucket(bucket) {
            return error(StatusCode::BAD_REQUEST, message.to_string());
        }
        match self.coordinator.props(bucket) {
            Ok(props) => json_response(StatusCode::OK, &json!(props)),
            Err(error) => props_error(error),
        }
    }

    pub(crate) async fn put_props(&self, bucket: &str, request: ApiRequest) -> HttpResponse {
        if let Err(message) = dynamo_core::keys::validate_bucket(bucket) {
            return error(StatusCode::BAD_REQUEST, message.to_string());
        }
        let body = match Limited::new(request.into_body(), MAX_PROPS_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return error(StatusCode::BAD_REQUEST, format!("props body unreadable or over {MAX_PROPS_BODY} bytes"));
            }
        };
        let patch: PropsPatch = match serde_json::from_slice(&body) {
            Ok(patch) => patch,
            Err(parse) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "props must be a JSON object with any of n, r, w, dw, conflict (siblings|lww), datatype (none|counter|set): {parse}"
                    ),
                );
            }
        };
        match self.coordinator.set_props(bucket, &patch).await {
            Ok(_) => empty(StatusCode::NO_CONTENT),
            Err(error) => coordinator_error(error),
        }
    }
}

pub(crate) fn object_key(bucket: &str, key: &str) -> Result<ObjectKey, ApiError> {
    let bucket =
        params::percent_decode(bucket).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("bucket {bucket:?} is not valid percent-encoded UTF-8"))
        })?;
    let key = params::percent_decode(key)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, format!("bad key: {message}")))?;
    ObjectKey::new(&bucket, &key).map_err(|problem| ApiError::new(StatusCode::BAD_REQUEST, problem.to_string()))
}

/// The quorum options (`r`, `w`, `dw`, `n`, `timeout_ms`) of a request
/// whose query may hold only `allowed` names; other allowed names are the
/// caller's to read.
pub(crate) fn request_options(request: &ApiRequest, allowed: &[&str]) -> Result<RequestOptions, ApiError> {
    let pairs = params::parse_query(request.uri().query(), allowed)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let mut options = RequestOptions::default();
    for (name, value) in pairs {
        let slot = match name.as_str() {
            "r" => &mut options.r,
            "w" => &mut options.w,
            "dw" => &mut options.dw,
            "n" => &mut options.n,
            "timeout_ms" => &mut options.timeout_ms,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(options)
}

/// Query parameters of a put.
const PUT_PARAMS: &[&str] = &["w", "dw", "n", "timeout_ms", "ttl_s"];
/// Query parameters of a delete.
const DELETE_PARAMS: &[&str] = &["w", "dw", "n", "timeout_ms"];

/// The write's `ttl_s`, if it gave one (`allowed` are the route's query
/// parameters): whole seconds, 1 to [`MAX_TTL_S`].
pub(crate) fn request_ttl(request: &ApiRequest, allowed: &[&str]) -> Result<Option<u64>, ApiError> {
    let pairs = params::parse_query(request.uri().query(), allowed)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    let Some((_, text)) = pairs.iter().find(|(name, _)| name == "ttl_s") else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(ttl_s) if (1..=MAX_TTL_S).contains(&ttl_s) => Ok(Some(ttl_s)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("ttl_s={text:?} must be whole seconds from 1 to {MAX_TTL_S}; leave it out for no expiry"),
        )),
    }
}

/// The TTL a write gets: its own `ttl_s` (`requested`), else the bucket's
/// default (props `ttl_s`), else none.
pub(crate) fn write_ttl(
    coordinator: &Coordinator,
    bucket: &str,
    requested: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    if requested.is_some() {
        return Ok(requested);
    }
    let props = coordinator
        .props(bucket)
        .map_err(|problem| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, problem.to_string()))?;
    Ok((props.ttl_s > 0).then_some(props.ttl_s))
}

fn write_preamble(request: &ApiRequest, allowed: &[&str]) -> Result<(RequestOptions, VersionVector), ApiError> {
    let mut options = request_options(request, allowed)?;
    let context = match request.headers().get(CONTEXT_HEADER) {
        None => VersionVector::new(),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{CONTEXT_HEADER} is not ASCII")))?;
            let (context, seen) = decode_client_context(text.trim()).map_err(|problem| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("malformed {CONTEXT_HEADER}: {problem}"))
            })?;
            options.context_timestamp = seen.0;
            context
        }
    };
    Ok((options, context))
}

fn request_content_type(request: &ApiRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(CONTENT_TYPE) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if text.len() <= MAX_CONTENT_TYPE_LEN => Ok(Some(text.to_string())),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Content-Type must be ASCII and at most {MAX_CONTENT_TYPE_LEN} bytes"),
        )),
    }
}

fn declared_length(request: &ApiRequest) -> Result<Option<u64>, ApiError> {
    match request.headers().get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Content-Length is not a number".to_string())),
    }
}
