//! The Redis-protocol listener: one task per connection, at most
//! `max_connections` at once, each reading commands ([`super::frame`]),
//! running them one after another and writing the replies in order
//! ([`super::commands`]).
//!
//! **Pipelining.** A client may send many commands before reading any
//! reply. The connection parses every whole command already buffered, runs
//! each, and queues its reply; it writes the queue when the buffer holds
//! no further whole command or the queue passes [`FLUSH_BYTES`]. Replies
//! therefore come back in order, and a slow reader stops the connection
//! from reading more (the write waits), so memory per connection stays
//! bounded: the input by the command limits, the output by
//! [`FLUSH_BYTES`] plus one reply. A run of consecutive reads (up to
//! [`MAX_CONCURRENT_READS`]) goes to the coordinator at once: reads change
//! nothing, so the answers are those of running them one after another,
//! and a command that writes waits for the reads before it.
//!
//! **Bad input.** A protocol error is answered with `-ERR Protocol error:
//! ...` and the connection is closed, as Redis does; an unknown or
//! malformed *command* only gets an error reply, and the connection stays.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use super::commands::{Commands, Session};
use super::frame::{self, Limits};
use super::reply::Reply;
use crate::accept::next_connection;

/// Queued replies are written once they pass this many bytes.
const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Most pipelined reads of one connection in flight at once.
const MAX_CONCURRENT_READS: usize = 64;

/// Serves the Redis protocol on `listener` until `shutdown`, with at most
/// `max_connections` connections; connections open at shutdown are closed
/// after the command they are running.
pub async fn serve(
    listener: TcpListener,
    commands: Arc<Commands>,
    limits: Limits,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let (closing, _) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    info!(addr = %listener.local_addr().map(|addr| addr.to_string()).unwrap_or_default(), "serving the Redis protocol");
    while let Some((stream, slot)) = next_connection(&listener, &slots, &mut shutdown, "redis").await {
        let commands = commands.clone();
        let mut closing = closing.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                outcome = connection(stream, commands, limits) => {
                    if let Err(error) = outcome {
                        debug!(%error, "RESP connection ended");
                    }
                }
                _ = closing.wait_for(|closing| *closing) => {}
            }
            drop(slot);
        });
    }
    let _ = closing.send(true);
}

/// One client connection, until it closes, quits or breaks the protocol.
async fn connection(mut stream: TcpStream, commands: Arc<Commands>, limits: Limits) -> std::io::Result<()> {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = Vec::with_capacity(READ_CHUNK);
    let mut session = Session::default();
    let mut reads: Vec<Vec<Bytes>> = Vec::new();
    loop {
        loop {
            match frame::parse(&input, &limits) {
                Ok(Some(parsed)) => {
                    let bytes = input.split_to(parsed.consumed).freeze();
                    let args: Vec<Bytes> = match parsed.inline {
                        Some(inline) => inline.into_iter().map(Bytes::from).collect(),
                        None => parsed.args.into_iter().map(|range| bytes.slice(range)).collect(),
                    };
                    if args.is_empty() {
                        continue;
                    }
                    if Commands::is_read(&args) {
                        reads.push(args);
                        if reads.len() == MAX_CONCURRENT_READS {
                            run_reads(&commands, &mut reads, &session, &mut output).await;
                            if output.len() >= FLUSH_BYTES {
                                stream.write_all(&output).await?;
                                output.clear();
                            }
                        }
                        continue;
                    }
                    run_reads(&commands, &mut reads, &session, &mut output).await;
                    let reply = commands.execute(&mut session, &args).await;
                    reply.encode(session.protocol, &mut output);
                    if session.quit {
                        stream.write_all(&output).await?;
                        return Ok(());
                    }
                    if output.len() >= FLUSH_BYTES {
                        stream.write_all(&output).await?;
                        output.clear();
                    }
                }
                Ok(None) => break,
                Err(problem) => {
                    run_reads(&commands, &mut reads, &session, &mut output).await;
                    Reply::Error(format!("ERR {problem}")).encode(session.protocol, &mut output);
                    stream.write_all(&output).await?;
                    return Ok(());
                }
            }
        }
        run_reads(&commands, &mut reads, &session, &mut output).await;
        if !output.is_empty() {
            stream.write_all(&output).await?;
            output.clear();
        }
        input.reserve(READ_CHUNK);
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
    }
}

/// Runs the pending `reads` at once and queues their replies in order.
async fn run_reads(commands: &Arc<Commands>, reads: &mut Vec<Vec<Bytes>>, session: &Session, output: &mut Vec<u8>) {
    let tasks: Vec<_> = reads
        .drain(..)
        .map(|args| {
            let commands = commands.clone();
            // A read touches no connection state: a fresh session serves it.
            tokio::spawn(async move { commands.execute(&mut Session::default(), &args).await })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap_or_else(|error| Reply::err(format!("the read failed inside the node: {error}")));
        reply.encode(session.protocol, output);
    }
}
