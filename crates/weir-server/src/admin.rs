//! The admin listener: the dashboard (`/`), `GET /metrics` (Prometheus text), the JSON
//! endpoints (`/status`, `/config`, `/routes`, `/upstreams`, `/explain`, `/dashboard.json`),
//! health for orchestrators (`/healthz`, `/readyz`), and the actions (`POST /reload`, endpoint
//! drain and enable). Served apart from traffic listeners so operators can reach it when
//! traffic is saturated; with `admin.token` set every request but the dashboard's static files
//! needs `Authorization: Bearer <token>`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_observe::prometheus::{Exposition, Kind, CONTENT_TYPE};
use weir_upstream::{BreakerState, UpstreamStats};

use crate::listener::ListenerCounters;
use crate::Shared;

/// What bounds the admin listener: it has a connection cap and a request-head timeout of its
/// own, like traffic listeners, so a slow or flooding client cannot take the operator's
/// way in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: std::time::Duration,
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = shared.runtime.load().admin_limits;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            // hyper's head timer starts with the first byte (the auto builder waits for it to
            // tell HTTP/1.1 from HTTP/2): a connection that sends nothing is closed here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.header_read_timeout)
                .keep_alive_timeout(limits.header_read_timeout)
                .max_concurrent_streams(16);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Authenticates, then dispatches one admin request.
async fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() == Method::GET {
        if let Some((content_type, body)) = crate::dashboard::asset(req.uri().path()) {
            return asset_response(content_type, body);
        }
    }
    if let Some(token) = &shared.runtime.load().admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(&token_digest(given.as_bytes()), token) {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"status": 401, "error": "unauthorized"}),
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::POST, "/reload") => reload(shared).await,
        (&Method::GET, "/healthz") => {
            json_response(StatusCode::OK, serde_json::json!({"alive": true}))
        }
        (&Method::GET, "/readyz") => {
            let ready = !shared.draining.load(Ordering::Relaxed);
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, serde_json::json!({"ready": ready}))
        }
        (&Method::GET, "/status") => json_response(StatusCode::OK, status(shared)),
        (&Method::GET, "/dashboard.json") => json_response(
            StatusCode::OK,
            crate::dashboard::data(shared, upstreams_value(&upstream_stats(shared))),
        ),
        (&Method::GET, "/explain") => explain(req.uri().query().unwrap_or(""), shared),
        (&Method::GET, "/config") => match shared.control.get() {
            Some(c) => json_response(StatusCode::OK, c.effective_config().await),
            None => json_response(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({})),
        },
        (&Method::GET, "/routes") => json_response(
            StatusCode::OK,
            crate::explain::routes(&shared.runtime.load()),
        ),
        (&Method::POST, p) if p.starts_with("/upstreams/") => drain(p, shared),
        (&Method::POST, p) if p.starts_with("/caches/") => {
            purge(p, req.uri().query().unwrap_or(""), shared).await
        }
        _ => handle(req, shared),
    }
}

/// `POST /upstreams/{name}/endpoints/{endpoint}/drain` and `…/enable`.
fn drain(path: &str, shared: &Shared) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (name, endpoint, action) = match parts.as_slice() {
        ["upstreams", name, "endpoints", endpoint, action @ ("drain" | "enable")] => {
            (*name, *endpoint, *action)
        }
        _ => {
            return json_response(
                StatusCode::NOT_FOUND,
                serde_json::json!({"status": 404, "error": "not_found"}),
            )
        }
    };
    let endpoint = percent_encoding::percent_decode_str(endpoint).decode_utf8_lossy();
    let runtime = shared.runtime.load();
    let Some(upstream) = runtime.upstreams().iter().find(|u| &*u.name == name) else {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": 404, "error": "unknown upstream"}),
        );
    };
    if !upstream.set_drained(&endpoint, action == "drain") {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": 404, "error": "unknown endpoint"}),
        );
    }
    tracing::info!(upstream = name, endpoint = %endpoint, action, "endpoint changed by the admin API");
    json_response(
        StatusCode::OK,
        serde_json::json!({"upstream": name, "endpoint": endpoint, "drained": action == "drain"}),
    )
}

