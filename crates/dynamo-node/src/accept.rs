//! The accept step both client front ends share (HTTP in `server`, the
//! Redis protocol in `resp::server`): wait for one of the `max_connections`
//! slots, then for a connection, until shutdown. Why a slot before the
//! accept: a node at its cap stops accepting, so the kernel's backlog (and
//! the client's connect timeout) absorbs the excess instead of this
//! process's memory.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Pause after a failed accept (out of file descriptors and the like), so
/// the loop backs off instead of spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The next connection (with `TCP_NODELAY` set) and the slot it holds
/// until dropped, or `None` once `shutdown` completes. `what` names the
/// listener in the log.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    what: &str,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let slot = tokio::select! {
        () = &mut *shutdown => return None,
        slot = slots.clone().acquire_owned() => slot.ok()?,
    };
    loop {
        let accepted = tokio::select! {
            () = &mut *shutdown => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                return Some((stream, slot));
            }
            Err(error) => {
                warn!(%error, listener = what, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}
