//! Connections to one endpoint: our own pool of keep-alive HTTP/1.1 connections, or one shared
//! multiplexed HTTP/2 connection; plaintext or TLS.
//!
//! Why not hyper-util's pooled client: per request it locks its pool twice, boxes the response
//! future, races a speculative connect against the checkout, and spawns a task to put the
//! connection back. Here an HTTP/1.1 checkout is a lock-free pop, a connection goes back when
//! the response body is done with (the [`PooledConn`] guard is dropped), and a new connection is
//! opened only when no idle one is ready. An HTTP/2 checkout clones the shared connection's
//! handle under a short lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use weir_config::UpstreamProtocol;
use weir_core::{ErrorKind, ProxyError, RequestBody, Retry};

use crate::Endpoint;

/// Largest read buffer of one upstream connection. Bodies larger than this still stream; they
/// just arrive in several reads. (hyper's default, ~400 KB, made hundreds of pooled
/// connections most of the process's memory.)
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

/// A connection's request handle.
pub(crate) enum Sender {
    /// One request at a time.
    H1(http1::SendRequest<RequestBody>),
    /// Multiplexed.
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// TLS to the endpoint.
pub(crate) struct TlsTo {
    pub(crate) connector: TlsConnector,
    /// SNI and the name verified; `None`: the endpoint's host.
    pub(crate) sni: Option<ServerName<'static>>,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

/// How an upstream's endpoint pools are made (every endpoint's alike).
pub(crate) struct Template {
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) tls: Option<Arc<TlsTo>>,
    pub(crate) max_idle: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

impl Template {
    pub(crate) fn pool(&self) -> EndpointPool {
        EndpointPool::new(
            self.protocol,
            self.tls.clone(),
            self.max_idle,
            self.connect_timeout,
            self.idle_timeout,
        )
    }
}

/// Connections to one endpoint, and how to open new ones.
pub(crate) struct EndpointPool {
    protocol: UpstreamProtocol,
    tls: Option<Arc<TlsTo>>,
    idle: Option<ArrayQueue<Idle>>,
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    connecting: tokio::sync::Mutex<()>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Set when the endpoint left the upstream's set: connections coming back are closed.
    closed: AtomicBool,
}

impl EndpointPool {
    pub(crate) fn new(
        protocol: UpstreamProtocol,
        tls: Option<Arc<TlsTo>>,
        max_idle: usize,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            protocol,
            tls,
            idle: (max_idle > 0 && protocol == UpstreamProtocol::Http1)
                .then(|| ArrayQueue::new(max_idle)),
            shared_h2: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            connect_timeout,
            idle_timeout,
            closed: AtomicBool::new(false),
        }
    }

    /// The endpoint left the set: close the idle connections now, and each busy one when its
    /// request is done. (An HTTP/2 connection closes when its last stream ends.)
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        *self.shared_h2.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(idle) = &self.idle {
            while idle.pop().is_some() {}
        }
    }

    /// The scheme requests to this endpoint carry.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// A connection ready for a request: a pooled one if one is ready, else a new one.
    /// The flag says whether it was reused.
    pub(crate) async fn checkout(
        &self,
        endpoint: &Endpoint,
        proxy_header: Option<&[u8]>,
    ) -> Result<(Sender, bool), ProxyError> {
        if let Some(header) = proxy_header {
            // A connection that announced one client carries only that client's request.
            return Box::pin(self.connect_with(endpoint, Some(header)))
                .await
                .map(|s| (s, false));
        }
        if self.protocol != UpstreamProtocol::Http1 {
            if let Some(s) = self.shared() {
                return Ok((Sender::H2(s), true));
            }
            // One connect at a time: the requests that arrive meanwhile share its result.
            let _connecting = self.connecting.lock().await;
            if let Some(s) = self.shared() {
                return Ok((Sender::H2(s), true));
            }
            let fresh = self.connect(endpoint).await?;
            if let Sender::H2(s) = &fresh {
                *self.shared_h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
            }
            return Ok((fresh, false));
        }
        if let Some(idle) = &self.idle {
            // Look at each queued connection at most once; one that is not ready yet (its last
            // response is still being drained) goes to the back rather than make us wait.
            for _ in 0..idle.len() {
                let Some(conn) = idle.pop() else { break };
                if conn.sender.is_closed() || conn.since.elapsed() >= self.idle_timeout {
                    continue;
                }
                if conn.sender.is_ready() {
                    return Ok((Sender::H1(conn.sender), true));
                }
                let _ = idle.push(conn);
            }
        }
        self.connect(endpoint).await.map(|s| (s, false))
    }

