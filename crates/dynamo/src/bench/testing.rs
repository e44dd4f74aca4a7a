//! Test support: a small valid [`Config`] and a fake node that speaks just
//! enough of the HTTP API (ping, get, put) to drive the whole benchmark
//! without the real server, counting what it receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::Config;
use super::workload::{Distribution, Workload};

/// A short, small run against `nodes`.
pub fn config(nodes: Vec<String>) -> Config {
    Config {
        nodes,
        workload: Workload::A,
        read_fraction: 0.5,
        distribution: Distribution::Zipfian,
        zipf_theta: 0.99,
        keys: 20,
        value_size: 64,
        concurrency: 4,
        duration_s: Some(0.4),
        ops: None,
        warmup_s: 0.1,
        bucket: "bench".into(),
        load: false,
        read_query: vec![],
        write_query: vec![("dw".into(), "1".into())],
        blind_writes: false,
        read_before_write: false,
        rate: None,
        seed: 1,
        progress_interval_s: 0.1,
        max_error_rate: 0.01,
    }
}

/// How the fake node answers writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Every request succeeds.
    Healthy,
    /// Every put gets a 503.
    RejectWrites,
}

/// What the fake node received.
#[derive(Debug, Default)]
pub struct Seen {
    /// Object reads.
    pub gets: AtomicU64,
    /// Puts that carried `X-Dynamo-Context`.
    pub puts_with_context: AtomicU64,
    /// Puts without it.
    pub puts_without_context: AtomicU64,
}

/// A running fake node.
pub struct FakeNode {
    /// Its `host:port`.
    pub addr: String,
    /// Its counters.
    pub seen: Arc<Seen>,
}

impl FakeNode {
    /// Starts a fake node on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address").to_string();
        let seen = Arc::new(Seen::default());
        let counters = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, behaviour, counters.clone()));
            }
        });
        FakeNode { addr, seen }
    }
}

/// Answers requests on one kept-alive connection until the client closes it.
async fn serve(mut stream: TcpStream, behaviour: Behaviour, seen: Arc<Seen>) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buffer).await? else { return Ok(()) };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let body_end = head_end + content_length(&head);
        while buffer.len() < body_end {
            if read_more(&mut stream, &mut buffer).await? == 0 {
                return Ok(());
            }
        }
        buffer.drain(..body_end);
        stream.write_all(respond(&head, behaviour, &seen).as_bytes()).await?;
    }
}

/// Reads until a full request head is buffered; its length, or `None` at
/// end of stream.
async fn read_head(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            return Ok(Some(at + 4));
        }
        if read_more(stream, buffer).await? == 0 {
            return Ok(None);
        }
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await?;
    buffer.extend_from_slice(&chunk[..read]);
    Ok(read)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

fn respond(head: &str, behaviour: Behaviour, seen: &Seen) -> String {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string();
    if head.starts_with("get /ping") {
        return ok;
    }
    if head.starts_with("get ") {
        seen.gets.fetch_add(1, Ordering::Relaxed);
        return "HTTP/1.1 200 OK\r\nx-dynamo-context: read-ctx\r\ncontent-length: 1\r\n\r\nv".to_string();
    }
    if head.contains("\r\nx-dynamo-context:") {
        seen.puts_with_context.fetch_add(1, Ordering::Relaxed);
    } else {
        seen.puts_without_context.fetch_add(1, Ordering::Relaxed);
    }
    match behaviour {
        Behaviour::Healthy => "HTTP/1.1 204 No Content\r\nx-dynamo-context: write-ctx\r\n\r\n".to_string(),
        Behaviour::RejectWrites => {
            let body = r#"{"error":"quorum not reached"}"#;
            format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        }
    }
}
