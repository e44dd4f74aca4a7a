//! `dynamo admin ...`: operator commands, thin wrappers over a node's admin
//! HTTP endpoints. Membership commands print tables by default and the
//! node's JSON answer with `--json` (for scripts); anti-entropy prints its
//! JSON answer (pretty-printed).
//!
//! - `dynamo admin status`: the cluster as the node sees it: each member's
//!   status, zone, capacity, ring share, and whether the node reaches it
//!   (`GET /admin/cluster`);
//! - `dynamo admin members`: the member records: addresses and versions
//!   (`GET /admin/cluster`);
//! - `dynamo admin ring [--owners]`: partition ownership per node with its
//!   imbalance, or the owner of every partition (`GET /admin/ring`);
//! - `dynamo admin join --seed RPC_ADDR [--commit]`: make a standalone,
//!   empty node join the cluster of the seed (`POST /admin/join`), and with
//!   `--commit` commit the plan right away (`POST /admin/commit`);
//! - `dynamo admin plan [--moves]`: the next ring, its moves, shares, and
//!   what commit would do (`GET /admin/plan`);
//! - `dynamo admin commit`: install the plan and start its partition
//!   transfers (`POST /admin/commit`; `--force` is still accepted and
//!   changes nothing);
//! - `dynamo admin leave [NODE_ID]`: the node (the one asked, by default)
//!   hands its partitions to their new owners, then stops (`POST
//!   /admin/leave`);
//! - `dynamo admin remove NODE_ID`: remove a dead node; its partitions are
//!   copied from the surviving replicas (`POST /admin/remove`);
//! - `dynamo admin transfers [--all]`: partition transfers in progress,
//!   with per-partition progress and rates, of the node asked or of every
//!   member (`GET /admin/transfers`);
//! - `dynamo admin anti-entropy [--node ADDR]`: the node's anti-entropy
//!   status (`GET /admin/anti-entropy`);
//! - `dynamo admin anti-entropy --trigger [--partition P]`: run exchanges
//!   now and print their reports (`POST /admin/anti-entropy`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use dynamo_client::connect;
use dynamo_client::encode::path_segment;
use hyper::Method;
use serde_json::Value;

/// How long a triggered sweep may take before the command gives up
/// waiting (the node finishes it anyway). Exchanges are paced, so a sweep
/// over many partitions with many differences takes minutes.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a membership command waits for the node. A commit calls every
/// member (a few request timeouts at worst).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags of `dynamo admin`.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand, Debug)]
enum AdminCommand {
    /// Cluster status as a node sees it: members, status, zone, capacity, ring share, reachability.
    Status(ViewArgs),
    /// Member records: status, RPC and HTTP addresses, zone, capacity, record version.
    Members(ViewArgs),
    /// Partition ownership per node, with imbalance (or every partition's owner with --owners).
    Ring(RingArgs),
    /// Make a standalone, empty node join the cluster of a seed.
    Join(JoinArgs),
    /// The next ring for the current members: moves, shares, and what commit would do.
    Plan(PlanArgs),
    /// Install the plan as the next ring epoch (joining nodes become members) and start its transfers.
    Commit(CommitArgs),
    /// Leave the cluster gracefully: hand every partition to its new owner, then stop.
    Leave(LeaveArgs),
    /// Remove a dead node: its partitions are copied from the surviving replicas.
    Remove(RemoveArgs),
    /// Partition transfers in progress: per-partition progress and rates.
    Transfers(TransfersArgs),
    /// Anti-entropy status of a node, or run its exchanges now.
    AntiEntropy(AntiEntropyArgs),
    /// What each replica of a key holds: the preference list, and per
    /// replica its context and versions (size, digest, timestamp).
    Replicas(ReplicasArgs),
    /// The node's failure detector: each peer's state and last answer.
    Peers(ViewArgs),
    /// The hints the node holds for unreachable replicas.
    Hints(ViewArgs),
    /// The dashboard in the terminal: members and the node's last seconds, refreshed every second.
    Top(TopArgs),
}

