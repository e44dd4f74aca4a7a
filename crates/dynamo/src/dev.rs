//! `dynamo dev`: a local cluster of real `dynamo server` processes on
//! loopback, for trying the store and for tests that kill and restart
//! nodes. It writes `DIR/cluster.json` (each node's id, pid, addresses, data
//! directory and the exact argv that restarts it), prints a table, and runs
//! in the foreground until SIGINT/SIGTERM, then stops every node gracefully.
//! It never restarts a node by itself: a test that kills one restarts it
//! from `cluster.json`.
//!
//! This module deliberately uses no async runtime: children are spawned and
//! watched from the main thread, which lives as long as the command, so the
//! children's parent-death signal (Linux `PR_SET_PDEATHSIG`) stops them if
//! `dynamo dev` itself is killed.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Most nodes `dev` starts: a bound on processes and ports, far above what
/// one machine runs usefully.
const MAX_DEV_NODES: u16 = 64;
/// How far RPC ports sit above HTTP ports.
const RPC_PORT_OFFSET: u16 = 1000;
/// How long a node gets to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a node gets to answer `/ping` after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `dynamo dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 1)]
    pub nodes: u16,
    /// HTTP port of node 0; node i uses base + i. RPC ports are 1000 higher.
    #[arg(long, default_value_t = 8080)]
    pub http_port_base: u16,
    /// Redis-protocol port of node 0; node i uses base + i.
    #[arg(long, default_value_t = 6379)]
    pub resp_port_base: u16,
    /// Directory for every node's data and for cluster.json.
    #[arg(long, default_value = "dynamo-data")]
    pub data_dir: PathBuf,
    /// Storage engine of the nodes: fjall or memory.
    #[arg(long, default_value = "fjall")]
    pub engine: String,
    /// Extra flags passed to every `dynamo server` (repeatable), e.g.
    /// `--server-arg=--max-value-bytes=2048`.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
}

/// One line of cluster.json.
#[derive(Serialize)]
struct NodeRecord {
    id: String,
    pid: u32,
    http_addr: String,
    rpc_addr: String,
    /// The Redis-protocol address.
    resp: String,
    data_dir: PathBuf,
    argv: Vec<String>,
}

/// cluster.json.
#[derive(Serialize)]
struct ClusterFile<'a> {
    nodes: &'a [NodeRecord],
}

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Runs the cluster until interrupted.
pub fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 || args.nodes > MAX_DEV_NODES {
        bail!("--nodes {}: dev runs between 1 and {MAX_DEV_NODES} nodes", args.nodes);
    }
    if u32::from(args.http_port_base) + u32::from(args.nodes) + u32::from(RPC_PORT_OFFSET) > 65535 {
        bail!("--http-port-base {} leaves no room for {} HTTP and RPC ports", args.http_port_base, args.nodes);
    }
    if u32::from(args.resp_port_base) + u32::from(args.nodes) > 65535 {
        bail!("--resp-port-base {} leaves no room for {} Redis-protocol ports", args.resp_port_base, args.nodes);
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().with_context(|| format!("resolving {}", args.data_dir.display()))?;
    let secret_file = ensure_secret(&data_dir)?;
    install_signal_handlers();
    let exe = std::env::current_exe().context("locating the dynamo binary")?;
    let mut children: Vec<Option<Child>> = Vec::new();
    let mut records = Vec::new();
    for index in 0..args.nodes {
        let argv = node_argv(&exe, &args, &data_dir, &secret_file, index);
        let child = spawn(&argv).with_context(|| format!("starting node {index}"))?;
        records.push(NodeRecord {
            id: format!("node{index}"),
            pid: child.id(),
            http_addr: format!("127.0.0.1:{}", args.http_port_base + index),
            rpc_addr: format!("127.0.0.1:{}", args.http_port_base + RPC_PORT_OFFSET + index),
            resp: format!("127.0.0.1:{}", args.resp_port_base + index),
            data_dir: data_dir.join(format!("node{index}")),
            argv,
        });
        children.push(Some(child));
    }
    let cluster_file = data_dir.join("cluster.json");
    write_cluster_file(&cluster_file, &records)?;
    let ready = wait_until_ready(&records, &mut children);
    print_table(&records, &cluster_file);
    if let Err(error) = ready {
        stop_all(&mut children);
        return Err(error);
    }
    println!("cluster running; press Ctrl-C to stop every node");
    watch(&records, &mut children);
    println!("stopping {} node(s)...", children.iter().flatten().count());
    stop_all(&mut children);
    println!("all nodes stopped");
    Ok(ExitCode::SUCCESS)
}

