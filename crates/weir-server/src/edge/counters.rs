//! Counters of one listener (connections, TLS, PROXY protocol, send stalls, the forward
//! proxy) and their Prometheus samples: a leaf every part of the edge counts into.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir_core::prometheus::{Exposition, Family, Kind};

#[derive(Debug, Default)]
pub(crate) struct ListenerCounters {
    pub(crate) accepted: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) open_http1: AtomicU64,
    pub(crate) open_h2: AtomicU64,
    pub(crate) tls_handshake_errors: AtomicU64,
    pub(crate) tls_reload_errors: AtomicU64,
    pub(crate) proxy_protocol_errors: AtomicU64,
    /// Connections closed because the client took no response data for `send_stall_timeout`.
    pub(crate) send_stalls: AtomicU64,
    pub(crate) forward_allowed: AtomicU64,
    pub(crate) forward_denied: AtomicU64,
    /// HTTP/2 connections whose client announced a shut stream window in its first SETTINGS
    /// (told 8 concurrent streams), and streams refused because a client that shut its window
    /// later already had 8 being served (`edge/h2.rs`, `SHUT_WINDOW`).
    pub(crate) h2_shut_window_connections: AtomicU64,
    pub(crate) h2_shut_window_refused: AtomicU64,
}

/// Connections, TLS, PROXY protocol and forward-proxy counters per listener.
pub(crate) fn render(listeners: &[(Arc<str>, Arc<ListenerCounters>)], e: &mut Exposition) {
    let labels: Vec<[(&str, &str); 1]> = listeners
        .iter()
        .map(|(n, _)| [("listener", &**n)])
        .collect();
    let by_protocol: Vec<([(&str, &str); 2], f64)> = listeners
        .iter()
        .flat_map(|(n, c)| {
            [
                (
                    [("listener", &**n), ("protocol", "http1")],
                    c.open_http1.load(Ordering::Relaxed) as f64,
                ),
                (
                    [("listener", &**n), ("protocol", "h2")],
                    c.open_h2.load(Ordering::Relaxed) as f64,
                ),
            ]
        })
        .collect();
    e.family(
        "weir_connections_open",
        Kind::Gauge,
        "Open connections that have sent a request, by listener and protocol.",
        by_protocol.iter().map(|(l, v)| (&l[..], *v)),
    );
    let families: [Family<ListenerCounters>; 10] = [
        (
            "weir_listener_connections_accepted_total",
            Kind::Counter,
            "Connections accepted.",
            |c| c.accepted.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_listener_connections_open",
            Kind::Gauge,
            "Connections open now.",
            |c| c.open.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_tls_handshake_errors_total",
            Kind::Counter,
            "TLS handshakes that failed or timed out.",
            |c| c.tls_handshake_errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_tls_certificate_reload_errors_total",
            Kind::Counter,
            "Changed certificate files refused (the previous certificate kept serving).",
            |c| c.tls_reload_errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_proxy_protocol_errors_total",
            Kind::Counter,
            "Connections closed for a missing or malformed PROXY protocol header.",
            |c| c.proxy_protocol_errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_send_stalls_total",
            Kind::Counter,
            "Connections closed because the client took no response data for send_stall_timeout.",
            |c| c.send_stalls.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_http2_shut_window_connections_total",
            Kind::Counter,
            "HTTP/2 connections whose client announced a stream window under 1 KiB in its first SETTINGS (told 8 concurrent streams).",
            |c| c.h2_shut_window_connections.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_http2_streams_refused_shut_window_total",
            Kind::Counter,
            "HTTP/2 streams refused (REFUSED_STREAM) because their client, after shutting its stream window, already had 8 streams being served.",
            |c| c.h2_shut_window_refused.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_forward_denied_total",
            Kind::Counter,
            "Forward-proxy requests denied by the allow-list.",
            |c| c.forward_denied.load(Ordering::Relaxed) as f64,
        ),
        (
            "weir_forward_allowed_total",
            Kind::Counter,
            "Forward-proxy requests allowed.",
            |c| c.forward_allowed.load(Ordering::Relaxed) as f64,
        ),
    ];
    for (name, kind, help, f) in families {
        e.family(
            name,
            kind,
            help,
            labels
                .iter()
                .zip(listeners)
                .map(|(l, (_, c))| (&l[..], f(c))),
        );
    }
}