#[derive(clap::Args, Debug)]
struct TopArgs {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
}

#[derive(clap::Args, Debug)]
struct ReplicasArgs {
    #[command(flatten)]
    target: NodeArg,
    /// Bucket.
    bucket: String,
    /// Key.
    key: String,
}

#[derive(clap::Args, Debug)]
struct NodeArg {
    /// Node HTTP address (host:port).
    #[arg(long, env = "DYNAMO_NODE", default_value = "127.0.0.1:8080")]
    node: String,
    /// Print the node's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ViewArgs {
    #[command(flatten)]
    target: NodeArg,
}

#[derive(clap::Args, Debug)]
struct RingArgs {
    #[command(flatten)]
    target: NodeArg,
    /// List the owner of every partition.
    #[arg(long)]
    owners: bool,
}

#[derive(clap::Args, Debug)]
struct JoinArgs {
    #[command(flatten)]
    target: NodeArg,
    /// RPC address of a member of the cluster to join (host:port).
    #[arg(long)]
    seed: String,
    /// Commit the plan right after joining (its partition transfers
    /// start at once) instead of leaving it for `plan` and `commit`.
    #[arg(long)]
    commit: bool,
}

#[derive(clap::Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    target: NodeArg,
    /// List every moving partition (default: grouped by source and destination).
    #[arg(long)]
    moves: bool,
}

