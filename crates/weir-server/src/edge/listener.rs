//! Listening sockets and the accept loop: a per-listener connection cap (further clients wait
//! in the kernel backlog, as with HAProxy's maxconn) and a stop signal for graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn;
use super::settings::ListenerSettings;
use crate::shared::Shared;

/// Binds with `SO_REUSEADDR` and a deep backlog (an IPv6 wildcard is dual-stack where the
/// system makes it so, Linux's default).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_socket(addr, false)
}

/// `only_v6`: an IPv6 socket beside an IPv4 one on the same port.
fn bind_socket(addr: SocketAddr, only_v6: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if only_v6 {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // A listener changed by a reload is bound again on its address before the old socket
    // closes, so the port never refuses connections.
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// Every socket of a listener's `bind`: the address itself, and for the shorthands
/// `localhost:PORT` and `:PORT` the IPv6 companion on the same port (skipped, with a line in
/// the log, on a host without IPv6). The error names the address that failed.
pub(crate) fn bind_all(
    addr: &weir_config::Addr,
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let first = bind(addr.0).map_err(|e| (addr.0, e))?;
    let port = first.local_addr().map_or(addr.0.port(), |a| a.port());
    let mut all = vec![first];
    if let Some(companion) = addr.companions(port) {
        match bind_socket(companion, true) {
            Ok(l) => all.push(l),
            // EAFNOSUPPORT (97) / EADDRNOTAVAIL: IPv6 is off on this host.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrNotAvailable
                    || e.raw_os_error() == Some(97) =>
            {
                tracing::info!(%addr, %companion, error = %e, "no IPv6 here: listening on IPv4 only");
            }
            Err(e) => return Err((companion, e)),
        }
    }
    Ok(all)
}

/// Counters of one listener, shown in `/metrics`.
/// Accepts until `stop` (this listener closes, by shutdown or reload); connections drain on
/// `shutdown` only, so a reload that closes the listener leaves them to finish. A listener with
/// several sockets runs one loop per socket, sharing `slots` (its connection cap).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    settings: Arc<ListenerSettings>,
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
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
                // An IPv4 client of a dual-stack socket arrives as `::ffff:a.b.c.d`: logs, IP
                // rules and forwarding headers see `a.b.c.d`.
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                // Each poll of the connection's task reads the clock once (weir_core::clock).
                tracker.spawn(weir_core::clock::Clocked::new(conn::accept(
                    stream,
                    peer,
                    settings.clone(),
                    shared.clone(),
                    shutdown.clone(),
                    permit,
                )));
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
