//! The membership change under test, through the admin HTTP API.
//!
//! - [`commit_join`] (the nemesis's join, during a partition): once the
//!   spare has started with `--join`, commits the plan that puts it in the
//!   ring, retrying until the committer lists it as a member. Retrying
//!   matters: the committer learns of the joiner by gossip, and a commit
//!   pushes the new ring to every member, waiting out each one cut off by
//!   the partition, so an answer may arrive after the request's deadline
//!   (or never) although the commit took place.
//! - [`wait_transfers_done`] (after the final heal): until every node has
//!   seen every partition transfer done, reads of a moving partition still
//!   go to the old ring's replicas and `/admin/replicas` would compare the
//!   wrong replicas; and transfers that never finish are a bug in
//!   themselves.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::Value;

use crate::checker::transfers_done;
use crate::procs::ChaosCluster;
use crate::run::request_within;

/// Longest time from the joiner's start to a committed ring that includes
/// it: gossip takes a second or two to tell the committer about it, and a
/// commit may take the nodes' request timeout (5 s) per member it cannot
/// reach.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(40);
/// Deadline of one commit request (see [`COMMIT_TIMEOUT`]).
const COMMIT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline of a status request.
const STATUS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two polls of a node's state.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Commits the plan that puts started spare `joiner` in the ring, through
/// node `committer` (blocking: the nemesis thread has no runtime). Says
/// how it went.
pub fn commit_join(cluster: &ChaosCluster, joiner: usize, committer: usize) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("tokio runtime for the join: {error}"))?;
    let specs = cluster.specs();
    runtime.block_on(commit_until_member(&specs[committer].http_addr, &specs[joiner].id))
}

/// Polls how `committer` lists `joiner`; commits while it is `joining`,
/// until it is a member of the ring or [`COMMIT_TIMEOUT`] has passed.
async fn commit_until_member(committer: &str, joiner: &str) -> Result<String, String> {
    let started = Instant::now();
    let mut commits = 0;
    let mut last = "no answer yet".to_string();
    while started.elapsed() < COMMIT_TIMEOUT {
        match membership_of(committer, joiner).await {
            Ok(Membership::InRing { epoch }) => {
                return Ok(format!(
                    "{joiner} is in the ring at epoch {epoch}, {:.2} s after it started ({commits} commit \
                     request(s) to {committer})",
                    started.elapsed().as_secs_f64()
                ));
            }
            Ok(Membership::Joining) => {
                commits += 1;
                last = match request_within(committer, Method::POST, "/admin/commit", COMMIT_REQUEST_TIMEOUT).await {
                    Ok((200, body)) => format!("commit answered {}", String::from_utf8_lossy(&body)),
                    Ok((status, body)) => format!("commit refused, {status}: {}", String::from_utf8_lossy(&body)),
                    Err(error) => format!("commit request failed: {error}"),
                };
            }
            Ok(Membership::Unknown) => last = format!("{committer} does not list {joiner} yet"),
            Err(error) => last = error,
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(format!("{joiner} was not committed into the ring through {committer} within {COMMIT_TIMEOUT:?}; last: {last}"))
}

/// Where a node stands in another's view.
enum Membership {
    /// Not listed (gossip has not brought it yet).
    Unknown,
    /// Listed, not in the committed ring.
    Joining,
    /// A member in the committed ring of `epoch`.
    InRing { epoch: u64 },
}

/// How `GET /admin/cluster` on `node` lists `joiner`.
async fn membership_of(node: &str, joiner: &str) -> Result<Membership, String> {
    let body = match request_within(node, Method::GET, "/admin/cluster", STATUS_REQUEST_TIMEOUT).await? {
        (200, body) => body,
        (status, body) => return Err(format!("{node}: /admin/cluster {status}: {}", String::from_utf8_lossy(&body))),
    };
    let cluster: Value = serde_json::from_slice(&body).map_err(|error| format!("{node}: bad JSON: {error}"))?;
    let listed = cluster["members"].as_array().and_then(|members| members.iter().find(|member| member["id"] == joiner));
    Ok(match listed {
        None => Membership::Unknown,
        Some(member) if member["status"] == "member" && member["in_ring"] == true => {
            Membership::InRing { epoch: cluster["epoch"].as_u64().unwrap_or_default() }
        }
        Some(_) => Membership::Joining,
    })
}

/// Polls `GET /admin/transfers` on every node in `nodes` until all report
/// no pending pull at one common epoch (see [`transfers_done`]), or
/// `deadline`. Returns that epoch.
pub async fn wait_transfers_done(
    nodes: &[String],
    deadline: Instant,
    interrupted: &dyn Fn() -> bool,
) -> Result<u64, String> {
    loop {
        let mut reports = Vec::with_capacity(nodes.len());
        for node in nodes {
            reports.push(transfers_report(node).await);
        }
        let why = match transfers_done(&reports) {
            Ok(epoch) => return Ok(epoch),
            Err(why) => why,
        };
        if Instant::now() > deadline || interrupted() {
            return Err(format!("partition transfers did not finish on every node in time: {why}"));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `node`'s `GET /admin/transfers`, or why there is none.
async fn transfers_report(node: &str) -> Result<Value, String> {
    match request_within(node, Method::GET, "/admin/transfers", STATUS_REQUEST_TIMEOUT).await {
        Ok((200, body)) => serde_json::from_slice(&body).map_err(|error| format!("{node}: bad JSON: {error}")),
        Ok((status, body)) => Err(format!("{node}: {status}: {}", String::from_utf8_lossy(&body))),
        Err(error) => Err(format!("{node}: {error}")),
    }
}
