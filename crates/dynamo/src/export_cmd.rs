//! `dynamo export BUCKET > file` (issue 14): every live key of a bucket as
//! JSON lines ([`crate::export_format`] has the format), with every
//! sibling, its content type and expiry, and the key's context.
//!
//! The path: one connection pages through the listing ([`KeyPager`]); each
//! listed key is read on one of a few other connections ([`Window`]), and
//! the lines are written in listing order as the reads finish. Memory is a
//! page of keys plus a few values, whatever the bucket's size. A read that
//! fails for a transient reason (`503`, a timeout) is asked again; a key
//! that reads `404` was deleted or expired since it was listed and is left
//! out (and counted); a key that cannot be read at all is reported and
//! makes the exit code 1, so a partial export is never mistaken for a
//! whole one.

use std::io::{BufWriter, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use dynamo_client::encode::path_segment;
use dynamo_client::{ClientError, Connection, GetResult, connect};
use dynamo_core::props::DataType;
use hyper::Method;
use serde_json::Value;

use crate::export_format::{DEFAULT_MAX_LINE_BYTES, FORMAT_VERSION, Header, KeyLine, SiblingLine};
use crate::inflight::{Progress, Window};
use crate::key_pager::{KeyPager, ListedKey, fetch_json};
use crate::keys_cmd::runtime;

/// Attempts at reading one key before it is reported as failed.
const READ_ATTEMPTS: u32 = 5;
/// Wait before reading a key again (doubled each time).
const RETRY_PAUSE: Duration = Duration::from_millis(300);

/// Flags of `dynamo export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Bucket to export.
    bucket: String,
    /// Keys per listing page (1 to 10000; the server's default is 1000).
    #[arg(long)]
    limit: Option<usize>,
    /// Reads in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
}

/// What became of one listed key.
enum Exported {
    /// Its line, and how many live siblings and dead ones (tombstones,
    /// expired values) it had.
    Line { json: String, siblings: usize, dead: usize },
    /// Deleted or expired between the listing and the read.
    Gone,
    /// Could not be read.
    Failed { key: String, reason: String },
}

/// Counts of a run, for the summary.
#[derive(Default)]
struct Tally {
    siblings: u64,
    dead: u64,
    gone: u64,
    failed: u64,
    /// Lines longer than `dynamo import` reads by default.
    long_lines: u64,
}

