//! Active health checks: each endpoint probed every `interval` (+ random jitter) by an HTTP
//! request or a TCP connect, bounded by `timeout`; `unhealthy_threshold` consecutive failures
//! take it out of service, `healthy_threshold` consecutive passes bring it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use weir_config::{ActiveHealth, CheckKind};

use weir_core::RequestBody;

use crate::pool::Sender;
use crate::{Member, Upstream};

/// Most body read when looking for `body_contains`.
const MAX_PROBE_BODY: usize = 64 * 1024;

/// Probe counters of one endpoint, for metrics.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Probes run.
    pub probes: AtomicU64,
    /// Probes failed.
    pub failed: AtomicU64,
}

/// Probes `member` until it leaves the set or the upstream is gone.
pub(crate) async fn run(upstream: Weak<Upstream>, member: Arc<Member>, cfg: ActiveHealth) {
    let jitter = || Duration::from_millis(fastrand::u64(..=crate::clock::ms(cfg.jitter.get())));
    // Spread the first probes so endpoints are not all probed at the same instant; an
    // endpoint waiting to be admitted is probed at once.
    let mut wait = if member.state.awaiting_first_check() {
        Duration::ZERO
    } else {
        jitter()
    };
    let (mut passes, mut fails) = (0u32, 0u32);
    let gone = member.gone.clone();
    loop {
        tokio::select! {
            () = gone.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let Some(up) = upstream.upgrade() else { return };
        let passed = tokio::time::timeout(cfg.timeout.get(), probe(&up, &member, &cfg))
            .await
            .unwrap_or(false);
        let state = &member.state;
        let endpoint = &member.endpoint;
        member.probe.probes.fetch_add(1, Ordering::Relaxed);
        if passed {
            passes += 1;
            fails = 0;
            // A new endpoint is admitted on its first pass; one that failed needs
            // `healthy_threshold` passes in a row.
            let admit = state.awaiting_check.swap(false, Ordering::AcqRel);
            if !state.active_up.load(Ordering::Acquire)
                && (admit || passes >= cfg.healthy_threshold)
            {
                state.active_up.store(true, Ordering::Release);
                tracing::info!(upstream = %up.name, endpoint = %endpoint.address, "endpoint healthy");
                up.changed();
            }
        } else {
            member.probe.failed.fetch_add(1, Ordering::Relaxed);
            fails += 1;
            passes = 0;
            if state.active_up.load(Ordering::Acquire) && fails >= cfg.unhealthy_threshold {
                state.active_up.store(false, Ordering::Release);
                tracing::warn!(upstream = %up.name, endpoint = %endpoint.address, "endpoint failed health checks");
                up.changed();
            }
        }
        drop(up);
        wait = cfg.interval.get() + jitter();
    }
}

/// One probe: true when it passes. HTTP probes go through the connect path of the
/// endpoint's pool (TLS with the upstream's CA, SNI and client certificate; h2 by ALPN or h2c;
/// a PROXY header, `LOCAL`, when the upstream wants one), so a check sees the endpoint as
/// requests do.
async fn probe(up: &Upstream, member: &Member, cfg: &ActiveHealth) -> bool {
    let endpoint = &member.endpoint;
    if cfg.kind == CheckKind::Tcp {
        let stream = match endpoint.socket_addr {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect(&*endpoint.address).await,
        };
        return stream.is_ok();
    }
    let pool = &member.pool;
    let header = up.proxy_protocol.map(crate::proxy_protocol::local_header);
    let Ok(sender) = pool.connect_with(endpoint, header.as_deref()).await else {
        return false;
    };
    let host = cfg.host.as_deref().unwrap_or(endpoint.authority.as_str());
    let mut req = http::Request::builder()
        .method(cfg.method.as_str())
        .header(http::header::USER_AGENT, "weir-health-check");
    req = match sender {
        // HTTP/2 carries the target as :scheme, :authority and :path.
        Sender::H2(_) => req.uri(format!("{}://{host}{}", pool.scheme(), cfg.path)),
        Sender::H1(_) => req
            .uri(cfg.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::CONNECTION, "close"),
    };
    let Ok(req) = req.body(RequestBody::buffered(Bytes::new(), Default::default())) else {
        return false;
    };
    let Ok(resp) = sender.send_once(req).await else {
        return false;
    };
    let status = resp.status().as_u16();
    if !cfg.expect_status.iter().any(|r| r.contains(status)) {
        return false;
    }
    let Some(needle) = &cfg.body_contains else {
        return true;
    };
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    while seen.len() < MAX_PROBE_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen.extend_from_slice(data);
                }
            }
            Some(Err(_)) => return false,
            None => break,
        }
    }
    seen.truncate(MAX_PROBE_BODY);
    // Dropping the sender closes the probe's connection.
    String::from_utf8_lossy(&seen).contains(needle.as_str())
}
