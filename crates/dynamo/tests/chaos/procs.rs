//! The cluster under test: `dynamo server` processes, each on its own
//! loopback address (so a firewall rule can cut the links between chosen
//! nodes), with the fjall engine on a data directory that survives
//! `kill -9` and restart. Faults on processes: kill -9 and restart with the
//! same command line, SIGSTOP and SIGCONT.
//!
//! The cluster is founded by the first nodes (each lists the founders with
//! `--member`); the others are *spares*, not started until the nemesis has
//! one join ([`ChaosCluster::start_spare`]: `--join` to a running node).
//! Spares start in order, so the started nodes are always a prefix of
//! [`ChaosCluster::specs`]; clients and checks use exactly those.
//!
//! Every process is started by one long-lived *spawner* thread with
//! `PR_SET_PDEATHSIG(SIGKILL)`: if the test process dies without running its
//! destructors (SIGKILL, abort), the kernel kills the nodes too. The
//! parent-death signal fires when the *thread* that forked exits, which is
//! why the nemesis thread does not spawn restarts itself. Dropping the
//! [`ChaosCluster`] kills every node.

use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a node gets to answer `/ping` after (re)start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP port of node 0; node i uses base + i. Below the ephemeral range
/// (32768+), so no outgoing connection can hold it.
const HTTP_PORT_BASE: u16 = 17_000;
/// RPC ports sit this far above HTTP ports.
const RPC_PORT_OFFSET: u16 = 1_000;

/// One node's fixed identity: the same across restarts.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// `node<i>`.
    pub id: String,
    /// Its own loopback address, for HTTP, RPC and outgoing RPC.
    pub ip: Ipv4Addr,
    /// `ip:port` of the HTTP API.
    pub http_addr: String,
    /// `ip:port` of the RPC listener (what `--join` takes).
    pub rpc_addr: String,
    /// The exact command line that (re)starts it; a spare's gets
    /// `--join=<seed>` when it starts (a restarted member ignores it).
    pub argv: Vec<String>,
    /// Where its stdout and stderr go (appended across restarts).
    pub log: PathBuf,
}

/// What the harness did to a node last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running (or should be).
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Killed with SIGKILL, not restarted yet.
    Killed,
    /// A spare, not started yet.
    Spare,
}

struct NodeProcess {
    child: Option<Child>,
    state: NodeState,
    /// The command line it (re)starts with.
    argv: Vec<String>,
}

/// A cluster of node processes.
pub struct ChaosCluster {
    specs: Vec<NodeSpec>,
    processes: Vec<Mutex<NodeProcess>>,
    /// How many nodes have been started (a prefix of `specs`).
    started: Arc<AtomicUsize>,
    spawner: Spawner,
}

impl ChaosCluster {
    /// Starts the first `founders` of `ips` as nodes in `dir` sharing
    /// `secret_file`, all members of one cluster, and waits until every
    /// one answers `/ping`. The other addresses are spares'.
    pub fn start(
        dir: &Path,
        ips: &[Ipv4Addr],
        founders: usize,
        secret_file: &Path,
        log_level: &str,
    ) -> Result<ChaosCluster, String> {
        let binary = env!("CARGO_BIN_EXE_dynamo");
        let rpc_addr = |index: usize| format!("{}:{}", ips[index], HTTP_PORT_BASE + RPC_PORT_OFFSET + index as u16);
        let members: Vec<String> =
            (0..founders).map(|index| format!("--member=node{index}={}", rpc_addr(index))).collect();
        let specs: Vec<NodeSpec> = ips
            .iter()
            .enumerate()
            .map(|(index, ip)| {
                let http_addr = format!("{ip}:{}", HTTP_PORT_BASE + index as u16);
                let mut argv = vec![
                    binary.to_string(),
                    "server".to_string(),
                    format!("--node-id=node{index}"),
                    format!("--http-addr={http_addr}"),
                    format!("--rpc-addr={}", rpc_addr(index)),
                    format!("--data-dir={}", dir.join(format!("node{index}")).display()),
                    "--engine=fjall".to_string(),
                    format!("--cluster-secret-file={}", secret_file.display()),
                    format!("--log-level={log_level}"),
                    // A SIGTERM is never sent; keep the drain short anyway.
                    "--shutdown-grace-ms=2000".to_string(),
                    // Few partitions and a short anti-entropy interval, so
                    // a full anti-entropy pass (every partition compared)
                    // takes seconds, not the minutes of the defaults
                    // (256 partitions, one exchange a second).
                    "--partitions=16".to_string(),
                    "--anti-entropy-interval-ms=100".to_string(),
                ];
                if index < founders {
                    argv.extend(members.iter().cloned());
                }
                NodeSpec {
                    id: format!("node{index}"),
                    ip: *ip,
                    http_addr,
                    rpc_addr: rpc_addr(index),
                    argv,
                    log: dir.join(format!("node{index}.log")),
                }
            })
            .collect();
        let cluster = ChaosCluster {
            processes: specs
                .iter()
                .map(|spec| Mutex::new(NodeProcess { child: None, state: NodeState::Spare, argv: spec.argv.clone() }))
                .collect(),
            specs,
            started: Arc::new(AtomicUsize::new(founders)),
            spawner: Spawner::start(),
        };
        // Spawn all first, then wait: the nodes start in parallel.
        for index in 0..founders {
            cluster.spawn(index, &mut cluster.process(index))?;
        }
        for index in 0..founders {
            cluster.wait_ready(index)?;
        }
        Ok(cluster)
    }

