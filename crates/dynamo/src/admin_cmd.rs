//! `dynamo admin ...`: operator commands, thin wrappers over a node's admin
//! HTTP endpoints that print their JSON answer (pretty-printed).
//!
//! - `dynamo admin anti-entropy [--node ADDR]`: the node's anti-entropy
//!   status (`GET /admin/anti-entropy`);
//! - `dynamo admin anti-entropy --trigger [--partition P]`: run exchanges
//!   now and print their reports (`POST /admin/anti-entropy`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::connect;
use hyper::Method;

/// How long a triggered sweep may take before the command gives up
/// waiting (the node finishes it anyway). Exchanges are paced, so a sweep
/// over many partitions with many differences takes minutes.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(600);

/// Flags of `dynamo admin`.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AdminCommand {
    /// Anti-entropy status of a node, or run its exchanges now.
    AntiEntropy(AntiEntropyArgs),
}

#[derive(clap::Args, Debug)]
struct AntiEntropyArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Exchange every partition the node replicates now (or only
    /// `--partition`), and print the reports when done.
    #[arg(long)]
    trigger: bool,
    /// With `--trigger`: only this partition.
    #[arg(long, requires = "trigger")]
    partition: Option<u32>,
}

/// Runs `dynamo admin ...`.
pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AdminCommand::AntiEntropy(args) => anti_entropy(args),
    }
}

fn anti_entropy(args: AntiEntropyArgs) -> anyhow::Result<ExitCode> {
    let (method, path) = match (args.trigger, args.partition) {
        (false, _) => (Method::GET, "/admin/anti-entropy".to_string()),
        (true, None) => (Method::POST, "/admin/anti-entropy".to_string()),
        (true, Some(partition)) => (Method::POST, format!("/admin/anti-entropy?partition={partition}")),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let response = runtime.block_on(async {
        let mut connection = connect(&args.node).await?;
        connection.set_timeout(TRIGGER_TIMEOUT);
        connection.request(method, &path, &[], Bytes::new()).await
    })?;
    let body: serde_json::Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("{} answered {} with a body that is not JSON", args.node, response.status))?;
    if response.status != 200 {
        bail!("{} answered {}: {}", args.node, response.status, body["error"].as_str().unwrap_or("no reason given"));
    }
    println!("{}", serde_json::to_string_pretty(&body).context("printing the answer")?);
    Ok(ExitCode::SUCCESS)
}