#[derive(clap::Args, Debug)]
struct CommitArgs {
    #[command(flatten)]
    target: NodeArg,
    /// Accepted for compatibility; changes nothing (earlier versions needed
    /// it to re-lay empty partitions before partition transfers existed).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
struct LeaveArgs {
    #[command(flatten)]
    target: NodeArg,
    /// The node that leaves (default: the node asked).
    id: Option<String>,
}

#[derive(clap::Args, Debug)]
struct RemoveArgs {
    #[command(flatten)]
    target: NodeArg,
    /// The node to remove (its id, as `dynamo admin members` lists it).
    id: String,
}

#[derive(clap::Args, Debug)]
struct TransfersArgs {
    #[command(flatten)]
    target: NodeArg,
    /// Ask every member (through the HTTP addresses they announced), not
    /// only the node given.
    #[arg(long)]
    all: bool,
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
        AdminCommand::Status(args) => show(&args.target, Method::GET, "/admin/cluster", render_status),
        AdminCommand::Members(args) => show(&args.target, Method::GET, "/admin/cluster", render_members),
        AdminCommand::Ring(args) => {
            let owners = args.owners;
            show(&args.target, Method::GET, "/admin/ring", move |body| render_ring(body, owners))
        }
        AdminCommand::Join(args) => {
            let path = format!("/admin/join?seed={}", encode_query(&args.seed));
            if !args.commit {
                return show(&args.target, Method::POST, &path, render_join);
            }
            let joined = call(&args.target.node, Method::POST, &path, MEMBERSHIP_TIMEOUT)?;
            let committed = call(&args.target.node, Method::POST, "/admin/commit", MEMBERSHIP_TIMEOUT)?;
            if args.target.json {
                let both = serde_json::json!({ "join": joined, "commit": committed });
                println!("{}", serde_json::to_string_pretty(&both).context("printing the answer")?);
            } else {
                print!("{}{}", render_join(&joined), render_commit(&committed));
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Plan(args) => {
            let moves = args.moves;
            show(&args.target, Method::GET, "/admin/plan", move |body| render_plan(body, moves))
        }
        AdminCommand::Commit(args) => {
            let path = if args.force { "/admin/commit?force=true" } else { "/admin/commit" };
            show(&args.target, Method::POST, path, render_commit)
        }
        AdminCommand::Leave(args) => {
            let path = match &args.id {
                Some(id) => format!("/admin/leave?node={}", encode_query(id)),
                None => "/admin/leave".to_string(),
            };
            show(&args.target, Method::POST, &path, render_commit)
        }
        AdminCommand::Remove(args) => {
            let path = format!("/admin/remove?node={}", encode_query(&args.id));
            show(&args.target, Method::POST, &path, render_commit)
        }
        AdminCommand::Transfers(args) => transfers(&args),
        AdminCommand::AntiEntropy(args) => anti_entropy(args),
        AdminCommand::Replicas(args) => {
            let path = format!(
                "/admin/replicas/{}/{}",
                path_segment(args.bucket.as_bytes()),
                path_segment(args.key.as_bytes())
            );
            show(&args.target, Method::GET, &path, render_replicas)
        }
        AdminCommand::Peers(args) => show(&args.target, Method::GET, "/admin/peers", render_peers),
        AdminCommand::Hints(args) => show(&args.target, Method::GET, "/admin/hints", render_hints),
        AdminCommand::Top(args) => {
            crate::admin_top::run(args.once, |path| call(&args.node, Method::GET, path, MEMBERSHIP_TIMEOUT))
        }
    }
}

/// One line per version of each replica, after the key's placement.
fn render_replicas(body: &Value) -> String {
    let placement = format!(
        "{}/{}: partition {}, n {}, preference list {}{}\n",
        text(&body["bucket"]),
        text(&body["key"]),
        text(&body["partition"]),
        text(&body["n"]),
        rows(&body["preference_list"]).iter().map(text).collect::<Vec<_>>().join(", "),
        if body["moving"].as_bool() == Some(true) { " (moving)" } else { "" }
    );
    let mut lines = Vec::new();
    for replica in rows(&body["replicas"]) {
        let versions = rows(&replica["versions"]);
        if versions.is_empty() {
            lines.push(vec![
                text(&replica["node"]),
                text(&replica["status"]),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for version in versions {
            let what = match (&version["datatype"], version["deleted"].as_bool()) {
                (Value::String(kind), _) => format!(
                    "{kind} {}",
                    text(
                        version
                            .get("value")
                            .or(version.get("elements"))
                            .or(version.get("fields"))
                            .unwrap_or(&Value::Null)
                    )
                ),
                (_, Some(true)) => "tombstone".to_string(),
                _ => format!("{} bytes", text(&version["size"])),
            };
            lines.push(vec![
                text(&replica["node"]),
                text(&replica["status"]),
                text(&version["vtag"]),
                what,
                text(&version["timestamp_ms"]),
                text(&version["digest_md5"]),
            ]);
        }
    }
    placement + &table(&["NODE", "STATUS", "VTAG", "VALUE", "TIMESTAMP_MS", "DIGEST"], &lines)
}

fn render_peers(body: &Value) -> String {
    let peers: Vec<Vec<String>> = rows(&body["peers"])
        .iter()
        .map(|peer| {
            vec![
                text(&peer["node"]),
                text(&peer["state"]),
                text(&peer["last_answer_ms_ago"]),
                text(&peer["consecutive_timeouts"]),
                text(&peer["for_ms"]),
            ]
        })
        .collect();
    table(&["PEER", "STATE", "LAST ANSWER MS AGO", "TIMEOUTS IN A ROW", "IN STATE MS"], &peers)
}

fn render_hints(body: &Value) -> String {
    let hints = &body["hints"];
    let fields = ["stored", "stored_bytes", "max_bytes", "accepted", "delivered", "expired", "refused_full"];
    let row: Vec<String> = fields.iter().map(|field| text(&hints[*field])).collect();
    table(&["STORED", "BYTES", "MAX BYTES", "ACCEPTED", "DELIVERED", "EXPIRED", "REFUSED (FULL)"], &[row])
}

/// `dynamo admin transfers`: the node's report, or with `--all` every
/// member's, as one table of pulls.
fn transfers(args: &TransfersArgs) -> anyhow::Result<ExitCode> {
    let first = call(&args.target.node, Method::GET, "/admin/transfers", MEMBERSHIP_TIMEOUT)?;
    let mut reports = vec![first];
    if args.all {
        let cluster = call(&args.target.node, Method::GET, "/admin/cluster", MEMBERSHIP_TIMEOUT)?;
        for member in rows(&cluster["members"]) {
            let asked = member["id"] == reports[0]["node"];
            if asked || member["status"] == "removed" {
                continue;
            }
            let Some(addr) = member["http_addr"].as_str() else { continue };
            match call(addr, Method::GET, "/admin/transfers", MEMBERSHIP_TIMEOUT) {
                Ok(report) => reports.push(report),
                Err(error) => eprintln!("{}: {error:#}", text(&member["id"])),
            }
        }
    }
    if args.target.json {
        let body = if args.all { Value::Array(reports) } else { reports.remove(0) };
        println!("{}", serde_json::to_string_pretty(&body).context("printing the answer")?);
    } else {
        print!("{}", render_transfers(&reports));
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary of the first report (the cluster-wide counts), then per
/// node how many of its copies are done, and every copy not done yet with
/// a progress bar (sources copied out of sources).
fn render_transfers(reports: &[Value]) -> String {
    let mut out = String::new();
    let summary = &reports[0];
    let pending = summary["pending"].as_u64().unwrap_or(0);
    match summary["moving_from_epoch"].as_u64() {
        Some(from) => {
            let _ = writeln!(
                out,
                "ring epoch {} (moving from {from}): {pending} of {} partition copies pending; {} partitions still \
                 read from their previous replicas",
                text(&summary["epoch"]),
                text(&summary["total"]),
                text(&summary["unsettled_partitions"]),
            );
        }
        None => {
            let _ = writeln!(out, "ring epoch {}: no partition transfers in progress", text(&summary["epoch"]));
        }
    }
    if let Some(by_node) = summary["pending_by_node"].as_object().filter(|map| !map.is_empty()) {
        let waiting: Vec<String> = by_node.iter().map(|(node, count)| format!("{node}: {count}")).collect();
        let _ = writeln!(out, "pending per node: {}", waiting.join(", "));
    }
    let mut table_rows = Vec::new();
    for report in reports {
        let pulls = rows(&report["local"]);
        let done = pulls.iter().filter(|pull| pull["state"] == "done").count();
        if done > 0 {
            let _ = writeln!(out, "{}: {done} of its {} copies done", text(&report["node"]), pulls.len());
        }
        for pull in pulls.iter().filter(|pull| pull["state"] != "done") {
            let sources = rows(&pull["sources"]).len().max(1) as u64;
            let copied = pull["sources_done"].as_u64().unwrap_or(0);
            table_rows.push(vec![
                text(&report["node"]),
                text(&pull["partition"]),
                text(&pull["state"]),
                progress_bar(copied, sources),
                text(&pull["keys"]),
                human_bytes(pull["bytes"].as_f64().unwrap_or(0.0)),
                format!("{}/s", human_bytes(pull["bytes_per_sec"].as_f64().unwrap_or(0.0))),
                pull["last_error"].as_str().unwrap_or("").chars().take(60).collect(),
            ]);
        }
    }
    if !table_rows.is_empty() {
        let header = ["NODE", "PARTITION", "STATE", "PROGRESS", "KEYS", "BYTES", "RATE", "LAST ERROR"];
        out.push_str(&table(&header, &table_rows));
    }
    for report in reports.iter().filter(|report| report["leaving"] == true) {
        let _ = writeln!(out, "{} is leaving: it stops once nothing is copied from it", text(&report["node"]));
    }
    out
}

/// `[#####-----] 1/2 sources`.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 10;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '-' }).collect();
    format!("[{bar}] {done}/{total} sources")
}

fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} {}", UNITS[unit]) } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Sends one request, then prints the JSON answer (`--json`) or `render`
/// of it. A non-200 answer is an error carrying the node's reason.
fn show(target: &NodeArg, method: Method, path: &str, render: impl Fn(&Value) -> String) -> anyhow::Result<ExitCode> {
    let body = call(&target.node, method, path, MEMBERSHIP_TIMEOUT)?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&body).context("printing the answer")?);
    } else {
        print!("{}", render(&body));
    }
    Ok(ExitCode::SUCCESS)
}

fn call(node: &str, method: Method, path: &str, timeout: Duration) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let response = runtime
        .block_on(async {
            let mut connection = connect(node).await?;
            connection.set_timeout(timeout);
            connection.request(method, path, &[], Bytes::new()).await
        })
        .with_context(|| format!("asking {node} for {path}"))?;
    let body: Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("{node} answered {} with a body that is not JSON", response.status))?;
    if response.status != 200 {
        bail!("{node} answered {}: {}", response.status, body["error"].as_str().unwrap_or("no reason given"));
    }
    Ok(body)
}

