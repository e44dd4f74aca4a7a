//! The commands of the Redis front end: the ones clients send on connect
//! (`HELLO`, `CLIENT`, `SELECT`, `COMMAND`, `INFO`, `CONFIG GET`, ...),
//! answered so that libraries connect with their defaults, and the
//! keyspace commands, which go to the coordinator like the HTTP API's
//! requests ([`super::strings`], [`super::sets`], [`super::hashes`]).
//!
//! Errors follow Redis's wording where clients or people match on it
//! (`ERR unknown command 'X', with args beginning with: ...`, `ERR wrong
//! number of arguments for 'get' command`, `WRONGTYPE ...`). An unknown
//! command never closes the connection.

use std::sync::Arc;

use bytes::Bytes;

use super::keyspace::Keyspace;
use super::reply::{Protocol, Reply};
use super::{expiry, glob, hashes, scan, sets, strings};
use crate::coordinator::Coordinator;

/// The version the front end reports to clients that ask (`HELLO`,
/// `INFO`): the Redis release whose commands it follows.
pub const REDIS_VERSION: &str = "7.2.0";

/// One connection's state.
#[derive(Debug, Default)]
pub struct Session {
    /// The protocol replies are written in (RESP3 after `HELLO 3`).
    pub protocol: Protocol,
    /// The name `CLIENT SETNAME` gave the connection.
    pub name: Option<Bytes>,
    /// Set by `QUIT`: the connection closes after this reply.
    pub quit: bool,
}

/// What the commands need: the coordinator, the keyspace's bucket, and
/// what `INFO` and `CLIENT ID` report.
pub struct Commands {
    keyspace: Keyspace,
    cursors: scan::Cursors,
    node_id: String,
    max_value_bytes: usize,
}

/// A command's shape: its name, its arity as Redis counts it (the name
/// included; negative: at least that many), and its flags for `COMMAND`.
struct Spec {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
}

