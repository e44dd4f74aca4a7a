//! Node configuration. Every setting can come from a TOML file or from a
//! command-line flag (flags win), and everything has a default that runs a
//! sensible single node. [`Settings`] is the partial form both sources parse
//! into; [`NodeConfig`] is the resolved, validated form the node runs with.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dynamo_core::keys::{DEFAULT_PARTITIONS, validate_bucket, validate_partition_count};
use dynamo_core::props::{BucketProps, ConflictMode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default client API address: loopback only, so a fresh node is never
/// exposed to the network by accident.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
/// Bucket of the Redis-protocol keyspace when `resp_bucket` is not set.
pub const DEFAULT_RESP_BUCKET: &str = "redis";
/// Default node-to-node address.
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:9080";
/// Default largest value accepted, in bytes (SPEC: 1 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Hard ceiling for `max_value_bytes`: values travel whole in one message.
pub const MAX_VALUE_BYTES_CEILING: usize = 64 * 1024 * 1024;
/// Default time a request may take before the client gets a 503.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Longest `timeout_ms` a client may ask for.
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 120_000;
/// Default time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// Default cap on simultaneous client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default bound of the hint store: 1 GiB of writes held for unreachable
/// replicas.
pub const DEFAULT_MAX_HINT_BYTES: u64 = 1 << 30;
/// Default period of the hint delivery task.
pub const DEFAULT_HINT_DELIVERY_INTERVAL_MS: u64 = 1_000;
/// Default period between probes of a peer marked down.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 1_000;
/// Default time a tombstone is kept after every replica holds it (and the
/// age past which a hint is dropped): one day.
pub const DEFAULT_TOMBSTONE_GRACE_MS: u64 = 24 * 3_600_000;
/// Default period of tombstone collection rounds.
pub const DEFAULT_TOMBSTONE_GC_INTERVAL_MS: u64 = 60_000;
/// Default time between two anti-entropy exchanges (one partition each).
/// A partition in sync costs one round trip of about fifty bytes each way,
/// so this is cheap, and a node replicating 256 partitions compares all of
/// them in about four minutes.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL_MS: u64 = 1_000;
/// Longest anti-entropy interval accepted: a day.
pub const MAX_ANTI_ENTROPY_INTERVAL_MS: u64 = 86_400_000;
/// Default cap on keys repaired per second by anti-entropy: background work
/// that leaves the foreground its latency (paper section 6.5), and still
/// refills a replica of a million keys in under 20 minutes.
pub const DEFAULT_ANTI_ENTROPY_MAX_KEYS_PER_SEC: u32 = 1_000;
/// Default cap on partition-transfer copying per node, bytes per second:
/// 20 MiB/s, a fraction of one disk's and one gigabit link's bandwidth, so
/// foreground requests keep theirs (paper section 6.5).
pub const DEFAULT_TRANSFER_MAX_BYTES_PER_SEC: u64 = 20 << 20;
/// Highest repair rate accepted.
pub const MAX_ANTI_ENTROPY_KEYS_PER_SEC: u32 = 1_000_000;
/// Default cap on the keys per second this node's listings gather (issue
/// 14): about a fifth of what an unpaced listing reaches on two cores
/// (docs/benchmarks.md), so a listing running back to back leaves the
/// foreground most of the machine, and a million keys still list in 20 s.
pub const DEFAULT_LISTING_MAX_KEYS_PER_SEC: u32 = 50_000;
/// Highest listing rate accepted.
pub const MAX_LISTING_KEYS_PER_SEC: u32 = 10_000_000;
/// Default foreground p99 the admission controller keeps background work
/// under (issue 16): well above a healthy node's p99 on two cores at half
/// load (64 ms in docs/benchmarks.md), so background work slows only when
/// the foreground is in trouble.
pub const DEFAULT_FOREGROUND_P99_TARGET_MS: u64 = 100;
/// Highest target accepted.
pub const MAX_FOREGROUND_P99_TARGET_MS: u64 = 60_000;
/// How often the admission controller looks at the foreground.
pub const ADMISSION_WINDOW: Duration = Duration::from_secs(1);
/// Default time between two gossip rounds: the paper's one second. A
/// round in sync costs one round trip of about 50 bytes each way.
pub const DEFAULT_GOSSIP_INTERVAL_MS: u64 = 1_000;
/// Most seed addresses a node is configured with.
pub const MAX_SEEDS: usize = 64;

/// Which storage engine holds the node's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// fjall LSM-tree on disk (durable; the default).
    #[default]
    Fjall,
    /// In memory; everything is lost when the process exits. For tests.
    Memory,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "fjall" => Ok(EngineKind::Fjall),
            "memory" => Ok(EngineKind::Memory),
            other => Err(format!("unknown storage engine {other:?}; use fjall or memory")),
        }
    }
}