/// `POST /caches/{name}/purge?url=URL | prefix=HOST/PATH | tag=TAG | all=1 [&soft=1]`.
async fn purge(path: &str, query: &str, shared: &Shared) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["caches", name, "purge"] = parts.as_slice() else {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": 404, "error": "not_found"}),
        );
    };
    let runtime = shared.runtime.load_full();
    let Some(cache) = runtime.caches.iter().find(|c| &*c.name == *name).cloned() else {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": 404, "error": "unknown cache"}),
        );
    };
    let mut what: Option<(&str, String)> = None;
    let mut soft = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "url" | "prefix" | "tag" | "all" => what = Some((k, v)),
            "soft" => soft = v == "1" || v == "true",
            _ => {}
        }
    }
    // A URL is stored as host (lowercase) + path and query: drop a scheme if given.
    let strip = |u: &str| -> String {
        let u = u.split_once("://").map_or(u, |(_, rest)| rest);
        match u.split_once('/') {
            Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
            None => format!("{}/", u.to_ascii_lowercase()),
        }
    };
    let target = match &what {
        Some(("url", u)) => ("url", strip(u)),
        Some(("prefix", p)) => ("prefix", strip(p)),
        Some(("tag", t)) if !t.is_empty() => ("tag", t.clone()),
        Some(("all", _)) => ("all", String::new()),
        _ => {
            return json_response(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"status": 400, "error": "say what to purge: url=, prefix=, tag= or all=1"}),
            )
        }
    };
    // A disk tier's purge deletes or rewrites files: off the async threads.
    let purged = tokio::task::spawn_blocking(move || {
        use weir_cache::store::Purge;
        let what = match target.0 {
            "url" => Purge::Uri(&target.1),
            "prefix" => Purge::Prefix(&target.1),
            "tag" => Purge::Tag(&target.1),
            _ => Purge::All,
        };
        cache.purge(what, soft)
    })
    .await
    .unwrap_or(0);
    tracing::info!(cache = %name, what = ?what, soft, purged, "purged by the admin API");
    json_response(
        StatusCode::OK,
        serde_json::json!({"cache": name, "purged": purged, "soft": soft}),
    )
}

/// `GET /explain?method=GET&url=/path&header=Name:%20value&listener=main`: `weir explain`
/// against the running config (JSON).
fn explain(query: &str, shared: &Shared) -> Response<Full<Bytes>> {
    let mut method = "GET".to_owned();
    let (mut url, mut listener) = (None, None);
    let mut headers = http::HeaderMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "method" => method = v,
            "url" => url = Some(v),
            "listener" => listener = Some(v),
            "header" => {
                let parsed = v.split_once(':').and_then(|(n, val)| {
                    Some((
                        http::HeaderName::from_bytes(n.trim().as_bytes()).ok()?,
                        http::HeaderValue::from_str(val.trim()).ok()?,
                    ))
                });
                match parsed {
                    Some((n, val)) => {
                        headers.append(n, val);
                    }
                    None => {
                        return json_response(
                            StatusCode::BAD_REQUEST,
                            serde_json::json!({"error": format!("header `{v}` is not `Name: value`")}),
                        )
                    }
                }
            }
            _ => {}
        }
    }
    let Some(url) = url else {
        return json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "`url` is required, e.g. /explain?method=GET&url=/api/users"}),
        );
    };
    let runtime = shared.runtime.load();
    match crate::explain::explain(&runtime, listener.as_deref(), &method, &url, &headers) {
        Ok(e) => json_response(StatusCode::OK, serde_json::to_value(&e).unwrap_or_default()),
        Err(e) => json_response(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": e.to_string()}),
        ),
    }
}

