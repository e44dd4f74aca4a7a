//! `dynamo`: one binary for everything. Subcommands:
//! - `server`: run one node ([`server_cmd`]);
//! - `dev`: run a local cluster of real node processes ([`dev`]);
//! - `get`, `put`, `delete`: talk to a node over HTTP ([`client_cmd`]);
//! - `keys`, `buckets`: list a bucket's keys, and the buckets ([`keys_cmd`],
//!   paging with [`key_pager`]);
//! - `export`, `import`: a bucket to JSON lines and back, siblings kept
//!   ([`export_cmd`], [`import_cmd`]; the format in [`export_format`], the
//!   requests in flight and the progress line in [`inflight`]);
//! - `dt get`, `dt update`: counters and sets ([`dt_cmd`]);
//! - `admin`: operator commands over a node's admin endpoints ([`admin_cmd`]);
//! - `bench`: a YCSB-style load generator ([`bench`]).

/// mimalloc instead of glibc's malloc. A node allocates and frees small
/// buffers on every request (keys and node ids per replica, encodings,
/// hyper's buffers): profiled at about 20% of a node's CPU in glibc's
/// malloc and free. With mimalloc the p99.9 at half of peak on three local
/// nodes went from 36-71 ms to 19-81 ms (median 26 against 55), and met the
/// 10 ms target at 3,000 ops/s (`docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin_cmd;
mod admin_top;
mod bench;
mod client_cmd;
mod dev;
mod dt_cmd;
mod export_cmd;
mod export_format;
mod import_cmd;
mod inflight;
mod key_pager;
mod keys_cmd;
mod server_cmd;

use clap::{Parser, Subcommand};

/// A highly available, eventually consistent key-value store (Amazon's
/// Dynamo design).
#[derive(Parser)]
#[command(name = "dynamo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node. A flag given twice takes its last value, so wrappers
    /// like `dynamo dev --server-arg` can override defaults.
    #[command(args_override_self = true)]
    Server(Box<server_cmd::ServerArgs>),
    /// Run a local cluster of node processes on loopback until Ctrl-C.
    Dev(dev::DevArgs),
    /// Read a key (prints the value, or every sibling).
    Get(client_cmd::GetArgs),
    /// Write a key.
    Put(client_cmd::PutArgs),
    /// Delete a key (writes a tombstone).
    Delete(client_cmd::DeleteArgs),
    /// List every key of a bucket, page by page (one per line, or --json lines).
    Keys(keys_cmd::KeysArgs),
    /// List the buckets that hold keys or have props.
    Buckets(keys_cmd::BucketsArgs),
    /// Write every live key of a bucket, with its siblings, to stdout as JSON lines.
    Export(export_cmd::ExportArgs),
    /// Write the keys of an export (stdin) back into a bucket, siblings as siblings.
    Import(import_cmd::ImportArgs),
    /// Counters, sets and maps: `dt get BUCKET KEY`, `dt update BUCKET KEY '<json op>'`.
    Dt(dt_cmd::DtArgs),
    /// Generate load against one or more nodes and report latency.
    Bench(bench::BenchArgs),
    /// Operator commands: cluster status, members, ring, join, plan, commit, leave, remove, transfers, anti-entropy.
    Admin(admin_cmd::AdminArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server_cmd::run(*args),
        Command::Dev(args) => dev::run(args),
        Command::Get(args) => client_cmd::run_get(args),
        Command::Put(args) => client_cmd::run_put(args),
        Command::Delete(args) => client_cmd::run_delete(args),
        Command::Keys(args) => keys_cmd::run_keys(args),
        Command::Buckets(args) => keys_cmd::run_buckets(args),
        Command::Export(args) => export_cmd::run_export(args),
        Command::Import(args) => import_cmd::run_import(args),
        Command::Dt(args) => dt_cmd::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Admin(args) => admin_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
