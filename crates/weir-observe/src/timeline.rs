//! The dashboard's timeline: once a second, every route's totals are read and the difference
//! from the previous reading becomes one point — requests per second, error rate, p50 and p99
//! latency — kept for the last few minutes. Nothing on the request path changes: it reads the
//! same counters `/metrics` exposes.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use weir_core::histogram::BUCKETS;

use crate::metrics::{MetricsRegistry, RouteTotals};

/// Points kept per route (five minutes at one a second).
pub const POINTS: usize = 300;

/// One second (or interval) of one route.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Unix time of the reading, in seconds.
    pub t: u64,
    /// Requests finished per second.
    pub rps: f64,
    /// Share of them answered 5xx (0 when there were none).
    pub error_rate: f64,
    /// Median duration, milliseconds, estimated from the histogram buckets; absent without
    /// requests.
    pub p50_ms: Option<f64>,
    /// 99th percentile, as `p50_ms`.
    pub p99_ms: Option<f64>,
}

/// The last [`POINTS`] points of every route.
#[derive(Debug, Default)]
pub struct Timeline {
    previous: BTreeMap<String, RouteTotals>,
    series: BTreeMap<String, VecDeque<Point>>,
}

impl Timeline {
    /// Reads every route's totals at `t` (unix seconds), `elapsed` seconds after the previous
    /// reading, and appends a point per route seen before.
    pub fn sample(&mut self, t: u64, elapsed: f64, registry: &MetricsRegistry) {
        for (route, now) in registry.totals() {
            let Some(before) = self.previous.insert(route.clone(), now.clone()) else {
                continue;
            };
            let point = point(t, elapsed, &before, &now);
            let series = self.series.entry(route).or_default();
            if series.len() == POINTS {
                series.pop_front();
            }
            series.push_back(point);
        }
    }

    /// Every route's points, oldest first (`""` is requests no route matched).
    pub fn series(&self) -> impl Iterator<Item = (&str, &VecDeque<Point>)> {
        self.series.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn point(t: u64, elapsed: f64, before: &RouteTotals, now: &RouteTotals) -> Point {
    let requests = now.requests.saturating_sub(before.requests);
    let errors = now.errors.saturating_sub(before.errors);
    let mut buckets = [0u64; BUCKETS.len()];
    for (i, b) in buckets.iter_mut().enumerate() {
        *b = now.buckets[i].saturating_sub(before.buckets[i]);
    }
    let elapsed = if elapsed > 0.0 { elapsed } else { 1.0 };
    Point {
        t,
        rps: requests as f64 / elapsed,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        p50_ms: quantile(&buckets, requests, 0.5),
        p99_ms: quantile(&buckets, requests, 0.99),
    }
}

/// The `q` quantile in milliseconds from cumulative bucket counts, interpolated linearly inside
/// the bucket it falls in (as Prometheus' `histogram_quantile`); beyond the last bound it is the
/// last bound.
fn quantile(cumulative: &[u64; BUCKETS.len()], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (bound, &count) in BUCKETS.iter().zip(cumulative) {
        if count as f64 >= rank && count > lower_count {
            let within = (rank - lower_count as f64) / (count - lower_count) as f64;
            return Some((lower_bound + (bound - lower_bound) * within) * 1000.0);
        }
        lower_bound = *bound;
        lower_count = count;
    }
    Some(BUCKETS[BUCKETS.len() - 1] * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::time::Duration;

    #[test]
    fn points_are_differences_per_second() {
        let registry = MetricsRegistry::default();
        let route = registry.route("api");
        let mut timeline = Timeline::default();
        timeline.sample(100, 1.0, &registry);
        assert_eq!(
            timeline.series().count(),
            0,
            "the first reading is a baseline"
        );
        for _ in 0..98 {
            route.record(&Method::GET, 200, Duration::from_micros(800), 0, 0);
        }
        route.record(&Method::GET, 503, Duration::from_millis(40), 0, 0);
        route.record(&Method::GET, 502, Duration::from_millis(40), 0, 0);
        timeline.sample(102, 2.0, &registry);
        let (name, points) = timeline.series().next().expect("a series");
        assert_eq!(name, "api");
        let p = points[0];
        assert_eq!(p.t, 102);
        assert!((p.rps - 50.0).abs() < 1e-9);
        assert!((p.error_rate - 0.02).abs() < 1e-9);
        // 98 of 100 are in the first bucket (≤ 1 ms): the median is inside it.
        assert!(p.p50_ms.is_some_and(|ms| ms > 0.0 && ms <= 1.0), "{p:?}");
        // The 99th is among the two 40 ms requests (25–50 ms bucket).
        assert!(p.p99_ms.is_some_and(|ms| ms > 25.0 && ms <= 50.0), "{p:?}");
        timeline.sample(103, 1.0, &registry);
        let points = timeline.series().next().expect("series").1;
        assert_eq!(points[1].rps, 0.0);
        assert_eq!(points[1].p50_ms, None);
    }

    #[test]
    fn keeps_the_last_points_only() {
        let registry = MetricsRegistry::default();
        let _ = registry.route("r");
        let mut timeline = Timeline::default();
        for t in 0..(POINTS as u64 + 50) {
            timeline.sample(t, 1.0, &registry);
        }
        let points = timeline.series().next().expect("series").1;
        assert_eq!(points.len(), POINTS);
        assert_eq!(points.back().map(|p| p.t), Some(POINTS as u64 + 49));
    }
}