/// Settings as read from a config file or flags: every field optional.
/// The field names are the config-file keys; flags use the same names with
/// dashes (`max_value_bytes` ↔ `--max-value-bytes`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Stable name of this node in the cluster (default: `node-<http port>`).
    pub node_id: Option<String>,
    /// Address of the client HTTP API.
    pub http_addr: Option<SocketAddr>,
    /// Address of the Redis-protocol listener (off when absent).
    pub resp_addr: Option<SocketAddr>,
    /// The bucket the Redis protocol's keyspace lives in (default `redis`).
    pub resp_bucket: Option<String>,
    /// Address of the node-to-node RPC listener. When its IP is a specific
    /// one (not `0.0.0.0` or `::`), the node also sends its own RPC
    /// connections from that IP, so that peers and firewalls see each node
    /// under one address (see [`NodeConfig::rpc_outgoing_ip`]).
    pub rpc_addr: Option<SocketAddr>,
    /// Directory for the node's data.
    pub data_dir: Option<PathBuf>,
    /// Storage engine.
    pub engine: Option<EngineKind>,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: Option<usize>,
    /// Ring partitions (Q), fixed at cluster creation; a power of two.
    pub partitions: Option<u32>,
    /// Default N for buckets without props of their own.
    pub default_n: Option<u8>,
    /// Default R.
    pub default_r: Option<u8>,
    /// Default W.
    pub default_w: Option<u8>,
    /// Default DW.
    pub default_dw: Option<u8>,
    /// Default conflict mode.
    pub default_conflict: Option<ConflictMode>,
    /// Default request timeout, in milliseconds.
    pub request_timeout_ms: Option<u64>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace_ms: Option<u64>,
    /// Cap on simultaneous client connections.
    pub max_connections: Option<usize>,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: Option<String>,
    /// This node's weight in the ring: its share of partitions follows it.
    pub capacity: Option<u32>,
    /// This node's zone (rack, data centre); replicas spread across zones.
    pub zone: Option<String>,
    /// Every node of the cluster, this one included, identical on every
    /// node (the ring is computed from it). Empty: a cluster of one.
    pub members: Option<Vec<MemberSpec>>,
    /// File holding the shared cluster secret (at least 16 bytes; trailing
    /// newline ignored). Required for clusters of more than one node.
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret itself (prefer the file or the
    /// `DYNAMO_CLUSTER_SECRET` environment variable: flags show up in `ps`).
    pub cluster_secret: Option<String>,
    /// Bound of the hint store, in bytes: writes held for unreachable
    /// replicas. Beyond it, hints are refused (logged and counted).
    pub max_hint_bytes: Option<u64>,
    /// How often held hints are offered to their owners, in milliseconds.
    pub hint_delivery_interval_ms: Option<u64>,
    /// How often a peer marked down is probed, in milliseconds.
    pub probe_interval_ms: Option<u64>,
    /// How long a delete's tombstone is kept, in milliseconds, before it
    /// may be collected (once every replica holds it); also the age past
    /// which undelivered hints are dropped.
    pub tombstone_grace_ms: Option<u64>,
    /// How often tombstones are looked for collection, in milliseconds.
    pub tombstone_gc_interval_ms: Option<u64>,
    /// Milliseconds between two anti-entropy exchanges; 0 disables them.
    pub anti_entropy_interval_ms: Option<u64>,
    /// Most keys anti-entropy repairs per second.
    pub anti_entropy_max_keys_per_sec: Option<u32>,
    /// Most keys per second this node's key listings gather.
    pub listing_max_keys_per_sec: Option<u32>,
    /// Foreground p99 (ms) admission control keeps background work under;
    /// 0 turns it off (fixed rates).
    pub foreground_p99_target_ms: Option<u64>,
    /// Most bytes per second this node copies in partition transfers.
    pub transfer_max_bytes_per_sec: Option<u64>,
    /// Milliseconds between two gossip rounds; 0 disables gossip.
    pub gossip_interval_ms: Option<u64>,
    /// RPC addresses of seed nodes, contacted by gossip every few rounds
    /// besides random members (the static members are seeds too).
    pub seeds: Option<Vec<String>>,
    /// RPC address of a member to join through, on a node's first start
    /// (a node that already belongs to a cluster ignores it).
    pub join: Option<String>,
}

/// One member of the cluster as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// The member's node id.
    pub id: String,
    /// Where its RPC listener is reached.
    pub rpc_addr: String,
    /// Its ring weight (default 1).
    pub capacity: Option<u32>,
    /// Its zone.
    pub zone: Option<String>,
}

