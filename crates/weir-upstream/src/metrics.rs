//! The upstreams' samples in `/metrics`: per upstream (requests, retries, breaker, queue,
//! ejections), per endpoint (health, drain, in flight, tries, probes), endpoints by state and
//! discovery providers, and try durations.

use std::sync::Arc;

use weir_core::prometheus::{flag, Exposition, Family, Kind};

use crate::{BreakerState, EndpointStats, Upstream, UpstreamStats};

/// Every upstream's and endpoint's health and counters.
/// Upstream and endpoint health and counters in Prometheus text.
pub fn render(stats: &[UpstreamStats], e: &mut Exposition) {
    let per_upstream = |e: &mut Exposition,
                        name: &str,
                        kind: Kind,
                        help: &str,
                        f: &dyn Fn(&UpstreamStats) -> f64| {
        let labels: Vec<[(&str, &str); 1]> =
            stats.iter().map(|s| [("upstream", &*s.name)]).collect();
        e.family(
            name,
            kind,
            help,
            labels.iter().zip(stats).map(|(l, s)| (&l[..], f(s))),
        );
    };
    per_upstream(
        e,
        "weir_upstream_requests_total",
        Kind::Counter,
        "Requests sent to the upstream (before retries).",
        &|s| s.requests as f64,
    );
    per_upstream(
        e,
        "weir_upstream_retries_total",
        Kind::Counter,
        "Retries made.",
        &|s| s.retries as f64,
    );
    per_upstream(
        e,
        "weir_upstream_retry_budget_exhausted_total",
        Kind::Counter,
        "Retries refused because the retry budget was spent.",
        &|s| s.retry_budget_exhausted as f64,
    );
    per_upstream(
        e,
        "weir_upstream_panic",
        Kind::Gauge,
        "1 when too few endpoints are healthy and traffic is spread over all of them.",
        &|s| flag(s.panic),
    );
    per_upstream(
        e,
        "weir_upstream_circuit_breaker_state",
        Kind::Gauge,
        "Circuit breaker: 0 closed, 1 open, 2 half-open (absent without a breaker).",
        &|s| match s.breaker {
            Some(BreakerState::Open) => 1.0,
            Some(BreakerState::HalfOpen) => 2.0,
            _ => 0.0,
        },
    );
    per_upstream(
        e,
        "weir_upstream_circuit_breaker_opened_total",
        Kind::Counter,
        "Times the circuit breaker opened.",
        &|s| s.breaker_opened as f64,
    );
    per_upstream(
        e,
        "weir_upstream_circuit_breaker_rejected_total",
        Kind::Counter,
        "Requests answered 503 by the open breaker.",
        &|s| s.breaker_rejected as f64,
    );
    per_upstream(
        e,
        "weir_upstream_queue_waiting",
        Kind::Gauge,
        "Requests waiting for a max_in_flight slot.",
        &|s| s.queued_now as f64,
    );
    per_upstream(
        e,
        "weir_upstream_busy_rejected_total",
        Kind::Counter,
        "Requests answered 503 because max_in_flight and the queue were full.",
        &|s| s.busy_rejected as f64,
    );
    per_upstream(
        e,
        "weir_upstream_ejections_total",
        Kind::Counter,
        "Endpoints ejected by outlier detection.",
        &|s| s.ejections as f64,
    );
    per_upstream(
        e,
        "weir_upstream_ejections_skipped_total",
        Kind::Counter,
        "Ejections not made because of max_ejection_percent.",
        &|s| s.ejections_skipped as f64,
    );

    let labels: Vec<(Vec<(&str, &str)>, &EndpointStats)> = stats
        .iter()
        .flat_map(|s| {
            s.endpoints
                .iter()
                .map(move |ep| (vec![("upstream", &*s.name), ("endpoint", &*ep.address)], ep))
        })
        .collect();
    let endpoint_families: [Family<EndpointStats>; 10] = [
        (
            "weir_upstream_endpoint_drained",
            Kind::Gauge,
            "1 while drained by an operator.",
            |ep| flag(ep.drained),
        ),
        (
            "weir_upstream_endpoint_healthy",
            Kind::Gauge,
            "1 when the endpoint is in service (healthy, or everyone is in panic mode).",
            |ep| flag(ep.in_service),
        ),
        (
            "weir_upstream_endpoint_active_check_healthy",
            Kind::Gauge,
            "1 when the endpoint passes active health checks (or none run).",
            |ep| flag(ep.active_healthy),
        ),
        (
            "weir_upstream_endpoint_ejected",
            Kind::Gauge,
            "1 while outlier detection ejects the endpoint.",
            |ep| flag(ep.ejected),
        ),
        (
            "weir_upstream_endpoint_ejections_total",
            Kind::Counter,
            "Times the endpoint was ejected.",
            |ep| f64::from(ep.ejections),
        ),
        (
            "weir_upstream_endpoint_in_flight",
            Kind::Gauge,
            "Requests in flight to the endpoint.",
            |ep| f64::from(ep.in_flight),
        ),
        (
            "weir_upstream_endpoint_requests_total",
            Kind::Counter,
            "Tries sent to the endpoint.",
            |ep| ep.requests as f64,
        ),
        (
            "weir_upstream_endpoint_failures_total",
            Kind::Counter,
            "Tries that failed (transport errors and 5xx).",
            |ep| ep.failures as f64,
        ),
        (
            "weir_upstream_endpoint_probes_total",
            Kind::Counter,
            "Active health probes run.",
            |ep| ep.probes as f64,
        ),
        (
            "weir_upstream_endpoint_probe_failures_total",
            Kind::Counter,
            "Active health probes failed.",
            |ep| ep.probes_failed as f64,
        ),
    ];
    for (name, kind, help, f) in endpoint_families {
        e.family(
            name,
            kind,
            help,
            labels.iter().map(|(l, ep)| (&l[..], f(ep))),
        );
    }
}