/// The cluster secret file of this dev cluster: created once with 32
/// random bytes (hex), readable only by the owner, and reused on later runs
/// so a restarted dev cluster is the same cluster.
fn ensure_secret(data_dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = data_dir.join("cluster.secret");
    if path.exists() {
        return Ok(path);
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut random))
        .context("reading /dev/urandom for the cluster secret")?;
    let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, hex.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn node_argv(exe: &Path, args: &DevArgs, data_dir: &Path, secret_file: &Path, index: u16) -> Vec<String> {
    let replicas = args.nodes.min(3);
    let quorum = replicas / 2 + 1;
    let mut argv = vec![
        exe.display().to_string(),
        "server".to_string(),
        format!("--node-id=node{index}"),
        format!("--http-addr=127.0.0.1:{}", args.http_port_base + index),
        format!("--rpc-addr=127.0.0.1:{}", args.http_port_base + RPC_PORT_OFFSET + index),
        format!("--resp-addr=127.0.0.1:{}", args.resp_port_base + index),
        format!("--data-dir={}", data_dir.join(format!("node{index}")).display()),
        format!("--engine={}", args.engine),
        format!("--default-n={replicas}"),
        format!("--default-r={quorum}"),
        format!("--default-w={quorum}"),
        format!("--cluster-secret-file={}", secret_file.display()),
    ];
    for member in 0..args.nodes {
        argv.push(format!("--member=node{member}=127.0.0.1:{}", args.http_port_base + RPC_PORT_OFFSET + member));
    }
    argv.extend(args.server_args.iter().cloned());
    argv
}

fn spawn(argv: &[String]) -> anyhow::Result<Child> {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    // SAFETY: prctl is async-signal-safe and touches only this child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command.spawn().with_context(|| format!("spawning {}", argv.join(" ")))
}

fn install_signal_handlers() {
    let handler = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn write_cluster_file(path: &Path, records: &[NodeRecord]) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(&ClusterFile { nodes: records })?;
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, json).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

fn wait_until_ready(records: &[NodeRecord], children: &mut [Option<Child>]) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for (record, child) in records.iter().zip(children.iter_mut()) {
        loop {
            if ping(&record.http_addr) {
                break;
            }
            if let Some(child) = child
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("{} exited during start-up ({status}); see its log above", record.id);
            }
            if Instant::now() > deadline || STOP_REQUESTED.load(Ordering::SeqCst) {
                bail!("{} did not answer /ping on {} within {:?}", record.id, record.http_addr, START_TIMEOUT);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// A blocking `GET /ping`, enough to know a node is serving.
fn ping(addr: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

fn print_table(records: &[NodeRecord], cluster_file: &Path) {
    println!("{:<8} {:>8}  {:<21} {:<21} {:<21} DATA DIR", "NODE", "PID", "HTTP", "RPC", "REDIS");
    for record in records {
        println!(
            "{:<8} {:>8}  {:<21} {:<21} {:<21} {}",
            record.id,
            record.pid,
            record.http_addr,
            record.rpc_addr,
            record.resp,
            record.data_dir.display()
        );
    }
    println!("cluster file: {}", cluster_file.display());
}

fn watch(records: &[NodeRecord], children: &mut [Option<Child>]) {
    while !STOP_REQUESTED.load(Ordering::SeqCst) {
        for (record, slot) in records.iter().zip(children.iter_mut()) {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                println!(
                    "{} (pid {}) exited: {status}; restart it with the argv in cluster.json",
                    record.id, record.pid
                );
                *slot = None;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_all(children: &mut [Option<Child>]) {
    for child in children.iter().flatten() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for child in children.iter_mut().flatten() {
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