    /// Starts spare `index` with `--join` to node `seed`'s RPC address and
    /// waits until it answers `/ping`; from then on it counts as started
    /// (it serves data once its join is through). Spares start in order.
    pub fn start_spare(&self, index: usize, seed: usize) -> Result<(), String> {
        if self.started.load(Ordering::SeqCst) != index {
            return Err(format!("{} is not the next spare to start", self.specs[index].id));
        }
        {
            let mut process = self.process(index);
            if process.state != NodeState::Spare {
                return Err(format!("{} is not a spare", self.specs[index].id));
            }
            process.argv.push(format!("--join={}", self.specs[seed].rpc_addr));
            self.spawn(index, &mut process)?;
        }
        self.wait_ready(index)?;
        self.started.store(index + 1, Ordering::SeqCst);
        Ok(())
    }

    /// The nodes.
    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// Every node's HTTP address, spares included.
    pub fn http_addrs(&self) -> Vec<String> {
        self.specs.iter().map(|spec| spec.http_addr.clone()).collect()
    }

    /// The HTTP addresses of the nodes started so far.
    pub fn started_http_addrs(&self) -> Vec<String> {
        self.specs[..self.started.load(Ordering::SeqCst)].iter().map(|spec| spec.http_addr.clone()).collect()
    }

    /// How many nodes have been started (the first ones of
    /// [`ChaosCluster::http_addrs`]), shared with whoever must follow it.
    pub fn started(&self) -> Arc<AtomicUsize> {
        self.started.clone()
    }

    /// What the harness last did to node `index`.
    pub fn state(&self, index: usize) -> NodeState {
        self.process(index).state
    }

    /// `kill -9` (works on a paused process too) and reap.
    pub fn kill(&self, index: usize) -> Result<(), String> {
        let mut process = self.process(index);
        let mut child = process.child.take().ok_or_else(|| format!("{} is not running", self.specs[index].id))?;
        child.kill().map_err(|error| format!("SIGKILL {}: {error}", self.specs[index].id))?;
        let _ = child.wait();
        process.state = NodeState::Killed;
        Ok(())
    }

    /// Restarts a killed node with its original command line and data
    /// directory, and waits until it serves.
    pub fn restart(&self, index: usize) -> Result<(), String> {
        {
            let mut process = self.process(index);
            if process.state != NodeState::Killed {
                return Err(format!("{} is not killed", self.specs[index].id));
            }
            self.spawn(index, &mut process)?;
        }
        self.wait_ready(index)
    }

    /// SIGSTOP.
    pub fn pause(&self, index: usize) -> Result<(), String> {
        self.signal(index, libc::SIGSTOP, NodeState::Running, NodeState::Paused)
    }

    /// SIGCONT.
    pub fn resume(&self, index: usize) -> Result<(), String> {
        self.signal(index, libc::SIGCONT, NodeState::Paused, NodeState::Running)
    }

