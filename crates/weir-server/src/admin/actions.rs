//! The admin API's actions: reload, drain or enable an endpoint, purge a cache.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::context::Admin;
use super::reply::json_response;

/// `POST /reload`: read the config file again and apply it.
pub(super) async fn reload(admin: &Admin) -> Response<Full<Bytes>> {
    match admin.control.reload_from_file().await {
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

/// `POST /upstreams/{name}/endpoints/{endpoint}/drain` and `…/enable`.
pub(super) fn drain(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
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
    let runtime = admin.shared.runtime.load();
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
pub(super) async fn purge(path: &str, query: &str, admin: &Admin) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["caches", name, "purge"] = parts.as_slice() else {
        return json_response(
            StatusCode::NOT_FOUND,
            serde_json::json!({"status": 404, "error": "not_found"}),
        );
    };
    let runtime = admin.shared.runtime.load_full();
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
