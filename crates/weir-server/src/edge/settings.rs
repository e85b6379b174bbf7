//! What a listener serves connections with, built from its config: the HTTP/1.x head limits and
//! the HTTP/2 builders with every limit set, the timeouts, the TLS acceptor and the options the pipeline reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::counters::ListenerCounters;
use super::tls::{TlsError, TlsListener};
use crate::action::forward::ForwardPolicy;

#[derive(Debug)]
pub(crate) struct ListenerOpts {
    /// Connections are TLS.
    pub(crate) tls: bool,
    /// Redirect every request to https on this port.
    pub(crate) redirect_https: Option<u16>,
    /// `Strict-Transport-Security` added to responses.
    pub(crate) hsts: Option<http::HeaderValue>,
    /// Carries the verified client-certificate subject upstream; always stripped from clients.
    pub(crate) client_subject_header: Option<http::HeaderName>,
    /// A forward (egress) listener's policy.
    pub(crate) forward: Option<Arc<ForwardPolicy>>,
}

/// What a listener needs to serve connections.
pub(crate) struct ListenerSettings {
    pub(crate) name: Arc<str>,
    /// The bound address.
    pub(crate) local: SocketAddr,
    /// Connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// What happened on this listener, for metrics.
    pub(crate) counters: Arc<ListenerCounters>,
    pub(crate) opts: Arc<ListenerOpts>,
    pub(crate) tls: Option<Arc<TlsListener>>,
    pub(crate) max_connections: usize,
    /// HTTP/1.x connections: the limits on a request head.
    pub(crate) http1: super::h1::Limits,
    /// HTTP/2 connections (TLS with ALPN `h2`, or the h2c preface): Weir's own, on `h2`.
    pub(crate) h2: super::h2::Builders,
    pub(crate) header_read_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) send_stall_timeout: Duration,
}

impl ListenerSettings {
    pub(crate) fn new(
        config: &weir_config::Config,
        l: &weir_config::Listener,
        local: SocketAddr,
    ) -> Result<Self, TlsError> {
        let limits = &config.server;
        let max_header =
            usize::try_from(limits.max_request_header_size.bytes()).unwrap_or(usize::MAX);
        // The head limits: past them a request is answered 431.
        let http1 = super::h1::Limits {
            max_head: max_header.max(1024),
            max_fields: limits.max_request_headers,
        };
        let h2 = super::h2::Builders::new(max_header);
        let counters = Arc::new(ListenerCounters::default());
        let tls = l
            .tls
            .as_ref()
            .map(|t| TlsListener::new(t, config.redis.as_ref(), counters.clone()))
            .transpose()?
            .map(Arc::new);
        let opts = ListenerOpts {
            tls: tls.is_some(),
            redirect_https: l.redirect_https.as_ref().map(|r| r.port),
            hsts: l
                .hsts
                .as_deref()
                .and_then(|h| http::HeaderValue::from_str(h).ok()),
            client_subject_header: l
                .tls
                .as_ref()
                .and_then(|t| t.client_subject_header.as_deref())
                .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            forward: (l.mode == weir_config::ListenerMode::Forward)
                .then(|| l.forward.as_ref().map(|f| Arc::new(ForwardPolicy::new(f))))
                .flatten(),
        };
        Ok(Self {
            name: l.name.as_str().into(),
            local,
            proxy_protocol: l.proxy_protocol,
            counters,
            opts: Arc::new(opts),
            tls,
            max_connections: l.max_connections.unwrap_or(limits.max_connections),
            http1,
            h2,
            header_read_timeout: limits.header_read_timeout.get(),
            keepalive_timeout: limits.keepalive_timeout.get(),
            send_stall_timeout: limits.send_stall_timeout.get(),
        })
    }
}