/// `dynamo export`.
pub fn run_export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let mut lister = connect(&args.node).await?;
        let props =
            fetch_json(&mut lister, &format!("/buckets/{}/props", path_segment(args.bucket.as_bytes()))).await?;
        let datatype: DataType = serde_json::from_value(props["datatype"].clone()).unwrap_or_default();
        let mut out = BufWriter::new(std::io::stdout());
        let header = Header {
            dynamo_export: FORMAT_VERSION,
            bucket: args.bucket.clone(),
            props: Some(props),
            exported_at_ms: Some(now_ms()),
        };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        let mut window = Window::open(&args.node, usize::from(args.concurrency)).await?;
        let mut pager = KeyPager::new(&args.bucket, args.limit);
        let mut progress = Progress::new("keys");
        let mut tally = Tally::default();
        while let Some(keys) = pager.next_page(&mut lister).await? {
            for key in keys {
                let bucket = args.bucket.clone();
                let finished = window
                    .start(move |mut connection| async move {
                        let exported = export_key(&mut connection, &bucket, key, datatype).await;
                        (connection, exported)
                    })
                    .await?;
                if let Some(exported) = finished {
                    record(exported, &mut out, &mut progress, &mut tally)?;
                }
            }
            out.flush()?;
        }
        while let Some(exported) = window.finish_oldest().await? {
            record(exported, &mut out, &mut progress, &mut tally)?;
        }
        out.flush()?;
        progress.finish(&summary(&tally));
        if tally.long_lines > 0 {
            eprintln!(
                "{} lines are longer than {DEFAULT_MAX_LINE_BYTES} bytes: import them with a larger --max-line-bytes",
                tally.long_lines
            );
        }
        if tally.failed > 0 {
            eprintln!("{} keys could not be read: the export is incomplete", tally.failed);
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn record(
    exported: Exported,
    out: &mut impl std::io::Write,
    progress: &mut Progress,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    match exported {
        Exported::Line { json, siblings, dead } => {
            writeln!(out, "{json}")?;
            tally.siblings += siblings as u64;
            tally.dead += dead as u64;
            tally.long_lines += u64::from(json.len() > DEFAULT_MAX_LINE_BYTES);
            progress.tick(|| format!(", {} siblings", tally.siblings));
        }
        Exported::Gone => tally.gone += 1,
        Exported::Failed { key, reason } => {
            progress.clear();
            eprintln!("key {key}: {reason}");
            tally.failed += 1;
        }
    }
    Ok(())
}

fn summary(tally: &Tally) -> String {
    let mut text = format!(" exported, {} siblings", tally.siblings);
    if tally.gone > 0 {
        text.push_str(&format!("; {} keys deleted or expired after they were listed", tally.gone));
    }
    if tally.dead > 0 {
        text.push_str(&format!("; {} dead siblings (deleted or expired) left out", tally.dead));
    }
    if tally.failed > 0 {
        text.push_str(&format!("; {} keys FAILED", tally.failed));
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Reads one key and makes its line.
async fn export_key(connection: &mut Connection, bucket: &str, key: ListedKey, datatype: DataType) -> Exported {
    let mut line = match &key {
        ListedKey::Text(text) => KeyLine { key: Some(text.clone()), ..KeyLine::default() },
        ListedKey::Binary { base64, .. } => KeyLine { key_b64: Some(base64.clone()), ..KeyLine::default() },
    };
    let read = match datatype {
        DataType::None => read_object(connection, bucket, key.bytes(), &mut line).await,
        _ => read_datatype(connection, bucket, key.bytes(), &mut line).await,
    };
    let described =
        || line.key.clone().unwrap_or_else(|| format!("(base64) {}", line.key_b64.clone().unwrap_or_default()));
    match read {
        Ok(None) => Exported::Gone,
        Ok(Some((siblings, dead))) => match serde_json::to_string(&line) {
            Ok(json) => Exported::Line { json, siblings, dead },
            Err(problem) => Exported::Failed { key: described(), reason: problem.to_string() },
        },
        Err(reason) => Exported::Failed { key: described(), reason },
    }
}

/// Whether a failed read may succeed when asked again.
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Status { status, .. } => *status >= 500 || *status == 429,
        ClientError::Connect { .. } | ClientError::Timeout { .. } | ClientError::Http { .. } => true,
        ClientError::Protocol { .. } => false,
    }
}

/// Reads an opaque key into `line`: `Some((live, dead))` sibling counts,
/// or `None` when it is gone.
async fn read_object(
    connection: &mut Connection,
    bucket: &str,
    key: &[u8],
    line: &mut KeyLine,
) -> Result<Option<(usize, usize)>, String> {
    let mut pause = RETRY_PAUSE;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        match connection.get(bucket, key, &[]).await {
            Ok(result) => break result,
            Err(error) if transient(&error) && attempt < READ_ATTEMPTS => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => return Err(format!("read failed after {attempt} attempts: {error}")),
        }
    };
    let (siblings, context) = match result {
        GetResult::Found { sibling, context } => (vec![sibling], context),
        GetResult::Siblings { siblings, context } => (siblings, context),
        GetResult::NotFound { .. } => return Ok(None),
    };
    let total = siblings.len();
    let live: Vec<SiblingLine> = siblings
        .into_iter()
        .filter(|sibling| !sibling.deleted)
        .map(|sibling| SiblingLine {
            content_type: sibling.content_type,
            value_b64: STANDARD.encode(&sibling.value),
            expires_ms: sibling.expires_ms,
        })
        .collect();
    if live.is_empty() {
        return Ok(None);
    }
    let counts = (live.len(), total - live.len());
    line.siblings = Some(live);
    line.context = Some(context);
    Ok(Some(counts))
}

/// Reads a data-type key into `line`, as [`read_object`].
async fn read_datatype(
    connection: &mut Connection,
    bucket: &str,
    key: &[u8],
    line: &mut KeyLine,
) -> Result<Option<(usize, usize)>, String> {
    let path = format!("/buckets/{}/datatypes/{}", path_segment(bucket.as_bytes()), path_segment(key));
    let mut pause = RETRY_PAUSE;
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let failure = match connection.request(Method::GET, &path, &[], Bytes::new()).await {
            Ok(response) if response.status == 200 => break response,
            Ok(response) if response.status == 404 => return Ok(None),
            Ok(response) => {
                let failure = format!(
                    "{} answered {}: {}",
                    connection.addr(),
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
                if response.status < 500 {
                    return Err(failure);
                }
                failure
            }
            Err(error) if transient(&error) => error.to_string(),
            Err(error) => return Err(error.to_string()),
        };
        if attempt == READ_ATTEMPTS {
            return Err(format!("read failed after {attempt} attempts: {failure}"));
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    };
    let body: Value =
        serde_json::from_slice(&response.body).map_err(|problem| format!("the value is not JSON: {problem}"))?;
    let expires_ms = response.header("x-dynamo-expires").map(|text| text.parse::<u64>());
    line.expires_ms = expires_ms.transpose().map_err(|_| "X-Dynamo-Expires is not unix ms".to_string())?;
    line.datatype = body["type"].as_str().map(str::to_string);
    line.value = Some(body["value"].clone());
    line.context = body["context"].as_str().map(str::to_string);
    if line.datatype.is_none() {
        return Err(format!("the value has no \"type\": {body}"));
    }
    Ok(Some((1, 0)))
}
