//! `dynamo dt get | update`: counters and sets from the shell (issue 12).
//! `get` prints the value as the node answers it (`{"type":...,"value":...}`
//! with the set's `context`); `update` sends a JSON operation and prints the
//! new value. Exit codes as for `get`: 0 success, 2 not found, 1 any error.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::connect;
use dynamo_client::encode::path_segment;
use hyper::Method;
use serde_json::Value;

/// Exit code of `dt get` when the key holds nothing.
const EXIT_NOT_FOUND: u8 = 2;
/// How long a command waits for the node when no timeout is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `dynamo dt`.
#[derive(clap::Args, Debug)]
pub struct DtArgs {
    #[command(subcommand)]
    command: DtCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DtCommand {
    /// Read a counter, set or map: prints its JSON (a set's or map's
    /// includes the context to pass to a remove).
    Get {
        #[command(flatten)]
        target: DtTarget,
        /// Read quorum: a number, one, quorum or all.
        #[arg(long)]
        r: Option<String>,
    },
    /// Apply a JSON operation, e.g. '{"increment":1}', '{"add":"x"}',
    /// '{"remove":"x","context":"..."}', '{"update":{"name_register":"x"}}';
    /// prints the new value.
    Update {
        #[command(flatten)]
        target: DtTarget,
        /// The operation, as JSON.
        operation: String,
        /// Write quorum: a number, one, quorum or all.
        #[arg(long)]
        w: Option<String>,
        /// How many acknowledgements must be fsynced.
        #[arg(long)]
        dw: Option<String>,
    },
}

/// Where a data-type command goes.
#[derive(clap::Args, Debug)]
struct DtTarget {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Bucket (its props must name a datatype).
    bucket: String,
    /// Key.
    key: String,
    /// Request timeout in ms (sent to the server as timeout_ms).
    #[arg(long)]
    timeout_ms: Option<u64>,
}

impl DtTarget {
    fn path(&self, query: &[(&str, Option<String>)]) -> String {
        let mut path = format!(
            "/buckets/{}/datatypes/{}",
            path_segment(self.bucket.as_bytes()),
            path_segment(self.key.as_bytes())
        );
        let timeout = self.timeout_ms.map(|ms| ms.to_string());
        let pairs =
            query.iter().map(|(name, value)| (*name, value.as_deref())).chain([("timeout_ms", timeout.as_deref())]);
        for (index, (name, value)) in pairs.filter_map(|(name, value)| value.map(|value| (name, value))).enumerate() {
            path.push(if index == 0 { '?' } else { '&' });
            path.push_str(&format!("{name}={}", path_segment(value.as_bytes())));
        }
        path
    }

    fn timeout(&self) -> Duration {
        // The node gives up at timeout_ms; leave it time to say so.
        self.timeout_ms.map_or(DEFAULT_TIMEOUT, |ms| Duration::from_millis(ms) + Duration::from_secs(1))
    }
}

pub fn run(args: DtArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DtCommand::Get { target, r } => {
            let path = target.path(&[("r", r)]);
            send(&target, Method::GET, &path, Bytes::new())
        }
        DtCommand::Update { target, operation, w, dw } => {
            let parsed: Value = serde_json::from_str(&operation)
                .with_context(|| format!("the operation {operation:?} is not JSON (quote it for the shell)"))?;
            let path = target.path(&[("w", w), ("dw", dw), ("returnbody", Some("true".to_string()))]);
            send(&target, Method::POST, &path, Bytes::from(parsed.to_string()))
        }
    }
}

fn send(target: &DtTarget, method: Method, path: &str, body: Bytes) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &[("Content-Type", "application/json")] };
    let response = runtime
        .block_on(async {
            let mut connection = connect(&target.node).await?;
            connection.set_timeout(target.timeout());
            connection.request(method, path, headers, body).await
        })
        .with_context(|| format!("asking {} for {path}", target.node))?;
    let body: Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("{} answered {} with a body that is not JSON", target.node, response.status))?;
    match response.status {
        200 => {
            println!("{body}");
            Ok(ExitCode::SUCCESS)
        }
        404 => {
            eprintln!("not found");
            Ok(ExitCode::from(EXIT_NOT_FOUND))
        }
        status => bail!("{} answered {status}: {}", target.node, body["error"].as_str().unwrap_or("no reason given")),
    }
}
