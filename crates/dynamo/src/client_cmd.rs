//! `dynamo get | put | delete`: the client commands. Output is made for
//! both people and scripts: `get` writes a lone value to stdout exactly as
//! stored (the context goes to stderr), lists siblings clearly, and with
//! `--json` prints one JSON document. `put` and `delete` print the new
//! context. Exit codes: 0 success, 2 not found, 1 any error.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bytes::Bytes;
use dynamo_client::{GetResult, Sibling, WriteOptions, connect};
use serde_json::json;

/// Exit code of `get` when the key does not exist or is deleted.
const EXIT_NOT_FOUND: u8 = 2;

/// Where to send the request.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    pub node: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Request timeout in ms (sent to the server as timeout_ms).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
}

/// Flags of `dynamo get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    target: Target,
    /// Read quorum: a number, one, quorum or all.
    #[arg(long)]
    r: Option<String>,
    /// Print one JSON document (values as UTF-8 text or base64).
    #[arg(long)]
    json: bool,
}

/// Flags shared by writes.
#[derive(clap::Args, Debug)]
pub struct WriteFlags {
    /// Context from an earlier `get` (supersedes what that read saw).
    #[arg(long)]
    context: Option<String>,
    /// Write quorum: a number, one, quorum or all.
    #[arg(long)]
    w: Option<String>,
    /// How many acknowledgements must be fsynced.
    #[arg(long)]
    dw: Option<String>,
    /// Replicas for this write (at most the bucket's n).
    #[arg(long)]
    n: Option<String>,
}

/// Flags of `dynamo put`.
#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    target: Target,
    /// The value; omit it (or give `-`) to read stdin.
    value: Option<String>,
    /// Read the value from this file.
    #[arg(long, conflicts_with = "value")]
    file: Option<PathBuf>,
    /// Content type stored with the value.
    #[arg(long)]
    content_type: Option<String>,
    /// Expire the value this many seconds after the write (`ttl_s`);
    /// without it the value does not expire.
    #[arg(long)]
    ttl_s: Option<u64>,
    #[command(flatten)]
    write: WriteFlags,
}

/// Flags of `dynamo delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    write: WriteFlags,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")
}

fn query(pairs: &[(&str, Option<String>)], timeout_ms: Option<u64>) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> =
        pairs.iter().filter_map(|(name, value)| value.clone().map(|value| (name.to_string(), value))).collect();
    if let Some(timeout_ms) = timeout_ms {
        query.push(("timeout_ms".to_string(), timeout_ms.to_string()));
    }
    query
}

/// `dynamo get`.
pub fn run_get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let target = &args.target;
    let query = query(&[("r", args.r.clone())], target.timeout_ms);
    let result = runtime()?.block_on(async {
        let mut connection = connect(&target.node).await?;
        connection.get(&target.bucket, target.key.as_bytes(), &query).await
    })?;
    if args.json {
        println!("{}", get_json(&result));
    } else {
        print_get(&result)?;
    }
    Ok(match result {
        GetResult::NotFound { .. } => ExitCode::from(EXIT_NOT_FOUND),
        _ => ExitCode::SUCCESS,
    })
}

fn print_get(result: &GetResult) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match result {
        GetResult::Found { sibling, context } => {
            stdout.write_all(&sibling.value)?;
            stdout.flush()?;
            eprintln!("\ncontext: {context}");
        }
        GetResult::Siblings { siblings, context } => {
            writeln!(
                stdout,
                "{} siblings (concurrent versions); write with this context to resolve them:",
                siblings.len()
            )?;
            writeln!(stdout, "context: {context}")?;
            for (index, sibling) in siblings.iter().enumerate() {
                let vtag = sibling.vtag.as_deref().unwrap_or("?");
                if sibling.deleted {
                    writeln!(stdout, "--- sibling {} (vtag {vtag}): deleted", index + 1)?;
                    continue;
                }
                let content_type = sibling.content_type.as_deref().unwrap_or("?");
                writeln!(
                    stdout,
                    "--- sibling {} (vtag {vtag}, {content_type}, {} bytes)",
                    index + 1,
                    sibling.value.len()
                )?;
                stdout.write_all(&sibling.value)?;
                writeln!(stdout)?;
            }
        }
        GetResult::NotFound { context } => {
            eprintln!("not found");
            if let Some(context) = context {
                eprintln!("context: {context} (of the delete)");
            }
        }
    }
    Ok(())
}

fn get_json(result: &GetResult) -> serde_json::Value {
    let sibling_json = |sibling: &Sibling| match std::str::from_utf8(&sibling.value) {
        Ok(text) => {
            json!({"value": text, "content_type": sibling.content_type, "vtag": sibling.vtag, "deleted": sibling.deleted})
        }
        Err(_) => json!({"value_base64": base64_encode(&sibling.value), "content_type": sibling.content_type,
                         "vtag": sibling.vtag, "deleted": sibling.deleted}),
    };
    match result {
        GetResult::Found { sibling, context } => {
            json!({"status": "found", "context": context, "siblings": [sibling_json(sibling)]})
        }
        GetResult::Siblings { siblings, context } => {
            json!({"status": "siblings", "context": context, "siblings": siblings.iter().map(sibling_json).collect::<Vec<_>>()})
        }
        GetResult::NotFound { context } => json!({"status": "not_found", "context": context, "siblings": []}),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `dynamo put`.
pub fn run_put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let value = match (&args.file, args.value.as_deref()) {
        (Some(path), _) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        (None, Some(value)) if value != "-" => value.as_bytes().to_vec(),
        (None, _) => {
            let mut buffer = Vec::new();
            std::io::stdin().read_to_end(&mut buffer).context("reading the value from stdin")?;
            buffer
        }
    };
    let mut options = write_options(&args.write, args.target.timeout_ms, args.content_type.clone());
    if let Some(ttl_s) = args.ttl_s {
        options.query.push(("ttl_s".to_string(), ttl_s.to_string()));
    }
    let target = &args.target;
    let context = runtime()?.block_on(async {
        let mut connection = connect(&target.node).await?;
        connection.put(&target.bucket, target.key.as_bytes(), Bytes::from(value), &options).await
    })?;
    println!("{}", context.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `dynamo delete`.
pub fn run_delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let options = write_options(&args.write, args.target.timeout_ms, None);
    let target = &args.target;
    let context = runtime()?.block_on(async {
        let mut connection = connect(&target.node).await?;
        connection.delete(&target.bucket, target.key.as_bytes(), &options).await
    })?;
    println!("{}", context.unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

fn write_options(flags: &WriteFlags, timeout_ms: Option<u64>, content_type: Option<String>) -> WriteOptions {
    WriteOptions {
        query: query(&[("w", flags.w.clone()), ("dw", flags.dw.clone()), ("n", flags.n.clone())], timeout_ms),
        context: flags.context.clone(),
        content_type,
    }
}
