//! `dynamo server`: one node. Every setting is a flag and a key of the TOML
//! config file (`--config`); flags win over the file, the file over
//! defaults. See `config/dynamo.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use dynamo_core::props::ConflictMode;
use dynamo_node::config::{EngineKind, MemberSpec, Settings};
use dynamo_node::server::Node;

/// Flags of `dynamo server` (each also a config-file key, with `_` for `-`).
#[derive(clap::Args, Debug, Default)]
pub struct ServerArgs {
    /// TOML config file; flags override its values.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stable node name [default: node-<http port>].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Client HTTP API address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Redis-protocol address (RESP2/RESP3) [default: off].
    #[arg(long)]
    pub resp_addr: Option<SocketAddr>,
    /// Bucket of the Redis-protocol keyspace [default: redis].
    #[arg(long)]
    pub resp_bucket: Option<String>,
    /// Node-to-node RPC address [default: 127.0.0.1:9080].
    #[arg(long)]
    pub rpc_addr: Option<SocketAddr>,
    /// Data directory [default: ./dynamo-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage engine: fjall (durable) or memory [default: fjall].
    #[arg(long)]
    pub engine: Option<EngineKind>,
    /// Largest value accepted, in bytes [default: 1048576].
    #[arg(long)]
    pub max_value_bytes: Option<usize>,
    /// Ring partitions Q, a power of two, fixed at cluster creation [default: 256].
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Default replicas per key for buckets without props [default: 3].
    #[arg(long)]
    pub default_n: Option<u8>,
    /// Default read quorum [default: 2].
    #[arg(long)]
    pub default_r: Option<u8>,
    /// Default write quorum [default: 2].
    #[arg(long)]
    pub default_w: Option<u8>,
    /// Default durable-write count [default: 0].
    #[arg(long)]
    pub default_dw: Option<u8>,
    /// Default conflict mode: siblings or lww [default: siblings].
    #[arg(long, value_parser = parse_conflict)]
    pub default_conflict: Option<ConflictMode>,
    /// Default request timeout in ms [default: 5000].
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// Time in-flight requests get on shutdown, in ms [default: 30000].
    #[arg(long)]
    pub shutdown_grace_ms: Option<u64>,
    /// Cap on simultaneous client connections [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Log level: error, warn, info, debug, trace [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// This node's ring weight [default: 1].
    #[arg(long)]
    pub capacity: Option<u32>,
    /// This node's zone (rack or data centre).
    #[arg(long)]
    pub zone: Option<String>,
    /// A cluster member, `ID=RPC_ADDR[,capacity=C][,zone=Z]`; repeat for
    /// every node, this one included (config key: `[[members]]`).
    #[arg(long = "member")]
    pub members: Vec<MemberSpec>,
    /// File holding the shared cluster secret.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret (prefer the file; flags are visible in `ps`).
    #[arg(long, env = "DYNAMO_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Bound of the hint store in bytes: writes held for unreachable
    /// replicas [default: 1073741824].
    #[arg(long)]
    pub max_hint_bytes: Option<u64>,
    /// How often held hints are offered to their owners, in ms [default: 1000].
    #[arg(long)]
    pub hint_delivery_interval_ms: Option<u64>,
    /// How often a peer marked down is probed, in ms [default: 1000].
    #[arg(long)]
    pub probe_interval_ms: Option<u64>,
    /// How long a delete's tombstone is kept before it may be collected
    /// (once every replica holds it), and the age past which undelivered
    /// hints are dropped, in ms [default: 86400000].
    #[arg(long)]
    pub tombstone_grace_ms: Option<u64>,
    /// How often tombstones are looked at for collection, in ms [default: 60000].
    #[arg(long)]
    pub tombstone_gc_interval_ms: Option<u64>,
    /// Milliseconds between two anti-entropy exchanges, one partition each; 0 disables them [default: 1000].
    #[arg(long)]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Most keys anti-entropy repairs per second [default: 1000].
    #[arg(long)]
    pub anti_entropy_max_keys_per_sec: Option<u32>,
    /// Most keys per second this node's key listings (GET /buckets/{b}/keys, SCAN) gather [default: 50000].
    #[arg(long)]
    pub listing_max_keys_per_sec: Option<u32>,
    /// Foreground p99 in ms that admission control keeps background work (repair, transfers, listing) under; 0 turns it off [default: 100].
    #[arg(long)]
    pub foreground_p99_target_ms: Option<u64>,
    /// Most bytes per second this node copies in partition transfers after a membership change [default: 20971520].
    #[arg(long)]
    pub transfer_max_bytes_per_sec: Option<u64>,
    /// Milliseconds between two gossip rounds (membership); 0 disables them [default: 1000].
    #[arg(long)]
    pub gossip_interval_ms: Option<u64>,
    /// RPC address of a seed node, contacted by gossip every few rounds;
    /// repeat for several (config key: `seeds`). The static members are
    /// seeds too.
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// On this node's first start, join the cluster of the node at this
    /// RPC address (needs the cluster secret, an empty data directory and
    /// no member list). Ignored once the node belongs to a cluster.
    #[arg(long)]
    pub join: Option<String>,
}

fn parse_conflict(text: &str) -> Result<ConflictMode, String> {
    match text {
        "siblings" => Ok(ConflictMode::Siblings),
        "lww" => Ok(ConflictMode::Lww),
        other => Err(format!("unknown conflict mode {other:?}; use siblings or lww")),
    }
}

impl ServerArgs {
    fn into_settings(self) -> Settings {
        Settings {
            node_id: self.node_id,
            http_addr: self.http_addr,
            resp_addr: self.resp_addr,
            resp_bucket: self.resp_bucket,
            rpc_addr: self.rpc_addr,
            data_dir: self.data_dir,
            engine: self.engine,
            max_value_bytes: self.max_value_bytes,
            partitions: self.partitions,
            default_n: self.default_n,
            default_r: self.default_r,
            default_w: self.default_w,
            default_dw: self.default_dw,
            default_conflict: self.default_conflict,
            request_timeout_ms: self.request_timeout_ms,
            shutdown_grace_ms: self.shutdown_grace_ms,
            max_connections: self.max_connections,
            log_level: self.log_level,
            capacity: self.capacity,
            zone: self.zone,
            members: if self.members.is_empty() { None } else { Some(self.members) },
            cluster_secret_file: self.cluster_secret_file,
            cluster_secret: self.cluster_secret,
            max_hint_bytes: self.max_hint_bytes,
            hint_delivery_interval_ms: self.hint_delivery_interval_ms,
            probe_interval_ms: self.probe_interval_ms,
            tombstone_grace_ms: self.tombstone_grace_ms,
            tombstone_gc_interval_ms: self.tombstone_gc_interval_ms,
            anti_entropy_interval_ms: self.anti_entropy_interval_ms,
            anti_entropy_max_keys_per_sec: self.anti_entropy_max_keys_per_sec,
            listing_max_keys_per_sec: self.listing_max_keys_per_sec,
            foreground_p99_target_ms: self.foreground_p99_target_ms,
            transfer_max_bytes_per_sec: self.transfer_max_bytes_per_sec,
            gossip_interval_ms: self.gossip_interval_ms,
            seeds: if self.seeds.is_empty() { None } else { Some(self.seeds) },
            join: self.join,
        }
    }
}

/// Runs a node until SIGINT or SIGTERM, then shuts it down gracefully.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let config = file.overlay(args.into_settings()).resolve()?;
    init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let node = Node::bind(config).await?;
        node.run(shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn init_logging(level: &str) {
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    // Logs go to stderr; colours only when a person is watching.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
