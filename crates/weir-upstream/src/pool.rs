//! Connections to one endpoint: our own pool of keep-alive HTTP/1.1 connections (Weir's own
//! client, `weir_core::h1_client`), or one shared multiplexed HTTP/2 connection
//! (`h2_client.rs`); plaintext or TLS.
//!
//! Why not hyper-util's pooled client: per request it locks its pool twice, boxes the response
//! future, races a speculative connect against the checkout, and spawns a task to put the
//! connection back. Here an HTTP/1.1 checkout is a lock-free pop, a connection goes back when
//! its response body has been read to the end (the body hands it to the pool, [`Home`]), and a
//! new connection is opened only when no idle one is ready. An idle connection is its socket:
//! no task, no buffer. An HTTP/2 checkout clones the shared connection's handle under a short
//! lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use http::{Request, Response};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use weir_config::UpstreamProtocol;
use weir_core::h1_client::{self, Conn, Home, Io};
use weir_core::{ErrorKind, ProxyError, RequestBody, Retry, UpstreamBody};

use crate::h2_client::H2Conn;
use crate::Endpoint;

/// A connection ready for a request.
pub(crate) enum Sender {
    /// One request at a time.
    H1(Conn),
    /// Multiplexed.
    H2(H2Conn),
}

/// TLS to the endpoint.
pub(crate) struct TlsTo {
    pub(crate) connector: TlsConnector,
    /// SNI and the name verified; `None`: the endpoint's host.
    pub(crate) sni: Option<ServerName<'static>>,
}

struct Idle {
    conn: Conn,
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
    shared_h2: Mutex<Option<H2Conn>>,
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

    /// Closes the idle connections that expired or that the upstream closed. Nothing watches
    /// an idle connection (no task per connection), so this sweep is what frees them when no
    /// request comes to take them.
    pub(crate) fn sweep(&self) {
        if let Some(idle) = &self.idle {
            for _ in 0..idle.len() {
                let Some(mut conn) = idle.pop() else { break };
                if weir_core::clock::elapsed(conn.since) < self.idle_timeout && conn.conn.is_open()
                {
                    // Back at the tail; a full queue (requests returned connections meanwhile)
                    // closes it.
                    let _ = idle.push(conn);
                }
            }
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
            while let Some(mut idle) = idle.pop() {
                // Expired, or closed by the upstream while it waited: closed here.
                if weir_core::clock::elapsed(idle.since) < self.idle_timeout && idle.conn.is_open()
                {
                    return Ok((Sender::H1(idle.conn), true));
                }
            }
        }
        self.connect(endpoint).await.map(|s| (s, false))
    }

    fn shared(&self) -> Option<H2Conn> {
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
                None => self.handshake(Io::Tcp(tcp)).await,
                Some(tls) => {
                    let name = match &tls.sni {
                        Some(n) => n.clone(),
                        None => ServerName::try_from(endpoint.authority.host().to_owned())
                            .map_err(|e| {
                                ProxyError::new(ErrorKind::UpstreamConnect).with_source(e)
                            })?,
                    };
                    let stream = tls
                        .connector
                        .connect(name, weir_core::tcp::Tcp(tcp))
                        .await
                        .map_err(|e| {
                            // A failed handshake (bad certificate) is the upstream's fault and
                            // nothing was sent: another endpoint may do better.
                            ProxyError::new(ErrorKind::UpstreamConnect)
                                .retry(Retry::Yes)
                                .with_source(e)
                        })?;
                    self.handshake(Io::Other(Box::new(stream))).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::Yes))?
    }

    async fn handshake(&self, io: Io) -> Result<Sender, ProxyError> {
        match self.protocol {
            UpstreamProtocol::Http1 => Ok(Sender::H1(Conn::new(io))),
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => H2Conn::handshake(io)
                .await
                .map(Sender::H2)
                .map_err(connect_error),
        }
    }
}

impl Home for EndpointPool {
    fn take_back(&self, conn: Conn) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Some(idle) = &self.idle {
            // A full queue drops the connection, which closes it.
            let _ = idle.push(Idle {
                conn,
                since: weir_core::clock::now(),
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
    /// Sends one request and gives the connection up with its response (health probes).
    pub(crate) async fn send_once(
        self,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, weir_core::BoxError> {
        match self {
            Sender::H1(conn) => h1_client::send(conn, req, None, None)
                .await
                .map(|r| r.map(UpstreamBody::Http1))
                .map_err(|e| e.error.into()),
            Sender::H2(conn) => conn.send(req, None).await.map_err(|f| f.error),
        }
    }
}
