//! One kept-alive HTTP/1.1 connection to a node, with typed object
//! operations. Every call has a timeout; errors say which node and what
//! the server answered.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::encode::path_segment;
use crate::multipart;

/// Header carrying the opaque causal context.
pub const CONTEXT_HEADER: &str = "x-dynamo-context";
/// Default per-call timeout: above the server's own default request
/// timeout, so the server's 503 arrives before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to a node.
#[derive(Debug, Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source} (is the node running?)")]
    Connect {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no answer from {addr} within {} ms", .timeout.as_millis())]
    Timeout {
        /// The address.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The HTTP exchange failed.
    #[error("HTTP error talking to {addr}: {detail}")]
    Http {
        /// The address.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("{addr} answered {status}: {body}")]
    Status {
        /// The address.
        addr: String,
        /// The status code.
        status: u16,
        /// The response body (JSON error for dynamo).
        body: String,
    },
    /// The server's answer did not follow the API.
    #[error("unexpected answer from {addr}: {detail}")]
    Protocol {
        /// The address.
        addr: String,
        /// What was wrong.
        detail: String,
    },
}

/// A raw response.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl RawResponse {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// One version returned by a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sibling {
    /// The value (empty for a tombstone).
    pub value: Bytes,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its identity (the dot that wrote it).
    pub vtag: Option<String>,
    /// Whether it is a delete marker.
    pub deleted: bool,
}

/// The result of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetResult {
    /// One value.
    Found {
        /// The value.
        sibling: Sibling,
        /// Context to pass to the next write.
        context: String,
    },
    /// Concurrent versions; write with `context` to resolve them.
    Siblings {
        /// The versions.
        siblings: Vec<Sibling>,
        /// Context covering all of them.
        context: String,
    },
    /// No value (never written, or deleted: then `context` is set).
    NotFound {
        /// Context of the tombstone, if any.
        context: Option<String>,
    },
}

impl GetResult {
    /// The context to write with, if any.
    pub fn context(&self) -> Option<&str> {
        match self {
            GetResult::Found { context, .. } | GetResult::Siblings { context, .. } => Some(context),
            GetResult::NotFound { context } => context.as_deref(),
        }
    }
}

/// Per-request settings of writes and reads.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Query parameters (`w`, `dw`, `n`, `r`, `timeout_ms`).
    pub query: Vec<(String, String)>,
    /// Context from an earlier read.
    pub context: Option<String>,
    /// Content type of the value.
    pub content_type: Option<String>,
}

/// Opens a connection to `addr` (`host:port` or `http://host:port`).
pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/').to_string();
    let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| ClientError::Timeout { addr: addr.clone(), timeout: DEFAULT_TIMEOUT })?
        .map_err(|source| ClientError::Connect { addr: addr.clone(), source })?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ClientError::Http { addr: addr.clone(), detail: error.to_string() })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection { sender, addr, timeout: DEFAULT_TIMEOUT })
}

/// A kept-alive connection to one node.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    addr: String,
    timeout: Duration,
}

