//! The keyspace commands on strings and counters (`GET`, `SET`, `INCR`,
//! `DEL`, ...), as map operations on the key ([`super::model`]) through the
//! coordinator, in the front end's bucket.
//!
//! **Writes apply where they are checked.** `SET` (with `NX` or `XX`),
//! `SETNX`, `INCR` and `DEL` are each one update: the acting replica
//! checks the condition (absent, present, an integer, not another type) on
//! its copy and applies the change in the same step, so a plain `SET`, an
//! `INCR` or a `DEL` costs one round of W acknowledgements and no read.
//! `GET` of `SET ... GET` and `GETDEL` read first (they answer the old
//! value). `SET` keeps the write with the greatest hybrid-logical-clock
//! timestamp where two meet; increments through any nodes all count.
//!
//! **Not atomic across replicas.** The acting replica judges a condition
//! by what it holds: two clients racing `SET NX` through different nodes
//! can both succeed, and the last write wins. That is the price of
//! availability under partition (no consensus), and the README says so.

use bytes::Bytes;
use dynamo_core::crdt::map::MapOp;

use super::expiry;
use super::keyspace::{Keyspace, Read, Refusal, integer_argument, refusal_reply, wrong_type};
use super::model::{self, RedisValue, redis_value};
use super::reply::Reply;

/// Runs the string command `name` (already checked for arity).
pub(super) async fn execute(keyspace: &Keyspace, name: &str, args: &[Bytes]) -> Reply {
    let outcome = match name {
        "get" => get(keyspace, &args[0]).await,
        "set" => set(keyspace, args).await,
        "setnx" => setnx(keyspace, args).await,
        "setex" => set_with_expiry(keyspace, args, expiry::Unit::Seconds, "setex").await,
        "psetex" => set_with_expiry(keyspace, args, expiry::Unit::Milliseconds, "psetex").await,
        "getdel" => getdel(keyspace, &args[0]).await,
        "mget" => mget(keyspace, args).await,
        "mset" => mset(keyspace, args).await,
        "del" | "unlink" => del(keyspace, args).await,
        "exists" => exists(keyspace, args).await,
        "strlen" => strlen(keyspace, &args[0]).await,
        "type" => keyspace.read(&args[0]).await.map(|read| Reply::Simple(read.value.type_name().to_string())),
        "incr" => increment(keyspace, &args[0], 1).await,
        "decr" => increment(keyspace, &args[0], -1).await,
        "incrby" => match integer_argument(&args[1]) {
            Ok(amount) => increment(keyspace, &args[0], amount).await,
            Err(reply) => Err(reply),
        },
        "decrby" => match integer_argument(&args[1]).and_then(negate) {
            Ok(amount) => increment(keyspace, &args[0], amount).await,
            Err(reply) => Err(reply),
        },
        other => Err(Reply::err(format!("unknown command '{other}'"))),
    };
    outcome.unwrap_or_else(|reply| reply)
}

/// The string value, `None` when absent, `Err(WRONGTYPE)` for a set or
/// hash.
fn string_of(read: &Read) -> Result<Option<Bytes>, Reply> {
    match &read.value {
        RedisValue::Absent => Ok(None),
        RedisValue::String(bytes) => Ok(Some(bytes.clone())),
        RedisValue::Set(_) | RedisValue::Hash(_) => Err(wrong_type()),
    }
}

fn bulk_or_null(value: Option<Bytes>) -> Reply {
    value.map_or(Reply::Null, |bytes| Reply::bulk(bytes.to_vec()))
}

fn negate(amount: i64) -> Result<i64, Reply> {
    amount.checked_neg().ok_or_else(|| Reply::err("decrement would overflow"))
}

async fn get(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = keyspace.read(name).await?;
    Ok(bulk_or_null(string_of(&read)?))
}

