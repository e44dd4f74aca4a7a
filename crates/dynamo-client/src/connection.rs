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
/// Header of a value with a TTL: when it expires (unix ms).
pub const EXPIRES_HEADER: &str = "x-dynamo-expires";
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
    /// Whether it is a delete marker (or a value past its expiry).
    pub deleted: bool,
    /// When it expires (unix ms, `X-Dynamo-Expires`), if it has a TTL.
    pub expires_ms: Option<u64>,
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
    let sender = open(&addr).await?;
    Ok(Connection { sender, addr, timeout: DEFAULT_TIMEOUT })
}

/// Opens the TCP connection and runs the HTTP/1.1 handshake.
async fn open(addr: &str) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let stream = tokio::time::timeout(DEFAULT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ClientError::Timeout { addr: addr.to_string(), timeout: DEFAULT_TIMEOUT })?
        .map_err(|source| ClientError::Connect { addr: addr.to_string(), source })?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| ClientError::Http { addr: addr.to_string(), detail: error.to_string() })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
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
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout { addr: self.addr.clone(), timeout })?
    }

    /// Sends a request and reads its response. A server may close a
    /// kept-alive connection between two requests (hyper does after an
    /// error answered before the request body was read, and on idle
    /// timeout); a request that was provably never sent on the closed
    /// connection goes out once more on a new one. A request that may
    /// have reached the server is never resent.
    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<RawResponse, ClientError> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = open(&self.addr).await?;
        }
        let response = match self.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                Some(unsent) => {
                    self.sender = open(&self.addr).await?;
                    self.sender.ready().await.map_err(|error| self.http_error(error))?;
                    self.sender.send_request(unsent).await.map_err(|error| self.http_error(error))?
                }
                None => return Err(self.http_error(failed.into_error())),
            },
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        let body = response.into_body().collect().await.map_err(|error| self.http_error(error))?.to_bytes();
        Ok(RawResponse { status, headers, body })
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
                    expires_ms: self.expires(response.header(EXPIRES_HEADER))?,
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
        parts
            .into_iter()
            .map(|part| {
                Ok(Sibling {
                    content_type: part.header("content-type").map(str::to_string),
                    vtag: part.header("x-dynamo-vtag").map(str::to_string),
                    deleted: part.header("x-dynamo-deleted") == Some("true"),
                    expires_ms: self.expires(part.header(EXPIRES_HEADER))?,
                    value: part.body,
                })
            })
            .collect()
    }

    /// The value of an `X-Dynamo-Expires` header: unix ms, digits only.
    fn expires(&self, header: Option<&str>) -> Result<Option<u64>, ClientError> {
        header
            .map(|text| text.parse().map_err(|_| self.protocol(&format!("X-Dynamo-Expires {text:?} is not unix ms"))))
            .transpose()
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers each connection's first request with 200 and
    /// then closes it without saying so, as hyper does after answering an
    /// error before reading the body.
    async fn answer_once_per_connection(listener: TcpListener, connections: usize) {
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.expect("read");
                assert!(read > 0, "client closed before a whole request");
                request.extend_from_slice(&buffer[..read]);
            }
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.expect("write");
            stream.shutdown().await.expect("shutdown");
        }
    }

    #[test]
    fn a_connection_the_server_closed_between_requests_is_reopened() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr").to_string();
            let server = tokio::spawn(answer_once_per_connection(listener, 2));
            let mut connection = connect(&addr).await.expect("connect");
            for attempt in 0..2 {
                let response = connection.request(Method::GET, "/ping", &[], Bytes::new()).await;
                let response = response.unwrap_or_else(|error| panic!("request {attempt}: {error}"));
                assert_eq!((response.status, &response.body[..]), (200, &b"ok"[..]));
                // Let the connection task see the server's close.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            server.await.expect("server");
        });
    }
}
