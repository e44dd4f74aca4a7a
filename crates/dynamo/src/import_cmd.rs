//! `dynamo import BUCKET < file` (issue 14): writes back what
//! `dynamo export` wrote ([`crate::export_format`] has the format and the
//! rules that turn a line into writes).
//!
//! The path: a reader thread reads stdin line by line, each line bounded
//! (`--max-line-bytes`; a longer one is read through and reported, never
//! held), and hands the lines over a channel of a few slots; the runtime
//! checks each line, turns it into its writes ([`plan`]) and runs them on
//! one of a few connections ([`Window`]). Memory is a few lines, whatever
//! the size of the file. The reader is a thread of its own so a slow pipe
//! on stdin never stalls the requests in flight.
//!
//! A line that cannot be imported (not JSON, a missing field, bad base64,
//! a data type the bucket does not hold, a write the node refused) is
//! reported on stderr with its line number and the reason, and the rest go
//! on. The exit code is 0 only when every line was imported (siblings that
//! expired since the export are left out and counted, not failed). Writes
//! are not retried: a PUT that timed out may have been stored, and a second
//! one would add a sibling, so a failed line is reported for the operator
//! to look at instead.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::encode::path_segment;
use dynamo_client::{Connection, WriteOptions, connect};
use dynamo_core::props::DataType;
use hyper::Method;
use serde_json::Value;

use crate::export_format::{
    DEFAULT_MAX_LINE_BYTES, Header, Line, LineRead, Plan, Write, parse_line, plan, read_bounded_line,
};
use crate::inflight::{Progress, Window};
use crate::key_pager::fetch_json;
use crate::keys_cmd::runtime;

/// Flags of `dynamo import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Bucket to write into (it need not be the one exported).
    bucket: String,
    /// Keys written at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Longest line read; a longer one is skipped and reported.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES)]
    max_line_bytes: usize,
    /// Do not set the bucket's props from the file's header.
    #[arg(long)]
    no_props: bool,
}

/// A line as the reader thread hands it over: its number and what was read.
type NumberedLine = (u64, std::io::Result<LineRead>);

/// What became of one key line.
type Outcome = (u64, Result<usize, String>);

/// `dynamo import`.
pub fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let slots = usize::from(args.concurrency);
    let (sender, receiver) = tokio::sync::mpsc::channel::<NumberedLine>(slots);
    let max_line_bytes = args.max_line_bytes;
    // Not joined: once the runtime is done the process exits, and a
    // reader blocked on stdin must not hold it.
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), max_line_bytes, sender));
    runtime()?.block_on(import(args, receiver))
}

/// The reader thread: every line of `input`, numbered from 1, until the
/// end, a read error, or the runtime stops listening.
fn read_lines(mut input: impl BufRead, max_line_bytes: usize, sender: tokio::sync::mpsc::Sender<NumberedLine>) {
    for number in 1.. {
        let read = read_bounded_line(&mut input, max_line_bytes);
        let last = matches!(read, Ok(LineRead::End) | Err(_));
        if sender.blocking_send((number, read)).is_err() || last {
            return;
        }
    }
}

/// Counts of a run, for the summary.
#[derive(Default)]
struct Tally {
    failed: u64,
    expired: u64,
}