const fn spec(name: &'static str, arity: i64, flags: &'static [&'static str]) -> Spec {
    Spec { name, arity, flags }
}

const READ: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const CONNECTION: &[&str] = &["fast", "loading", "stale"];

/// Every command served, for dispatch and for `COMMAND`.
const SPECS: &[Spec] = &[
    spec("ping", -1, CONNECTION),
    spec("echo", 2, CONNECTION),
    spec("hello", -1, CONNECTION),
    spec("auth", -2, CONNECTION),
    spec("select", 2, CONNECTION),
    spec("quit", -1, CONNECTION),
    spec("client", -2, CONNECTION),
    spec("command", -1, CONNECTION),
    spec("info", -1, CONNECTION),
    spec("config", -2, CONNECTION),
    spec("get", 2, READ),
    spec("set", -3, WRITE),
    spec("setnx", 3, WRITE),
    spec("setex", 4, WRITE),
    spec("psetex", 4, WRITE),
    spec("getdel", 2, WRITE),
    spec("mget", -2, READ),
    spec("mset", -3, WRITE),
    spec("del", -2, WRITE),
    spec("unlink", -2, WRITE),
    spec("exists", -2, READ),
    spec("strlen", 2, READ),
    spec("type", 2, READ),
    spec("incr", 2, WRITE),
    spec("decr", 2, WRITE),
    spec("incrby", 3, WRITE),
    spec("decrby", 3, WRITE),
    spec("sadd", -3, WRITE),
    spec("srem", -3, WRITE),
    spec("smembers", 2, READ),
    spec("sismember", 3, READ),
    spec("smismember", -3, READ),
    spec("scard", 2, READ),
    spec("hset", -4, WRITE),
    spec("hmset", -4, WRITE),
    spec("hsetnx", 4, WRITE),
    spec("hdel", -3, WRITE),
    spec("hincrby", 4, WRITE),
    spec("hget", 3, READ),
    spec("hmget", -3, READ),
    spec("hgetall", 2, READ),
    spec("hexists", 3, READ),
    spec("hlen", 2, READ),
    spec("hkeys", 2, READ),
    spec("hvals", 2, READ),
    spec("expire", -3, WRITE),
    spec("pexpire", -3, WRITE),
    spec("expireat", -3, WRITE),
    spec("pexpireat", -3, WRITE),
    spec("persist", 2, WRITE),
    spec("ttl", 2, READ),
    spec("pttl", 2, READ),
    spec("expiretime", 2, READ),
    spec("pexpiretime", 2, READ),
    spec("scan", -2, READ),
];

/// The module that runs a keyspace command.
enum Family {
    Strings,
    Sets,
    Hashes,
    Expiry,
}

fn family(name: &str) -> Family {
    const EXPIRY: &[&str] =
        &["expire", "pexpire", "expireat", "pexpireat", "persist", "ttl", "pttl", "expiretime", "pexpiretime"];
    if EXPIRY.contains(&name) {
        return Family::Expiry;
    }
    match name.as_bytes().first() {
        Some(b's') if !matches!(name, "set" | "setnx" | "setex" | "strlen") => Family::Sets,
        Some(b'h') => Family::Hashes,
        _ => Family::Strings,
    }
}

impl Commands {
    /// The commands over `coordinator`, with the keyspace in `bucket`.
    pub fn new(coordinator: Arc<Coordinator>, bucket: String, node_id: String, max_value_bytes: usize) -> Self {
        let cursors = scan::Cursors::new(coordinator.wall_ms());
        Self { keyspace: Keyspace { coordinator, bucket }, cursors, node_id, max_value_bytes }
    }

    /// Whether `args` is a keyspace read (`GET`, `MGET`, `EXISTS`,
    /// `STRLEN`, `TYPE`): it changes nothing, so a run of them may go to
    /// the coordinator at once and still answer as if one after another.
    pub fn is_read(args: &[Bytes]) -> bool {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        SPECS.iter().any(|spec| spec.name == name && spec.flags == READ)
    }

    /// Runs one command (`args[0]` is its name, any case).
    pub async fn execute(&self, session: &mut Session, args: &[Bytes]) -> Reply {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let Some(spec) = SPECS.iter().find(|spec| spec.name == name) else {
            return unknown_command(args);
        };
        let count = args.len() as i64;
        if (spec.arity >= 0 && count != spec.arity) || (spec.arity < 0 && count < -spec.arity) {
            return Reply::err(format!("wrong number of arguments for '{name}' command"));
        }
        let rest = &args[1..];
        match spec.name {
            "ping" => match rest {
                [] => Reply::Simple("PONG".to_string()),
                [message] => Reply::bulk(message.to_vec()),
                _ => Reply::err("wrong number of arguments for 'ping' command"),
            },
            "echo" => Reply::bulk(rest[0].to_vec()),
            "hello" => self.hello(session, rest),
            "auth" => Reply::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your \
                 configuration is correct?",
            ),
            "select" => match rest[0].as_ref() {
                b"0" => Reply::ok(),
                _ => Reply::err("DB index is out of range (dynamo has one keyspace: database 0)"),
            },
            "quit" => {
                session.quit = true;
                Reply::ok()
            }
            "client" => self.client(session, rest),
            "command" => command(rest),
            "info" => self.info(rest),
            "config" => self.config(rest),
            "scan" => scan::scan(&self.keyspace, &self.cursors, rest).await,
            name => match family(name) {
                Family::Strings => strings::execute(&self.keyspace, name, rest).await,
                Family::Sets => sets::execute(&self.keyspace, name, rest).await,
                Family::Hashes => hashes::execute(&self.keyspace, name, rest).await,
                Family::Expiry => expiry::execute(&self.keyspace, name, rest).await,
            },
        }
    }

    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    fn hello(&self, session: &mut Session, args: &[Bytes]) -> Reply {
        let mut protocol = session.protocol;
        let mut rest = args;
        if let [version, tail @ ..] = args {
            protocol = match version.as_ref() {
                b"2" => Protocol::Resp2,
                b"3" => Protocol::Resp3,
                _ => return Reply::Error("NOPROTO unsupported protocol version".to_string()),
            };
            rest = tail;
        }
        let mut name = None;
        while let [option, tail @ ..] = rest {
            match (option.to_ascii_lowercase().as_slice(), tail) {
                // No authentication yet (issue 17): any credentials pass.
                (b"auth", [_, _, tail @ ..]) => rest = tail,
                (b"setname", [value, tail @ ..]) => {
                    name = Some(value.clone());
                    rest = tail;
                }
                _ => return Reply::err(format!("Syntax error in HELLO option '{}'", String::from_utf8_lossy(option))),
            }
        }
        session.protocol = protocol;
        if name.is_some() {
            session.name = name;
        }
        let text = |value: &str| Reply::bulk(value.as_bytes().to_vec());
        Reply::Map(vec![
            (text("server"), text("redis")),
            (text("version"), text(REDIS_VERSION)),
            (text("proto"), Reply::Integer(if protocol == Protocol::Resp3 { 3 } else { 2 })),
            (text("id"), Reply::Integer(1)),
            (text("mode"), text("standalone")),
            (text("role"), text("master")),
            (text("modules"), Reply::Array(Vec::new())),
        ])
    }

    /// `CLIENT SETNAME|GETNAME|SETINFO|ID|INFO ...`.
    fn client(&self, session: &mut Session, args: &[Bytes]) -> Reply {
        let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        match (sub.as_str(), &args[1..]) {
            ("setname", [name]) => {
                session.name = Some(name.clone());
                Reply::ok()
            }
            ("getname", []) => session.name.as_ref().map_or(Reply::Null, |name| Reply::bulk(name.to_vec())),
            ("setinfo", [_, _]) => Reply::ok(),
            ("id", []) => Reply::Integer(1),
            ("info", []) => {
                let name =
                    session.name.as_ref().map(|name| String::from_utf8_lossy(name).into_owned()).unwrap_or_default();
                Reply::bulk(format!("id=1 name={name} db=0 resp={}\n", protocol_number(session.protocol)))
            }
            _ => Reply::err(format!("unknown subcommand or wrong number of arguments for '{sub}'. Try CLIENT HELP.")),
        }
    }

    /// `INFO [section ...]`: the server and keyspace sections.
    fn info(&self, args: &[Bytes]) -> Reply {
        let wanted = |section: &str| {
            args.is_empty()
                || args.iter().any(|arg| {
                    let arg = arg.to_ascii_lowercase();
                    arg == section.as_bytes() || arg == b"all" || arg == b"everything" || arg == b"default"
                })
        };
        let mut text = String::new();
        if wanted("server") {
            text.push_str(&format!(
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nserver_name:dynamo\r\n\
                 dynamo_node:{}\r\ndynamo_bucket:{}\r\n\r\n",
                self.node_id, self.keyspace.bucket
            ));
        }
        if wanted("keyspace") {
            // Counting keys is a cluster-wide listing (issue 14), not
            // something INFO should cost.
            text.push_str("# Keyspace\r\n");
        }
        Reply::bulk(text)
    }

    /// `CONFIG GET pattern ...`: the few parameters clients ask about.
    fn config(&self, args: &[Bytes]) -> Reply {
        let sub = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        if sub != "get" || args.len() < 2 {
            return Reply::err(format!(
                "unknown subcommand or wrong number of arguments for '{sub}'. Try CONFIG HELP."
            ));
        }
        let known = [
            ("databases", "1".to_string()),
            ("save", String::new()),
            ("appendonly", "no".to_string()),
            ("proto-max-bulk-len", self.max_value_bytes.to_string()),
            ("maxmemory", "0".to_string()),
        ];
        let pairs = known
            .iter()
            .filter(|(name, _)| args[1..].iter().any(|pattern| glob::matches(pattern, name.as_bytes(), true)))
            .map(|(name, value)| (Reply::bulk(name.as_bytes().to_vec()), Reply::bulk(value.as_bytes().to_vec())))
            .collect();
        Reply::Map(pairs)
    }
}

