//! A client for dynamo's HTTP API, used by the `dynamo` command line, the
//! load generator and the tests. It speaks plain HTTP/1.1 over one kept-alive
//! TCP connection per [`Connection`], understands siblings
//! (`300 Multiple Choices` with `multipart/mixed`) and carries the opaque
//! context between a read and the write that follows it.
//!
//! Map: [`connection`] (requests and typed results), [`multipart`] (parsing
//! sibling bodies), [`encode`] (percent-encoding of path segments).

pub mod connection;
pub mod encode;
pub mod multipart;

pub use connection::{ClientError, Connection, GetResult, RawResponse, Sibling, WriteOptions, connect};