impl std::str::FromStr for MemberSpec {
    type Err = String;

    /// Parses `ID=RPC_ADDR[,capacity=C][,zone=Z]`.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(',');
        let head = parts.next().unwrap_or_default();
        let (id, rpc_addr) = head
            .split_once('=')
            .filter(|(id, addr)| !id.is_empty() && !addr.is_empty())
            .ok_or_else(|| format!("member {text:?} must look like ID=HOST:PORT[,capacity=C][,zone=Z]"))?;
        let mut member = MemberSpec { id: id.to_string(), rpc_addr: rpc_addr.to_string(), capacity: None, zone: None };
        for option in parts {
            match option.split_once('=') {
                Some(("capacity", value)) => {
                    member.capacity = Some(
                        value.parse().map_err(|_| format!("member {text:?}: capacity {value:?} is not a number"))?,
                    )
                }
                Some(("zone", value)) if !value.is_empty() => member.zone = Some(value.to_string()),
                _ => return Err(format!("member {text:?}: unknown option {option:?}; use capacity=C or zone=Z")),
            }
        }
        Ok(member)
    }
}

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A value out of range.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl Settings {
    /// Reads settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text)
            .map_err(|error| ConfigError::Parse { path: path.to_path_buf(), message: error.to_string() })
    }

    /// Overlays `over` on `self`: every field set in `over` wins.
    pub fn overlay(self, over: Settings) -> Settings {
        Settings {
            node_id: over.node_id.or(self.node_id),
            http_addr: over.http_addr.or(self.http_addr),
            resp_addr: over.resp_addr.or(self.resp_addr),
            resp_bucket: over.resp_bucket.or(self.resp_bucket),
            rpc_addr: over.rpc_addr.or(self.rpc_addr),
            data_dir: over.data_dir.or(self.data_dir),
            engine: over.engine.or(self.engine),
            max_value_bytes: over.max_value_bytes.or(self.max_value_bytes),
            partitions: over.partitions.or(self.partitions),
            default_n: over.default_n.or(self.default_n),
            default_r: over.default_r.or(self.default_r),
            default_w: over.default_w.or(self.default_w),
            default_dw: over.default_dw.or(self.default_dw),
            default_conflict: over.default_conflict.or(self.default_conflict),
            request_timeout_ms: over.request_timeout_ms.or(self.request_timeout_ms),
            shutdown_grace_ms: over.shutdown_grace_ms.or(self.shutdown_grace_ms),
            max_connections: over.max_connections.or(self.max_connections),
            log_level: over.log_level.or(self.log_level),
            capacity: over.capacity.or(self.capacity),
            zone: over.zone.or(self.zone),
            members: over.members.or(self.members),
            cluster_secret_file: over.cluster_secret_file.or(self.cluster_secret_file),
            cluster_secret: over.cluster_secret.or(self.cluster_secret),
            max_hint_bytes: over.max_hint_bytes.or(self.max_hint_bytes),
            hint_delivery_interval_ms: over.hint_delivery_interval_ms.or(self.hint_delivery_interval_ms),
            probe_interval_ms: over.probe_interval_ms.or(self.probe_interval_ms),
            tombstone_grace_ms: over.tombstone_grace_ms.or(self.tombstone_grace_ms),
            tombstone_gc_interval_ms: over.tombstone_gc_interval_ms.or(self.tombstone_gc_interval_ms),
            anti_entropy_interval_ms: over.anti_entropy_interval_ms.or(self.anti_entropy_interval_ms),
            anti_entropy_max_keys_per_sec: over.anti_entropy_max_keys_per_sec.or(self.anti_entropy_max_keys_per_sec),
            listing_max_keys_per_sec: over.listing_max_keys_per_sec.or(self.listing_max_keys_per_sec),
            foreground_p99_target_ms: over.foreground_p99_target_ms.or(self.foreground_p99_target_ms),
            transfer_max_bytes_per_sec: over.transfer_max_bytes_per_sec.or(self.transfer_max_bytes_per_sec),
            gossip_interval_ms: over.gossip_interval_ms.or(self.gossip_interval_ms),
            seeds: over.seeds.or(self.seeds),
            join: over.join.or(self.join),
        }
    }

    /// Fills defaults and validates.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let http_addr = self.http_addr.unwrap_or_else(|| parse_default(DEFAULT_HTTP_ADDR));
        let rpc_addr = self.rpc_addr.unwrap_or_else(|| parse_default(DEFAULT_RPC_ADDR));
        let defaults = BucketProps::default();
        let default_props = BucketProps {
            n: self.default_n.unwrap_or(defaults.n),
            r: self.default_r.unwrap_or(defaults.r),
            w: self.default_w.unwrap_or(defaults.w),
            dw: self.default_dw.unwrap_or(defaults.dw),
            conflict: self.default_conflict.unwrap_or(defaults.conflict),
            ..defaults
        };
        default_props.validate().map_err(|error| invalid("default_n/r/w/dw", error.to_string()))?;
        let partitions = self.partitions.unwrap_or(DEFAULT_PARTITIONS);
        validate_partition_count(partitions).map_err(|error| invalid("partitions", error.to_string()))?;
        let max_value_bytes = self.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES);
        if max_value_bytes == 0 || max_value_bytes > MAX_VALUE_BYTES_CEILING {
            return Err(invalid(
                "max_value_bytes",
                format!("{max_value_bytes} is out of range 1..={MAX_VALUE_BYTES_CEILING}"),
            ));
        }
        let request_timeout_ms = self.request_timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS);
        if request_timeout_ms == 0 || request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
            return Err(invalid(
                "request_timeout_ms",
                format!("{request_timeout_ms} is out of range 1..={MAX_REQUEST_TIMEOUT_MS}"),
            ));
        }
        let max_connections = self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".to_string()));
        }
        let log_level = self.log_level.unwrap_or_else(|| "info".to_string());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(invalid("log_level", format!("{log_level:?} is not one of error, warn, info, debug, trace")));
        }
        let node_id = self.node_id.unwrap_or_else(|| format!("node-{}", http_addr.port()));
        let capacity = self.capacity.unwrap_or(1);
        if capacity == 0 {
            return Err(invalid("capacity", "must be at least 1".to_string()));
        }
        let members =
            resolve_members(&node_id, rpc_addr, capacity, self.zone.clone(), self.members.unwrap_or_default())?;
        let hint_delivery_interval_ms = self.hint_delivery_interval_ms.unwrap_or(DEFAULT_HINT_DELIVERY_INTERVAL_MS);
        let probe_interval_ms = self.probe_interval_ms.unwrap_or(DEFAULT_PROBE_INTERVAL_MS);
        let tombstone_gc_interval_ms = self.tombstone_gc_interval_ms.unwrap_or(DEFAULT_TOMBSTONE_GC_INTERVAL_MS);
        let intervals = [
            ("hint_delivery_interval_ms", hint_delivery_interval_ms),
            ("probe_interval_ms", probe_interval_ms),
            ("tombstone_gc_interval_ms", tombstone_gc_interval_ms),
        ];
        for (key, value) in intervals {
            if !(10..=3_600_000).contains(&value) {
                return Err(invalid(key, format!("{value} is out of range 10..=3600000")));
            }
        }
        let anti_entropy_interval_ms = self.anti_entropy_interval_ms.unwrap_or(DEFAULT_ANTI_ENTROPY_INTERVAL_MS);
        if anti_entropy_interval_ms > MAX_ANTI_ENTROPY_INTERVAL_MS {
            return Err(invalid(
                "anti_entropy_interval_ms",
                format!("{anti_entropy_interval_ms} is out of range 0..={MAX_ANTI_ENTROPY_INTERVAL_MS} (0 disables)"),
            ));
        }
        let transfer_max_bytes_per_sec = self.transfer_max_bytes_per_sec.unwrap_or(DEFAULT_TRANSFER_MAX_BYTES_PER_SEC);
        if transfer_max_bytes_per_sec == 0 {
            return Err(invalid(
                "transfer_max_bytes_per_sec",
                "0 would stop partition transfers; use at least 1".to_string(),
            ));
        }
        let anti_entropy_max_keys_per_sec =
            self.anti_entropy_max_keys_per_sec.unwrap_or(DEFAULT_ANTI_ENTROPY_MAX_KEYS_PER_SEC);
        if !(1..=MAX_ANTI_ENTROPY_KEYS_PER_SEC).contains(&anti_entropy_max_keys_per_sec) {
            return Err(invalid(
                "anti_entropy_max_keys_per_sec",
                format!("{anti_entropy_max_keys_per_sec} is out of range 1..={MAX_ANTI_ENTROPY_KEYS_PER_SEC}"),
            ));
        }
        let listing_max_keys_per_sec = self.listing_max_keys_per_sec.unwrap_or(DEFAULT_LISTING_MAX_KEYS_PER_SEC);
        if !(1..=MAX_LISTING_KEYS_PER_SEC).contains(&listing_max_keys_per_sec) {
            return Err(invalid(
                "listing_max_keys_per_sec",
                format!("{listing_max_keys_per_sec} is out of range 1..={MAX_LISTING_KEYS_PER_SEC}"),
            ));
        }
        let foreground_p99_target_ms = self.foreground_p99_target_ms.unwrap_or(DEFAULT_FOREGROUND_P99_TARGET_MS);
        if foreground_p99_target_ms > MAX_FOREGROUND_P99_TARGET_MS {
            return Err(invalid(
                "foreground_p99_target_ms",
                format!("{foreground_p99_target_ms} is out of range 0..={MAX_FOREGROUND_P99_TARGET_MS} (0 disables)"),
            ));
        }
        let gossip_interval_ms = self.gossip_interval_ms.unwrap_or(DEFAULT_GOSSIP_INTERVAL_MS);
        if gossip_interval_ms != 0 && !(10..=3_600_000).contains(&gossip_interval_ms) {
            return Err(invalid(
                "gossip_interval_ms",
                format!("{gossip_interval_ms} is out of range 10..=3600000 (0 disables gossip)"),
            ));
        }
        let seeds = self.seeds.unwrap_or_default();
        if seeds.len() > MAX_SEEDS {
            return Err(invalid("seeds", format!("{} seeds given; at most {MAX_SEEDS}", seeds.len())));
        }
        if let Some(bad) = seeds.iter().chain(&self.join).find(|addr| !is_host_port(addr)) {
            return Err(invalid("seeds/join", format!("{bad:?} is not HOST:PORT (a node's RPC address)")));
        }
        let cluster_secret = resolve_secret(self.cluster_secret, self.cluster_secret_file.as_deref())?;
        if let Some(seed) = &self.join {
            if members.len() > 1 {
                return Err(invalid(
                    "join",
                    format!(
                        "join {seed} with a member list: a joining node learns the members from the cluster; \
                         give either --join or --member, not both"
                    ),
                ));
            }
            if rpc_addr.ip().is_unspecified() {
                return Err(invalid(
                    "rpc_addr",
                    format!("{rpc_addr} is not an address other nodes can reach; a joining node announces it"),
                ));
            }
            if cluster_secret.is_none() {
                return Err(invalid(
                    "cluster_secret_file",
                    "joining a cluster needs its shared secret: set cluster_secret_file or DYNAMO_CLUSTER_SECRET"
                        .to_string(),
                ));
            }
        }
        if members.len() > 1 && cluster_secret.is_none() {
            return Err(invalid(
                "cluster_secret_file",
                format!(
                    "a cluster of {} members needs a shared secret: set cluster_secret_file or DYNAMO_CLUSTER_SECRET",
                    members.len()
                ),
            ));
        }
        let resp_bucket = self.resp_bucket.unwrap_or_else(|| DEFAULT_RESP_BUCKET.to_string());
        validate_bucket(&resp_bucket).map_err(|problem| invalid("resp_bucket", problem.to_string()))?;
        Ok(NodeConfig {
            members,
            cluster_secret,
            node_id,
            http_addr,
            resp_addr: self.resp_addr,
            resp_bucket,
            rpc_addr,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("dynamo-data")),
            engine: self.engine.unwrap_or_default(),
            max_value_bytes,
            partitions,
            default_props,
            request_timeout: Duration::from_millis(request_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS)),
            max_connections,
            log_level,
            max_hint_bytes: self.max_hint_bytes.unwrap_or(DEFAULT_MAX_HINT_BYTES),
            hint_delivery_interval: Duration::from_millis(hint_delivery_interval_ms),
            probe_interval: Duration::from_millis(probe_interval_ms),
            tombstone_grace: Duration::from_millis(self.tombstone_grace_ms.unwrap_or(DEFAULT_TOMBSTONE_GRACE_MS)),
            tombstone_gc_interval: Duration::from_millis(tombstone_gc_interval_ms),
            anti_entropy_interval: Duration::from_millis(anti_entropy_interval_ms),
            anti_entropy_max_keys_per_sec,
            listing_max_keys_per_sec,
            foreground_p99_target_ms,
            transfer_max_bytes_per_sec,
            gossip_interval: Duration::from_millis(gossip_interval_ms),
            seeds,
            join: self.join,
        })
    }
}

