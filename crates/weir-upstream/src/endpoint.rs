//! One upstream endpoint: where to connect, its weight, and the live state every balancer and
//! health check reads and writes (atomics only: the request path never takes a lock here).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use http::uri::Authority;

/// An endpoint of an upstream (`host:port`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address as configured, used in logs and metrics.
    pub address: Arc<str>,
    /// The same, parsed.
    pub authority: Authority,
    /// The socket address when the endpoint is an IP literal (no DNS needed).
    pub socket_addr: Option<SocketAddr>,
    /// Configured relative share of traffic.
    pub weight: u32,
    /// A stable hash of the address: names the endpoint in sticky cookies and places it on
    /// consistent-hash tables, the same way on every Weir instance.
    pub id: u64,
}

impl Endpoint {
    /// Parses `host:port` with weight 1; `None` if it is not a valid authority with a port.
    pub fn parse(s: &str) -> Option<Self> {
        Self::with_weight(s, 1)
    }

    /// Parses `host:port` with a weight (at least 1).
    pub fn with_weight(s: &str, weight: u32) -> Option<Self> {
        let authority: Authority = s.parse().ok()?;
        authority.port_u16()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Self {
            address: s.into(),
            authority,
            socket_addr: s.parse().ok(),
            weight: weight.max(1),
            id: crate::hash::hash_bytes(s.as_bytes()),
        })
    }
}

/// Live state of one endpoint, shared by the balancer, the health checks and the proxy.
#[derive(Debug)]
pub struct EndpointState {
    /// Requests sent and not yet finished (response body included).
    pub in_flight: AtomicU32,
    /// Peak-EWMA of response-head latency, in nanoseconds (f64 bits).
    ewma_ns: AtomicU64,
    /// When `ewma_ns` was last updated (ms on the upstream's clock).
    ewma_at: AtomicU64,
    /// The last active probe verdict (true when no active checks run).
    pub active_up: AtomicBool,
    /// Ejected by outlier detection until this time (ms on the upstream's clock); 0 = not.
    pub ejected_until: AtomicU64,
    /// How many times this endpoint has been ejected (lengthens the next ejection).
    pub ejections: AtomicU32,
    /// Consecutive 5xx responses.
    pub consecutive_5xx: AtomicU32,
    /// Consecutive connect failures, timeouts and resets.
    pub consecutive_failures: AtomicU32,
    /// When the endpoint last came (back) into service, for slow start (ms); 0 = always was.
    pub up_since: AtomicU64,
    /// Drained by an operator: no new requests (in-flight ones finish).
    pub drained: AtomicBool,
    /// Joined the set at runtime and waits for its first passing active check.
    pub awaiting_check: AtomicBool,
    /// Whether the endpoint was in service at the last membership refresh.
    pub in_service: AtomicBool,
    /// Requests sent (tries), for metrics.
    pub requests: AtomicU64,
    /// Failed tries (transport errors and 5xx), for metrics.
    pub failures: AtomicU64,
    /// Duration of each try up to the response head (or the failure), for metrics.
    pub attempts: weir_core::Histogram,
}

/// Latency assumed for an endpoint before it has answered anything.
const DEFAULT_RTT_NS: f64 = 5_000_000.0;
/// Decay time of the EWMA (linkerd uses 10 s).
const EWMA_DECAY_MS: f64 = 10_000.0;

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            ewma_ns: AtomicU64::new(DEFAULT_RTT_NS.to_bits()),
            ewma_at: AtomicU64::new(0),
            active_up: AtomicBool::new(true),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            up_since: AtomicU64::new(0),
            drained: AtomicBool::new(false),
            awaiting_check: AtomicBool::new(false),
            in_service: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            attempts: weir_core::Histogram::default(),
        }
    }
}

impl EndpointState {
    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        // SeqCst (a plain load on x86): the drain's side of the removal handshake in
        // `member.rs` (`left`).
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The latency estimate in nanoseconds, decayed to `now_ms`.
    pub fn ewma_ns(&self, now_ms: u64) -> f64 {
        let v = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        let at = self.ewma_at.load(Ordering::Relaxed);
        // Between samples the estimate relaxes toward the default, so an endpoint that was
        // slow once is tried again eventually.
        let dt = now_ms.saturating_sub(at) as f64;
        let w = (-dt / EWMA_DECAY_MS).exp();
        v * w + DEFAULT_RTT_NS * (1.0 - w)
    }

    /// Folds in one latency sample (peak-sensitive: a slower sample replaces the estimate at
    /// once; faster ones pull it down gradually).
    pub fn observe_latency(&self, sample_ns: f64, now_ms: u64) {
        let prev = f64::from_bits(self.ewma_ns.load(Ordering::Relaxed));
        let at = self.ewma_at.swap(now_ms, Ordering::Relaxed);
        let next = if sample_ns > prev {
            sample_ns
        } else {
            let dt = now_ms.saturating_sub(at) as f64;
            let w = (-dt / EWMA_DECAY_MS).exp().min(0.9);
            prev * w + sample_ns * (1.0 - w)
        };
        self.ewma_ns.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Whether it joined at runtime and has not passed an active check yet.
    pub fn awaiting_first_check(&self) -> bool {
        self.awaiting_check.load(Ordering::Acquire)
    }

    /// Whether outlier detection currently ejects the endpoint.
    pub fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }
}