/// Percent-encodes what a query value may not carry as is.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b':' | b'[' | b']' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn percent(fraction: &Value) -> String {
    format!("{:.1}%", fraction.as_f64().unwrap_or(0.0) * 100.0)
}

fn decimal(value: &Value) -> String {
    format!("{:.2}", value.as_f64().unwrap_or(0.0))
}

fn rows(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| cell.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn render_status(body: &Value) -> String {
    let mut out = format!(
        "cluster {}  epoch {}  {} partitions  max imbalance {}  (as seen by {})\n",
        text(&body["cluster_id"]),
        text(&body["epoch"]),
        text(&body["partitions"]),
        decimal(&body["max_imbalance"]),
        text(&body["node"]),
    );
    let members: Vec<Vec<String>> = rows(&body["members"])
        .iter()
        .map(|member| {
            vec![
                text(&member["id"]),
                text(&member["status"]),
                text(&member["zone"]),
                text(&member["capacity"]),
                text(&member["partitions"]),
                percent(&member["share"]),
                text(&member["reachable"]),
            ]
        })
        .collect();
    out.push_str(&table(&["NODE", "STATUS", "ZONE", "CAPACITY", "PARTITIONS", "SHARE", "REACHABLE"], &members));
    let join = &body["join"];
    if join["state"].as_str().is_some_and(|state| state != "none") {
        let _ = writeln!(
            out,
            "join: {} through {} (attempts: {}){}",
            text(&join["state"]),
            text(&join["seed"]),
            text(&join["attempts"]),
            join["last_error"].as_str().map(|error| format!("; last error: {error}")).unwrap_or_default()
        );
    }
    let joining = rows(&body["members"]).iter().filter(|member| member["status"] == "joining").count();
    if joining > 0 {
        let _ = writeln!(out, "{joining} joining: see `dynamo admin plan`, then `dynamo admin commit`");
    }
    out
}

fn render_members(body: &Value) -> String {
    let members: Vec<Vec<String>> = rows(&body["members"])
        .iter()
        .map(|member| {
            vec![
                text(&member["id"]),
                text(&member["status"]),
                text(&member["rpc_addr"]),
                text(&member["http_addr"]),
                text(&member["zone"]),
                text(&member["capacity"]),
                text(&member["version"]),
            ]
        })
        .collect();
    table(&["NODE", "STATUS", "RPC", "HTTP", "ZONE", "CAPACITY", "VERSION"], &members)
}

fn share_rows(shares: &Value) -> Vec<Vec<String>> {
    rows(shares)
        .iter()
        .map(|share| {
            vec![
                text(&share["node"]),
                text(&share["partitions"]),
                percent(&share["fraction"]),
                decimal(&share["ideal"]),
                format!("{:+.2}", share["imbalance"].as_f64().unwrap_or(0.0)),
                text(&share["capacity"]),
                text(&share["zone"]),
            ]
        })
        .collect()
}

const SHARE_HEADER: [&str; 7] = ["NODE", "PARTITIONS", "SHARE", "IDEAL", "IMBALANCE", "CAPACITY", "ZONE"];

fn render_ring(body: &Value, owners: bool) -> String {
    let mut out = format!(
        "ring epoch {}, {} partitions, max imbalance {} (as seen by {})\n",
        text(&body["epoch"]),
        text(&body["partitions"]),
        decimal(&body["max_imbalance"]),
        text(&body["node"]),
    );
    out.push_str(&table(&SHARE_HEADER, &share_rows(&body["shares"])));
    if owners {
        let list: Vec<Vec<String>> = rows(&body["owners"])
            .iter()
            .enumerate()
            .map(|(partition, owner)| vec![partition.to_string(), text(owner)])
            .collect();
        out.push('\n');
        out.push_str(&table(&["PARTITION", "OWNER"], &list));
    }
    out
}

fn render_join(body: &Value) -> String {
    format!(
        "{} joined cluster {} through {} ({} member records, ring epoch {})\n{}\n",
        text(&body["node"]),
        text(&body["cluster_id"]),
        text(&body["seed"]),
        text(&body["members"]),
        text(&body["epoch"]),
        text(&body["note"]),
    )
}

fn render_plan(body: &Value, every_move: bool) -> String {
    let mut out = String::new();
    if body["changes"] != Value::Bool(true) {
        let _ = writeln!(
            out,
            "nothing to plan: the committed ring (epoch {}) fits the members",
            text(&body["committed_epoch"])
        );
        return out;
    }
    let _ = writeln!(
        out,
        "plan: epoch {} -> {}: {} of {} partitions move ({})",
        text(&body["committed_epoch"]),
        text(&body["planned_epoch"]),
        text(&body["moved"]),
        text(&body["partitions"]),
        percent(&body["moved_fraction"]),
    );
    let moves = rows(&body["moves"]);
    if every_move {
        let list: Vec<Vec<String>> =
            moves.iter().map(|step| vec![text(&step["partition"]), text(&step["from"]), text(&step["to"])]).collect();
        out.push_str(&table(&["PARTITION", "FROM", "TO"], &list));
    } else {
        let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for step in moves {
            grouped.entry((text(&step["from"]), text(&step["to"]))).or_default().push(text(&step["partition"]));
        }
        let list: Vec<Vec<String>> = grouped
            .into_iter()
            .map(|((from, to), partitions)| {
                let mut shown = partitions.iter().take(12).cloned().collect::<Vec<_>>().join(",");
                if partitions.len() > 12 {
                    shown.push_str(",...");
                }
                vec![partitions.len().to_string(), from, to, shown]
            })
            .collect();
        out.push_str(&table(&["COUNT", "FROM", "TO", "PARTITIONS"], &list));
    }
    let _ = writeln!(out, "\nplanned shares (max imbalance {}):", decimal(&body["max_imbalance"]));
    out.push_str(&table(&SHARE_HEADER, &share_rows(&body["shares"])));
    let _ = writeln!(out, "\ncommit: {}", text(&body["commit"]));
    out
}

fn render_commit(body: &Value) -> String {
    let mut out = String::new();
    if body["committed"] != Value::Bool(true) {
        let _ = writeln!(out, "{}", text(&body["note"]));
        return out;
    }
    let _ = writeln!(
        out,
        "committed ring epoch {} (was {}): {} partitions changed owner",
        text(&body["epoch"]),
        text(&body["previous_epoch"]),
        rows(&body["moves"]).len(),
    );
    let pushed: Vec<String> = rows(&body["pushed_to"]).iter().map(text).collect();
    let _ = writeln!(out, "told at once: {}", if pushed.is_empty() { "-".to_string() } else { pushed.join(", ") });
    for missed in rows(&body["not_pushed"]) {
        let _ =
            writeln!(out, "not reached: {} ({}); gossip brings it the new ring", text(&missed[0]), text(&missed[1]));
    }
    out.push_str(&table(&SHARE_HEADER, &share_rows(&body["shares"])));
    let _ = writeln!(out, "note: {}", text(&body["note"]));
    out
}

fn anti_entropy(args: AntiEntropyArgs) -> anyhow::Result<ExitCode> {
    let (method, path) = match (args.trigger, args.partition) {
        (false, _) => (Method::GET, "/admin/anti-entropy".to_string()),
        (true, None) => (Method::POST, "/admin/anti-entropy".to_string()),
        (true, Some(partition)) => (Method::POST, format!("/admin/anti-entropy?partition={partition}")),
    };
    let body = call(&args.node, method, &path, TRIGGER_TIMEOUT)?;
    println!("{}", serde_json::to_string_pretty(&body).context("printing the answer")?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn transfers_show_the_cluster_summary_and_each_pull_with_a_progress_bar() {
        let report = json!({
            "node": "node3", "epoch": 2, "moving_from_epoch": 1, "total": 48, "pending": 5,
            "pending_by_node": {"node3": 5}, "unsettled_partitions": 5, "leaving": false,
            "local": [
                {"partition": 7, "state": "done", "sources": ["node0", "node1", "node2"], "sources_done": 3,
                 "keys": 120, "bytes": 2048.0, "bytes_per_sec": 1536.0},
                {"partition": 9, "state": "retrying", "sources": ["node0", "node1"], "sources_done": 1,
                 "keys": 3, "bytes": 10.0, "bytes_per_sec": 5.0, "last_error": "page from node1: down"},
            ],
        });
        let out = render_transfers(&[report]);
        assert!(out.starts_with("ring epoch 2 (moving from 1): 5 of 48 partition copies pending"), "{out}");
        assert!(out.contains("pending per node: node3: 5"), "{out}");
        assert!(out.contains("node3: 1 of its 2 copies done"), "{out}");
        assert!(!out.contains("node3  7 "), "done copies are counted, not listed: {out}");
        assert!(out.contains("node3  9          retrying  [#####-----] 1/2 sources  3     10 B   5 B/s"), "{out}");
        assert!(out.contains("page from node1: down"), "{out}");
        let idle = json!({"node": "n", "epoch": 4, "total": 0, "pending": 0, "local": [], "leaving": true});
        let out = render_transfers(&[idle]);
        assert!(out.contains("ring epoch 4: no partition transfers in progress"), "{out}");
        assert!(out.contains("n is leaving"), "{out}");
    }

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let out = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["b".into(), String::new()]]);
        assert_eq!(out, "A    LONGER\nxyz  1\nb\n");
    }

    #[test]
    fn status_shows_every_member_with_share_and_reachability() {
        let body = json!({
            "node": "node0", "cluster_id": "ab", "epoch": 2, "partitions": 8, "max_imbalance": 0.5,
            "members": [
                {"id": "node0", "status": "member", "zone": null, "capacity": 1, "partitions": 8, "share": 1.0,
                 "reachable": "self"},
                {"id": "node1", "status": "joining", "zone": "b", "capacity": 2, "partitions": 0, "share": 0.0,
                 "reachable": "up"},
            ],
            "join": {"state": "none", "attempts": 0},
        });
        let out = render_status(&body);
        assert!(
            out.starts_with("cluster ab  epoch 2  8 partitions  max imbalance 0.50  (as seen by node0)\n"),
            "{out}"
        );
        assert!(out.contains("node0  member   -     1         8           100.0%  self"), "{out}");
        assert!(out.contains("node1  joining  b     2         0           0.0%    up"), "{out}");
        assert!(out.contains("1 joining: see `dynamo admin plan`"), "{out}");
    }

    #[test]
    fn plan_groups_moves_by_source_and_destination() {
        let body = json!({
            "changes": true, "committed_epoch": 1, "planned_epoch": 2, "moved": 3, "partitions": 8,
            "moved_fraction": 0.375, "max_imbalance": 0.2, "shares": [], "commit": "safe",
            "moves": [
                {"partition": 1, "from": "a", "to": "c"},
                {"partition": 4, "from": "a", "to": "c"},
                {"partition": 6, "from": "b", "to": "c"},
            ],
        });
        let out = render_plan(&body, false);
        assert!(out.contains("plan: epoch 1 -> 2: 3 of 8 partitions move (37.5%)"), "{out}");
        assert!(out.contains("2      a     c   1,4"), "{out}");
        assert!(out.contains("commit: safe"), "{out}");
        assert!(render_plan(&body, true).contains("6          b     c"));
    }

    #[test]
    fn seeds_are_percent_encoded_in_the_query() {
        assert_eq!(encode_query("10.0.0.1:9080"), "10.0.0.1:9080");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }
}