/// Whether `text` looks like `HOST:PORT` with a numeric port.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        && text.len() <= dynamo_core::membership::MAX_FIELD_LEN
}

/// Shortest accepted cluster secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

fn resolve_members(
    node_id: &str,
    rpc_addr: SocketAddr,
    capacity: u32,
    zone: Option<String>,
    mut members: Vec<MemberSpec>,
) -> Result<Vec<MemberSpec>, ConfigError> {
    if members.is_empty() {
        members.push(MemberSpec {
            id: node_id.to_string(),
            rpc_addr: rpc_addr.to_string(),
            capacity: None,
            zone: None,
        });
    }
    let Some(me) = members.iter_mut().find(|member| member.id == node_id) else {
        let ids: Vec<&str> = members.iter().map(|member| member.id.as_str()).collect();
        return Err(invalid("members", format!("node_id {node_id:?} is not among the members {ids:?}")));
    };
    me.capacity = me.capacity.or(Some(capacity));
    me.zone = me.zone.clone().or(zone);
    for (index, member) in members.iter().enumerate() {
        if members[..index].iter().any(|earlier| earlier.id == member.id) {
            return Err(invalid("members", format!("member {:?} is listed twice", member.id)));
        }
        if member.capacity == Some(0) {
            return Err(invalid("members", format!("member {:?} has capacity 0", member.id)));
        }
    }
    Ok(members)
}

