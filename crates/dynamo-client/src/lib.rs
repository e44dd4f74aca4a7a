//! A client for dynamo's HTTP API. Two layers:
//!
//! - [`Client`]: the partition-aware client of the paper's section 6.4. It
//!   learns the ring from a seed node, sends writes straight to a replica
//!   of the key, coordinates reads itself (R replicas, dynamo-core's merge,
//!   read repair) and routes around unreachable nodes.
//! - [`Connection`]: one kept-alive HTTP/1.1 connection to one node, used
//!   by the `dynamo` command line, the load generator and the tests.
//!
//! Both understand siblings (`300 Multiple Choices` with
//! `multipart/mixed`) and carry the opaque context between a read and the
//! write that follows it.
//!
//! # Quick start
//!
//! ```no_run
//! use bytes::Bytes;
//! use dynamo_client::{Client, GetResult, WriteOptions};
//!
//! # async fn run() -> Result<(), dynamo_client::Error> {
//! let client = Client::builder(["127.0.0.1:8098"]).build().await?;
//! client.put("carts", b"alice", Bytes::from_static(b"pear"), &WriteOptions::default()).await?;
//! match client.get("carts", b"alice", None).await? {
//!     GetResult::Found { sibling, .. } => assert_eq!(&sibling.value[..], b"pear"),
//!     GetResult::Siblings { siblings, context } => {
//!         // Merge the siblings, then write the merge with their context.
//!         let merged = siblings.iter().map(|s| s.value.clone()).next().unwrap_or_default();
//!         let options = WriteOptions { context: Some(context), ..WriteOptions::default() };
//!         client.put("carts", b"alice", merged, &options).await?;
//!     }
//!     GetResult::NotFound { .. } => {}
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Map: [`client`] (the partition-aware [`Client`]), [`connection`]
//! (one connection: requests and typed results), [`multipart`] (parsing
//! sibling bodies), [`encode`] (percent-encoding of path segments), [`ring`]
//! (the ring a node's `GET /ring` describes, and which nodes replicate a
//! key: the pure model the [`Client`] routes by).

pub mod client;
pub mod connection;
pub mod encode;
pub mod multipart;
pub mod ring;

pub use client::{Client, ClientBuilder, Error};
pub use connection::{ClientError, Connection, GetResult, RawResponse, Sibling, WriteOptions, connect};
pub use ring::{RingView, RingViewError};
