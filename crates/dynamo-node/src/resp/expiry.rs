//! Key expiry commands (`EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`,
//! `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`) and the
//! deadlines `SET EX/PX/EXAT/PXAT`, `SETEX` and `PSETEX` give.
//!
//! A key's expiry is its map's expiry register
//! ([`dynamo_core::crdt::map::expiry_key`]): an absolute time in unix
//! milliseconds, set by the node that takes the command from its own wall
//! clock and judged by the node that answers a read against its own. The
//! last `EXPIRE` wins (by hybrid logical clock), `SET` and `DEL` clear it
//! as in Redis, and the first write to a key after it expired starts the
//! key afresh on the acting replica (so an expired hash does not come back
//! with the next `HSET`). Expired keys are collected like tombstones, once
//! every replica holds the expired state and the grace period has passed.
//!
//! The `NX`, `XX`, `GT` and `LT` options of `EXPIRE` are judged on a read
//! of the key, then the new expiry is written: two clients racing `EXPIRE
//! ... GT` through different nodes can both succeed, and the later write
//! wins (the README says so).

use bytes::Bytes;
use dynamo_core::crdt::map::MapOp;

use super::keyspace::{Keyspace, Refusal, integer_argument, refusal_reply};
use super::model::RedisValue;
use super::reply::Reply;

/// How an expiry argument counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unit {
    /// Seconds from now (`EX`, `EXPIRE`, `SETEX`).
    Seconds,
    /// Milliseconds from now (`PX`, `PEXPIRE`, `PSETEX`).
    Milliseconds,
    /// A unix time in seconds (`EXAT`, `EXPIREAT`).
    UnixSeconds,
    /// A unix time in milliseconds (`PXAT`, `PEXPIREAT`).
    UnixMilliseconds,
}

/// Latest expiry accepted (unix ms): far beyond any real deadline, and far
/// from where the arithmetic could overflow.
const LATEST_EXPIRY_MS: i128 = 1 << 53;

fn invalid_expire_time(command: &str) -> Reply {
    Reply::err(format!("invalid expire time in '{command}' command"))
}

/// The unix-ms time `amount` in `unit` names at `now_ms`, which may be in
/// the past (`EXPIRE key -1` deletes the key).
fn target_ms(amount: &Bytes, unit: Unit, now_ms: u64, command: &str) -> Result<i128, Reply> {
    let amount = i128::from(integer_argument(amount)?);
    let now = i128::from(now_ms);
    let target = match unit {
        Unit::Seconds => now + amount * 1000,
        Unit::Milliseconds => now + amount,
        Unit::UnixSeconds => amount * 1000,
        Unit::UnixMilliseconds => amount,
    };
    match target > LATEST_EXPIRY_MS {
        true => Err(invalid_expire_time(command)),
        false => Ok(target),
    }
}

/// The deadline of a `SET`-family expiry, which must be a positive amount
/// (Redis refuses `SET k v EX 0`).
pub(super) fn deadline(amount: &Bytes, unit: Unit, now_ms: u64, command: &str) -> Result<u64, Reply> {
    if integer_argument(amount)? <= 0 {
        return Err(invalid_expire_time(command));
    }
    let target = target_ms(amount, unit, now_ms, command)?;
    u64::try_from(target).map_err(|_| invalid_expire_time(command))
}

/// Runs the expiry command `name` (already checked for arity).
pub(super) async fn execute(keyspace: &Keyspace, name: &str, args: &[Bytes]) -> Reply {
    let outcome = match name {
        "expire" => expire(keyspace, args, Unit::Seconds, name).await,
        "pexpire" => expire(keyspace, args, Unit::Milliseconds, name).await,
        "expireat" => expire(keyspace, args, Unit::UnixSeconds, name).await,
        "pexpireat" => expire(keyspace, args, Unit::UnixMilliseconds, name).await,
        "ttl" => remaining(keyspace, &args[0], Shown::RemainingSeconds).await,
        "pttl" => remaining(keyspace, &args[0], Shown::RemainingMilliseconds).await,
        "expiretime" => remaining(keyspace, &args[0], Shown::UnixSeconds).await,
        "pexpiretime" => remaining(keyspace, &args[0], Shown::UnixMilliseconds).await,
        "persist" => persist(keyspace, &args[0]).await,
        other => Err(Reply::err(format!("unknown command '{other}'"))),
    };
    outcome.unwrap_or_else(|reply| reply)
}

