//! Harness for tests against the real `dynamo` binary: start a node process
//! on a free loopback port, talk to it over HTTP, kill or stop it, restart it
//! on the same data directory.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use dynamo_client::Connection;

/// Path of the binary under test.
pub fn dynamo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_dynamo")
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Lowest port handed out.
const PORT_BASE: u16 = 10_000;
/// Ports handed out lie in `PORT_BASE..PORT_BASE + PORT_SPAN`, and their RPC
/// ports (+1000) below 32,768: under Linux's ephemeral range (32768-60999
/// by default), where every outgoing connection takes its local port, so
/// a port checked free here is not taken by a client socket before the
/// node binds it.
const PORT_SPAN: u16 = 21_000;

/// A loopback port that was free a moment ago. Ports are handed out from a
/// per-process range so parallel tests in one binary never pick the same.
pub fn free_port() -> u16 {
    let _ = NEXT_PORT.compare_exchange(0, (std::process::id() % 2_000) as u16 * 10, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_BASE + port % PORT_SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port + 1000)).is_ok() {
            return port;
        }
    }
}

/// A node process under test.
pub struct TestNode {
    pub data_dir: PathBuf,
    pub port: u16,
    pub extra_args: Vec<String>,
    /// Where the process's stderr (its log) goes; inherited when `None`.
    pub log: Option<PathBuf>,
    child: Option<Child>,
}

impl TestNode {
    /// Starts a single node (n = r = w = 1 defaults) on a fresh port.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> TestNode {
        Self::start_logged(data_dir, extra_args, None)
    }

    /// Like [`TestNode::start`], with stderr (the log) appended to `log`.
    pub fn start_logged(data_dir: &Path, extra_args: &[&str], log: Option<PathBuf>) -> TestNode {
        let mut node = TestNode {
            data_dir: data_dir.to_path_buf(),
            port: free_port(),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            log,
            child: None,
        };
        node.restart();
        node
    }

    /// The node's RPC address.
    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port + 1000)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The node's HTTP address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port and data directory and waits
    /// until it answers `/ping`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let stderr = match &self.log {
            None => Stdio::inherit(),
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the node's log file"),
            ),
        };
        let child = Command::new(dynamo_bin())
            .args([
                "server",
                &format!("--http-addr=127.0.0.1:{}", self.port),
                &format!("--rpc-addr=127.0.0.1:{}", self.port + 1000),
                &format!("--data-dir={}", self.data_dir.display()),
                "--default-n=1",
                "--default-r=1",
                "--default-w=1",
                "--log-level=warn",
            ])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn dynamo server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                panic!("node exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("node did not listen on {} within 30 s", self.addr());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }

    /// Waits for the process to exit; returns whether it exited with success.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Graceful stop: SIGTERM and wait.
    pub fn stop(&mut self) {
        self.sigterm();
        assert!(self.wait_exit(Duration::from_secs(30)), "node exited with failure");
    }

    /// A new kept-alive HTTP connection.
    pub async fn connect(&self) -> Connection {
        dynamo_client::connect(&self.addr()).await.expect("connect")
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A current-thread runtime for a test body.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}

/// The secret every test cluster shares.
pub const TEST_SECRET: &str = "test-cluster-secret-0123456789";

/// A cluster of real node processes on loopback.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub secret_file: PathBuf,
}

impl TestCluster {
    /// Starts `size` nodes sharing one secret, with the server's default
    /// props (n=3, r=2, w=2) unless `extra_args` override them.
    pub fn start(dir: &Path, size: usize, extra_args: &[&str]) -> TestCluster {
        Self::start_with_resp(dir, size, extra_args, false).0
    }

    /// [`TestCluster::start`], with each node also serving the Redis
    /// protocol when `resp` (on the returned ports, node by node).
    #[allow(dead_code)]
    pub fn start_with_resp(dir: &Path, size: usize, extra_args: &[&str], resp: bool) -> (TestCluster, Vec<u16>) {
        let resp_ports: Vec<u16> = if resp { (0..size).map(|_| free_port()).collect() } else { Vec::new() };
        let secret_file = dir.join("cluster.secret");
        std::fs::write(&secret_file, TEST_SECRET).expect("write secret");
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let members: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("--member=node{index}=127.0.0.1:{}", port + 1000))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for (index, port) in ports.iter().enumerate() {
            let mut args = vec![
                format!("--node-id=node{index}"),
                format!("--cluster-secret-file={}", secret_file.display()),
                "--default-n=3".to_string(),
                "--default-r=2".to_string(),
                "--default-w=2".to_string(),
            ];
            args.extend(members.iter().cloned());
            if let Some(resp_port) = resp_ports.get(index) {
                args.push(format!("--resp-addr=127.0.0.1:{resp_port}"));
            }
            args.extend(extra_args.iter().map(|arg| arg.to_string()));
            let mut node = TestNode {
                data_dir: dir.join(format!("node{index}")),
                port: *port,
                extra_args: args,
                log: None,
                child: None,
            };
            node.restart();
            nodes.push(node);
        }
        let cluster = TestCluster { nodes, secret_file };
        cluster.wait_until_peers_up();
        (cluster, resp_ports)
    }

    /// Waits until no node marks another down. Nodes started one after the
    /// other may have found the later ones unreachable (a background task
    /// called them early); their failure detectors probe them back up
    /// within a fraction of a second, and a test should start after that.
    pub fn wait_until_peers_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        block_on(async {
            for node in &self.nodes {
                loop {
                    let mut http = node.connect().await;
                    let raw = http.request(hyper::Method::GET, "/admin/peers", &[], bytes::Bytes::new()).await;
                    let body = raw.map(|raw| String::from_utf8_lossy(&raw.body).into_owned()).unwrap_or_default();
                    if body.contains("\"peers\"") && !body.contains("\"down\"") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{} still marks a peer down: {body}", node.addr());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
}

/// Runs `program` (`python3`, `node`) on the script `tests/clients/<script>`
/// with `args` and extra environment `env`, and fails the test with the
/// script's output unless it exits 0 (the scripts print one line per
/// failed check).
#[allow(dead_code)]
pub fn run_client(program: &str, script: &str, args: &[String], env: &[(&str, PathBuf)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let output = Command::new(program)
        .arg(&path)
        .args(args)
        .envs(env.iter().map(|(name, value)| (*name, value.as_os_str())))
        .output()
        .unwrap_or_else(|error| panic!("{program} does not run ({error}); the tests need it, see README"));
    assert!(
        output.status.success(),
        "{script}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
