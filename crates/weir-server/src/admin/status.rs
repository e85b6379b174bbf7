//! What the admin API reports: `/status`, `/upstreams` and `/explain` against the running
//! config.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use weir_upstream::{BreakerState, UpstreamStats};

use super::context::Admin;
use super::reply::json_response;

/// `GET /status`: version, uptime, the config's fingerprint and the last reload.
pub(crate) fn status(admin: &Admin) -> serde_json::Value {
    let (shared, control) = (&admin.shared, &admin.control);
    let pending: Vec<&'static str> = control
        .pending_restart
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    let stats = &control.stats;
    let (ok, at) = (
        stats.last_ok.load(Ordering::Relaxed),
        stats.last_at.load(Ordering::Relaxed),
    );
    let error = stats
        .last_error
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": super::build_info().commit,
        "uptime_seconds": control.started_at.elapsed().as_secs(),
        "config_hash": format!("{:016x}", control.config_hash.load(Ordering::Relaxed)),
        "ready": !shared.draining.load(Ordering::Relaxed),
        // No reload yet: null, not a record dated 1970.
        "last_reload": if at == 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!({"ok": ok, "unix_time": at, "error": error})
        },
        "started_unix_time": control.started_unix_time,
        // Each ACME-managed certificate: where it came from, when it expires, the last and next
        // order and the last error.
        "certificates": shared.acme.load().iter().map(|m| m.status()).collect::<Vec<_>>(),
        // Keys of the config file that apply only after a restart, while they differ.
        "needs_restart": pending,
    })
}

/// `GET /explain?method=GET&url=/path&header=Name:%20value&listener=main`: `weir explain`
/// against the running config (JSON).
pub(super) fn explain(query: &str, admin: &Admin) -> Response<Full<Bytes>> {
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
                        return super::reply::error_response(
                            StatusCode::BAD_REQUEST,
                            "bad_request",
                            format!("header `{v}` is not `Name: value`"),
                        )
                    }
                }
            }
            _ => {}
        }
    }
    let Some(url) = url else {
        return super::reply::error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`url` is required, e.g. /explain?method=GET&url=/api/users",
        );
    };
    let runtime = admin.shared.runtime.load();
    match crate::explain::explain(&runtime, listener.as_deref(), &method, &url, &headers) {
        Ok(e) => json_response(StatusCode::OK, serde_json::to_value(&e).unwrap_or_default()),
        Err(e) => super::reply::error_response(StatusCode::BAD_REQUEST, "bad_request", e),
    }
}

pub(super) fn upstreams_json(stats: &[UpstreamStats]) -> String {
    let mut out =
        serde_json::to_string_pretty(&serde_json::json!({ "upstreams": upstreams_value(stats) }))
            .unwrap_or_default();
    out.push('\n');
    out
}

fn endpoint_value(ep: &weir_upstream::EndpointStats) -> serde_json::Value {
    serde_json::json!({
        "address": &*ep.address,
        "weight": ep.weight,
        "source": ep.source.as_str(),
        "in_service": ep.in_service,
        "awaiting_first_check": ep.awaiting_check,
        "active_check_healthy": ep.active_healthy,
        "ejected": ep.ejected,
        "drained": ep.drained,
        "latency_ewma_ms": ep.latency_ewma_ms,
        "ejections": ep.ejections,
        "in_flight": ep.in_flight,
        "requests": ep.requests,
        "failures": ep.failures,
    })
}

fn discovery_value(d: &weir_upstream::discovery::DiscoveryStats) -> serde_json::Value {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    serde_json::json!({
        "provider": d.provider,
        "target": d.target,
        "endpoints": d.endpoints,
        "refreshes": d.refreshes,
        "failures": d.failures,
        "last_success_unix": d.last_success.map(unix),
        "last_success": d.last_success.map(httpdate::fmt_http_date),
        "last_error": d.last_error,
        "empty_since_unix": d.empty_since.map(unix),
    })
}

/// Every upstream and endpoint, as `/upstreams` and the dashboard show them.
pub(super) fn upstreams_value(stats: &[UpstreamStats]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = stats
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": &*s.name,
                "panic": s.panic,
                "circuit_breaker": s.breaker.map(BreakerState::as_str),
                "requests": s.requests,
                "retries": s.retries,
                "discovery": s.discovery.as_ref().map(discovery_value),
                "endpoints": s.endpoints.iter().map(endpoint_value).collect::<Vec<_>>(),
                "draining": s.draining.iter().map(endpoint_value).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::Value::Array(list)
}
