//! `dynamo keys BUCKET` and `dynamo buckets`: listing from the command line
//! (issue 14). `keys` pages through `GET /buckets/{bucket}/keys`, printing
//! each page as it arrives, so memory stays one page whatever the bucket's
//! size; a page that fails (`503`, a timeout) is asked again with the same
//! continuation, which is safe because a continuation is a position, not
//! server state.
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
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::{Connection, connect};
use hyper::Method;
use serde_json::{Value, json};

/// Attempts at one page before giving up.
const PAGE_ATTEMPTS: u32 = 5;
/// Wait before asking a failed page again (doubled each time).
const RETRY_PAUSE: Duration = Duration::from_millis(300);

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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")
}

/// `dynamo keys`.
pub fn run_keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut connection = connect(&args.node).await?;
        let mut continuation: Option<String> = None;
        let (mut listed, mut unprintable) = (0u64, 0u64);
        loop {
            let mut path = format!("/buckets/{}/keys?", args.bucket);
            if let Some(limit) = args.limit {
                path.push_str(&format!("limit={limit}&"));
            }
            if let Some(token) = &continuation {
                path.push_str(&format!("continuation={token}"));
            }
            let page = fetch_page(&mut connection, &path).await?;
            let mut stdout = std::io::stdout().lock();
            for key in page["keys"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                listed += 1;
                if args.json {
                    writeln!(stdout, "{}", json!({ "key": key }))?;
                } else if key.contains(['\n', '\r']) {
                    unprintable += 1;
                } else {
                    writeln!(stdout, "{key}")?;
                }
            }
            for key in page["keys_b64"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                listed += 1;
                if args.json {
                    writeln!(stdout, "{}", json!({ "key_b64": key }))?;
                } else {
                    unprintable += 1;
                }
            }
            stdout.flush()?;
            match page["continuation"].as_str() {
                Some(token) => continuation = Some(token.to_string()),
                None => break,
            }
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

/// One page, asked again after a transient failure.
async fn fetch_page(connection: &mut Connection, path: &str) -> anyhow::Result<Value> {
    let mut pause = RETRY_PAUSE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match connection.request(Method::GET, path, &[], Bytes::new()).await {
            Ok(response) if response.status == 200 => {
                return serde_json::from_slice(&response.body).context("the node answered a page that is not JSON");
            }
            // A bad request will not get better.
            Ok(response) if response.status == 400 || response.status == 404 => {
                bail!(
                    "the node refused the listing ({}): {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
            Ok(response) => format!("status {}: {}", response.status, String::from_utf8_lossy(&response.body)),
            Err(error) => error.to_string(),
        };
        if attempt == PAGE_ATTEMPTS {
            bail!("listing failed after {PAGE_ATTEMPTS} attempts at one page: {failure}");
        }
        eprintln!("page failed ({failure}); asking again");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// `dynamo buckets`.
pub fn run_buckets(args: BucketsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut connection = connect(&args.node).await?;
        let listing = fetch_page(&mut connection, "/buckets").await?;
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
