//! The hash commands (`HSET`, `HGET`, `HINCRBY`, ...): the key's map of
//! cells ([`super::model`]), so fields written through different nodes at
//! once are all kept (the same field: last write wins by the hybrid
//! logical clock), and `HINCRBY`s through any nodes all count.
//!
//! `HSET` and `HDEL` answer how many fields they added or removed, as
//! Redis does: the count comes from a read just before the update.
//! `HDEL` clears what the acting replica holds of each field, so a
//! concurrent `HSET` of it survives.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::keyspace::{Keyspace, Refusal, integer_argument, refusal_reply};
use super::model::{self, Kind, RedisValue, redis_value};
use super::reply::Reply;

/// Runs the hash command `name` (already checked for arity).
pub(super) async fn execute(keyspace: &Keyspace, name: &str, args: &[Bytes]) -> Reply {
    let key = &args[0];
    let outcome = match name {
        "hset" => set(keyspace, key, &args[1..], name).await.map(|added| Reply::Integer(added as i64)),
        "hmset" => set(keyspace, key, &args[1..], name).await.map(|_| Reply::ok()),
        "hsetnx" => set_if_absent(keyspace, key, &args[1], &args[2]).await,
        "hdel" => delete(keyspace, key, &args[1..]).await,
        "hincrby" => match integer_argument(&args[2]) {
            Ok(amount) => increment(keyspace, key, &args[1], amount).await,
            Err(reply) => Err(reply),
        },
        "hget" => fields(keyspace, key).await.map(|fields| bulk_or_null(fields.get(&args[1]))),
        "hmget" => fields(keyspace, key)
            .await
            .map(|fields| Reply::Array(args[1..].iter().map(|field| bulk_or_null(fields.get(field))).collect())),
        "hgetall" => fields(keyspace, key)
            .await
            .map(|fields| Reply::Map(fields.into_iter().map(|(field, value)| (bulk(field), bulk(value))).collect())),
        "hexists" => fields(keyspace, key).await.map(|fields| Reply::Integer(i64::from(fields.contains_key(&args[1])))),
        "hlen" => fields(keyspace, key).await.map(|fields| Reply::Integer(fields.len() as i64)),
        "hkeys" => fields(keyspace, key).await.map(|fields| Reply::Array(fields.into_keys().map(bulk).collect())),
        "hvals" => fields(keyspace, key).await.map(|fields| Reply::Array(fields.into_values().map(bulk).collect())),
        other => Err(Reply::err(format!("unknown command '{other}'"))),
    };
    outcome.unwrap_or_else(|reply| reply)
}

fn bulk(bytes: Bytes) -> Reply {
    Reply::bulk(bytes.to_vec())
}

fn bulk_or_null(value: Option<&Bytes>) -> Reply {
    value.map_or(Reply::Null, |bytes| bulk(bytes.clone()))
}

/// The hash's fields (none when absent); `WRONGTYPE` for another type.
async fn fields(keyspace: &Keyspace, name: &Bytes) -> Result<BTreeMap<Bytes, Bytes>, Reply> {
    match keyspace.read_kind(name, Kind::Hash).await?.value {
        RedisValue::Hash(fields) => Ok(fields),
        _ => Ok(BTreeMap::new()),
    }
}

/// `HSET key field value [field value ...]`: the number of new fields.
async fn set(keyspace: &Keyspace, name: &Bytes, args: &[Bytes], command: &str) -> Result<usize, Reply> {
    if args.is_empty() || !args.len().is_multiple_of(2) {
        return Err(Reply::err(format!("wrong number of arguments for '{command}' command")));
    }
    let held = fields(keyspace, name).await?;
    let pairs: Vec<(Bytes, Bytes)> = args.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    let mut added: Vec<&Bytes> =
        pairs.iter().map(|(field, _)| field).filter(|field| !held.contains_key(*field)).collect();
    added.sort_unstable();
    added.dedup();
    keyspace.update(name, model::hash_set(&pairs), None).await.map_err(refusal_reply)?;
    Ok(added.len())
}

/// `HSETNX`: read, then write the field if the read did not have it (not
/// atomic: two racing clients may both write, and the last write wins).
async fn set_if_absent(keyspace: &Keyspace, name: &Bytes, field: &Bytes, value: &Bytes) -> Result<Reply, Reply> {
    if fields(keyspace, name).await?.contains_key(field) {
        return Ok(Reply::Integer(0));
    }
    let pairs = [(field.clone(), value.clone())];
    keyspace.update(name, model::hash_set(&pairs), None).await.map_err(refusal_reply)?;
    Ok(Reply::Integer(1))
}

async fn delete(keyspace: &Keyspace, name: &Bytes, names: &[Bytes]) -> Result<Reply, Reply> {
    let held = fields(keyspace, name).await?;
    let mut gone: Vec<Bytes> = names.iter().filter(|field| held.contains_key(*field)).cloned().collect();
    gone.sort_unstable();
    gone.dedup();
    if gone.is_empty() {
        return Ok(Reply::Integer(0));
    }
    keyspace.update(name, model::hash_delete(&gone), None).await.map_err(refusal_reply)?;
    Ok(Reply::Integer(gone.len() as i64))
}

async fn increment(keyspace: &Keyspace, name: &Bytes, field: &Bytes, amount: i64) -> Result<Reply, Reply> {
    let map = match keyspace.update(name, model::hash_increment(field.clone(), amount), None).await {
        Ok(map) => map,
        Err(Refusal::Unmet(_)) => return Err(Reply::err("hash value is not an integer")),
        Err(refusal) => return Err(refusal_reply(refusal)),
    };
    let value = match redis_value(&map) {
        RedisValue::Hash(fields) => fields.get(field).cloned(),
        _ => None,
    };
    match value {
        Some(bytes) => integer_argument(&bytes).map(Reply::Integer),
        None => Err(Reply::err("the field was removed concurrently; retry")),
    }
}
