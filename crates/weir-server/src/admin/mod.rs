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
use weir_upstream::UpstreamStats;

use crate::control::Control;
use crate::shared::Shared;
use context::Admin;
use reply::{asset_response, json_response};

mod actions;
pub(crate) mod auth;
mod context;
mod dashboard;
mod reply;
mod status;

/// Serves the admin API on `socket` until `stop`, with the dashboard's sampler beside it
/// (the control plane's [`AdminServer`](crate::control::AdminServer)).
pub(crate) fn serve(
    socket: TcpListener,
    shared: Arc<Shared>,
    control: Arc<Control>,
    stop: CancellationToken,
) -> futures_util::future::BoxFuture<'static, ()> {
    let admin = Arc::new(Admin { shared, control });
    tokio::spawn(dashboard::sample_loop(admin.clone(), stop.clone()));
    Box::pin(accept_loop(socket, admin, stop, TaskTracker::new()))
}

async fn accept_loop(
    listener: TcpListener,
    admin: Arc<Admin>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = admin.shared.runtime.load().admin_limits;
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
        let admin = admin.clone();
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
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(route(req, &admin).await) }
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
async fn route(req: Request<Incoming>, admin: &Admin) -> Response<Full<Bytes>> {
    let (req, body) = req.into_parts();
    let req = &Request::from_parts(req, ());
    if req.method() == Method::GET {
        if let Some((content_type, body)) = dashboard::asset(req.uri().path()) {
            return asset_response(content_type, body);
        }
    }
    let shared = &admin.shared;
    if let Some(token) = &shared.runtime.load().admin_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !auth::constant_time_eq(&auth::token_digest(given.as_bytes()), token) {
            let mut resp = reply::error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token: Authorization: Bearer <token>",
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
        (&Method::POST, "/reload") => actions::reload(admin).await,
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
        (&Method::GET, "/status") => json_response(StatusCode::OK, status::status(admin)),
        (&Method::GET, "/dashboard.json") => json_response(
            StatusCode::OK,
            dashboard::data(admin, status::upstreams_value(&shared.upstream_stats())),
        ),
        (&Method::GET, "/explain") => status::explain(req.uri().query().unwrap_or(""), admin),
        (&Method::GET, "/config") => {
            json_response(StatusCode::OK, admin.control.effective_config().await)
        }
        (&Method::GET, "/caches") => json_response(
            StatusCode::OK,
            crate::cache::metrics::summary(&shared.runtime.load().caches),
        ),
        (&Method::GET, "/routes") => json_response(
            StatusCode::OK,
            crate::explain::routes(&shared.runtime.load()),
        ),
        (&Method::POST, p) if p.starts_with("/upstreams/") && p.ends_with("/endpoints") => {
            actions::add_endpoint(p, body, admin).await
        }
        (&Method::DELETE, p) if p.starts_with("/upstreams/") => actions::remove_endpoint(p, admin),
        (&Method::POST, p) if p.starts_with("/upstreams/") => actions::drain(p, admin),
        (&Method::GET, "/canaries") => json_response(StatusCode::OK, {
            let rt = shared.runtime.load();
            crate::deploy::summary(&rt.splits(), &rt.mirrors())
        }),
        (&Method::POST, p) if p.starts_with("/canaries/") => actions::canary(p, admin).await,
        (&Method::POST, p) if p.starts_with("/caches/") => {
            actions::purge(p, req.uri().query().unwrap_or(""), admin).await
        }
        _ => handle(req, admin),
    }
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
    ("GET", "/caches"),
    ("GET", "/explain"),
    ("GET", "/canaries"),
    ("GET", "/dashboard.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/reload"),
    ("POST", "/upstreams/{name}/endpoints"),
    ("DELETE", "/upstreams/{name}/endpoints/{address}"),
    ("POST", "/upstreams/{name}/endpoints/{address}/drain"),
    ("POST", "/upstreams/{name}/endpoints/{address}/enable"),
    ("POST", "/caches/{name}/purge"),
    ("POST", "/canaries/{route}/{action}"),
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
            serde_json::json!({"status": 405, "error": "method_not_allowed", "message": format!("{path} answers {}", allowed.join(", ")), "allow": allowed}),
        );
        if let Ok(v) = http::HeaderValue::from_str(&allowed.join(", ")) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        return resp;
    }
    let endpoints: Vec<String> = ENDPOINTS.iter().map(|(m, p)| format!("{m} {p}")).collect();
    json_response(
        StatusCode::NOT_FOUND,
        serde_json::json!({"status": 404, "error": "not_found", "message": format!("no admin endpoint {method} {path}"), "endpoints": endpoints}),
    )
}

fn handle(req: &Request<()>, admin: &Admin) -> Response<Full<Bytes>> {
    let stats = admin.shared.upstream_stats();
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, metrics(admin, &stats)),
        (&Method::GET, "/upstreams") => (
            StatusCode::OK,
            "application/json",
            status::upstreams_json(&stats),
        ),
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

/// `GET /metrics`: each owner writes its own samples; this only puts them together.
/// What the binary knows of its own build (commit, rustc), for `weir_build_info` and
/// `/status`; the library alone knows only its version.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub commit: &'static str,
    pub rustc: &'static str,
}

static BUILD_INFO: std::sync::OnceLock<BuildInfo> = std::sync::OnceLock::new();

/// Records the running build's facts; the first call wins.
pub fn set_build_info(info: BuildInfo) {
    let _ = BUILD_INFO.set(info);
}

pub(crate) fn build_info() -> BuildInfo {
    BUILD_INFO.get().copied().unwrap_or(BuildInfo {
        commit: "unknown",
        rustc: "unknown",
    })
}

fn metrics(admin: &Admin, upstreams: &[UpstreamStats]) -> String {
    let shared = &admin.shared;
    let mut e = Exposition::new();
    weir_upstream::metrics::render(upstreams, &mut e);
    weir_upstream::metrics::render_discovery(upstreams, &mut e);
    shared.metrics.render(&mut e);
    let none: &[(&str, &str)] = &[];
    e.family(
        "weir_requests_in_flight",
        Kind::Gauge,
        "Requests being served now.",
        [(none, shared.in_flight.load(Ordering::Relaxed) as f64)],
    );
    shared.budget.render(&mut e);
    shared.access_log.render(&mut e);
    e.family(
        "weir_build_info",
        Kind::Gauge,
        "Always 1; the running build in its labels.",
        [(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", build_info().commit),
                ("rustc", build_info().rustc),
            ][..],
            1.0,
        )],
    );
    weir_observe::process::render(&mut e, admin.control.started_unix_time);
    let runtime = shared.runtime.load();
    weir_policy::render_metrics(&runtime.policies, &mut e);
    crate::cache::metrics::render(&runtime.caches, &mut e);
    crate::deploy::render(&runtime.splits(), &runtime.mirrors(), &mut e);
    crate::acme::render(&shared.acme.load(), &mut e);
    shared.compression.render(&mut e);
    weir_upstream::metrics::render_attempts(runtime.upstreams(), &mut e);
    crate::edge::counters::render(&shared.listeners.load(), &mut e);
    admin.control.stats.render(&mut e);
    e.finish()
}
