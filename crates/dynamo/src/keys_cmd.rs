//! `dynamo keys BUCKET` and `dynamo buckets`: listing from the command line
//! (issue 14). `keys` pages through `GET /buckets/{bucket}/keys` with a
//! [`KeyPager`] (which asks a failed page again), printing each page as it
//! arrives, so memory stays one page whatever the bucket's size.
//!
//! Output of `keys`:
//! - by default, one key per line. Keys that are not UTF-8, or that hold a
//!   line break, cannot be printed so without ambiguity: they are left out
//!   and counted on stderr (use `--json` to see them);
//! - with `--json`, JSON lines: `{"key":"..."}` for a UTF-8 key and
//!   `{"key_b64":"..."}` (standard base64) for any other, one per line.
//!
//! Exit codes: 0 when the pass completed, 1 on any error.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use dynamo_client::connect;
use serde_json::{Value, json};

use crate::key_pager::{KeyPager, ListedKey, fetch_json};

/// Flags of `dynamo keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Bucket.
    bucket: String,
    /// Keys per page (1 to 10000; the server's default is 1000).
    #[arg(long)]
    limit: Option<usize>,
    /// JSON lines: {"key": "..."} or {"key_b64": "..."} per key.
    #[arg(long)]
    json: bool,
}

/// Flags of `dynamo buckets`.
#[derive(clap::Args, Debug)]
pub struct BucketsArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")
}

/// `dynamo keys`.
pub fn run_keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut connection = connect(&args.node).await?;
        let mut pager = KeyPager::new(&args.bucket, args.limit);
        let (mut listed, mut unprintable) = (0u64, 0u64);
        while let Some(keys) = pager.next_page(&mut connection).await? {
            let mut stdout = std::io::stdout().lock();
            for key in keys {
                listed += 1;
                match key {
                    ListedKey::Text(key) if args.json => writeln!(stdout, "{}", json!({ "key": key }))?,
                    ListedKey::Text(key) if key.contains(['\n', '\r']) => unprintable += 1,
                    ListedKey::Text(key) => writeln!(stdout, "{key}")?,
                    ListedKey::Binary { base64, .. } if args.json => {
                        writeln!(stdout, "{}", json!({ "key_b64": base64 }))?;
                    }
                    ListedKey::Binary { .. } => unprintable += 1,
                }
            }
            stdout.flush()?;
        }
        if unprintable > 0 {
            eprintln!(
                "{unprintable} of {listed} keys are not printable one per line (not UTF-8, or holding a line break); \
                 use --json to see them"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `dynamo buckets`.
pub fn run_buckets(args: BucketsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut connection = connect(&args.node).await?;
        let listing = fetch_json(&mut connection, "/buckets").await?;
        let mut stdout = std::io::stdout().lock();
        for bucket in listing["buckets"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            writeln!(stdout, "{bucket}")?;
        }
        if listing["complete"] == Value::Bool(false) {
            eprintln!("the listing is incomplete: a node has too many buckets or tombstones to read through");
        }
        Ok(ExitCode::SUCCESS)
    })
}