async fn import(args: ImportArgs, mut lines: tokio::sync::mpsc::Receiver<NumberedLine>) -> anyhow::Result<ExitCode> {
    let mut control = connect(&args.node).await?;
    let mut progress = Progress::new("lines");
    let mut tally = Tally::default();
    let mut window: Window<Outcome> = Window::open(&args.node, usize::from(args.concurrency)).await?;
    let mut target: Option<DataType> = None;
    while let Some((number, read)) = lines.recv().await {
        let text = match read.with_context(|| format!("reading line {number} of stdin"))? {
            LineRead::End => break,
            LineRead::TooLong(bytes) => {
                let reason =
                    format!("the line is {bytes} bytes, over the limit of {} (--max-line-bytes)", args.max_line_bytes);
                report(&mut progress, &mut tally, (number, Err(reason)));
                continue;
            }
            LineRead::Line(text) if text.iter().all(u8::is_ascii_whitespace) => continue,
            LineRead::Line(text) => text,
        };
        let parsed = parse_line(&text);
        drop(text);
        let first = target.is_none();
        if let (true, Ok(Line::Header(header))) = (first, &parsed) {
            apply_header(&mut control, &args, header).await?;
        }
        let datatype = match target {
            Some(datatype) => datatype,
            None => *target.insert(bucket_datatype(&mut control, &args.bucket).await?),
        };
        let planned = match parsed {
            Ok(Line::Header(_)) if first => continue,
            Ok(Line::Header(_)) => Err("a header line belongs first in the file".to_string()),
            Ok(Line::Key(line)) => plan(&line, datatype, now_ms()),
            Err(reason) => Err(reason),
        };
        match planned {
            Ok(planned) => {
                let bucket = args.bucket.clone();
                let finished = window
                    .start(move |mut connection| async move {
                        let outcome = write_plan(&mut connection, &bucket, planned).await;
                        (connection, (number, outcome))
                    })
                    .await?;
                if let Some(outcome) = finished {
                    report(&mut progress, &mut tally, outcome);
                }
            }
            Err(reason) => report(&mut progress, &mut tally, (number, Err(reason))),
        }
    }
    while let Some(outcome) = window.finish_oldest().await? {
        report(&mut progress, &mut tally, outcome);
    }
    let mut detail = format!(" imported into {}", args.bucket);
    if tally.expired > 0 {
        detail.push_str(&format!("; {} siblings or maps expired since the export and were left out", tally.expired));
    }
    if tally.failed > 0 {
        detail.push_str(&format!("; {} lines FAILED", tally.failed));
    }
    progress.finish(&detail);
    if tally.failed > 0 {
        eprintln!("{} of {} lines failed (see above)", tally.failed, progress.done);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(progress: &mut Progress, tally: &mut Tally, (number, outcome): Outcome) {
    match outcome {
        Ok(expired) => tally.expired += expired as u64,
        Err(reason) => {
            progress.clear();
            eprintln!("line {number}: {reason}");
            tally.failed += 1;
        }
    }
    let failed = tally.failed;
    progress.tick(|| format!(", {failed} failed"));
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn props_path(bucket: &str) -> String {
    format!("/buckets/{}/props", path_segment(bucket.as_bytes()))
}

/// The datatype of the target bucket.
async fn bucket_datatype(control: &mut Connection, bucket: &str) -> anyhow::Result<DataType> {
    let props = fetch_json(control, &props_path(bucket)).await?;
    serde_json::from_value(props["datatype"].clone())
        .with_context(|| format!("bucket {bucket} has props with an unknown datatype: {props}"))
}

/// Sets the target bucket's props from the header's, when the bucket is
/// new (no live keys, no props of its own) and they differ; otherwise
/// says where they differ and leaves the bucket as it is.
async fn apply_header(control: &mut Connection, args: &ImportArgs, header: &Header) -> anyhow::Result<()> {
    let Some(Value::Object(wanted)) = &header.props else { return Ok(()) };
    if args.no_props {
        return Ok(());
    }
    let current = fetch_json(control, &props_path(&args.bucket)).await?;
    let differs = wanted.iter().any(|(name, value)| current.get(name) != Some(value));
    if !differs {
        return Ok(());
    }
    let buckets = fetch_json(control, "/buckets").await?;
    let known = buckets["buckets"].as_array().into_iter().flatten().any(|name| name.as_str() == Some(&args.bucket));
    if known {
        eprintln!(
            "bucket {} already has keys or props; left as they are: {current} (the export's: {})",
            args.bucket,
            Value::Object(wanted.clone())
        );
        return Ok(());
    }
    let body = Bytes::from(Value::Object(wanted.clone()).to_string());
    let response =
        control.request(Method::PUT, &props_path(&args.bucket), &[("Content-Type", "application/json")], body).await?;
    if response.status != 204 && response.status != 200 {
        bail!(
            "setting the props of bucket {} from the export's header was refused ({}): {}; \
             set them yourself, or pass --no-props",
            args.bucket,
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    eprintln!("bucket {}: props set from the export: {}", args.bucket, Value::Object(wanted.clone()));
    Ok(())
}

/// Runs a line's writes in order; the number of expired siblings left out,
/// or why it stopped.
async fn write_plan(connection: &mut Connection, bucket: &str, plan: Plan) -> Result<usize, String> {
    let total = plan.writes.len();
    for (index, write) in plan.writes.into_iter().enumerate() {
        let written = match write {
            Write::Put { value, content_type, ttl_s } => {
                let query = ttl_s.map(|ttl_s| ("ttl_s".to_string(), ttl_s.to_string())).into_iter().collect();
                let options = WriteOptions { query, context: None, content_type };
                connection.put(bucket, &plan.key, value, &options).await.map(|_| ()).map_err(|error| error.to_string())
            }
            Write::Update { op, ttl_s } => update(connection, bucket, &plan.key, &op, ttl_s).await,
        };
        if let Err(reason) = written {
            let partly = if index > 0 { " (the key is partly imported)" } else { "" };
            return Err(format!("write {} of {total} refused{partly}: {reason}", index + 1));
        }
    }
    Ok(plan.expired)
}

async fn update(
    connection: &mut Connection,
    bucket: &str,
    key: &[u8],
    op: &Value,
    ttl_s: Option<u64>,
) -> Result<(), String> {
    let mut path = format!("/buckets/{}/datatypes/{}", path_segment(bucket.as_bytes()), path_segment(key));
    if let Some(ttl_s) = ttl_s {
        path.push_str(&format!("?ttl_s={ttl_s}"));
    }
    let body = Bytes::from(op.to_string());
    let response = connection
        .request(Method::POST, &path, &[("Content-Type", "application/json")], body)
        .await
        .map_err(|error| error.to_string())?;
    match response.status {
        200 | 204 => Ok(()),
        status => Err(format!("{} answered {status}: {}", connection.addr(), String::from_utf8_lossy(&response.body))),
    }
}