impl Connection {
    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Changes the per-call timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::builder().method(method).uri(path_and_query).header(HOST, self.addr.as_str());
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body)).map_err(|error| self.http_error(error))?;
        let (timeout, addr) = (self.timeout, self.addr.clone());
        let http_error = |error: hyper::Error| ClientError::Http { addr: addr.clone(), detail: error.to_string() };
        let sender = &mut self.sender;
        let exchange = async {
            sender.ready().await.map_err(http_error)?;
            let response = sender.send_request(request).await.map_err(http_error)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned())
                })
                .collect();
            let body = response.into_body().collect().await.map_err(http_error)?.to_bytes();
            Ok(RawResponse { status, headers, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.clone(), timeout })?
    }

    /// `GET /ping`.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let response = self.request(Method::GET, "/ping", &[], Bytes::new()).await?;
        self.expect(&response, &[StatusCode::OK])
    }

    /// Reads a key.
    pub async fn get(
        &mut self,
        bucket: &str,
        key: &[u8],
        query: &[(String, String)],
    ) -> Result<GetResult, ClientError> {
        let path = object_path(bucket, key, query);
        let response = self.request(Method::GET, &path, &[], Bytes::new()).await?;
        let context = response.header(CONTEXT_HEADER).map(str::to_string);
        match response.status {
            200 => Ok(GetResult::Found {
                sibling: Sibling {
                    value: response.body.clone(),
                    content_type: response.header("content-type").map(str::to_string),
                    vtag: response.header("x-dynamo-vtag").map(str::to_string),
                    deleted: false,
                },
                context: context.ok_or_else(|| self.protocol("200 without a context"))?,
            }),
            300 => Ok(GetResult::Siblings {
                siblings: self.parse_siblings(&response)?,
                context: context.ok_or_else(|| self.protocol("300 without a context"))?,
            }),
            404 => Ok(GetResult::NotFound { context }),
            _ => Err(self.status_error(&response)),
        }
    }

    /// Writes a value; returns the new context the server sent back.
    pub async fn put(
        &mut self,
        bucket: &str,
        key: &[u8],
        value: Bytes,
        options: &WriteOptions,
    ) -> Result<Option<String>, ClientError> {
        self.write(Method::PUT, bucket, key, value, options).await
    }

    /// Deletes a key (writes a tombstone).
    pub async fn delete(
        &mut self,
        bucket: &str,
        key: &[u8],
        options: &WriteOptions,
    ) -> Result<Option<String>, ClientError> {
        self.write(Method::DELETE, bucket, key, Bytes::new(), options).await
    }

    async fn write(
        &mut self,
        method: Method,
        bucket: &str,
        key: &[u8],
        value: Bytes,
        options: &WriteOptions,
    ) -> Result<Option<String>, ClientError> {
        let path = object_path(bucket, key, &options.query);
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(context) = &options.context {
            headers.push((CONTEXT_HEADER, context));
        }
        if let Some(content_type) = &options.content_type {
            headers.push((CONTENT_TYPE.as_str(), content_type));
        }
        let response = self.request(method, &path, &headers, value).await?;
        self.expect(&response, &[StatusCode::NO_CONTENT, StatusCode::OK])?;
        Ok(response.header(CONTEXT_HEADER).map(str::to_string))
    }

    fn parse_siblings(&self, response: &RawResponse) -> Result<Vec<Sibling>, ClientError> {
        let content_type = response.header("content-type").unwrap_or_default();
        let boundary = multipart::boundary(content_type)
            .ok_or_else(|| self.protocol(&format!("300 with content type {content_type:?}, not multipart/mixed")))?;
        let parts = multipart::parse(&response.body, &boundary).map_err(|detail| self.protocol(&detail))?;
        Ok(parts
            .into_iter()
            .map(|part| Sibling {
                content_type: part.header("content-type").map(str::to_string),
                vtag: part.header("x-dynamo-vtag").map(str::to_string),
                deleted: part.header("x-dynamo-deleted") == Some("true"),
                value: part.body,
            })
            .collect())
    }

    fn expect(&self, response: &RawResponse, allowed: &[StatusCode]) -> Result<(), ClientError> {
        if allowed.iter().any(|status| status.as_u16() == response.status) {
            Ok(())
        } else {
            Err(self.status_error(response))
        }
    }

    fn status_error(&self, response: &RawResponse) -> ClientError {
        ClientError::Status {
            addr: self.addr.clone(),
            status: response.status,
            body: String::from_utf8_lossy(&response.body).into_owned(),
        }
    }

    fn protocol(&self, detail: &str) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), detail: detail.to_string() }
    }

    fn http_error(&self, error: impl std::fmt::Display) -> ClientError {
        ClientError::Http { addr: self.addr.clone(), detail: error.to_string() }
    }
}

/// `/buckets/{bucket}/keys/{key}?query`, percent-encoded.
pub fn object_path(bucket: &str, key: &[u8], query: &[(String, String)]) -> String {
    let mut path = format!("/buckets/{}/keys/{}", path_segment(bucket.as_bytes()), path_segment(key));
    for (index, (name, value)) in query.iter().enumerate() {
        path.push(if index == 0 { '?' } else { '&' });
        path.push_str(&path_segment(name.as_bytes()));
        path.push('=');
        path.push_str(&path_segment(value.as_bytes()));
    }
    path
}
