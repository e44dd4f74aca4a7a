//! A client for dynamo's HTTP API, used by the `dynamo` command line, the
//! load generator and the tests. It speaks plain HTTP/1.1 over one kept-alive
//! TCP connection per [`Connection`], understands siblings
//! (`300 Multiple Choices` with `multipart/mixed`) and carries the opaque
//! context between a read and the write that follows it.
//!
//! Map: [`connection`] (requests and typed results), [`multipart`] (parsing
//! sibling bodies), [`encode`] (percent-encoding of path segments), [`ring`]
//! (the ring a node's `GET /ring` describes, and which nodes replicate a
//! key: the pure model of the partition-aware client, paper section 6.4).

pub mod client;
pub mod connection;
pub mod encode;
pub mod multipart;
pub mod ring;

pub use client::{Client, ClientBuilder, Error};
pub use connection::{ClientError, Connection, GetResult, RawResponse, Sibling, WriteOptions, connect};
pub use ring::{RingView, RingViewError};