/// One of the dashboard's embedded files.
fn asset_response(content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(crate::dashboard::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// `GET /status`: version, uptime, the config's fingerprint and the last reload.
pub(crate) fn status(shared: &Shared) -> serde_json::Value {
    let pending: Vec<&'static str> = shared.control.get().map_or_else(Vec::new, |c| {
        c.pending_restart
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    });
    let (ok, at, error) = match shared.control.get() {
        Some(c) => (
            c.stats.last_ok.load(Ordering::Relaxed),
            c.stats.last_at.load(Ordering::Relaxed),
            c.stats
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        ),
        None => (true, 0, None),
    };
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "config_hash": format!("{:016x}", shared.config_hash.load(Ordering::Relaxed)),
        "ready": !shared.draining.load(Ordering::Relaxed),
        "last_reload": {"ok": ok, "unix_time": at, "error": error},
        // Keys of the config file that apply only after a restart, while they differ.
        "needs_restart": pending,
    })
}

/// The digest the admin token is kept and compared as.
pub(crate) fn token_digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

/// Equal digests, in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Every upstream's stats, from the running config.
fn upstream_stats(shared: &Shared) -> Vec<UpstreamStats> {
    shared
        .runtime
        .load()
        .upstreams()
        .iter()
        .map(|u| u.stats())
        .collect()
}

/// Every admin endpoint: method and path (`{…}` marks a part the caller fills in). The 404 lists
/// them and a known path asked with another method gets a 405 with `Allow`, so this table is the
/// one place a new endpoint is added besides its handler.
const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/upstreams"),
    ("GET", "/status"),
    ("GET", "/config"),
    ("GET", "/routes"),
    ("GET", "/explain"),
    ("GET", "/dashboard.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/reload"),
    ("POST", "/upstreams/{name}/endpoints/{address}/drain"),
    ("POST", "/upstreams/{name}/endpoints/{address}/enable"),
    ("POST", "/caches/{name}/purge"),
];

/// Whether `path` matches an endpoint pattern segment by segment (`{…}` matches any segment).
fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut a, mut b) = (pattern.split('/'), path.split('/'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p.starts_with('{') || p == s => {}
            _ => return false,
        }
    }
}

fn not_found_or_not_allowed(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let allowed: Vec<&str> = ENDPOINTS
        .iter()
        .filter(|(_, p)| path_matches(p, path))
        .map(|(m, _)| *m)
        .collect();
    if !allowed.is_empty() && !allowed.contains(&method.as_str()) {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"status": 405, "error": "method_not_allowed", "allow": allowed}),
        );
        if let Ok(v) = http::HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    }
    let endpoints: Vec<String> = ENDPOINTS.iter().map(|(m, p)| format!("{m} {p}")).collect();
    json_response(
        StatusCode::NOT_FOUND,
        serde_json::json!({"status": 404, "error": "not_found", "endpoints": endpoints}),
    )
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let stats = upstream_stats(shared);
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut text = metrics(&stats);
            text.push_str(&request_metrics(shared));
            text.push_str(&listener_metrics(&shared.listeners.load()));
            if let Some(control) = shared.control.get() {
                text.push_str(&reload_metrics(&control.stats));
            }
            (StatusCode::OK, CONTENT_TYPE, text)
        }
        (&Method::GET, "/upstreams") => {
            (StatusCode::OK, "application/json", upstreams_json(&stats))
        }
        (method, path) => return not_found_or_not_allowed(method, path),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A metric family read from `T`: name, kind, help and how to read it.
type Family<T> = (&'static str, Kind, &'static str, fn(&T) -> f64);

