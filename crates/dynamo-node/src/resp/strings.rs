//! The keyspace commands on strings (`GET`, `SET`, `DEL`, ...), over the
//! coordinator like the HTTP object API, in the front end's bucket.
//!
//! **One value per key, last write wins.** The keyspace's bucket is
//! last-write-wins by default (`BucketRegistry::with_bucket_default`): a
//! plain `SET` or `MSET` is one blind write, stamped by the coordinating
//! node's hybrid logical clock, and the greatest timestamp wins wherever
//! versions meet. Commands that need what is there (`NX`, `XX`, `GET`,
//! `DEL`'s count, `GETDEL`) read first and write with the read's context.
//! A read takes the version with the greatest timestamp (several remain
//! only where an operator gave the bucket siblings mode). A delete is a
//! tombstone, so a key deleted here does not come back from a replica that
//! was away.
//!
//! **Not atomic.** `SET NX`/`XX`, `GETDEL`, `MSET` read then write: two
//! clients racing through different nodes can both see the key absent.
//! That is the price of availability under partition (no consensus), and
//! the README says so.

use bytes::Bytes;
use dynamo_core::crdt::value::DataValue;
use dynamo_core::keys::ObjectKey;
use dynamo_core::object::{Payload, VersionedObject};
use dynamo_core::props::DataType;

use super::keyspace::{Keyspace, coordinator_error};
use super::reply::Reply;
use crate::coordinator::RequestOptions;

/// What a key holds, as the front end sees it.
enum Current {
    Absent,
    String(Bytes),
    /// A convergent counter: a string to `GET`, as Redis shows `INCR`'s
    /// result.
    Counter(i64),
    Set,
    Hash,
}

impl Current {
    fn type_name(&self) -> &'static str {
        match self {
            Current::Absent => "none",
            Current::String(_) | Current::Counter(_) => "string",
            Current::Set => "set",
            Current::Hash => "hash",
        }
    }

    /// The string value, `None` when absent, `Err(WRONGTYPE)` for a set or
    /// hash.
    fn string(&self) -> Result<Option<Bytes>, Reply> {
        match self {
            Current::Absent => Ok(None),
            Current::String(bytes) => Ok(Some(bytes.clone())),
            Current::Counter(value) => Ok(Some(Bytes::from(value.to_string()))),
            Current::Set | Current::Hash => Err(wrong_type()),
        }
    }
}

/// Redis's answer to an operation on a key of another type.
pub(super) fn wrong_type() -> Reply {
    Reply::Error("WRONGTYPE Operation against a key holding the wrong kind of value".to_string())
}

/// A key read: its object (for the context of the write that follows) and
/// what it holds.
struct Read {
    object: VersionedObject,
    current: Current,
}

/// Runs the string command `name` (already checked for arity).
pub(super) async fn execute(keyspace: &Keyspace, name: &str, args: &[Bytes]) -> Reply {
    let outcome = match name {
        "get" => get(keyspace, &args[0]).await,
        "set" => set(keyspace, args).await,
        "setnx" => setnx(keyspace, args).await,
        "getdel" => getdel(keyspace, &args[0]).await,
        "mget" => mget(keyspace, args).await,
        "mset" => mset(keyspace, args).await,
        "del" | "unlink" => del(keyspace, args).await,
        "exists" => exists(keyspace, args).await,
        "strlen" => strlen(keyspace, &args[0]).await,
        "type" => read(keyspace, &args[0]).await.map(|read| Reply::Simple(read.current.type_name().to_string())),
        other => Err(Reply::err(format!("unknown command '{other}'"))),
    };
    outcome.unwrap_or_else(|reply| reply)
}

fn object_key(keyspace: &Keyspace, name: &Bytes) -> Result<ObjectKey, Reply> {
    ObjectKey::new(&keyspace.bucket, name.as_ref()).map_err(|problem| Reply::err(format!("invalid key: {problem}")))
}

async fn read(keyspace: &Keyspace, name: &Bytes) -> Result<Read, Reply> {
    let key = object_key(keyspace, name)?;
    let object = keyspace.coordinator.get(&key, &RequestOptions::default()).await.map_err(coordinator_error)?;
    let current = current(&object);
    Ok(Read { object, current })
}

/// The version that wins: the greatest (timestamp, dot); a tombstone
/// winning means the key is absent.
fn current(object: &VersionedObject) -> Current {
    let winner = object.siblings().iter().max_by_key(|sibling| (sibling.timestamp, sibling.dot));
    match winner.map(|sibling| &sibling.payload) {
        None | Some(Payload::Tombstone) => Current::Absent,
        Some(Payload::Value { data, .. }) => Current::String(data.clone()),
        Some(Payload::Datatype(DataValue::Counter(counter))) => Current::Counter(counter.value()),
        Some(Payload::Datatype(DataValue::Set(_))) => Current::Set,
        Some(Payload::Datatype(DataValue::Map(_))) => Current::Hash,
    }
}

