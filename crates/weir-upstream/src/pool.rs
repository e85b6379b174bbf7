//! Our own pool of keep-alive HTTP/1.1 connections, one per endpoint.
//!
//! Why not hyper-util's pooled client: per request it locks its pool twice, boxes the response
//! future, races a speculative connect against the checkout, and spawns a task to put the
//! connection back. Here a checkout is a lock-free pop, a connection goes back when the
//! response body is done with (the [`PooledConn`] guard is dropped), and a new connection is
//! opened only when no idle one is ready.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use weir_core::{ErrorKind, ProxyError, RequestBody, Retry};

use crate::Endpoint;

/// Largest read buffer of one upstream connection. Bodies larger than this still stream; they
/// just arrive in several reads. (hyper's default, ~400 KB, made hundreds of pooled
/// connections most of the process's memory.)
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// Idle connections to one endpoint, and how to open new ones.
pub(crate) struct EndpointPool {
    idle: Option<ArrayQueue<Idle>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl EndpointPool {
    pub(crate) fn new(max_idle: usize, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            idle: (max_idle > 0).then(|| ArrayQueue::new(max_idle)),
            connect_timeout,
            idle_timeout,
        }
    }

    /// A connection ready for a request: a pooled one if one is ready, else a new one.
    /// The flag says whether it was reused.
    pub(crate) async fn checkout(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(SendRequest<RequestBody>, bool), ProxyError> {
        if let Some(idle) = &self.idle {
            // Look at each queued connection at most once; one that is not ready yet (its last
            // response is still being drained) goes to the back rather than make us wait.
            for _ in 0..idle.len() {
                let Some(conn) = idle.pop() else { break };
                if conn.sender.is_closed() || conn.since.elapsed() >= self.idle_timeout {
                    continue;
                }
                if conn.sender.is_ready() {
                    return Ok((conn.sender, true));
                }
                let _ = idle.push(conn);
            }
        }
        self.connect(endpoint).await.map(|s| (s, false))
    }

    /// Opens a new connection (bounded by the connect timeout) and starts its driver task.
    pub(crate) async fn connect(
        &self,
        endpoint: &Endpoint,
    ) -> Result<SendRequest<RequestBody>, ProxyError> {
        let connecting = async {
            match endpoint.socket_addr {
                Some(addr) => TcpStream::connect(addr).await,
                // Host names resolve here, on every new connection, so DNS changes are picked up.
                None => TcpStream::connect(&*endpoint.address).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::Yes))?
            .map_err(|e| {
                ProxyError::new(ErrorKind::UpstreamConnect)
                    .retry(Retry::Yes)
                    .with_source(e)
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| {
                ProxyError::new(ErrorKind::UpstreamConnect)
                    .retry(Retry::Yes)
                    .with_source(e)
            })?;
        // The driver ends when the connection closes: upstream closed it, an error, or every
        // handle to it (pool entry, in-flight guard) was dropped.
        tokio::spawn(async move {
            // `with_upgrades`: a 101 hands the connection over to a tunnel.
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    fn checkin(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        if let Some(idle) = &self.idle {
            // A full queue drops the connection, which closes it.
            let _ = idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// A connection on loan to one request; it returns to its pool when dropped, which the server
/// does after the response body has ended or been abandoned.
pub struct PooledConn {
    sender: Option<SendRequest<RequestBody>>,
    pool: Arc<EndpointPool>,
}

impl PooledConn {
    pub(crate) fn new(sender: SendRequest<RequestBody>, pool: Arc<EndpointPool>) -> Self {
        Self {
            sender: Some(sender),
            pool,
        }
    }
}

impl std::fmt::Debug for PooledConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConn").finish_non_exhaustive()
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.checkin(sender);
        }
    }
}