/// Upstream and endpoint health and counters in Prometheus text.
pub(crate) fn metrics(stats: &[UpstreamStats]) -> String {
    let mut e = Exposition::new();
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
        &mut e,
        "weir_upstream_requests_total",
        Kind::Counter,
        "Requests sent to the upstream (before retries).",
        &|s| s.requests as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_retries_total",
        Kind::Counter,
        "Retries made.",
        &|s| s.retries as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_retry_budget_exhausted_total",
        Kind::Counter,
        "Retries refused because the retry budget was spent.",
        &|s| s.retry_budget_exhausted as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_panic",
        Kind::Gauge,
        "1 when too few endpoints are healthy and traffic is spread over all of them.",
        &|s| flag(s.panic),
    );
    per_upstream(
        &mut e,
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
        &mut e,
        "weir_upstream_circuit_breaker_opened_total",
        Kind::Counter,
        "Times the circuit breaker opened.",
        &|s| s.breaker_opened as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_circuit_breaker_rejected_total",
        Kind::Counter,
        "Requests answered 503 by the open breaker.",
        &|s| s.breaker_rejected as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_queue_waiting",
        Kind::Gauge,
        "Requests waiting for a max_in_flight slot.",
        &|s| s.queued_now as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_busy_rejected_total",
        Kind::Counter,
        "Requests answered 503 because max_in_flight and the queue were full.",
        &|s| s.busy_rejected as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_ejections_total",
        Kind::Counter,
        "Endpoints ejected by outlier detection.",
        &|s| s.ejections as f64,
    );
    per_upstream(
        &mut e,
        "weir_upstream_ejections_skipped_total",
        Kind::Counter,
        "Ejections not made because of max_ejection_percent.",
        &|s| s.ejections_skipped as f64,
    );

    let labels: Vec<(Vec<(&str, &str)>, &weir_upstream::EndpointStats)> = stats
        .iter()
        .flat_map(|s| {
            s.endpoints
                .iter()
                .map(move |ep| (vec![("upstream", &*s.name), ("endpoint", &*ep.address)], ep))
        })
        .collect();
    let endpoint_families: [Family<weir_upstream::EndpointStats>; 10] = [
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
    e.finish()
}

/// `POST /reload`: read the config file again and apply it.
async fn reload(shared: &Shared) -> Response<Full<Bytes>> {
    let Some(control) = shared.control.get() else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ok": false}),
        );
    };
    match control.reload_from_file().await {
        Ok(summary) => json_response(
            StatusCode::OK,
            serde_json::json!({
                "ok": true,
                "listeners_added": summary.listeners_added,
                "listeners_removed": summary.listeners_removed,
                "listeners_changed": summary.listeners_changed,
                "upstreams_kept": summary.upstreams_kept,
                "upstreams_new": summary.upstreams_new,
                "admin_changed": summary.admin_changed,
                "needs_restart": summary.needs_restart,
            }),
        ),
        // The same file:line:col diagnostics `weir check` prints.
        Err(e) => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"ok": false, "error": e.to_string()}),
        ),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `cache` and `tier` labels of a cache's gauges.
type TierLabel<'a> = [(&'a str, &'a str); 2];

