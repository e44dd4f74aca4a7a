//! `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`: the keyspace's
//! keys, page by page, over the cluster-wide coverage listing
//! ([`crate::coordinator::Coordinator::list_keys`]), so a full iteration
//! returns every key that exists throughout it, once (Redis promises at
//! least once), and skips deleted and expired keys.
//!
//! **Cursors.** Redis clients parse the cursor as an integer (redis-py
//! does), but where a listing stopped is a partition and a key, up to a
//! kilobyte. So this node keeps the listing's continuation token in a
//! bounded table ([`Cursors`]) under a fresh number and hands out the
//! number; `0` starts and ends a pass, as in Redis. A cursor is this
//! node's (a client that reconnects to another node starts again), lives
//! [`CURSOR_IDLE`] after its last use, and at most [`MAX_CURSORS`] are
//! kept (the least recently used goes first): an unknown cursor is an
//! error that says to start again from 0, never a silent empty answer.
//! A cursor can be used again (a client retrying after a timeout gets the
//! same page again).
//!
//! `COUNT` is the page size asked of the listing (default 10, as Redis;
//! at most the listing's page limit); `MATCH` filters the page (so a page
//! may be empty with a cursor that goes on, as in Redis); `TYPE` reads
//! each key that matched, one read per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_core::listing::MAX_PAGE_KEYS;

use super::glob;
use super::keyspace::{Keyspace, coordinator_error, integer_argument};
use super::reply::Reply;

/// Most cursors a node keeps.
pub const MAX_CURSORS: usize = 4096;
/// How long an unused cursor is kept.
pub const CURSOR_IDLE: Duration = Duration::from_secs(600);
/// `COUNT` when the client gives none (Redis's default).
const DEFAULT_COUNT: usize = 10;
/// Cursor numbers stay below 2^53, so that a client that parses them as
/// a double (JavaScript) still reads them exactly.
const CURSOR_SPACE: u64 = 1 << 53;

/// The open cursors of this node's `SCAN`s.
pub struct Cursors {
    table: Mutex<CursorTable>,
}

struct CursorTable {
    next: u64,
    open: HashMap<u64, OpenCursor>,
}

struct OpenCursor {
    token: String,
    used: Instant,
}

impl Cursors {
    /// An empty table whose numbers start from `seed` (the node's start
    /// time will do: a cursor from before a restart is then unknown rather
    /// than someone else's).
    pub fn new(seed: u64) -> Cursors {
        Cursors { table: Mutex::new(CursorTable { next: seed % CURSOR_SPACE, open: HashMap::new() }) }
    }

    /// Keeps `token` and returns its cursor number (never 0).
    fn open(&self, token: String, now: Instant) -> u64 {
        let mut table = self.table.lock().expect("cursor table lock");
        table.open.retain(|_, open| now.duration_since(open.used) < CURSOR_IDLE);
        if table.open.len() >= MAX_CURSORS {
            let oldest = table.open.iter().min_by_key(|(_, open)| open.used).map(|(number, _)| *number);
            if let Some(number) = oldest {
                table.open.remove(&number);
            }
        }
        let number = loop {
            table.next = (table.next + 1) % CURSOR_SPACE;
            if table.next != 0 && !table.open.contains_key(&table.next) {
                break table.next;
            }
        };
        table.open.insert(number, OpenCursor { token, used: now });
        number
    }

    /// The token of cursor `number`, marking it used.
    fn resume(&self, number: u64, now: Instant) -> Option<String> {
        let mut table = self.table.lock().expect("cursor table lock");
        let open = table.open.get_mut(&number).filter(|open| now.duration_since(open.used) < CURSOR_IDLE)?;
        open.used = now;
        Some(open.token.clone())
    }
}

/// The options of one `SCAN`.
#[derive(Debug, PartialEq, Eq)]
struct ScanOptions {
    pattern: Option<Bytes>,
    count: usize,
    type_name: Option<String>,
}

