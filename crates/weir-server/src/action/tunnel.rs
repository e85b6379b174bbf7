//! Upgraded connections (WebSocket and other HTTP/1.1 `Upgrade`s): once the upstream has
//! answered 101 — never before — the client's and the upstream's connections are spliced,
//! bytes flowing both ways until either side closes or nothing moves for the idle timeout.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weir_core::h1_client;

use crate::edge::h1::ClientUpgrade;

/// Buffer per direction.
const BUF: usize = 16 * 1024;

/// Waits for the client's side of the upgrade (its connection hands it over once the 101 is
/// written), then splices it with the upstream's. Runs as its own task.
pub(crate) async fn splice(client: ClientUpgrade, upstream: h1_client::Upgraded, idle: Duration) {
    let Some(client) = client.connection().await else {
        tracing::debug!("upgrade did not complete");
        return;
    };
    pump(client, upstream, idle).await;
}

/// Copies bytes both ways between `client` and `upstream` until both ends close, or nothing
/// moves for `idle`.
pub(crate) async fn pump<C, U>(client: C, upstream: U, idle: Duration)
where
    C: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let (mut up_buf, mut down_buf) = (vec![0u8; BUF], vec![0u8; BUF]);
    let (mut client_open, mut upstream_open) = (true, true);
    while client_open || upstream_open {
        tokio::select! {
            r = cr.read(&mut up_buf), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    let _ = uw.shutdown().await;
                }
                Ok(n) => {
                    if uw.write_all(&up_buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
            r = ur.read(&mut down_buf), if upstream_open => match r {
                Ok(0) | Err(_) => {
                    upstream_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    if cw.write_all(&down_buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
            // Restarted by every loop turn, so it measures time since the last bytes moved.
            () = tokio::time::sleep(idle) => {
                tracing::debug!("tunnel idle timeout");
                break;
            }
        }
    }
}
