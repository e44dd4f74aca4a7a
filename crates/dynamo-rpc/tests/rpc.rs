//! End-to-end behaviour of the RPC layer over real TCP on 127.0.0.1 (and one
//! test over an injected in-memory transport): round trips, multiplexing,
//! chunking, limits, authentication, timeouts, reconnection and shutdown.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dynamo_rpc::auth::{Challenge, Hello};
use dynamo_rpc::frame::{self, Frame, Kind, MAX_FRAME_BYTES};
use dynamo_rpc::{
    ClusterSecret, Handler, Limits, Listener, OsNonce, RpcClient, RpcConfig, RpcError, TcpRpcListener, TcpTransport,
    Transport, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

const SECRET: &[u8] = b"the cluster secret, 32 bytes....";
const OTHER_SECRET: &[u8] = b"another secret, also long enough";
/// Generous: only the timeout test relies on a call timing out.
const CALL: Duration = Duration::from_secs(10);

// Methods of the test handler.
const ECHO: u16 = 1;
/// Answers the body followed by the method number, after a delay that
/// depends on the body, so answers come back out of order.
const TAGGED: u16 = 2;
/// Sleeps for the number of milliseconds in the body (u64), then echoes.
const SLEEP: u16 = 3;
const FAIL: u16 = 4;
/// Answers 81 MiB, above the message limit.
const HUGE: u16 = 5;
const PANIC: u16 = 6;
/// Waits until the test opens the gate, then echoes.
const GATED: u16 = 7;
/// Answers the authenticated name of the caller.
const WHOAMI: u16 = 8;

struct TestHandler {
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl TestHandler {
    fn new() -> Arc<Self> {
        Arc::new(TestHandler {
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            gate: watch::channel(false).0,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    async fn run(&self, peer: &str, method: u16, body: Bytes) -> Result<Bytes, String> {
        match method {
            ECHO => Ok(body),
            TAGGED => {
                let delay_ms = body.iter().map(|b| u64::from(*b)).sum::<u64>() % 5;
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                Ok([&body[..], &method.to_be_bytes()].concat().into())
            }
            SLEEP => {
                let ms = u64::from_be_bytes(body[..8].try_into().map_err(|_| "bad body")?);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(body)
            }
            FAIL => Err("no such key".to_owned()),
            HUGE => Ok(Bytes::from(vec![0u8; 81 << 20])),
            PANIC => panic!("handler bug"),
            GATED => {
                let _ = self.gate.subscribe().wait_for(|open| *open).await;
                Ok(body)
            }
            WHOAMI => Ok(Bytes::copy_from_slice(peer.as_bytes())),
            other => Err(format!("unknown method {other}")),
        }
    }
}

impl Handler for TestHandler {
    async fn handle(&self, peer: &str, method: u16, body: Bytes) -> Result<Bytes, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(running, Ordering::SeqCst);
        let result = self.run(peer, method, body).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// A TCP listener that counts accepted connections: proves the trait is
/// implementable outside the crate, and lets tests check connection reuse.
struct CountingListener {
    inner: TcpRpcListener,
    accepted: Arc<AtomicUsize>,
}

impl Listener for CountingListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let accepted = self.inner.accept().await?;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(accepted)
    }

    fn local_addr(&self) -> io::Result<String> {
        self.inner.local_addr()
    }
}

fn config(name: &str, secret: &[u8], limits: Limits) -> RpcConfig {
    let secret = ClusterSecret::new(secret).expect("long enough");
    let nonces = Arc::new(OsNonce);
    RpcConfig::new(name, secret, nonces).expect("valid name").with_limits(limits).expect("valid limits")
}

fn client(secret: &[u8], limits: Limits) -> RpcClient<TcpTransport> {
    RpcClient::new(TcpTransport::new(), config("client-a", secret, limits))
}

struct TestServer {
    addr: String,
    accepted: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start_server(addr: &str, secret: &[u8], limits: Limits, handler: Arc<TestHandler>) -> TestServer {
    let inner = TcpTransport::new().bind(addr).await.expect("bind");
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = CountingListener { inner, accepted: Arc::clone(&accepted) };
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(listener, config("server-b", secret, limits), handler, shutdown));
    TestServer { addr, accepted, stop, task }
}

impl TestServer {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(CALL, self.task).await.expect("serve returns after shutdown").expect("no panic");
    }
}

fn ms(millis: u64) -> Bytes {
    Bytes::copy_from_slice(&millis.to_be_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_round_trips_with_the_callers_authenticated_name() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let client = client(SECRET, Limits::default());
    let answer = client.call(&server.addr, ECHO, Bytes::from_static(b"hello"), CALL).await.expect("answer");
    assert_eq!(&answer[..], b"hello");
    let name = client.call(&server.addr, WHOAMI, Bytes::new(), CALL).await.expect("answer");
    assert_eq!(&name[..], b"client-a");
    assert_eq!(handler.calls(), 2);
    assert!(client.is_connected(&server.addr));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_share_one_connection_and_get_their_own_answers() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    let mut calls = JoinSet::new();
    for i in 0..1000u32 {
        let (client, addr) = (client.clone(), server.addr.clone());
        calls.spawn(async move {
            let body = Bytes::copy_from_slice(&i.to_be_bytes());
            let answer = client.call(&addr, TAGGED, body, CALL).await.expect("answer");
            assert_eq!(&answer[..4], &i.to_be_bytes(), "answer of another request");
            assert_eq!(&answer[4..], &TAGGED.to_be_bytes());
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("call task");
    }
    assert_eq!(server.accepted(), 1, "concurrent first calls share one connection attempt");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mib_body_round_trips_in_chunks() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    let body = Bytes::from((0..5 * MAX_FRAME_BYTES).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let answer = client.call(&server.addr, ECHO, body.clone(), CALL).await.expect("answer");
    assert_eq!(answer, body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_above_the_message_limit_is_refused_before_sending() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let client = client(SECRET, Limits::default());
    let err = client.call(&server.addr, ECHO, Bytes::from(vec![0u8; 81 << 20]), CALL).await.expect_err("refused");
    assert!(matches!(err, RpcError::TooLarge { bytes, max_bytes, .. } if bytes == 81 << 20 && max_bytes == 80 << 20));
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert_eq!(handler.calls(), 0);
    assert!(client.call(&server.addr, ECHO, Bytes::new(), CALL).await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_panics_and_oversize_answers_reach_the_caller() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    let expect_remote = |result: Result<Bytes, RpcError>, needle: &str| match result {
        Err(RpcError::Remote { message, .. }) => assert!(message.contains(needle), "{message}"),
        other => panic!("expected a remote error, got {other:?}"),
    };
    expect_remote(client.call(&server.addr, FAIL, Bytes::new(), CALL).await, "no such key");
    expect_remote(client.call(&server.addr, PANIC, Bytes::new(), CALL).await, "panicked: handler bug");
    expect_remote(client.call(&server.addr, HUGE, Bytes::new(), CALL).await, "exceeds the limit");
    assert!(client.call(&server.addr, ECHO, Bytes::new(), CALL).await.is_ok(), "connection survives");
    assert_eq!(server.accepted(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused_on_both_sides_without_running_the_handler() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let client = client(OTHER_SECRET, Limits::default());
    let err = client.call(&server.addr, ECHO, Bytes::from_static(b"x"), CALL).await.expect_err("refused");
    assert!(matches!(err, RpcError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("cluster secret"), "{err}");
    assert!(!client.is_connected(&server.addr));
    assert_eq!(handler.calls(), 0);
    server.stop().await;
}

/// A raw TCP peer speaking frames by hand, to play a broken or hostile node.
struct RawPeer {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawPeer {
    async fn connect(addr: &str) -> Self {
        RawPeer { stream: TcpStream::connect(addr).await.expect("connect"), buf: BytesMut::new() }
    }

    async fn send(&mut self, kind: Kind, payload: Bytes) {
        let mut out = BytesMut::new();
        Frame { kind, more: false, request_id: 0, method: 0, payload }.encode(&mut out);
        self.stream.write_all(&out).await.expect("write");
    }

    /// The next frame, or `None` once the other side has closed.
    async fn next(&mut self) -> Option<Frame> {
        let read = async {
            loop {
                match frame::decode(&mut self.buf, MAX_FRAME_BYTES) {
                    Ok(Some(frame)) => return Some(frame),
                    Ok(None) => {}
                    Err(e) => panic!("peer sent an invalid frame: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(CALL, read).await.expect("the other side neither answers nor closes")
    }

    /// Every frame until the other side closes.
    async fn rest(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_disconnected_without_running_the_handler() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let mut http = RawPeer::connect(&server.addr).await;
    http.stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    assert!(http.rest().await.is_empty(), "closed without an answer");
    let mut early = RawPeer::connect(&server.addr).await;
    early.send(Kind::Request, Bytes::from_static(b"skipping the handshake")).await;
    assert!(early.rest().await.is_empty(), "a request before the handshake is not answered");
    assert_eq!(handler.calls(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_a_forged_proof_is_refused() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let mut attacker = RawPeer::connect(&server.addr).await;
    attacker.send(Kind::Hello, Hello { node_name: "mallory".into(), client_nonce: [7; 32] }.encode()).await;
    let challenge = attacker.next().await.expect("challenge");
    assert_eq!(challenge.kind, Kind::Challenge);
    Challenge::decode(&challenge.payload).expect("valid challenge");
    attacker.send(Kind::Proof, Bytes::from_static(&[0u8; 32])).await;
    attacker.send(Kind::Request, Bytes::from_static(b"let me in")).await;
    let answers = attacker.rest().await;
    assert_eq!(answers.iter().map(|f| f.kind).collect::<Vec<_>>(), [Kind::Error], "refusal, no welcome");
    assert!(String::from_utf8_lossy(&answers[0].payload).contains("authentication failed"));
    assert_eq!(handler.calls(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_version_is_refused_with_a_clear_message() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let mut future_node = RawPeer::connect(&server.addr).await;
    let mut hello = BytesMut::from(&Hello { node_name: "n".into(), client_nonce: [1; 32] }.encode()[..]);
    hello[..2].copy_from_slice(&2u16.to_be_bytes());
    future_node.send(Kind::Hello, hello.freeze()).await;
    let answers = future_node.rest().await;
    assert_eq!(answers.len(), 1);
    let message = String::from_utf8_lossy(&answers[0].payload).into_owned();
    assert!(message.contains("protocol version 2, this node speaks 1"), "{message}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_handshake_timeout() {
    let limits = Limits { handshake_timeout: Duration::from_millis(200), ..Limits::default() };
    let server = start_server("127.0.0.1:0", SECRET, limits, TestHandler::new()).await;
    let mut silent = RawPeer::connect(&server.addr).await;
    let started = tokio::time::Instant::now();
    assert!(silent.rest().await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_server_is_detected_before_any_request_is_sent() {
    let impostor = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = impostor.local_addr().expect("addr").to_string();
    let fake_server = tokio::spawn(async move {
        let (stream, _) = impostor.accept().await.expect("accept");
        let mut peer = RawPeer { stream, buf: BytesMut::new() };
        let hello = peer.next().await.expect("hello");
        assert_eq!(Hello::decode(&hello.payload).expect("valid hello").node_name, "client-a");
        let challenge = Challenge { server_name: "impostor".into(), server_nonce: [9; 32], server_proof: [0; 32] };
        peer.send(Kind::Challenge, challenge.encode()).await;
        peer.rest().await
    });
    let client = client(SECRET, Limits::default());
    let err = client.call(&addr, ECHO, Bytes::from_static(b"secret data"), CALL).await.expect_err("refused");
    assert!(matches!(err, RpcError::Auth { .. }), "{err:?}");
    let received = fake_server.await.expect("fake server");
    assert_eq!(
        received.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [Kind::Error],
        "only a refusal: no proof, no request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_times_out_and_the_connection_stays_usable() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    client.call(&server.addr, ECHO, Bytes::new(), CALL).await.expect("connected");
    let err = client.call(&server.addr, SLEEP, ms(2_000), Duration::from_millis(200)).await.expect_err("timeout");
    assert!(matches!(err, RpcError::Timeout { ms: 200, .. }), "{err:?}");
    let answer = client.call(&server.addr, SLEEP, ms(1), CALL).await.expect("next call answers");
    assert_eq!(answer, ms(1));
    assert_eq!(server.accepted(), 1, "same connection");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_silent_for_three_timeouts_in_a_row_is_replaced() {
    // A short grace: the sleeping handlers are not waited for at the end.
    let limits = Limits { shutdown_grace: Duration::from_millis(100), ..Limits::default() };
    let server = start_server("127.0.0.1:0", SECRET, limits, TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    client.call(&server.addr, ECHO, Bytes::new(), CALL).await.expect("connected");
    for _ in 0..3 {
        let err = client.call(&server.addr, SLEEP, ms(5_000), Duration::from_millis(50)).await.expect_err("timeout");
        assert!(matches!(err, RpcError::Timeout { .. }), "{err:?}");
    }
    assert!(!client.is_connected(&server.addr), "presumed dead after three silent timeouts");
    client.call(&server.addr, ECHO, Bytes::new(), CALL).await.expect("reconnected");
    assert_eq!(server.accepted(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_the_server_restarts_on_the_same_port() {
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), TestHandler::new()).await;
    let client = client(SECRET, Limits::default());
    let addr = server.addr.clone();
    client.call(&addr, ECHO, Bytes::new(), CALL).await.expect("first server answers");
    server.stop().await;
    wait_until(|| !client.is_connected(&addr)).await;
    let err = client.call(&addr, ECHO, Bytes::new(), CALL).await.expect_err("nobody listening");
    assert!(matches!(err, RpcError::Connect { .. }), "{err:?}");
    let restarted = start_server(&addr, SECRET, Limits::default(), TestHandler::new()).await;
    let answer = client.call(&addr, ECHO, Bytes::from_static(b"again"), CALL).await.expect("reconnected");
    assert_eq!(&answer[..], b"again");
    restarted.stop().await;
}

async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_concurrent_calls_are_refused_as_overloaded() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let client = client(SECRET, Limits { max_in_flight: 4, ..Limits::default() });
    let mut calls = JoinSet::new();
    for _ in 0..10 {
        let (client, addr) = (client.clone(), server.addr.clone());
        calls.spawn(async move { client.call(&addr, GATED, Bytes::new(), CALL).await });
    }
    for _ in 0..6 {
        let result = calls.join_next().await.expect("six calls end first").expect("task");
        assert!(matches!(result, Err(RpcError::Overloaded { in_flight: 4, .. })), "{result:?}");
    }
    handler.open_gate();
    while let Some(result) = calls.join_next().await {
        assert!(result.expect("task").is_ok());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_bounds_concurrent_handlers_per_connection() {
    let handler = TestHandler::new();
    let limits = Limits { max_concurrent_requests: 3, ..Limits::default() };
    let server = start_server("127.0.0.1:0", SECRET, limits, handler.clone()).await;
    let client = client(SECRET, Limits::default());
    let mut calls = JoinSet::new();
    for _ in 0..20 {
        let (client, addr) = (client.clone(), server.addr.clone());
        calls.spawn(async move { client.call(&addr, SLEEP, ms(20), CALL).await });
    }
    while let Some(result) = calls.join_next().await {
        assert!(result.expect("task").is_ok());
    }
    assert_eq!(handler.max_running.load(Ordering::SeqCst), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_answer_then_stops_accepting() {
    let handler = TestHandler::new();
    let server = start_server("127.0.0.1:0", SECRET, Limits::default(), handler.clone()).await;
    let client = client(SECRET, Limits::default());
    let addr = server.addr.clone();
    let in_flight = {
        let (client, addr) = (client.clone(), addr.clone());
        tokio::spawn(async move { client.call(&addr, SLEEP, ms(300), CALL).await })
    };
    wait_until(|| handler.running.load(Ordering::SeqCst) == 1).await;
    server.stop().await;
    assert_eq!(in_flight.await.expect("task").expect("answered during shutdown"), ms(300));
    let err = client.call(&addr, ECHO, Bytes::new(), CALL).await.expect_err("stopped");
    assert!(matches!(err, RpcError::Connect { .. } | RpcError::Closed { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_closed_port_reports_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr").port();
    let client = client(SECRET, Limits::default());
    let err = client.call(&format!("127.0.0.1:{port}"), ECHO, Bytes::new(), CALL).await.expect_err("refused");
    assert!(matches!(err, RpcError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("is the node running"), "{err}");
}

/// An in-memory network: the shape of what the simulation plugs in.
#[derive(Clone, Default)]
struct MemNet {
    listeners: Arc<Mutex<HashMap<String, mpsc::Sender<DuplexStream>>>>,
}

struct MemListener {
    addr: String,
    incoming: mpsc::Receiver<DuplexStream>,
}

impl Transport for MemNet {
    type Stream = DuplexStream;
    type Listener = MemListener;

    async fn connect(&self, addr: &str) -> io::Result<DuplexStream> {
        let listener = self.listeners.lock().expect("lock").get(addr).cloned();
        let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
        let listener = listener.ok_or_else(refused)?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        listener.send(theirs).await.map_err(|_| refused())?;
        Ok(ours)
    }

    async fn bind(&self, addr: &str) -> io::Result<MemListener> {
        let (sender, incoming) = mpsc::channel(16);
        self.listeners.lock().expect("lock").insert(addr.to_owned(), sender);
        Ok(MemListener { addr: addr.to_owned(), incoming })
    }
}

impl Listener for MemListener {
    type Stream = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, String)> {
        let stream = self.incoming.recv().await.ok_or_else(|| io::Error::other("network gone"))?;
        Ok((stream, "memory".to_owned()))
    }

    fn local_addr(&self) -> io::Result<String> {
        Ok(self.addr.clone())
    }
}

#[tokio::test]
async fn calls_work_over_an_injected_in_memory_transport() {
    let net = MemNet::default();
    let listener = net.bind("node-b:7000").await.expect("bind");
    let handler = TestHandler::new();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, config("node-b", SECRET, Limits::default()), handler, async move {
        let _ = stopped.await;
    }));
    let client = RpcClient::new(net, config("node-a", SECRET, Limits::default()));
    let answer = client.call("node-b:7000", WHOAMI, Bytes::new(), CALL).await.expect("answer");
    assert_eq!(&answer[..], b"node-a");
    let err = client.call("node-c:7000", ECHO, Bytes::new(), CALL).await.expect_err("no such node");
    assert!(matches!(err, RpcError::Connect { .. }));
    let _ = stop.send(());
    server.await.expect("serve returns");
}
