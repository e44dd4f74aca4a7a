//! The Redis protocol front end (issue 13, SPEC sections 3 and 4): RESP2,
//! and RESP3 after `HELLO 3`, so that `redis-cli` and ordinary Redis client
//! libraries work against the cluster. A thin layer over the same
//! coordinator as the HTTP API, beside it.
//!
//! - [`frame`] reads commands from a connection's bytes (multibulk and
//!   inline, every length bounded before it is buffered);
//! - [`reply`] writes replies in either protocol;
//! - [`server`] accepts connections and runs their commands in order
//!   (pipelining, bounded buffers);
//! - [`commands`] answers the connection commands clients send on
//!   connect, and dispatches the keyspace commands (over `keyspace`, the
//!   coordinator and bucket they share): strings and counters
//!   (`strings`), sets (`sets`), hashes (`hashes`), key expiry
//!   (`expiry`), each key one map (`model`).

pub mod commands;
mod expiry;
pub mod frame;
mod glob;
mod hashes;
mod keyspace;
mod model;
pub mod reply;
mod scan;
pub mod server;
mod sets;
mod strings;

use frame::Limits;

/// The command limits of a node whose values may be `max_value_bytes`
/// long: an argument up to that, 64 Ki arguments, 64 KiB inline lines (as
/// Redis), and a whole command up to twice the value limit or 4 MiB.
pub fn limits(max_value_bytes: usize) -> Limits {
    Limits {
        max_bulk_len: max_value_bytes,
        max_args: 64 * 1024,
        max_inline_len: 64 * 1024,
        max_command_bytes: (2 * max_value_bytes).max(4 << 20),
    }
}