    fn shared(&self) -> Option<http2::SendRequest<RequestBody>> {
        self.shared_h2
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|s| !s.is_closed())
            .cloned()
    }

    /// Opens a new connection (TCP, then TLS if configured, bounded together by the connect
    /// timeout) and starts its driver task.
    pub(crate) async fn connect(&self, endpoint: &Endpoint) -> Result<Sender, ProxyError> {
        // Boxed: connecting (TCP, TLS, the HTTP handshake) is a large future, and every
        // request's future would otherwise carry room for it — moved with each request even
        // when a pooled connection answers, as most do.
        Box::pin(self.connect_with(endpoint, None)).await
    }

    /// A new connection that announces `proxy_header` first (`None`: no PROXY header), by the
    /// same path requests use: TCP, TLS with the upstream's CA, SNI and client certificate,
    /// ALPN, then HTTP/1.1 or HTTP/2.
    pub(crate) async fn connect_with(
        &self,
        endpoint: &Endpoint,
        proxy_header: Option<&[u8]>,
    ) -> Result<Sender, ProxyError> {
        let connecting = async {
            let mut tcp = match endpoint.socket_addr {
                Some(addr) => TcpStream::connect(addr).await,
                // Host names resolve here, on every new connection, so DNS changes are picked up.
                None => TcpStream::connect(&*endpoint.address).await,
            }
            .map_err(connect_error)?;
            let _ = tcp.set_nodelay(true);
            if let Some(header) = proxy_header {
                use tokio::io::AsyncWriteExt;
                tcp.write_all(header).await.map_err(connect_error)?;
            }
            match &self.tls {
                None => self.handshake(tcp).await,
                Some(tls) => {
                    let name = match &tls.sni {
                        Some(n) => n.clone(),
                        None => ServerName::try_from(endpoint.authority.host().to_owned())
                            .map_err(|e| {
                                ProxyError::new(ErrorKind::UpstreamConnect).with_source(e)
                            })?,
                    };
                    let stream = tls.connector.connect(name, tcp).await.map_err(|e| {
                        // A failed handshake (bad certificate) is the upstream's fault and
                        // nothing was sent: another endpoint may do better.
                        ProxyError::new(ErrorKind::UpstreamConnect)
                            .retry(Retry::Yes)
                            .with_source(e)
                    })?;
                    self.handshake(stream).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::Yes))?
    }

    async fn handshake<I>(&self, io: I) -> Result<Sender, ProxyError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        match self.protocol {
            UpstreamProtocol::Http1 => {
                let (sender, conn) = http1::Builder::new()
                    .max_buf_size(UPSTREAM_READ_BUFFER)
                    .handshake(io)
                    .await
                    .map_err(connect_error)?;
                // The driver ends when the connection closes: upstream closed it, an error, or
                // every handle to it (pool entry, in-flight guard) was dropped.
                // `with_upgrades`: a 101 hands the connection over to a tunnel.
                tokio::spawn(async move {
                    let _ = conn.with_upgrades().await;
                });
                Ok(Sender::H1(sender))
            }
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive_interval(Duration::from_secs(30))
                    .handshake(io)
                    .await
                    .map_err(connect_error)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Sender::H2(sender))
            }
        }
    }

    fn checkin(&self, sender: Sender) {
        if sender.is_closed() || self.closed.load(Ordering::Acquire) {
            return;
        }
        let Sender::H1(sender) = sender else {
            // HTTP/2 handles are clones of the shared connection's.
            return;
        };
        if let Some(idle) = &self.idle {
            // A full queue drops the connection, which closes it.
            let _ = idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

fn connect_error(e: impl Into<weir_core::BoxError>) -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamConnect)
        .retry(Retry::Yes)
        .with_source(e)
}

impl Sender {
    /// Sends a request; a request that was never written (the connection closed first) comes
    /// back with the error so it can be sent elsewhere.
    pub(crate) async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<RequestBody>>)> {
        match self {
            Sender::H1(s) => s.try_send_request(req).await.map_err(|mut e| {
                let unsent = e.take_message();
                (e.into_error(), unsent)
            }),
            Sender::H2(s) => s.try_send_request(req).await.map_err(|mut e| {
                let unsent = e.take_message();
                (e.into_error(), unsent)
            }),
        }
    }
}

/// A connection on loan to one request; it returns to its pool when dropped, which the server
/// does after the response body has ended or been abandoned.
pub struct PooledConn {
    sender: Option<Sender>,
    pool: Arc<EndpointPool>,
}

impl PooledConn {
    pub(crate) fn new(sender: Sender, pool: Arc<EndpointPool>) -> Self {
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