fn resolve_secret(inline: Option<String>, file: Option<&Path>) -> Result<Option<Vec<u8>>, ConfigError> {
    let secret = match (inline, file) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(path)) => {
            let mut bytes =
                std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            while bytes.last().is_some_and(|byte| *byte == b'\n' || *byte == b'\r') {
                bytes.pop();
            }
            bytes
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            "cluster_secret",
            format!("the cluster secret is {} bytes; use at least {MIN_SECRET_BYTES}", secret.len()),
        ));
    }
    Ok(Some(secret))
}

fn parse_default(text: &str) -> SocketAddr {
    // The defaults are constants written above; a parse failure is a bug
    // caught by the `defaults_resolve` test.
    text.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// The resolved configuration a node runs with.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Stable node name.
    pub node_id: String,
    /// Client HTTP API address.
    pub http_addr: SocketAddr,
    /// Redis-protocol address, if the node serves it.
    pub resp_addr: Option<SocketAddr>,
    /// The bucket of the Redis-protocol keyspace.
    pub resp_bucket: String,
    /// Node-to-node RPC address (listener, and source of outgoing RPC
    /// connections when specific: [`NodeConfig::rpc_outgoing_ip`]).
    pub rpc_addr: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Storage engine.
    pub engine: EngineKind,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Ring partitions (Q).
    pub partitions: u32,
    /// Props of buckets that have none of their own.
    pub default_props: BucketProps,
    /// Default request timeout.
    pub request_timeout: Duration,
    /// Time in-flight requests get on shutdown.
    pub shutdown_grace: Duration,
    /// Cap on simultaneous client connections.
    pub max_connections: usize,
    /// Log level.
    pub log_level: String,
    /// Every member of the cluster, this node included (with its capacity
    /// and zone filled in).
    pub members: Vec<MemberSpec>,
    /// The shared cluster secret (None only for a cluster of one).
    pub cluster_secret: Option<Vec<u8>>,
    /// Bound of the hint store, in bytes.
    pub max_hint_bytes: u64,
    /// Period of hint delivery.
    pub hint_delivery_interval: Duration,
    /// Period between probes of a down peer.
    pub probe_interval: Duration,
    /// Tombstone grace period (and maximum hint age).
    pub tombstone_grace: Duration,
    /// Period of tombstone collection.
    pub tombstone_gc_interval: Duration,
    /// Time between anti-entropy exchanges; zero: no scheduled exchanges.
    pub anti_entropy_interval: Duration,
    /// Most keys anti-entropy repairs per second.
    pub anti_entropy_max_keys_per_sec: u32,
    /// Most keys per second this node's key listings gather.
    pub listing_max_keys_per_sec: u32,
    /// Foreground p99 (ms) admission control keeps background work under;
    /// 0: off.
    pub foreground_p99_target_ms: u64,
    /// Most bytes per second copied by partition transfers.
    pub transfer_max_bytes_per_sec: u64,
    /// Time between gossip rounds; zero: no gossip rounds (the node still
    /// answers its peers').
    pub gossip_interval: Duration,
    /// Seed RPC addresses besides the static members.
    pub seeds: Vec<String>,
    /// RPC address of a member to join through on first start.
    pub join: Option<String>,
}