/// Requests by route, durations, bytes, requests in flight and upstream try durations.
fn request_metrics(shared: &Shared) -> String {
    let mut e = Exposition::new();
    shared.metrics.render(&mut e);
    let none: &[(&str, &str)] = &[];
    e.family(
        "weir_requests_in_flight",
        Kind::Gauge,
        "Requests being served now.",
        [(none, shared.in_flight.load(Ordering::Relaxed) as f64)],
    );
    shared.budget.render(&mut e);
    e.family(
        "weir_access_log_dropped_total",
        Kind::Counter,
        "Access-log lines dropped because the writer fell behind.",
        [(none, shared.access_log.dropped() as f64)],
    );
    e.family(
        "weir_build_info",
        Kind::Gauge,
        "Always 1; the running build in its labels.",
        [(&[("version", env!("CARGO_PKG_VERSION"))][..], 1.0)],
    );
    let runtime = shared.runtime.load();
    let decisions: Vec<([(&str, &str); 2], u64)> = runtime
        .policies
        .iter()
        .flat_map(|p| {
            let (allowed, denied) = p.counts();
            [
                ([("policy", &*p.name), ("result", "allowed")], allowed),
                ([("policy", &*p.name), ("result", "denied")], denied),
            ]
        })
        .collect();
    e.family(
        "weir_policy_decisions_total",
        Kind::Counter,
        "Requests each policy let through or answered itself (403, 429 …).",
        decisions.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    type Labelled<'a> = Vec<([(&'a str, &'a str); 2], u64)>;
    /// One sample per counter, labelled with the cache and `label` = the counter's name.
    fn counts<'a, const N: usize>(
        out: &mut Labelled<'a>,
        cache: &'a str,
        label: &'static str,
        counters: [(&'static str, &std::sync::atomic::AtomicU64); N],
    ) {
        for (name, n) in counters {
            out.push(([("cache", cache), (label, name)], n.load(Ordering::Relaxed)));
        }
    }
    let mut cache_results: Labelled<'_> = Vec::new();
    let mut stores: Labelled<'_> = Vec::new();
    let mut cache_usage: Vec<(TierLabel<'_>, u64, u64)> = Vec::new();
    let mut cache_evictions: Labelled<'_> = Vec::new();
    let mut cache_disk: Labelled<'_> = Vec::new();
    let mut cache_fills: Vec<([(&str, &str); 1], f64)> = Vec::new();
    for c in &runtime.caches {
        let k = &c.counters;
        cache_fills.push(([("cache", &*c.name)], c.fills_in_flight() as f64));
        counts(
            &mut cache_results,
            &c.name,
            "result",
            [
                ("hit", &k.hit),
                ("miss", &k.miss),
                ("stale", &k.stale),
                ("stale_while_revalidate", &k.stale_while_revalidate),
                ("revalidated", &k.revalidated),
                ("refetched", &k.refetched),
            ],
        );
        counts(
            &mut stores,
            &c.name,
            "result",
            [
                ("stored", &k.stored),
                ("not_stored", &k.not_stored),
                ("invalidated", &k.invalidated),
                ("collapsed", &k.collapsed),
                ("refreshes", &k.refreshes),
                ("purges", &k.purged),
            ],
        );
        let [memory, disk] = c.usage();
        let [evicted_memory, evicted_disk] = c.evictions();
        cache_usage.push((
            [("cache", &*c.name), ("tier", "memory")],
            memory.0,
            memory.1,
        ));
        cache_evictions.push(([("cache", &*c.name), ("tier", "memory")], evicted_memory));
        if c.has_disk() {
            cache_usage.push(([("cache", &*c.name), ("tier", "disk")], disk.0, disk.1));
            cache_evictions.push(([("cache", &*c.name), ("tier", "disk")], evicted_disk));
            counts(
                &mut cache_disk,
                &c.name,
                "event",
                [
                    ("hit", &k.disk_hits),
                    ("write", &k.disk_writes),
                    ("error", &k.disk_errors),
                ],
            );
        }
    }
    e.family(
        "weir_cache_requests_total",
        Kind::Counter,
        "Cacheable requests by outcome: hit, miss, stale (served stale on an origin failure), stale_while_revalidate (served stale while a background refresh runs), revalidated (304), refetched (stale, new 200).",
        cache_results.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_stores_total",
        Kind::Counter,
        "Responses stored, not stored (not storable, too large), stored URIs invalidated by unsafe requests, requests that waited for another's fill (collapsed), background refreshes started (refreshes) and purges.",
        stores.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_fills_in_flight",
        Kind::Gauge,
        "Responses being stored now: read from the origin, not yet in the store (waiters on the same key are collapsed onto them).",
        cache_fills.iter().map(|(l, n)| (&l[..], *n)),
    );
    e.family(
        "weir_cache_objects",
        Kind::Gauge,
        "URIs stored, per tier (memory, disk).",
        cache_usage.iter().map(|(l, o, _)| (&l[..], *o as f64)),
    );
    e.family(
        "weir_cache_bytes",
        Kind::Gauge,
        "Bytes stored per tier: bodies and headers in memory, file sizes on disk.",
        cache_usage.iter().map(|(l, _, b)| (&l[..], *b as f64)),
    );
    e.family(
        "weir_cache_evictions_total",
        Kind::Counter,
        "Objects evicted to stay under a tier's byte cap.",
        cache_evictions.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_disk_total",
        Kind::Counter,
        "Disk tier events: hits (found on disk, not in memory), writes, errors (failed reads or writes).",
        cache_disk.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    let (by_coding, bytes_in, bytes_out) = shared.compression.snapshot();
    let coding_labels: Vec<([(&str, &str); 1], u64)> = by_coding
        .iter()
        .map(|(c, n)| ([("encoding", *c)], *n))
        .collect();
    e.family(
        "weir_compression_responses_total",
        Kind::Counter,
        "Responses compressed on the fly, by content coding.",
        coding_labels.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_compression_bytes_total",
        Kind::Counter,
        "Bytes into and out of on-the-fly compression.",
        [
            (&[("direction", "in")][..], bytes_in as f64),
            (&[("direction", "out")][..], bytes_out as f64),
        ],
    );
    let events: Vec<([(&str, &str); 2], u64)> = runtime
        .policies
        .iter()
        .flat_map(|p| {
            p.events
                .snapshot()
                .map(move |(event, n)| ([("policy", &*p.name), ("event", event)], n))
        })
        .collect();
    e.family(
        "weir_policy_events_total",
        Kind::Counter,
        "Policy events beside decisions: store errors, JWKS refreshes, idempotent replays and conflicts, CORS preflights, auth-service errors.",
        events.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    let labels: Vec<([(&str, &str); 2], &weir_core::Histogram)> = runtime
        .upstreams()
        .iter()
        .flat_map(|u| {
            u.endpoints().iter().zip(u.states()).map(move |(ep, st)| {
                (
                    [("upstream", &*u.name), ("endpoint", &*ep.address)],
                    &st.attempts,
                )
            })
        })
        .collect();
    e.histogram(
        "weir_upstream_attempt_duration_seconds",
        "Each try to an endpoint, from sending to the response head (or failure).",
        labels.iter().map(|(l, h)| (&l[..], *h)),
    );
    e.finish()
}

/// Reload counts and the last reload's result.
fn reload_metrics(stats: &crate::control::ReloadStats) -> String {
    let mut e = Exposition::new();
    let none: &[(&str, &str)] = &[];
    e.family(
        "weir_config_reloads_total",
        Kind::Counter,
        "Config reloads applied.",
        [
            (
                &[("result", "ok")][..],
                stats.ok.load(Ordering::Relaxed) as f64,
            ),
            (
                &[("result", "error")][..],
                stats.failed.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    e.family(
        "weir_config_last_reload_success",
        Kind::Gauge,
        "1 when the last reload was applied, 0 when it was refused (the previous config serves).",
        [(
            none,
            if stats.last_ok.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )],
    );
    e.family(
        "weir_config_last_reload_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last reload attempt (0: none yet).",
        [(none, stats.last_at.load(Ordering::Relaxed) as f64)],
    );
    e.finish()
}

/// Connections, TLS, PROXY protocol and forward-proxy counters per listener.
fn listener_metrics(listeners: &[(Arc<str>, Arc<ListenerCounters>)]) -> String {
    let mut e = Exposition::new();
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
    let families: [Family<ListenerCounters>; 8] = [
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
    e.finish()
}

fn upstreams_json(stats: &[UpstreamStats]) -> String {
    let mut out =
        serde_json::to_string_pretty(&serde_json::json!({ "upstreams": upstreams_value(stats) }))
            .unwrap_or_default();
    out.push('\n');
    out
}

/// Every upstream and endpoint, as `/upstreams` and the dashboard show them.
fn upstreams_value(stats: &[UpstreamStats]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = stats
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": &*s.name,
                "panic": s.panic,
                "circuit_breaker": s.breaker.map(|b| match b {
                    BreakerState::Closed => "closed",
                    BreakerState::Open => "open",
                    BreakerState::HalfOpen => "half_open",
                }),
                "requests": s.requests,
                "retries": s.retries,
                "endpoints": s.endpoints.iter().map(|ep| serde_json::json!({
                    "address": &*ep.address,
                    "weight": ep.weight,
                    "in_service": ep.in_service,
                    "active_check_healthy": ep.active_healthy,
                    "ejected": ep.ejected,
                    "drained": ep.drained,
                    "latency_ewma_ms": ep.latency_ewma_ms,
                    "ejections": ep.ejections,
                    "in_flight": ep.in_flight,
                    "requests": ep.requests,
                    "failures": ep.failures,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
