//! The admin API's actions: reload, add, reweight, remove, drain or enable an endpoint, purge
//! a cache.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use super::context::Admin;
use super::reply::{error_response, json_response};

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
                "canaries_kept": summary.canaries_kept,
                "canaries_started": summary.canaries_started,
            }),
        ),
        // The same file:line:col diagnostics `weir check` prints.
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, "config_refused", e),
    }
}

/// Largest body of `POST /upstreams/{name}/endpoints`.
const MAX_ENDPOINT_BODY: usize = 64 * 1024;

fn not_found(what: &str) -> Response<Full<Bytes>> {
    error_response(StatusCode::NOT_FOUND, "not_found", what)
}

fn bad_request(error: String) -> Response<Full<Bytes>> {
    error_response(StatusCode::BAD_REQUEST, "bad_request", error)
}

fn upstream_named(admin: &Admin, name: &str) -> Option<std::sync::Arc<weir_upstream::Upstream>> {
    let runtime = admin.shared.runtime.load();
    runtime
        .upstreams()
        .iter()
        .find(|u| &*u.name == name)
        .cloned()
}

/// `POST /upstreams/{name}/endpoints` with `{"address": "HOST:PORT", "weight": N}`: adds the
/// endpoint (201), or sets the weight of the one already there (200). Lasts until the next
/// reload.
pub(super) async fn add_endpoint(
    path: &str,
    body: hyper::body::Incoming,
    admin: &Admin,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["upstreams", name, "endpoints"] = parts.as_slice() else {
        return not_found("not_found");
    };
    let Some(upstream) = upstream_named(admin, name) else {
        return not_found("unknown upstream");
    };
    let bytes = match http_body_util::Limited::new(body, MAX_ENDPOINT_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad_request(format!("cannot read the body: {e}")),
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Add {
        address: String,
        #[serde(default = "one")]
        weight: u32,
    }
    fn one() -> u32 {
        1
    }
    let add: Add = match serde_json::from_slice(&bytes) {
        Ok(a) => a,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"address\": \"HOST:PORT\", \"weight\": N}}: {e}"
            ))
        }
    };
    match upstream.add_endpoint(&add.address, add.weight) {
        Err(e) => bad_request(e.to_string()),
        Ok(diff) => {
            tracing::info!(upstream = %name, endpoint = %add.address, weight = add.weight, added = diff.added, "endpoint set by the admin API");
            let status = if diff.added > 0 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json_response(
                status,
                serde_json::json!({
                    "upstream": name,
                    "address": add.address,
                    "weight": add.weight,
                    "added": diff.added > 0,
                    "reweighted": diff.reweighted > 0,
                }),
            )
        }
    }
}

/// `DELETE /upstreams/{name}/endpoints/{address}`: removes the endpoint; it drains (requests
/// in flight finish). Lasts until the next reload.
pub(super) fn remove_endpoint(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["upstreams", name, "endpoints", address] = parts.as_slice() else {
        return not_found("not_found");
    };
    let address = percent_encoding::percent_decode_str(address).decode_utf8_lossy();
    let Some(upstream) = upstream_named(admin, name) else {
        return not_found("unknown upstream");
    };
    if !upstream.remove_endpoint(&address) {
        return not_found("unknown endpoint");
    }
    let in_flight: u32 = upstream
        .draining()
        .iter()
        .filter(|m| *m.endpoint.address == *address)
        .map(|m| m.state.in_flight())
        .sum();
    tracing::info!(upstream = %name, endpoint = %address, in_flight, "endpoint removed by the admin API");
    json_response(
        StatusCode::OK,
        serde_json::json!({"upstream": name, "address": address, "removed": true, "draining_in_flight": in_flight}),
    )
}

/// `POST /upstreams/{name}/endpoints/{endpoint}/drain` and `…/enable`.
pub(super) fn drain(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (name, endpoint, action) = match parts.as_slice() {
        ["upstreams", name, "endpoints", endpoint, action @ ("drain" | "enable")] => {
            (*name, *endpoint, *action)
        }
        _ => {
            return not_found(
                "no such endpoint: POST /upstreams/NAME/endpoints/ADDRESS/drain or /enable",
            )
        }
    };
    let endpoint = percent_encoding::percent_decode_str(endpoint).decode_utf8_lossy();
    let runtime = admin.shared.runtime.load();
    let Some(upstream) = runtime.upstreams().iter().find(|u| &*u.name == name) else {
        return not_found(&format!("unknown upstream `{name}`"));
    };
    if !upstream.set_drained(&endpoint, action == "drain") {
        return not_found(&format!("upstream `{name}` has no endpoint {endpoint}"));
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
        return not_found("no such endpoint: POST /caches/NAME/purge");
    };
    let runtime = admin.shared.runtime.load_full();
    let Some(cache) = runtime.caches.iter().find(|c| &*c.name == *name).cloned() else {
        return not_found(&format!("unknown cache `{name}`"));
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
        _ => return bad_request("say what to purge: url=, prefix=, tag= or all=1".to_owned()),
    };
    // Here at once (a disk tier's files off the async threads), then the fleet.
    let kind = match target.0 {
        "url" => "url",
        "prefix" => "prefix",
        "tag" => "tag",
        _ => "all",
    };
    let purged = cache
        .purge_everywhere(crate::cache::fleet::Order {
            kind,
            target: target.1,
            soft,
        })
        .await;
    tracing::info!(cache = %name, what = ?what, soft, purged, "purged by the admin API");
    json_response(
        StatusCode::OK,
        serde_json::json!({"cache": name, "purged": purged, "soft": soft}),
    )
}

/// `POST /canaries/{route}/promote | pause | resume | abort | restart`: an operator's action on
/// a route's canary plan (shared plans reach the fleet through Redis).
pub(super) async fn canary(path: &str, admin: &Admin) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["canaries", route, action] = parts.as_slice() else {
        return not_found(
            "no such endpoint: POST /canaries/ROUTE/promote, pause, resume, abort or restart",
        );
    };
    let Some(action) = crate::deploy::canary::Action::parse(action) else {
        return not_found(&format!(
            "unknown canary action `{action}`: promote, pause, resume, abort or restart"
        ));
    };
    let runtime = admin.shared.runtime.load_full();
    let Some(plan) = crate::deploy::plan_of(&runtime.splits(), route).cloned() else {
        return not_found(&format!("route `{route}` has no canary plan"));
    };
    match plan.act(action).await {
        Ok(state) => {
            tracing::info!(route, action = ?action, "canary plan changed by the admin API");
            json_response(
                StatusCode::OK,
                serde_json::json!({
                    "route": route,
                    "state": crate::deploy::canary::phase_word(state.phase),
                    "step": state.step,
                    "share_percent": f64::from(plan.share_ppm()) / 10_000.0,
                    "revision": state.rev,
                }),
            )
        }
        Err(why) => super::reply::error_response(StatusCode::CONFLICT, "canary_state", &why),
    }
}