/// The condition option of `EXPIRE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Only {
    Always,
    /// `NX`: only a key without an expiry.
    WithoutExpiry,
    /// `XX`: only a key with one.
    WithExpiry,
    /// `GT`: only a later expiry (no expiry counts as infinite).
    Later,
    /// `LT`: only an earlier one.
    Earlier,
}

fn parse_only(options: &[Bytes]) -> Result<Only, Reply> {
    let mut chosen = Vec::new();
    for option in options {
        chosen.push(match option.to_ascii_uppercase().as_slice() {
            b"NX" => Only::WithoutExpiry,
            b"XX" => Only::WithExpiry,
            b"GT" => Only::Later,
            b"LT" => Only::Earlier,
            other => return Err(Reply::err(format!("Unsupported option {}", String::from_utf8_lossy(other)))),
        });
    }
    let has = |only| chosen.contains(&only);
    if has(Only::WithoutExpiry) && (has(Only::WithExpiry) || has(Only::Later) || has(Only::Earlier)) {
        return Err(Reply::err("NX and XX, GT or LT options at the same time are not compatible"));
    }
    if has(Only::Later) && has(Only::Earlier) {
        return Err(Reply::err("GT and LT options at the same time are not compatible"));
    }
    // `XX GT` is `GT` on a key that has an expiry; GT already needs one.
    Ok(chosen
        .iter()
        .copied()
        .find(|only| matches!(only, Only::Later | Only::Earlier))
        .or(chosen.first().copied())
        .unwrap_or(Only::Always))
}

/// Whether `only` lets a key whose expiry is `current` get `target`.
fn allowed(only: Only, current: Option<u64>, target: i128) -> bool {
    match (only, current) {
        (Only::Always, _) => true,
        (Only::WithoutExpiry, current) => current.is_none(),
        (Only::WithExpiry, current) => current.is_some(),
        (Only::Later, Some(current)) => target > i128::from(current),
        (Only::Later, None) => false,
        (Only::Earlier, Some(current)) => target < i128::from(current),
        (Only::Earlier, None) => true,
    }
}

/// `EXPIRE key amount [NX|XX|GT|LT]` and its family: 1 when the expiry was
/// set (a time already past expires the key at once), 0 when the read
/// found the key absent or the option did not hold.
async fn expire(keyspace: &Keyspace, args: &[Bytes], unit: Unit, command: &str) -> Result<Reply, Reply> {
    let name = &args[0];
    let target = target_ms(&args[1], unit, keyspace.now_ms(), command)?;
    let only = parse_only(&args[2..])?;
    let read = keyspace.read(name).await?;
    if read.value == RedisValue::Absent || !allowed(only, read.map.expires_ms(), target) {
        return Ok(Reply::Integer(0));
    }
    // No condition at the acting replica: the read saw the key, and the
    // acting replica may not have received its last write yet (W < N). A
    // time already past expires the key at once (Redis deletes it): it
    // reads as absent everywhere and is collected like any expired key.
    // Should a DEL race this, the map is left holding only an expiry,
    // which reads as absent and is collected too.
    let at = u64::try_from(target).unwrap_or(0).max(1);
    changed(keyspace.update(name, vec![MapOp::expire_at(at)], None).await)
}

/// 1 for an update stored, 0 for one whose condition (the key present)
/// did not hold where it was applied.
fn changed(outcome: Result<dynamo_core::crdt::map::Map, Refusal>) -> Result<Reply, Reply> {
    match outcome {
        Ok(_) => Ok(Reply::Integer(1)),
        Err(Refusal::Unmet(_) | Refusal::Stale) => Ok(Reply::Integer(0)),
        Err(refusal) => Err(refusal_reply(refusal)),
    }
}

/// What a `TTL`-family command shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    RemainingSeconds,
    RemainingMilliseconds,
    UnixSeconds,
    UnixMilliseconds,
}

