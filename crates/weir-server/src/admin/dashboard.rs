//! The dashboard: one page served by the admin listener at `/` (HTML, script and style embedded
//! in the binary), and `GET /dashboard.json`, which it polls every second: the status, each
//! route's timeline (requests/s, 5xx rate, p50/p99 over the last five minutes) and the
//! upstream table. The timeline is sampled by a task that runs with the admin listener.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::context::Admin;
use crate::control::unix_now;

/// The page's files: path → (content type, body).
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "/dashboard.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/dashboard.js"),
    ),
    (
        "/dashboard.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/dashboard.css"),
    ),
];

/// One of the page's files. They hold no data, so they are served without the admin token;
/// the data (`/dashboard.json`) needs it, and the page asks for it.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, body)| (*ct, *body))
}

/// Samples every route's totals once a second into the shared timeline until `stop`.
pub(super) async fn sample_loop(admin: Arc<Admin>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last).as_secs_f64();
        last = now;
        let mut timeline = admin
            .control
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        timeline.sample(unix_now(), elapsed, &admin.shared.metrics);
    }
}

/// `GET /dashboard.json`.
pub(super) fn data(admin: &Admin, upstreams: serde_json::Value) -> serde_json::Value {
    let mut routes: Vec<(bool, serde_json::Value)> = {
        let timeline = admin
            .control
            .timeline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        timeline
            .series()
            .map(|(name, points)| {
                let unmatched = name.is_empty();
                (
                    unmatched,
                    serde_json::json!({ "name": name, "points": points }),
                )
            })
            .collect()
    };
    // Routes by name, then the requests no route matched.
    routes.sort_by_key(|(unmatched, _)| *unmatched);
    let routes: Vec<serde_json::Value> = routes.into_iter().map(|(_, r)| r).collect();
    // Every route together since start: answers by status class, body bytes each way.
    let (mut by_class, mut bytes_in, mut bytes_out) = ([0u64; 5], 0u64, 0u64);
    for (_, t) in admin.shared.metrics.totals() {
        for (sum, n) in by_class.iter_mut().zip(t.by_class) {
            *sum += n;
        }
        bytes_in += t.bytes_in;
        bytes_out += t.bytes_out;
    }
    let runtime = admin.shared.runtime.load();
    let caches = crate::cache::metrics::summary(&runtime.caches);
    let policies = weir_policy::summary(&runtime.policies);
    serde_json::json!({
        "now": unix_now(),
        "totals": {
            "by_class": {"1xx": by_class[0], "2xx": by_class[1], "3xx": by_class[2], "4xx": by_class[3], "5xx": by_class[4]},
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
        },
        "caches": caches["caches"],
        "policies": policies,
        "deployments": crate::deploy::summary(&runtime.splits(), &runtime.mirrors()),
        "status": super::status::status(admin),
        "in_flight": admin.shared.in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "routes": routes,
        "upstreams": upstreams,
    })
}
