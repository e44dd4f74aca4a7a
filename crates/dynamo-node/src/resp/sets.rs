//! The set commands (`SADD`, `SREM`, `SMEMBERS`, ...): the key's add-wins
//! set ([`super::model`]), so members added through different nodes at
//! once are all kept, and a member removed here stays removed unless
//! another node adds it concurrently.
//!
//! `SADD` and `SREM` answer how many members they changed, as Redis does:
//! the count comes from a read just before the update (two clients adding
//! the same member at once through different nodes may both count it).
//! `SREM` removes what that read saw, as observed, so a concurrent add of
//! the same member survives it.

use std::collections::BTreeSet;

use bytes::Bytes;
use dynamo_core::crdt::set::SetUpdate;

use super::keyspace::{Keyspace, Refusal, refusal_reply};
use super::model::{self, Kind, RedisValue};
use super::reply::Reply;

/// Times `SREM` reads again when a member it saw was removed meanwhile.
const STALE_RETRIES: usize = 3;

/// Runs the set command `name` (already checked for arity).
pub(super) async fn execute(keyspace: &Keyspace, name: &str, args: &[Bytes]) -> Reply {
    let outcome = match name {
        "sadd" => add(keyspace, &args[0], &args[1..]).await,
        "srem" => remove(keyspace, &args[0], &args[1..]).await,
        "smembers" => held(keyspace, &args[0]).await.map(|members| Reply::Set(members.into_iter().map(bulk).collect())),
        "sismember" => {
            held(keyspace, &args[0]).await.map(|members| Reply::Integer(i64::from(members.contains(&args[1]))))
        }
        "smismember" => held(keyspace, &args[0]).await.map(|members| {
            Reply::Array(args[1..].iter().map(|member| Reply::Integer(i64::from(members.contains(member)))).collect())
        }),
        "scard" => held(keyspace, &args[0]).await.map(|members| Reply::Integer(members.len() as i64)),
        other => Err(Reply::err(format!("unknown command '{other}'"))),
    };
    outcome.unwrap_or_else(|reply| reply)
}

fn bulk(member: Bytes) -> Reply {
    Reply::bulk(member.to_vec())
}

/// The set's members (none when absent); `WRONGTYPE` for another type.
async fn held(keyspace: &Keyspace, name: &Bytes) -> Result<BTreeSet<Bytes>, Reply> {
    Ok(members_of(keyspace.read_kind(name, Kind::Set).await?.value))
}

async fn add(keyspace: &Keyspace, name: &Bytes, members: &[Bytes]) -> Result<Reply, Reply> {
    let held = held(keyspace, name).await?;
    let new: BTreeSet<&Bytes> = members.iter().filter(|member| !held.contains(*member)).collect();
    if new.is_empty() {
        return Ok(Reply::Integer(0));
    }
    let updates = new.iter().map(|member| SetUpdate::Add((*member).clone())).collect();
    keyspace.update(name, model::set_update(updates), None).await.map_err(refusal_reply)?;
    Ok(Reply::Integer(new.len() as i64))
}

async fn remove(keyspace: &Keyspace, name: &Bytes, members: &[Bytes]) -> Result<Reply, Reply> {
    for _ in 0..STALE_RETRIES {
        let read = keyspace.read_kind(name, Kind::Set).await?;
        let held = members_of(read.value);
        let gone: BTreeSet<&Bytes> = members.iter().filter(|member| held.contains(*member)).collect();
        if gone.is_empty() {
            return Ok(Reply::Integer(0));
        }
        let updates = gone.iter().map(|member| SetUpdate::Remove((*member).clone())).collect();
        match keyspace.update(name, model::set_update(updates), Some(read.map.context().clone())).await {
            Ok(_) => return Ok(Reply::Integer(gone.len() as i64)),
            Err(Refusal::Stale) => continue,
            Err(refusal) => return Err(refusal_reply(refusal)),
        }
    }
    Err(Reply::err("the set kept changing while SREM read it; retry"))
}

fn members_of(value: RedisValue) -> BTreeSet<Bytes> {
    match value {
        RedisValue::Set(members) => members.into_iter().collect(),
        _ => BTreeSet::new(),
    }
}
