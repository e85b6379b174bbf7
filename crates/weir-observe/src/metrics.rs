//! Request metrics by route: requests by method and status class, and a duration histogram.
//! One [`RouteMetrics`] per route name lives in the [`MetricsRegistry`] across reloads; the
//! request path only touches atomics of the route it matched.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::Method;
use weir_core::Histogram;

use crate::prometheus::{Exposition, Kind};

/// Method labels; anything else is `other`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status class labels.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// Counters of one route.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    requests: [[AtomicU64; 5]; 8],
    duration: Histogram,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl RouteMetrics {
    /// Records a finished request.
    pub fn record(
        &self,
        method: &Method,
        status: u16,
        duration: std::time::Duration,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[method_index(method)][class].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(duration);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }
}

/// A route's totals at one moment, for the dashboard's timeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTotals {
    /// Requests finished.
    pub requests: u64,
    /// Of which answered 5xx.
    pub errors: u64,
    /// Cumulative duration bucket counts (bounds: `weir_core::histogram::BUCKETS`).
    pub buckets: [u64; weir_core::histogram::BUCKETS.len()],
    /// Requests finished by status class, 1xx … 5xx.
    pub by_class: [u64; 5],
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

impl RouteMetrics {
    /// This route's totals now.
    pub fn totals(&self) -> RouteTotals {
        let mut requests = 0;
        let mut by_class = [0u64; 5];
        for per_method in &self.requests {
            for (ci, n) in per_method.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                requests += n;
                by_class[ci] += n;
            }
        }
        RouteTotals {
            requests,
            errors: by_class[4],
            buckets: self.duration.snapshot().0,
            by_class,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// Route metrics by route name; `""` collects requests no route matched.
#[derive(Debug, Default)]
pub struct MetricsRegistry {
    routes: Mutex<BTreeMap<String, Arc<RouteMetrics>>>,
    /// Span counters of whichever tracer is configured.
    pub traces: Arc<crate::TraceStats>,
}

impl MetricsRegistry {
    /// The metrics of `route`, made on first use (at config compile time, not per request).
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(route.to_owned())
            .or_default()
            .clone()
    }

    /// Every route's totals now, by name.
    pub fn totals(&self) -> Vec<(String, RouteTotals)> {
        self.routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.totals()))
            .collect()
    }

    /// Renders every route's metrics. Labels are route names (from the config), methods from
    /// a fixed list and status classes: bounded cardinality, no raw paths.
    pub fn render(&self, e: &mut Exposition) {
        let routes: Vec<(String, Arc<RouteMetrics>)> = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut labels = Vec::new();
        for (route, m) in &routes {
            for (mi, method) in METHODS.iter().enumerate() {
                for (ci, class) in CLASSES.iter().enumerate() {
                    let n = m.requests[mi][ci].load(Ordering::Relaxed);
                    if n > 0 {
                        labels.push((route.as_str(), *method, *class, n));
                    }
                }
            }
        }
        let owned: Vec<[(&str, &str); 3]> = labels
            .iter()
            .map(|(r, m, c, _)| [("route", *r), ("method", *m), ("status_class", *c)])
            .collect();
        e.family(
            "weir_requests_total",
            Kind::Counter,
            "Requests by route (\"\" when none matched), method and status class.",
            owned
                .iter()
                .zip(&labels)
                .map(|(l, (_, _, _, n))| (&l[..], *n as f64)),
        );
        let route_labels: Vec<[(&str, &str); 1]> = routes
            .iter()
            .map(|(r, _)| [("route", r.as_str())])
            .collect();
        e.histogram(
            "weir_request_duration_seconds",
            "Time from request head to the end of the response, by route.",
            route_labels
                .iter()
                .zip(&routes)
                .map(|(l, (_, m))| (&l[..], &m.duration)),
        );
        e.family(
            "weir_request_bytes_total",
            Kind::Counter,
            "Request body bytes received, by route.",
            route_labels
                .iter()
                .zip(&routes)
                .map(|(l, (_, m))| (&l[..], m.bytes_in.load(Ordering::Relaxed) as f64)),
        );
        e.family(
            "weir_response_bytes_total",
            Kind::Counter,
            "Response body bytes sent, by route.",
            route_labels
                .iter()
                .zip(&routes)
                .map(|(l, (_, m))| (&l[..], m.bytes_out.load(Ordering::Relaxed) as f64)),
        );
        self.traces.render(e);
    }
}
