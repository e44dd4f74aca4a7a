//! Two small helpers of `dynamo export` and `dynamo import`: a window of a
//! few requests in flight that hands back their results in the order they
//! were started ([`Window`]), and a progress line on stderr ([`Progress`]).
//!
//! The window owns one connection per slot: a job borrows one, and gives
//! it back with its result, so at most `slots` requests are in flight and
//! at most `slots` results are held, whatever the size of the bucket or the
//! file. Results come back in order because the window always waits for
//! the oldest job first: the export file keeps the listing's order, and
//! import reports bad lines in line order.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dynamo_client::{Connection, connect};
use tokio::task::JoinHandle;

/// A bounded, ordered window of jobs, each on its own connection.
pub struct Window<T> {
    /// Connections not lent to a job.
    idle: Vec<Connection>,
    /// Jobs in flight, oldest first.
    running: VecDeque<JoinHandle<(Connection, T)>>,
}

impl<T: Send + 'static> Window<T> {
    /// A window of `slots` connections to `addr`.
    pub async fn open(addr: &str, slots: usize) -> anyhow::Result<Self> {
        let mut idle = Vec::with_capacity(slots);
        for _ in 0..slots.max(1) {
            idle.push(connect(addr).await?);
        }
        Ok(Self { idle, running: VecDeque::new() })
    }

    /// Starts `job` on a free connection. When every connection is busy it
    /// first waits for the oldest job, and returns its result.
    pub async fn start<F, Fut>(&mut self, job: F) -> anyhow::Result<Option<T>>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = (Connection, T)> + Send + 'static,
    {
        let finished = if self.idle.is_empty() { self.finish_oldest().await? } else { None };
        let connection = self.idle.pop().context("a window with no connection")?;
        self.running.push_back(tokio::spawn(job(connection)));
        Ok(finished)
    }

    /// Waits for the oldest job; `None` when nothing is in flight.
    pub async fn finish_oldest(&mut self) -> anyhow::Result<Option<T>> {
        let Some(handle) = self.running.pop_front() else { return Ok(None) };
        let (connection, result) = handle.await.context("a request task failed")?;
        self.idle.push(connection);
        Ok(Some(result))
    }
}

/// How often the terminal line is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// A progress line on stderr: redrawn in place (`\r`) when stderr is a
/// terminal, and otherwise only one summary line at the end, so logs of
/// scripted runs stay short.
pub struct Progress {
    /// What is counted (`keys`, `lines`).
    unit: &'static str,
    started: Instant,
    last_drawn: Instant,
    terminal: bool,
    /// Items done.
    pub done: u64,
}

impl Progress {
    /// Starts counting `unit`.
    pub fn new(unit: &'static str) -> Self {
        let now = Instant::now();
        Self { unit, started: now, last_drawn: now, terminal: std::io::stderr().is_terminal(), done: 0 }
    }

    /// One more done; redraws the line now and then. `detail` is added
    /// after the count and rate.
    pub fn tick(&mut self, detail: impl FnOnce() -> String) {
        self.done += 1;
        if self.terminal && self.last_drawn.elapsed() >= REDRAW_EVERY {
            self.last_drawn = Instant::now();
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K{}{}", self.line(), detail());
            let _ = stderr.flush();
        }
    }

    /// Prints the final line; `detail` says what happened.
    pub fn finish(&self, detail: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[K");
        }
        let _ = writeln!(stderr, "{}{detail} in {:.1} s", self.line(), self.started.elapsed().as_secs_f64());
    }

    fn line(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        format!("{} {} ({:.0} {}/s)", self.done, self.unit, self.done as f64 / seconds, self.unit)
    }

    /// Clears the terminal line before another message is printed.
    pub fn clear(&self) {
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }
}
