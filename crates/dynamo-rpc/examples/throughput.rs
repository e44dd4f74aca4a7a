//! Rough single-process throughput of the RPC layer over loopback TCP:
//! `cargo run --release -p dynamo-rpc --example throughput [callers] [seconds] [body_bytes]`.
//! Client and server share the process (and the machine's cores), so this is
//! a lower bound on what one node pair can do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamo_rpc::{ClusterSecret, Handler, Listener, OsNonce, RpcClient, RpcConfig, TcpTransport, Transport, serve};

struct Echo;

impl Handler for Echo {
    async fn handle(&self, _peer: &str, _method: u16, body: Bytes) -> Result<Bytes, String> {
        Ok(body)
    }
}

fn config(name: &str) -> RpcConfig {
    let secret = ClusterSecret::new(*b"throughput-example-secret").expect("long enough");
    RpcConfig::new(name, secret, Arc::new(OsNonce)).expect("valid")
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (callers, seconds, body_bytes) = (arg(1, 64), arg(2, 5), arg(3, 1024));
    let listener = TcpTransport::new().bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, config("server"), Arc::new(Echo), std::future::pending()));
    let client = RpcClient::new(TcpTransport::new(), config("client"));
    let done = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let body = Bytes::from(vec![7u8; body_bytes as usize]);
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (client, addr, done, body) = (client.clone(), addr.clone(), Arc::clone(&done), body.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop_at {
                client.call(&addr, 1, body.clone(), Duration::from_secs(5)).await.expect("call");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("caller");
    }
    let calls = done.load(Ordering::Relaxed);
    println!("{callers} callers, {body_bytes}-byte bodies: {} calls/s", calls / seconds);
}
