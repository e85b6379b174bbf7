//! What a listener serves connections with, built from its config: hyper's builders with every
//! HTTP/2 limit set, the timeouts, the TLS acceptor and the options the pipeline reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::counters::ListenerCounters;
use super::tls::{TlsError, TlsListener};
use crate::action::forward::ForwardPolicy;

/// HTTP/2 limits, every one set on purpose (hyper's defaults change between versions), applied
/// alike to the auto-detecting builder and the HTTP/2-only one (TLS with ALPN `h2`).
macro_rules! h2_limits {
    ($b:expr, $max_header:expr) => {
        $b.timer(TokioTimer::new())
            // The request head limit applies to HTTP/2 header lists too; decoding stops there,
            // which also bounds a CONTINUATION flood.
            .max_header_list_size(u32::try_from($max_header).unwrap_or(u32::MAX))
            .max_concurrent_streams(H2_MAX_STREAMS)
            // Rapid reset (CVE-2023-44487): streams a client resets before we accept them.
            .max_pending_accept_reset_streams(64)
            // Streams we had to reset for the client's errors, before GOAWAY.
            .max_local_error_reset_streams(Some(256))
            // Flow control: 1 MiB per stream, 4 MiB per connection bounds the memory a client
            // can make us buffer; no adaptive window growth.
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .adaptive_window(false)
            .max_frame_size(16 * 1024)
            .max_send_buf_size(1 << 20)
            // Dead peers are found and closed.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
    };
}

/// Concurrent HTTP/2 streams per connection (nginx: 128; Envoy and HAProxy: 100). Each open
/// stream can pin its request state while the client holds its window shut.
pub(crate) const H2_MAX_STREAMS: u32 = 128;

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
    pub(crate) builder: auto::Builder<TokioExecutor>,
    /// For connections whose protocol is known to be HTTP/2 (TLS with ALPN `h2`): no sniffing.
    pub(crate) h2: hyper::server::conn::http2::Builder<TokioExecutor>,
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
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Our connection watchdog enforces the head timeout (from the first byte of a
            // request head) and the keep-alive idle timeout separately; hyper's own timer would
            // cap keep-alive idle time at the head timeout.
            .header_read_timeout(None)
            // The read buffer bounds the request head: overflowing it is answered 431.
            .max_buf_size(max_header.max(8192))
            // So does the number of fields (hyper answers 431 past it).
            .max_headers(limits.max_request_headers)
            .keep_alive(true);
        h2_limits!(builder.http2(), max_header);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2_limits!(h2, max_header);
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
            builder,
            h2,
            header_read_timeout: limits.header_read_timeout.get(),
            keepalive_timeout: limits.keepalive_timeout.get(),
            send_stall_timeout: limits.send_stall_timeout.get(),
        })
    }
}