fn protocol_number(protocol: Protocol) -> u8 {
    if protocol == Protocol::Resp3 { 3 } else { 2 }
}

/// Redis's answer to a command it does not know.
fn unknown_command(args: &[Bytes]) -> Reply {
    let quoted: Vec<String> =
        args[1..].iter().take(8).map(|arg| format!("'{}'", String::from_utf8_lossy(arg))).collect();
    Reply::err(format!(
        "unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(&args[0]),
        quoted.join(" ")
    ))
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND INFO name...`, `COMMAND DOCS`.
fn command(args: &[Bytes]) -> Reply {
    let describe = |spec: &Spec| {
        let keyed = !matches!(spec.flags, CONNECTION);
        let (first, last) = match spec.name {
            _ if !keyed => (0, 0),
            "mget" | "del" | "unlink" | "exists" => (1, -1),
            "mset" => (1, -1),
            _ => (1, 1),
        };
        let step = if spec.name == "mset" { 2 } else { i64::from(keyed) };
        Reply::Array(vec![
            Reply::bulk(spec.name.as_bytes().to_vec()),
            Reply::Integer(spec.arity),
            Reply::Set(spec.flags.iter().map(|flag| Reply::Simple((*flag).to_string())).collect()),
            Reply::Integer(first),
            Reply::Integer(last),
            Reply::Integer(step),
            Reply::Set(Vec::new()),
            Reply::Set(Vec::new()),
            Reply::Array(Vec::new()),
            Reply::Array(Vec::new()),
        ])
    };
    match args.first().map(|sub| sub.to_ascii_lowercase()) {
        None => Reply::Array(SPECS.iter().map(describe).collect()),
        Some(sub) if sub == b"count" => Reply::Integer(SPECS.len() as i64),
        Some(sub) if sub == b"info" => Reply::Array(
            args[1..]
                .iter()
                .map(|name| {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    SPECS.iter().find(|spec| spec.name == name).map_or(Reply::NullArray, describe)
                })
                .collect(),
        ),
        // Documentation is optional for clients (redis-cli asks, for its
        // hints): none is given.
        Some(sub) if sub == b"docs" => Reply::Map(Vec::new()),
        Some(sub) => Reply::err(format!("unknown subcommand '{}'. Try COMMAND HELP.", String::from_utf8_lossy(&sub))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_get_patterns_fold_case() {
        let config = |pattern: &[u8], name: &[u8]| glob::matches(pattern, name, true);
        assert!(config(b"*", b"save") && config(b"SAVE", b"save") && config(b"app*", b"appendonly"));
        assert!(!config(b"s?ve", b"saved") && !config(b"max*x", b"maxmemory"));
    }

    #[test]
    fn an_unknown_command_is_named_with_its_first_arguments() {
        let args = [Bytes::from_static(b"MULTI"), Bytes::from_static(b"a")];
        assert_eq!(unknown_command(&args), Reply::err("unknown command 'MULTI', with args beginning with: 'a'"));
    }
}