/// Writes `payload` over everything `seen` held.
async fn write(keyspace: &Keyspace, name: &Bytes, seen: &VersionedObject, payload: Payload) -> Result<(), Reply> {
    let key = object_key(keyspace, name)?;
    // A string in a data-type bucket would sit beside its values and make
    // them unreadable through the HTTP data-type API.
    let props = keyspace.coordinator.props(&keyspace.bucket).map_err(|problem| Reply::err(problem.to_string()))?;
    if props.datatype != DataType::None {
        return Err(Reply::err(format!(
            "the Redis keyspace's bucket {} has datatype {}; point resp_bucket at a bucket without one",
            keyspace.bucket, props.datatype
        )));
    }
    let options = RequestOptions { context_timestamp: seen.latest_timestamp().0, ..RequestOptions::default() };
    keyspace.coordinator.put(&key, seen.context(), payload, &options).await.map_err(coordinator_error)?;
    Ok(())
}

/// Writes `payload` without reading first: in the keyspace's bucket, last
/// write wins (its built-in props), so the write with the greatest
/// timestamp replaces every other version wherever they meet, and one
/// fan-out does what a read and a write would.
async fn blind_write(keyspace: &Keyspace, name: &Bytes, payload: Payload) -> Result<(), Reply> {
    write(keyspace, name, &VersionedObject::new(), payload).await
}

fn value(data: &Bytes) -> Payload {
    Payload::Value { data: data.clone(), content_type: None }
}

async fn get(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = read(keyspace, name).await?;
    Ok(read.current.string()?.map_or(Reply::Null, |bytes| Reply::bulk(bytes.to_vec())))
}

/// `SET key value [NX|XX] [GET]`; the expiry options need key expiry.
async fn set(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    let (name, data) = (&args[0], &args[1]);
    let (mut only_absent, mut only_present, mut return_old) = (false, false, false);
    for option in &args[2..] {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => only_absent = true,
            b"XX" => only_present = true,
            b"GET" => return_old = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" | b"KEEPTTL" => {
                return Err(Reply::err("SET with an expiry is not supported yet: keys do not expire in this version"));
            }
            _ => return Err(Reply::err("syntax error")),
        }
    }
    if only_absent && only_present {
        return Err(Reply::err("syntax error"));
    }
    if !(only_absent || only_present || return_old) {
        blind_write(keyspace, name, value(data)).await?;
        return Ok(Reply::ok());
    }
    let read = read(keyspace, name).await?;
    let old = if return_old { read.current.string()? } else { None };
    let exists = !matches!(read.current, Current::Absent);
    let refused = (only_absent && exists) || (only_present && !exists);
    if !refused {
        write(keyspace, name, &read.object, value(data)).await?;
    }
    Ok(match (return_old, refused) {
        (true, _) => old.map_or(Reply::Null, |bytes| Reply::bulk(bytes.to_vec())),
        (false, true) => Reply::Null,
        (false, false) => Reply::ok(),
    })
}

async fn setnx(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    let read = read(keyspace, &args[0]).await?;
    if !matches!(read.current, Current::Absent) {
        return Ok(Reply::Integer(0));
    }
    write(keyspace, &args[0], &read.object, value(&args[1])).await?;
    Ok(Reply::Integer(1))
}

async fn getdel(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = read(keyspace, name).await?;
    let Some(old) = read.current.string()? else { return Ok(Reply::Null) };
    write(keyspace, name, &read.object, Payload::Tombstone).await?;
    Ok(Reply::bulk(old.to_vec()))
}

/// `MGET`: a key that is absent or not a string reads as nil, as in Redis.
async fn mget(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let read = read(keyspace, name).await?;
        values.push(match read.current.string() {
            Ok(Some(bytes)) => Reply::bulk(bytes.to_vec()),
            _ => Reply::Null,
        });
    }
    Ok(Reply::Array(values))
}

async fn mset(keyspace: &Keyspace, args: &[Bytes]) -> Result<Reply, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(Reply::err("wrong number of arguments for 'mset' command"));
    }
    for pair in args.chunks(2) {
        blind_write(keyspace, &pair[0], value(&pair[1])).await?;
    }
    Ok(Reply::ok())
}

async fn del(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut removed = 0;
    for name in names {
        let read = read(keyspace, name).await?;
        if !matches!(read.current, Current::Absent) {
            write(keyspace, name, &read.object, Payload::Tombstone).await?;
            removed += 1;
        }
    }
    Ok(Reply::Integer(removed))
}

async fn exists(keyspace: &Keyspace, names: &[Bytes]) -> Result<Reply, Reply> {
    let mut present = 0;
    for name in names {
        if !matches!(read(keyspace, name).await?.current, Current::Absent) {
            present += 1;
        }
    }
    Ok(Reply::Integer(present))
}

async fn strlen(keyspace: &Keyspace, name: &Bytes) -> Result<Reply, Reply> {
    let read = read(keyspace, name).await?;
    Ok(Reply::Integer(read.current.string()?.map_or(0, |bytes| bytes.len() as i64)))
}