/// How a `SET` treats the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetExpiry {
    /// None: the key becomes permanent (Redis's default).
    Clear,
    /// `EX`, `PX`, `EXAT`, `PXAT`: this absolute time (unix ms).
    At(u64),
    /// `KEEPTTL`: whatever expiry the key had.
    Keep,
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`.
async fn set(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    let (name, data) = (&args[0], &args[1]);
    let (mut only_absent, mut only_present, mut return_old) = (false, false, false);
    let mut expiry: Option<SetExpiry> = None;
    let mut options = args[2..].iter();
    while let Some(option) = options.next() {
        let option = option.to_ascii_uppercase();
        let chosen = match option.as_slice() {
            b"NX" => {
                only_absent = true;
                continue;
            }
            b"XX" => {
                only_present = true;
                continue;
            }
            b"GET" => {
                return_old = true;
                continue;
            }
            b"KEEPTTL" => SetExpiry::Keep,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" => {
                let amount = options.next().ok_or_else(|| Reply::err("syntax error"))?;
                let unit = match option.as_slice() {
                    b"EX" => expiry::Unit::Seconds,
                    b"PX" => expiry::Unit::Milliseconds,
                    b"EXAT" => expiry::Unit::UnixSeconds,
                    _ => expiry::Unit::UnixMilliseconds,
                };
                SetExpiry::At(expiry::deadline(amount, unit, keyspace.now_ms(), "set")?)
            }
            _ => return Err(Reply::err("syntax error")),
        };
        if expiry.replace(chosen).is_some() {
            return Err(Reply::err("syntax error"));
        }
    }
    if only_absent && only_present {
        return Err(Reply::err("syntax error"));
    }
    let expiry = expiry.unwrap_or(SetExpiry::Clear);
    let old_read = match return_old || expiry == SetExpiry::Keep {
        true => Some(keyspace.read(name).await?),
        false => None,
    };
    let old = match (&old_read, return_old) {
        (Some(read), true) => Some(string_of(read)?),
        _ => None,
    };
    let mut ops = Vec::new();
    ops.extend(only_absent.then(model::require_absent));
    ops.extend(only_present.then(model::require_present));
    ops.extend(model::set_string(data.clone()));
    let expires_ms = match expiry {
        SetExpiry::Clear => None,
        SetExpiry::At(at) => Some(at),
        // The expiry as read; a key that was absent or expired gets none.
        SetExpiry::Keep => {
            old_read.filter(|read| read.value != RedisValue::Absent).and_then(|read| read.map.expires_ms())
        }
    };
    ops.extend(expires_ms.map(MapOp::expire_at));
    let stored = match keyspace.update(name, ops, None).await {
        Ok(_) => true,
        Err(Refusal::Unmet(_)) => false,
        Err(refusal) => return Err(refusal_reply(refusal)),
    };
    Ok(match (old, stored) {
        (Some(old), _) => bulk_or_null(old),
        (None, true) => Reply::ok(),
        (None, false) => Reply::Null,
    })
}

/// `SETEX key seconds value` and `PSETEX key milliseconds value`.
async fn set_with_expiry(
    keyspace: &Keyspace,
    args: &[Bytes],
    unit: expiry::Unit,
    command: &str,
) -> Result<Reply, Reply> {
    let expires_ms = expiry::deadline(&args[1], unit, keyspace.now_ms(), command)?;
    let mut ops = model::set_string(args[2].clone());
    ops.push(MapOp::expire_at(expires_ms));
    keyspace.update(&args[0], ops, None).await.map_err(refusal_reply)?;
    Ok(Reply::ok())
}

async fn setnx(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    let mut ops = vec![model::require_absent()];
    ops.extend(model::set_string(args[1].clone()));
    match keyspace.update(&args[0], ops, None).await {
        Ok(_) => Ok(Reply::Integer(1)),
        Err(Refusal::Unmet(_)) => Ok(Reply::Integer(0)),
        Err(refusal) => Err(refusal_reply(refusal)),
    }
}

async fn getdel(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let Some(old) = string_of(&keyspace.read(name).await?)? else { return Ok(Reply::Null) };
    match keyspace.update(name, model::delete(), None).await {
        Ok(_) => Ok(Reply::bulk(old.to_vec())),
        Err(Refusal::Unmet(_)) => Ok(Reply::Null),
        Err(refusal) => Err(refusal_reply(refusal)),
    }
}

/// `MGET`: a key that is absent or not a string reads as nil, as in Redis.
async fn mget(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let read = keyspace.read(name).await?;
        values.push(bulk_or_null(string_of(&read).ok().flatten()));
    }
    Ok(Reply::Array(values))
}

async fn mset(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(Reply::err("wrong number of arguments for 'mset' command"));
    }
    for pair in args.chunks(2) {
        keyspace.update(&pair[0], model::set_string(pair[1].clone()), None).await.map_err(refusal_reply)?;
    }
    Ok(Reply::ok())
}

/// `DEL`: each key is cleared where it is present; the count is of the
/// keys the acting replicas held.
async fn del(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut removed = 0;
    for name in names {
        match keyspace.update(name, model::delete(), None).await {
            Ok(_) => removed += 1,
            Err(Refusal::Unmet(_)) => {}
            Err(refusal) => return Err(refusal_reply(refusal)),
        }
    }
    Ok(Reply::Integer(removed))
}

async fn exists(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut present = 0;
    for name in names {
        if keyspace.read(name).await?.value != RedisValue::Absent {
            present += 1;
        }
    }
    Ok(Reply::Integer(present))
}

async fn strlen(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = keyspace.read(name).await?;
    Ok(Reply::Integer(string_of(&read)?.map_or(0, |bytes| bytes.len() as i64)))
}

/// `INCRBY` and its family: the new value.
async fn increment(keyspace: &Keyspace, name: &Bytes, amount: i64) -> Result<Reply, Reply> {
    let map = match keyspace.update(name, model::increment(amount), None).await {
        Ok(map) => map,
        Err(Refusal::Unmet(_)) => return Err(Reply::err("value is not an integer or out of range")),
        Err(refusal) => return Err(refusal_reply(refusal)),
    };
    match redis_value(&map) {
        RedisValue::String(bytes) => integer_argument(&bytes).map(Reply::Integer),
        _ => Err(wrong_type()),
    }
}