impl NodeConfig {
    /// The local IP this node's outgoing RPC connections are bound to: the
    /// IP of `rpc_addr`, unless that is unspecified (`0.0.0.0` or `::`, the
    /// OS then picks the source address per route).
    ///
    /// Why: a node should look the same to the rest of the cluster whether
    /// it listens or connects. On one machine this is what lets each node
    /// of a test cluster have its own loopback address (127.0.0.11,
    /// 127.0.0.12, ...) and a firewall rule by source and destination
    /// address cut exactly the links between chosen nodes (the chaos test's
    /// partitions); without it every connection would come from 127.0.0.1.
    /// On a real network it keeps a multi-homed host's RPC on the interface
    /// the operator configured. A specific `rpc_addr` must therefore be an
    /// address from which the other members are reachable (a loopback
    /// `rpc_addr` only for clusters on one machine).
    pub fn rpc_outgoing_ip(&self) -> Option<std::net::IpAddr> {
        let ip = self.rpc_addr.ip();
        (!ip.is_unspecified()).then_some(ip)
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Everything but the secret.
        f.debug_struct("NodeConfig")
            .field("node_id", &self.node_id)
            .field("http_addr", &self.http_addr)
            .field("resp_addr", &self.resp_addr)
            .field("resp_bucket", &self.resp_bucket)
            .field("rpc_addr", &self.rpc_addr)
            .field("data_dir", &self.data_dir)
            .field("engine", &self.engine)
            .field("partitions", &self.partitions)
            .field("default_props", &self.default_props)
            .field("members", &self.members)
            .field("anti_entropy_interval", &self.anti_entropy_interval)
            .field("anti_entropy_max_keys_per_sec", &self.anti_entropy_max_keys_per_sec)
            .field("listing_max_keys_per_sec", &self.listing_max_keys_per_sec)
            .field("foreground_p99_target_ms", &self.foreground_p99_target_ms)
            .field("transfer_max_bytes_per_sec", &self.transfer_max_bytes_per_sec)
            .field("gossip_interval", &self.gossip_interval)
            .field("seeds", &self.seeds)
            .field("join", &self.join)
            .field("cluster_secret", &self.cluster_secret.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let config = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(config.http_addr, DEFAULT_HTTP_ADDR.parse().expect("constant"));
        assert_eq!(config.rpc_addr, DEFAULT_RPC_ADDR.parse().expect("constant"));
        assert_eq!(config.max_value_bytes, DEFAULT_MAX_VALUE_BYTES);
        assert_eq!(config.node_id, "node-8080");
    }

    #[test]
    fn outgoing_rpc_binds_to_a_specific_rpc_ip_and_not_to_a_wildcard() {
        let at = |addr: &str| Settings { rpc_addr: Some(addr.parse().expect("addr")), ..Settings::default() };
        let specific = at("127.0.0.12:9080").resolve().expect("valid");
        assert_eq!(specific.rpc_outgoing_ip(), Some("127.0.0.12".parse().expect("ip")));
        assert_eq!(at("0.0.0.0:9080").resolve().expect("valid").rpc_outgoing_ip(), None);
        assert_eq!(at("[::]:9080").resolve().expect("valid").rpc_outgoing_ip(), None);
        assert_eq!(at("[::1]:9080").resolve().expect("valid").rpc_outgoing_ip(), Some("::1".parse().expect("ip")));
    }

    #[test]
    fn flags_override_file_values() {
        let file: Settings = toml::from_str("max_value_bytes = 10\nnode_id = \"a\"").expect("valid toml");
        let flags = Settings { node_id: Some("b".into()), ..Settings::default() };
        let config = file.overlay(flags).resolve().expect("valid");
        assert_eq!(config.node_id, "b");
        assert_eq!(config.max_value_bytes, 10);
    }

    #[test]
    fn unknown_config_key_is_rejected_by_name() {
        let error = toml::from_str::<Settings>("max_valu_bytes = 10").expect_err("typo must fail");
        assert!(error.to_string().contains("max_valu_bytes"), "{error}");
    }

    #[test]
    fn members_parse_from_flags_and_must_include_this_node() {
        let member: MemberSpec = "node1=127.0.0.1:9081,capacity=2,zone=a".parse().expect("valid");
        assert_eq!((member.capacity, member.zone.as_deref()), (Some(2), Some("a")));
        assert!("node1".parse::<MemberSpec>().is_err());
        assert!("node1=x,weight=2".parse::<MemberSpec>().expect_err("unknown option").contains("weight"));
        let settings = Settings {
            node_id: Some("node9".into()),
            members: Some(vec!["node1=127.0.0.1:9081".parse().expect("valid")]),
            ..Settings::default()
        };
        assert!(settings.resolve().expect_err("not a member").to_string().contains("node9"));
    }

    #[test]
    fn a_multi_node_cluster_needs_a_long_enough_secret() {
        let members: Vec<MemberSpec> =
            vec!["a=127.0.0.1:1".parse().expect("valid"), "b=127.0.0.1:2".parse().expect("valid")];
        let base = Settings { node_id: Some("a".into()), members: Some(members), ..Settings::default() };
        assert!(base.clone().resolve().expect_err("no secret").to_string().contains("secret"));
        let short = Settings { cluster_secret: Some("short".into()), ..base.clone() };
        assert!(short.resolve().expect_err("too short").to_string().contains("at least 16"));
        let good = Settings { cluster_secret: Some("0123456789abcdef".into()), ..base };
        let config = good.resolve().expect("valid");
        assert_eq!(config.members[0].capacity, Some(1));
        assert!(!format!("{config:?}").contains("0123456789abcdef"), "Debug never prints the secret");
    }

    #[test]
    fn out_of_range_settings_name_the_key() {
        let settings = Settings { default_w: Some(4), default_n: Some(3), ..Settings::default() };
        let error = settings.resolve().expect_err("w > n");
        assert!(error.to_string().contains("default_n/r/w/dw"), "{error}");
        let settings = Settings { partitions: Some(100), ..Settings::default() };
        assert!(settings.resolve().expect_err("not a power of two").to_string().contains("partitions"));
    }

    #[test]
    fn membership_settings_parse_and_a_joining_node_needs_a_secret_and_no_member_list() {
        let config = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(config.gossip_interval, Duration::from_millis(DEFAULT_GOSSIP_INTERVAL_MS));
        assert!(config.seeds.is_empty() && config.join.is_none());
        let file: Settings =
            toml::from_str("gossip_interval_ms = 250\nseeds = [\"10.0.0.1:9080\"]\njoin = \"10.0.0.1:9080\"\ncluster_secret = \"0123456789abcdef\"")
                .expect("valid toml");
        let config = file.clone().resolve().expect("valid");
        assert_eq!(config.gossip_interval, Duration::from_millis(250));
        assert_eq!(config.seeds, ["10.0.0.1:9080"]);
        assert_eq!(config.join.as_deref(), Some("10.0.0.1:9080"));
        let no_secret = Settings { cluster_secret: None, ..file.clone() };
        assert!(no_secret.resolve().expect_err("no secret").to_string().contains("secret"));
        let with_members = Settings {
            node_id: Some("a".into()),
            members: Some(vec!["a=127.0.0.1:1".parse().expect("valid"), "b=127.0.0.1:2".parse().expect("valid")]),
            ..file.clone()
        };
        assert!(with_members.resolve().expect_err("both").to_string().contains("not both"));
        let bad_seed = Settings { seeds: Some(vec!["nohost".into()]), ..file.clone() };
        assert!(bad_seed.resolve().expect_err("bad seed").to_string().contains("HOST:PORT"));
        let unreachable = Settings { rpc_addr: Some("0.0.0.0:9080".parse().expect("addr")), ..file };
        assert!(unreachable.resolve().expect_err("0.0.0.0").to_string().contains("rpc_addr"));
        let too_fast = Settings { gossip_interval_ms: Some(5), ..Settings::default() };
        assert!(too_fast.resolve().expect_err("5 ms").to_string().contains("gossip_interval_ms"));
        let off = Settings { gossip_interval_ms: Some(0), ..Settings::default() };
        assert!(off.resolve().expect("0 disables").gossip_interval.is_zero());
    }

    #[test]
    fn anti_entropy_settings_default_parse_from_toml_and_zero_disables_the_scheduler() {
        let config = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(config.anti_entropy_interval, Duration::from_millis(DEFAULT_ANTI_ENTROPY_INTERVAL_MS));
        assert_eq!(config.anti_entropy_max_keys_per_sec, DEFAULT_ANTI_ENTROPY_MAX_KEYS_PER_SEC);
        let file: Settings =
            toml::from_str("anti_entropy_interval_ms = 0\nanti_entropy_max_keys_per_sec = 50").expect("valid toml");
        let config = file.resolve().expect("valid");
        assert!(config.anti_entropy_interval.is_zero());
        assert_eq!(config.anti_entropy_max_keys_per_sec, 50);
        let no_rate = Settings { anti_entropy_max_keys_per_sec: Some(0), ..Settings::default() };
        assert!(no_rate.resolve().expect_err("zero rate").to_string().contains("anti_entropy_max_keys_per_sec"));
        assert_eq!(
            Settings::default().resolve().expect("valid").listing_max_keys_per_sec,
            DEFAULT_LISTING_MAX_KEYS_PER_SEC
        );
        let too_patient =
            Settings { foreground_p99_target_ms: Some(MAX_FOREGROUND_P99_TARGET_MS + 1), ..Settings::default() };
        assert!(too_patient.resolve().expect_err("too long").to_string().contains("foreground_p99_target_ms"));
        let no_listing = Settings { listing_max_keys_per_sec: Some(0), ..Settings::default() };
        assert!(no_listing.resolve().expect_err("zero rate").to_string().contains("listing_max_keys_per_sec"));
        let too_slow =
            Settings { anti_entropy_interval_ms: Some(MAX_ANTI_ENTROPY_INTERVAL_MS + 1), ..Settings::default() };
        assert!(too_slow.resolve().expect_err("too long").to_string().contains("anti_entropy_interval_ms"));
    }
}