/// `-2` for an absent key, `-1` for one without an expiry, else the time
/// left or the deadline (seconds rounded to nearest, as Redis does).
async fn remaining(keyspace: &Keyspace, name: &Bytes, shown: Shown) -> Result<Reply, Reply> {
    let read = keyspace.read(name).await?;
    if read.value == RedisValue::Absent {
        return Ok(Reply::Integer(-2));
    }
    let Some(expires_ms) = read.map.expires_ms() else {
        return Ok(Reply::Integer(-1));
    };
    let left = expires_ms.saturating_sub(keyspace.now_ms());
    let shown = match shown {
        Shown::RemainingSeconds => left.saturating_add(500) / 1000,
        Shown::RemainingMilliseconds => left,
        Shown::UnixSeconds => expires_ms.saturating_add(500) / 1000,
        Shown::UnixMilliseconds => expires_ms,
    };
    Ok(Reply::Integer(i64::try_from(shown).unwrap_or(i64::MAX)))
}

/// `PERSIST key`: 1 when an expiry was removed. The remove acts on what
/// the read saw, so it takes effect even on a replica that has not yet
/// received the `EXPIRE` (it waits there for it).
async fn persist(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = keyspace.read(name).await?;
    if read.value == RedisValue::Absent || read.map.expires_ms().is_none() {
        return Ok(Reply::Integer(0));
    }
    // The remove acts on what the read saw (deferred on a replica that
    // has not received the EXPIRE yet), with no condition there.
    let observed = read.map.context().clone();
    changed(keyspace.update(name, vec![MapOp::persist()], Some(observed)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[test]
    fn deadlines_count_from_now_or_name_a_unix_time() {
        assert_eq!(target_ms(&arg("10"), Unit::Seconds, 1_000, "expire"), Ok(11_000));
        assert_eq!(target_ms(&arg("-1"), Unit::Seconds, 1_000, "expire"), Ok(0));
        assert_eq!(target_ms(&arg("250"), Unit::Milliseconds, 1_000, "pexpire"), Ok(1_250));
        assert_eq!(target_ms(&arg("7"), Unit::UnixSeconds, 1_000, "expireat"), Ok(7_000));
        assert_eq!(target_ms(&arg("7"), Unit::UnixMilliseconds, 1_000, "pexpireat"), Ok(7));
        assert_eq!(
            target_ms(&arg("9223372036854775807"), Unit::Seconds, 0, "expire"),
            Err(invalid_expire_time("expire"))
        );
        assert!(target_ms(&arg("ten"), Unit::Seconds, 0, "expire").is_err());
        assert_eq!(deadline(&arg("2"), Unit::Seconds, 1_000, "set"), Ok(3_000));
        for refused in ["0", "-5"] {
            assert_eq!(deadline(&arg(refused), Unit::Seconds, 1_000, "set"), Err(invalid_expire_time("set")));
        }
    }

    #[test]
    fn expire_options_judge_the_current_expiry_as_redis_does() {
        let parse = |options: &[&str]| parse_only(&options.iter().map(|o| arg(o)).collect::<Vec<_>>());
        assert_eq!(parse(&[]), Ok(Only::Always));
        assert_eq!(parse(&["nx"]), Ok(Only::WithoutExpiry));
        assert_eq!(parse(&["XX", "GT"]), Ok(Only::Later));
        assert!(parse(&["NX", "XX"]).is_err());
        assert!(parse(&["GT", "LT"]).is_err());
        assert!(parse(&["SOON"]).is_err());
        assert!(allowed(Only::WithoutExpiry, None, 5) && !allowed(Only::WithoutExpiry, Some(1), 5));
        assert!(allowed(Only::WithExpiry, Some(1), 5) && !allowed(Only::WithExpiry, None, 5));
        assert!(
            allowed(Only::Later, Some(4), 5) && !allowed(Only::Later, Some(5), 5) && !allowed(Only::Later, None, 5)
        );
        assert!(
            allowed(Only::Earlier, Some(6), 5)
                && !allowed(Only::Earlier, Some(5), 5)
                && allowed(Only::Earlier, None, 5)
        );
    }
}
