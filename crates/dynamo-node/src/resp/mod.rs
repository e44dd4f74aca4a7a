//! The Redis protocol front end (issue 13, SPEC sections 3 and 4): RESP2,
//! and RESP3 after `HELLO 3`, so that `redis-cli` and ordinary Redis client
//! libraries work against the cluster. A thin layer over the same
//! coordinator as the HTTP API.
//!
//! So far: [`frame`] reads commands from a connection's bytes (multibulk
//! and inline, every length bounded before it is buffered) and [`reply`]
//! writes replies in either protocol.

pub mod frame;
pub mod reply;
