//! Listening sockets and the accept loop: a per-listener connection cap (further clients wait
//! in the kernel backlog, as with HAProxy's maxconn) and a stop signal for graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn;
use super::settings::ListenerSettings;
use crate::shared::Shared;

/// Binds with `SO_REUSEADDR` and a deep backlog.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // A listener changed by a reload is bound again on its address before the old socket
    // closes, so the port never refuses connections.
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Counters of one listener, shown in `/metrics`.
/// Accepts until `stop` (this listener closes, by shutdown or reload); connections drain on
/// `shutdown` only, so a reload that closes the listener leaves them to finish.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    settings: ListenerSettings,
    shared: Arc<Shared>,
    stop: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let settings = Arc::new(settings);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        // Past the request memory budget, new clients wait in the kernel backlog.
        tokio::select! {
            () = shared.budget.wait_for_room() => {}
            () = stop.cancelled() => break,
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(conn::accept(
                    stream,
                    peer,
                    settings.clone(),
                    shared.clone(),
                    shutdown.clone(),
                    permit,
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(listener = %settings.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::debug!(listener = %settings.name, "stopped accepting");
}
