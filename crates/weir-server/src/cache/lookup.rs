//! The lookup before the forward: a stored variant that may be reused answers; a stale one is
//! served (`stale-while-revalidate`) or revalidated; a miss leads or waits for the key's fill.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CONTENT_LENGTH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use weir_cache::directives::RequestDirectives;
use weir_cache::reuse::{self, Reuse};
use weir_cache::status::{CacheStatus, Forward};
use weir_cache::store::{Lookup, Variant};
use weir_core::{ErrorKind, ProxyError, RequestCtx, ResponseBody};

use super::coalesce::Turn;
use super::serve::serve;
use super::{set_status, ttl, Begin, CacheHandle, Plan};

impl CacheHandle {
    /// Looks the request up; may answer it (waiting for a fill of the same key in flight).
    pub(crate) async fn begin(self: &Arc<Self>, ctx: &mut RequestCtx, parts: &mut Parts) -> Begin {
        let scheme = if ctx.tls { "https" } else { "http" };
        let host = ctx.host.as_deref().unwrap_or("").to_owned();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let primary = self.rules.primary(
            scheme,
            &host,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        );
        let mut plan = Plan {
            handle: self.clone(),
            uri: format!("{host}{path_and_query}"),
            primary,
            scheme,
            host,
            path_and_query,
            method: parts.method.clone(),
            request_headers: HeaderMap::new(),
            request_time: SystemTime::now(),
            fwd: Forward::Method,
            stale: None,
            added_validators: false,
            fill: None,
        };
        if parts.method.as_str() == "PURGE" {
            if let Some(rules) = &self.purge_method {
                ctx.cache = Some(weir_core::CacheOutcome::Purge);
                if !rules.admits(ctx.client_ip) {
                    // Through the one error mapping, like every refusal Weir makes itself.
                    let e = ProxyError::new(ErrorKind::PurgeDenied);
                    ctx.error = Some(e.kind);
                    return Begin::Serve(e.to_response(&ctx.request_id));
                }
                self.counters.purged.fetch_add(1, Ordering::Relaxed);
                let n = self.invalidate_uri(&plan.uri);
                if let Some(fleet) = &self.fleet {
                    fleet.publish(super::fleet::Order {
                        kind: "url",
                        target: plan.uri.clone(),
                        soft: false,
                    });
                }
                let mut resp = Response::new(ResponseBody::full(format!("{{\"purged\":{n}}}\n")));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return Begin::Serve(resp);
            }
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            ctx.cache = Some(weir_core::CacheOutcome::Bypass);
            if parts.method == Method::POST && self.store_post {
                plan.request_headers = parts.headers.clone();
            }
            return Begin::Forward(Box::new(plan));
        }
        plan.request_headers = parts.headers.clone();
        let req = RequestDirectives::parse(&parts.headers);
        let mut collapsed = false;
        loop {
            let now = SystemTime::now();
            let found = match self.lookup(&plan.primary, &parts.headers).await {
                Lookup::Found(v) => {
                    let decision =
                        reuse::decide(&v.freshness, &v.directives, &req, self.stale, now);
                    if decision == Reuse::StaleWhileRevalidate && !collapsed {
                        // RFC 5861 §3: serve the stored response now; one request in the
                        // background refreshes it (none when a fill of the key is in flight).
                        self.counters
                            .stale_while_revalidate
                            .fetch_add(1, Ordering::Relaxed);
                        ctx.cache = Some(weir_core::CacheOutcome::Stale);
                        let status = CacheStatus {
                            hit: true,
                            ttl: Some(ttl(&v.freshness, now)),
                            detail: Some("stale-while-revalidate"),
                            ..Default::default()
                        };
                        let resp =
                            serve(&v, &parts.method, &parts.headers, now, &status, &self.name);
                        let Turn::Lead(guard) = self.fills.turn(&plan.primary) else {
                            return Begin::Serve(resp);
                        };
                        let mut headers = parts.headers.clone();
                        for h in REFRESH_DROPS {
                            headers.remove(h);
                        }
                        plan.added_validators = add_validators(&mut headers, &v);
                        plan.request_headers = headers.clone();
                        plan.fwd = Forward::Stale;
                        plan.stale = Some((v, true));
                        plan.fill = Some(guard);
                        let mut refresh = http::Request::new(());
                        *refresh.uri_mut() = parts.uri.clone();
                        *refresh.version_mut() = parts.version;
                        *refresh.headers_mut() = headers;
                        return Begin::Refresh {
                            response: resp,
                            plan: Box::new(plan),
                            request: Box::new(refresh.into_parts().0),
                        };
                    }
                    if decision == Reuse::Fresh {
                        self.counters.hit.fetch_add(1, Ordering::Relaxed);
                        ctx.cache = Some(weir_core::CacheOutcome::Hit);
                        let status = CacheStatus {
                            hit: true,
                            ttl: Some(ttl(&v.freshness, now)),
                            collapsed,
                            ..Default::default()
                        };
                        return Begin::Serve(serve(
                            &v,
                            &parts.method,
                            &parts.headers,
                            now,
                            &status,
                            &self.name,
                        ));
                    }
                    plan.fwd = if req.no_cache || req.max_age.is_some() || req.min_fresh.is_some() {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    // Background refresh is not built yet: stale-while-revalidate revalidates in
                    // line (always allowed); the origin allowed this staleness, so a failure
                    // may still be answered with it.
                    let sie = match decision {
                        Reuse::Revalidate { stale_if_error } => stale_if_error,
                        _ => true,
                    };
                    Some((v, sie))
                }
                Lookup::UriMiss => {
                    plan.fwd = Forward::UriMiss;
                    None
                }
                Lookup::VaryMiss => {
                    plan.fwd = Forward::VaryMiss;
                    None
                }
            };
            // Not answerable from the store: one request per key goes forward, the others
            // wait for it (once, for at most lock_timeout) and look again.
            if !collapsed && !req.only_if_cached && parts.method == Method::GET {
                match self.fills.turn(&plan.primary) {
                    Turn::Wait(mut rx) => {
                        self.counters.collapsed.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::time::timeout(self.lock_timeout, rx.changed()).await;
                        collapsed = true;
                        continue;
                    }
                    Turn::Lead(guard) => plan.fill = Some(guard),
                }
            }
            if parts.method == Method::GET && !req.no_store {
                // The whole object is fetched so that it can be stored; this client gets all of
                // it (a server may ignore Range), later ones their ranges from the store.
                if parts.headers.remove(RANGE).is_some() {
                    parts.headers.remove(IF_RANGE);
                }
            }
            if let Some((v, sie)) = found {
                if !has_validators(&parts.headers) {
                    plan.added_validators = add_validators(&mut parts.headers, &v);
                }
                plan.stale = Some((v, sie));
            }
            break;
        }
        if req.only_if_cached {
            ctx.cache = Some(weir_core::CacheOutcome::Miss);
            let mut resp = Response::new(ResponseBody::Empty);
            *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            let status = CacheStatus {
                fwd: Some(plan.fwd),
                detail: Some("only-if-cached"),
                ..Default::default()
            };
            set_status(resp.headers_mut(), &status, &self.name);
            return Begin::Serve(resp);
        }
        Begin::Forward(Box::new(plan))
    }
}

/// Request fields a background refresh does not copy from the request that triggered it:
/// the client's own conditionals and ranges are about its copy, not the cache's.
const REFRESH_DROPS: [HeaderName; 5] = [
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::RANGE,
];

/// Adds the stored response's validator (its `ETag`, else its `Last-Modified`) to a request
/// going forward; whether it added one.
fn add_validators(h: &mut HeaderMap, v: &Variant) -> bool {
    if let Some(tag) = v.headers.get(http::header::ETAG) {
        h.insert(IF_NONE_MATCH, tag.clone());
        true
    } else if let Some(lm) = v.headers.get(http::header::LAST_MODIFIED) {
        h.insert(IF_MODIFIED_SINCE, lm.clone());
        true
    } else {
        false
    }
}

fn has_validators(h: &HeaderMap) -> bool {
    h.contains_key(IF_NONE_MATCH) || h.contains_key(IF_MODIFIED_SINCE)
}
