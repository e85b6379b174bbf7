//! A point-in-time view of an upstream for metrics and the admin API.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::discovery::DiscoveryStats;
use crate::{BreakerState, Member, Source, Upstream};

/// One endpoint's health and counters.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    /// Address.
    pub address: Arc<str>,
    /// Weight now.
    pub weight: u32,
    /// Where the endpoint came from.
    pub source: Source,
    /// Left the set and finishing its last requests (listed in `draining`).
    pub draining: bool,
    /// Joined at runtime and waits for its first passing active check.
    pub awaiting_check: bool,
    /// In the balancer's view now.
    pub in_service: bool,
    /// Passing active checks (true when there are none).
    pub active_healthy: bool,
    /// Ejected by outlier detection now.
    pub ejected: bool,
    /// Drained by an operator.
    pub drained: bool,
    /// Peak-EWMA latency estimate, milliseconds.
    pub latency_ewma_ms: f64,
    /// Times ejected.
    pub ejections: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Tries sent.
    pub requests: u64,
    /// Tries failed (transport errors and 5xx).
    pub failures: u64,
    /// Active probes run and failed.
    pub probes: u64,
    /// Active probes failed.
    pub probes_failed: u64,
}

/// An upstream's health and counters.
#[derive(Debug, Clone)]
pub struct UpstreamStats {
    /// Name.
    pub name: Arc<str>,
    /// Too few endpoints healthy: traffic spread over all.
    pub panic: bool,
    /// Circuit breaker state, if there is a breaker.
    pub breaker: Option<BreakerState>,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Requests refused by the open breaker.
    pub breaker_rejected: u64,
    /// Requests waiting for a concurrency slot.
    pub queued_now: usize,
    /// Requests refused by the concurrency cap.
    pub busy_rejected: u64,
    /// Requests received.
    pub requests: u64,
    /// Retries made.
    pub retries: u64,
    /// Retries refused by the budget.
    pub retry_budget_exhausted: u64,
    /// Ejections made.
    pub ejections: u64,
    /// Ejections refused by `max_ejection_percent`.
    pub ejections_skipped: u64,
    /// Per endpoint, in set order (static ones first, in config order).
    pub endpoints: Vec<EndpointStats>,
    /// Endpoints that left the set and still have requests in flight.
    pub draining: Vec<EndpointStats>,
    /// The provider, if the upstream has one.
    pub discovery: Option<DiscoveryStats>,
}

impl Upstream {
    /// The upstream's health and counters now.
    pub fn stats(&self) -> UpstreamStats {
        let now = self.clock.now_ms();
        let current = self.current.load();
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        UpstreamStats {
            name: self.name.clone(),
            panic: current.view.panic,
            breaker: self.breaker.as_ref().map(|b| b.state()),
            breaker_opened: self.breaker.as_ref().map_or(0, |b| r(&b.opened)),
            breaker_rejected: self.breaker.as_ref().map_or(0, |b| r(&b.rejected)),
            queued_now: self.limit.as_ref().map_or(0, |l| l.waiting()),
            busy_rejected: self.limit.as_ref().map_or(0, |l| r(&l.rejected)),
            requests: r(&self.metrics.requests),
            retries: r(&self.retry.budget().retried),
            retry_budget_exhausted: r(&self.retry.budget().exhausted),
            ejections: r(&self.metrics.ejections),
            ejections_skipped: r(&self.metrics.ejections_skipped),
            endpoints: current
                .set
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let in_service = current.view.in_service.get(i).copied().unwrap_or(false);
                    endpoint_stats(m, in_service, now)
                })
                .collect(),
            draining: self
                .draining()
                .iter()
                .map(|m| endpoint_stats(m, false, now))
                .collect(),
            discovery: self.discovery.snapshot(),
        }
    }
}

fn endpoint_stats(m: &Member, in_service: bool, now: u64) -> EndpointStats {
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let s = &m.state;
    EndpointStats {
        address: m.endpoint.address.clone(),
        weight: m.weight(),
        source: m.source,
        draining: m.removed(),
        awaiting_check: s.awaiting_first_check(),
        in_service,
        active_healthy: s.active_up.load(Ordering::Relaxed),
        ejected: s.ejected(now),
        drained: s.drained.load(Ordering::Relaxed),
        latency_ewma_ms: s.ewma_ns(now) / 1e6,
        ejections: s.ejections.load(Ordering::Relaxed),
        in_flight: s.in_flight(),
        requests: r(&s.requests),
        failures: r(&s.failures),
        probes: r(&m.probe.probes),
        probes_failed: r(&m.probe.failed),
    }
}