/// Endpoints by state, and each provider's refreshes, failures and last success.
pub fn render_discovery(stats: &[UpstreamStats], e: &mut Exposition) {
    let counts: Vec<([(&str, &str); 2], f64)> = stats
        .iter()
        .flat_map(|s| {
            let waiting = s.endpoints.iter().filter(|ep| ep.awaiting_check).count();
            let serving = s.endpoints.iter().filter(|ep| ep.in_service).count();
            let out = s
                .endpoints
                .iter()
                .filter(|ep| !ep.in_service && !ep.awaiting_check)
                .count();
            [
                ("in_service", serving),
                ("out_of_service", out),
                ("awaiting_check", waiting),
                ("draining", s.draining.len()),
            ]
            .map(|(state, n)| ([("upstream", &*s.name), ("state", state)], n as f64))
        })
        .collect();
    e.family(
        "weir_upstream_endpoints",
        Kind::Gauge,
        "Endpoints of the upstream by state (draining: removed, requests still in flight).",
        counts.iter().map(|(l, v)| (&l[..], *v)),
    );
    let providers: Vec<([(&str, &str); 2], &crate::discovery::DiscoveryStats)> = stats
        .iter()
        .filter_map(|s| {
            let d = s.discovery.as_ref()?;
            Some(([("upstream", &*s.name), ("provider", d.provider)], d))
        })
        .collect();
    let simple: [Family<crate::discovery::DiscoveryStats>; 3] = [
        (
            "weir_upstream_discovery_refreshes_total",
            Kind::Counter,
            "Answers taken from the upstream's provider.",
            |d| d.refreshes as f64,
        ),
        (
            "weir_upstream_discovery_endpoints",
            Kind::Gauge,
            "Endpoints in the provider's last good answer.",
            |d| d.endpoints as f64,
        ),
        (
            "weir_upstream_discovery_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the provider last answered (Unix time; 0: never).",
            |d| {
                d.last_success
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64())
            },
        ),
    ];
    for (name, kind, help, f) in simple {
        e.family(
            name,
            kind,
            help,
            providers.iter().map(|(l, d)| (&l[..], f(d))),
        );
    }
    let failures: Vec<([(&str, &str); 3], f64)> = providers
        .iter()
        .flat_map(|([u, p], d)| {
            d.failures
                .iter()
                .map(move |(reason, n)| ([*u, *p, ("reason", *reason)], *n as f64))
        })
        .collect();
    e.family(
        "weir_upstream_discovery_failures_total",
        Kind::Counter,
        "Provider lookups that failed, by reason; the last good endpoints stayed.",
        failures.iter().map(|(l, v)| (&l[..], *v)),
    );
}

/// `weir_upstream_attempt_duration_seconds`: each endpoint's try durations.
pub fn render_attempts(upstreams: &[Arc<Upstream>], e: &mut Exposition) {
    let members: Vec<(Arc<str>, Arc<crate::Member>)> = upstreams
        .iter()
        .flat_map(|u| u.members().into_iter().map(move |m| (u.name.clone(), m)))
        .collect();
    let labels: Vec<([(&str, &str); 2], &weir_core::Histogram)> = members
        .iter()
        .map(|(name, m)| {
            (
                [("upstream", &**name), ("endpoint", &*m.endpoint.address)],
                &m.state.attempts,
            )
        })
        .collect();
    e.histogram(
        "weir_upstream_attempt_duration_seconds",
        "Each try to an endpoint, from sending to the response head (or failure).",
        labels.iter().map(|(l, h)| (&l[..], *h)),
    );
}