    /// Resumes every paused node and restarts every killed one; returns
    /// what it did (for the log). Spares stay spares.
    pub fn heal(&self) -> Result<Vec<String>, String> {
        let mut done = Vec::new();
        for index in 0..self.specs.len() {
            match self.state(index) {
                NodeState::Running | NodeState::Spare => {}
                NodeState::Paused => {
                    self.resume(index)?;
                    done.push(format!("resume {}", self.specs[index].id));
                }
                NodeState::Killed => {
                    self.restart(index)?;
                    done.push(format!("restart {}", self.specs[index].id));
                }
            }
        }
        Ok(done)
    }

    /// Fails if a node the harness did not kill has exited: a crash of the
    /// store itself (its log says why).
    pub fn check_no_crash(&self) -> Result<(), String> {
        for (index, spec) in self.specs.iter().enumerate() {
            let mut process = self.process(index);
            if let Some(child) = process.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                process.child = None;
                process.state = NodeState::Killed;
                return Err(format!("{} exited by itself ({status}); see {}", spec.id, spec.log.display()));
            }
        }
        Ok(())
    }

    fn signal(&self, index: usize, signal: libc::c_int, from: NodeState, to: NodeState) -> Result<(), String> {
        let mut process = self.process(index);
        let id = &self.specs[index].id;
        if process.state != from {
            return Err(format!("{id} is {:?}, not {from:?}", process.state));
        }
        let pid = process.child.as_ref().ok_or_else(|| format!("{id} has no process"))?.id();
        // SAFETY: kill(2) on our own, not yet reaped child.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            return Err(format!("signal {signal} to {id}: {}", std::io::Error::last_os_error()));
        }
        process.state = to;
        Ok(())
    }

    fn spawn(&self, index: usize, process: &mut NodeProcess) -> Result<(), String> {
        let spec = &self.specs[index];
        let child =
            self.spawner.spawn(&process.argv, &spec.log).map_err(|error| format!("starting {}: {error}", spec.id))?;
        process.child = Some(child);
        process.state = NodeState::Running;
        Ok(())
    }

    fn wait_ready(&self, index: usize) -> Result<(), String> {
        let spec = &self.specs[index];
        let deadline = Instant::now() + START_TIMEOUT;
        while !ping(&spec.http_addr) {
            if let Some(child) = self.process(index).child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("{} exited during start-up ({status}); see {}", spec.id, spec.log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not answer /ping within {START_TIMEOUT:?}", spec.id));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    fn process(&self, index: usize) -> MutexGuard<'_, NodeProcess> {
        // A panic while holding the lock leaves a consistent record (the
        // fields are written last), so poisoning is ignored.
        self.processes[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for process in &self.processes {
            let mut process = process.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(mut child) = process.child.take() {
                // SIGKILL ends a stopped process too.
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A blocking `GET /ping` with a short timeout.
pub fn ping(addr: &str) -> bool {
    let Ok(addr) = addr.parse() else { return false };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /ping HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}

type SpawnRequest = (Vec<String>, PathBuf, mpsc::Sender<std::io::Result<Child>>);

/// The thread that forks every node (see the module doc for why one
/// long-lived thread).
struct Spawner {
    requests: Option<mpsc::Sender<SpawnRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    fn start() -> Spawner {
        let (requests, inbox) = mpsc::channel::<SpawnRequest>();
        let thread = std::thread::Builder::new()
            .name("chaos-spawner".to_string())
            .spawn(move || {
                for (argv, log, reply) in inbox {
                    let _ = reply.send(spawn_node(&argv, &log));
                }
            })
            .expect("spawn the spawner thread");
        Spawner { requests: Some(requests), thread: Some(thread) }
    }

    fn spawn(&self, argv: &[String], log: &Path) -> std::io::Result<Child> {
        let (reply, answer) = mpsc::channel();
        let gone = || std::io::Error::other("the spawner thread is gone");
        self.requests.as_ref().ok_or_else(gone)?.send((argv.to_vec(), log.to_path_buf(), reply)).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn spawn_node(argv: &[String], log: &Path) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe and touch only the
    // child.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::other("the test process is gone"));
            }
            Ok(())
        });
    }
    command.spawn()
}