fn parse_options(args: &[Bytes]) -> Result<ScanOptions, Reply> {
    let mut options = ScanOptions { pattern: None, count: DEFAULT_COUNT, type_name: None };
    let mut rest = args.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(|| Reply::err("syntax error"))?;
        match option.to_ascii_uppercase().as_slice() {
            b"MATCH" => options.pattern = Some(value.clone()),
            b"COUNT" => {
                let count = integer_argument(value)?;
                if count < 1 {
                    return Err(Reply::err("syntax error"));
                }
                options.count = usize::try_from(count).unwrap_or(MAX_PAGE_KEYS).min(MAX_PAGE_KEYS);
            }
            b"TYPE" => options.type_name = Some(String::from_utf8_lossy(value).to_ascii_lowercase()),
            _ => return Err(Reply::err("syntax error")),
        }
    }
    Ok(options)
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
pub(super) async fn scan(keyspace: &Keyspace, cursors: &Cursors, args: &[Bytes]) -> Reply {
    run(keyspace, cursors, args).await.unwrap_or_else(|reply| reply)
}

async fn run(keyspace: &Keyspace, cursors: &Cursors, args: &[Bytes]) -> Result<Reply, Reply> {
    let number = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("invalid cursor"))?;
    let options = parse_options(&args[1..])?;
    let token = match number {
        0 => None,
        number => Some(cursors.resume(number, Instant::now()).ok_or_else(|| {
            Reply::err(format!(
                "unknown cursor {number}: this node never gave it out, or it was unused for {} s or evicted (at most \
                 {MAX_CURSORS} are kept); start again with SCAN 0",
                CURSOR_IDLE.as_secs()
            ))
        })?),
    };
    let page = keyspace
        .coordinator
        .list_keys(&keyspace.bucket, options.count, token.as_deref())
        .await
        .map_err(coordinator_error)?;
    let mut keys = Vec::with_capacity(page.keys.len());
    for key in page.keys {
        if options.pattern.as_ref().is_some_and(|pattern| !glob::matches(pattern, &key, false)) {
            continue;
        }
        if let Some(wanted) = &options.type_name {
            let read = keyspace.read(&Bytes::from(key.clone())).await?;
            if read.value.type_name() != wanted {
                continue;
            }
        }
        keys.push(Reply::bulk(key));
    }
    let next = page.continuation.map_or(0, |token| cursors.open(token, Instant::now()));
    Ok(Reply::Array(vec![Reply::bulk(next.to_string().into_bytes()), Reply::Array(keys)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<Bytes> {
        text.iter().map(|t| Bytes::copy_from_slice(t.as_bytes())).collect()
    }

    #[test]
    fn options_parse_as_redis_reads_them() {
        assert_eq!(parse_options(&[]), Ok(ScanOptions { pattern: None, count: 10, type_name: None }));
        let parsed = parse_options(&args(&["match", "user:*", "COUNT", "500", "type", "HASH"])).expect("valid");
        assert_eq!(
            parsed,
            ScanOptions { pattern: Some(Bytes::from("user:*")), count: 500, type_name: Some("hash".into()) }
        );
        assert_eq!(parse_options(&args(&["COUNT", "999999"])).expect("valid").count, MAX_PAGE_KEYS);
        for bad in [&["COUNT", "0"][..], &["COUNT"], &["LIMIT", "5"], &["COUNT", "x"]] {
            assert!(parse_options(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cursors_resume_until_idle_and_the_table_stays_bounded() {
        let cursors = Cursors::new(7);
        let start = Instant::now();
        let first = cursors.open("token-a".into(), start);
        assert_ne!(first, 0);
        assert_eq!(cursors.resume(first, start), Some("token-a".into()));
        assert_eq!(cursors.resume(first, start), Some("token-a".into()), "a cursor can be retried");
        assert_eq!(cursors.resume(first + 1, start), None);
        assert_eq!(cursors.resume(first, start + CURSOR_IDLE), None, "an idle cursor is forgotten");
        for n in 0..MAX_CURSORS + 10 {
            cursors.open(format!("t{n}"), start + Duration::from_millis(n as u64));
        }
        assert!(cursors.table.lock().expect("lock").open.len() <= MAX_CURSORS);
    }

    #[test]
    fn cursor_numbers_wrap_below_two_to_the_53_and_skip_zero() {
        let cursors = Cursors::new(CURSOR_SPACE - 2);
        let now = Instant::now();
        let numbers: Vec<u64> = (0..3).map(|n| cursors.open(format!("t{n}"), now)).collect();
        assert_eq!(numbers, vec![CURSOR_SPACE - 1, 1, 2]);
    }
}
