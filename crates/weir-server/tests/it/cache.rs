//! The HTTP cache through real sockets (RFC 9111 shared cache, memory tier): misses stored and
//! hits served with `Age` and `Cache-Status`, what must not be stored, `Vary` variants side by
//! side, revalidation with a 304, stale-if-error, invalidation by unsafe methods, client
//! conditionals and `only-if-cached`, HEAD from a stored GET.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::*;

struct Scripted {
    origin: Origin,
    hits: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

async fn scripted() -> Scripted {
    let hits = Arc::new(AtomicUsize::new(0));
    let not_modified = Arc::new(AtomicUsize::new(0));
    let failing = Arc::new(AtomicBool::new(false));
    let (h, nm, f) = (hits.clone(), not_modified.clone(), failing.clone());
    let origin = origin(move |req: Request<Incoming>| {
        let (hits, not_modified, failing) = (h.clone(), nm.clone(), f.clone());
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            let path = req.uri().path().to_owned();
            let inm = req
                .headers()
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let lang = req
                .headers()
                .get("accept-language")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_owned();
            let b = Response::builder().header("content-type", "text/plain");
            let resp = match path.as_str() {
                "/fresh" => b
                    .header("cache-control", "max-age=60")
                    .header("etag", "\"a\"")
                    .body(full(format!("fresh-{n}"))),
                "/nostore" => b
                    .header("cache-control", "no-store")
                    .body(full(format!("n-{n}"))),
                "/private" => b
                    .header("cache-control", "private, max-age=60")
                    .body(full(format!("p-{n}"))),
                "/cookie" => b
                    .header("cache-control", "max-age=60")
                    .header("set-cookie", "s=1")
                    .body(full(format!("c-{n}"))),
                "/vary" => b
                    .header("cache-control", "max-age=60")
                    .header("vary", "Accept-Language")
                    .body(full(lang)),
                "/expires0" => b.header("expires", "0").body(full(format!("e-{n}"))),
                "/stale" if inm.as_deref() == Some("\"v1\"") => {
                    not_modified.fetch_add(1, Ordering::SeqCst);
                    b.status(304)
                        .header("etag", "\"v1\"")
                        .header("cache-control", "max-age=0")
                        .header("x-fresh", "yes")
                        .body(full(""))
                }
                "/stale" => b
                    .header("cache-control", "max-age=0")
                    .header("etag", "\"v1\"")
                    .body(full(format!("s-{n}"))),
                "/sie" | "/sie-strict" if failing.load(Ordering::SeqCst) => {
                    b.status(503).body(full("down"))
                }
                "/sie" => b
                    .header("cache-control", "max-age=0, stale-if-error=60")
                    .body(full(format!("sie-{n}"))),
                "/sie-strict" => b
                    .header(
                        "cache-control",
                        "max-age=0, stale-if-error=60, must-revalidate",
                    )
                    .body(full(format!("strict-{n}"))),
                _ => b.status(404).body(full("")),
            };
            resp.expect("response")
        }
    })
    .await;
    Scripted {
        origin,
        hits,
        not_modified,
        failing,
    }
}

fn cached_config(origin: std::net::SocketAddr) -> String {
    let top = "[[caches]]\nname = \"edge\"\nmax_memory = \"16MiB\"\n";
    guarded_config(origin, top, "", "", "cache = \"edge\"")
}

pub(crate) async fn get(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut r = client().get(gw.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.expect("request");
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.expect("body"))
}

/// The store is written when the body has gone by: wait until it has.
pub(crate) async fn settle(gw: &Gateway) {
    caches_settled(gw).await;
}

pub(crate) fn cache_status(h: &http::HeaderMap) -> String {
    h.get("cache-status")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_miss_is_stored_and_hits_are_served_with_age() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    let (status, h, body) = get(&gw, "/fresh", &[]).await;
    assert_eq!((status, body.as_str()), (200, "fresh-1"));
    assert_eq!(
        cache_status(&h),
        "edge; fwd=uri-miss; fwd-status=200; stored"
    );
    settle(&gw).await;
    let (status, h, body) = get(&gw, "/fresh", &[]).await;
    assert_eq!((status, body.as_str()), (200, "fresh-1"));
    assert!(
        cache_status(&h).starts_with("edge; hit; ttl="),
        "{}",
        cache_status(&h)
    );
    assert!(h.contains_key("age"));
    assert_eq!(h["etag"], "\"a\"");
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
    // A client conditional answered from the store; HEAD from the stored GET.
    let (status, h, _) = get(&gw, "/fresh", &[("if-none-match", "\"a\"")]).await;
    assert_eq!(status, 304);
    assert_eq!(h["etag"], "\"a\"");
    let r = client()
        .head(gw.url("/fresh"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "7");
    assert_eq!(
        s.hits.load(Ordering::SeqCst),
        1,
        "all answered from the store"
    );
    // A different query is a different URI.
    get(&gw, "/fresh?x=1", &[]).await;
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
    let lines = gw.log_lines().await;
    assert!(lines.iter().any(|l| l["cache"] == "hit"));
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_cache_requests_total{cache=\"edge\",result=\"hit\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric_value(&m, "weir_cache_objects{cache=\"edge\",tier=\"memory\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn what_must_not_be_stored_is_not() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    for (path, headers, detail) in [
        ("/nostore", vec![], "no-store"),
        ("/private", vec![], "private"),
        ("/cookie", vec![], "set-cookie"),
        (
            "/fresh",
            vec![("authorization", "Bearer x")],
            "authorization",
        ),
        (
            "/fresh",
            vec![("cache-control", "no-store")],
            "request-no-store",
        ),
    ] {
        let before = s.hits.load(Ordering::SeqCst);
        for _ in 0..2 {
            let (_, h, _) = get(&gw, path, &headers).await;
            assert!(
                cache_status(&h).ends_with(&format!("detail={detail}")),
                "{path}: {}",
                cache_status(&h)
            );
            settle(&gw).await;
        }
        assert_eq!(
            s.hits.load(Ordering::SeqCst),
            before + 2,
            "{path}: both forwarded"
        );
    }
    // Expires: 0 is stored-but-stale: every request goes to the origin.
    get(&gw, "/expires0", &[]).await;
    settle(&gw).await;
    let (_, h, body) = get(&gw, "/expires0", &[]).await;
    assert_eq!(body, "e-12");
    assert!(
        cache_status(&h).contains("fwd=stale"),
        "{}",
        cache_status(&h)
    );
}

#[tokio::test]
async fn vary_keeps_variants_side_by_side() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    for lang in ["en", "fr"] {
        let (_, _, body) = get(&gw, "/vary", &[("accept-language", lang)]).await;
        assert_eq!(body, lang);
        settle(&gw).await;
    }
    for lang in ["en", "fr"] {
        let (_, h, body) = get(&gw, "/vary", &[("accept-language", lang)]).await;
        assert_eq!(body, lang);
        assert!(cache_status(&h).contains("hit"));
    }
    let (_, h, body) = get(&gw, "/vary", &[("accept-language", "de")]).await;
    assert_eq!(body, "de");
    assert!(
        cache_status(&h).contains("fwd=vary-miss"),
        "{}",
        cache_status(&h)
    );
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn stale_responses_are_revalidated_and_freshened_by_304() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    let (_, _, body) = get(&gw, "/stale", &[]).await;
    assert_eq!(body, "s-1");
    settle(&gw).await;
    let (status, h, body) = get(&gw, "/stale", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "s-1"),
        "the stored body, confirmed by a 304"
    );
    assert_eq!(s.not_modified.load(Ordering::SeqCst), 1);
    assert!(
        cache_status(&h).contains("fwd=stale; fwd-status=304"),
        "{}",
        cache_status(&h)
    );
    assert_eq!(h["x-fresh"], "yes", "headers updated from the 304");
    // The client's own conditional goes through and comes back as the origin's 304.
    let (status, _, _) = get(&gw, "/stale", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, 304);
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_cache_requests_total{cache=\"edge\",result=\"revalidated\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn stale_if_error_serves_stale_unless_must_revalidate() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    for path in ["/sie", "/sie-strict"] {
        get(&gw, path, &[]).await;
    }
    settle(&gw).await;
    s.failing.store(true, Ordering::SeqCst);
    let (status, h, body) = get(&gw, "/sie", &[]).await;
    assert_eq!((status, body.as_str()), (200, "sie-1"));
    assert!(
        cache_status(&h).contains("detail=stale-if-error"),
        "{}",
        cache_status(&h)
    );
    let (status, _, body) = get(&gw, "/sie-strict", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (503, "down"),
        "must-revalidate: never stale"
    );
}

#[tokio::test]
async fn unsafe_methods_invalidate_and_only_if_cached_misses_are_504() {
    let s = scripted().await;
    let gw = gateway(&cached_config(s.origin.addr)).await;
    get(&gw, "/fresh", &[]).await;
    settle(&gw).await;
    get(&gw, "/fresh", &[]).await;
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
    let r = client()
        .post(gw.url("/fresh"))
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(cache_status(r.headers()).contains("fwd=method"));
    let (_, h, body) = get(&gw, "/fresh", &[]).await;
    assert_eq!(body, "fresh-3", "invalidated: fetched again");
    assert!(cache_status(&h).contains("fwd=uri-miss"));
    let (status, h, _) = get(&gw, "/never-seen", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, 504);
    assert!(cache_status(&h).contains("detail=only-if-cached"));
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
}

/// `n` GETs of `path` at once; their statuses, headers and bodies.
async fn concurrently(
    gw: &Arc<Gateway>,
    path: &'static str,
    n: usize,
) -> Vec<(u16, http::HeaderMap, String)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { get(&gw, path, &[]).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn concurrent_misses_of_one_key_reach_the_origin_once() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let slow = origin(move |req: Request<Incoming>| {
        let hits = h.clone();
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let cc = if req.uri().path() == "/private" {
                "private"
            } else {
                "max-age=60"
            };
            Response::builder()
                .header("cache-control", cc)
                .body(full(format!("body-{n}")))
                .expect("response")
        }
    })
    .await;
    let gw = Arc::new(gateway(&cached_config(slow.addr)).await);
    let results = concurrently(&gw, "/cold", 100).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "100 concurrent misses, one origin request"
    );
    assert!(results.iter().all(|(s, _, b)| *s == 200 && b == "body-1"));
    assert!(results
        .iter()
        .any(|(_, h, _)| cache_status(h).contains("collapsed")));
    // A response that turns out uncacheable releases the waiters at once: each goes forward.
    let results = concurrently(&gw, "/private", 10).await;
    assert_eq!(hits.load(Ordering::SeqCst), 11);
    assert!(results.iter().all(|(s, _, _)| *s == 200));
    let m = metrics(&gw).await;
    assert!(
        metric_value(
            &m,
            "weir_cache_stores_total{cache=\"edge\",result=\"collapsed\"}"
        )
        .unwrap_or(0.0)
            >= 99.0
    );
}

#[tokio::test]
async fn concurrent_revalidations_of_one_key_reach_the_origin_once() {
    let fills = Arc::new(AtomicUsize::new(0));
    let revalidations = Arc::new(AtomicUsize::new(0));
    let (f, r) = (fills.clone(), revalidations.clone());
    let slow = origin(move |req: Request<Incoming>| {
        let (fills, revalidations) = (f.clone(), r.clone());
        async move {
            let b = Response::builder()
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=60");
            if req.headers().contains_key("if-none-match") {
                revalidations.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                return b.status(304).body(full("")).expect("response");
            }
            fills.fetch_add(1, Ordering::SeqCst);
            // Stored already stale: fresh for 60 s, but 61 s old when it arrives.
            b.header("age", "61").body(full("v1")).expect("response")
        }
    })
    .await;
    let gw = Arc::new(gateway(&cached_config(slow.addr)).await);
    get(&gw, "/r", &[]).await;
    settle(&gw).await;
    let results = concurrently(&gw, "/r", 20).await;
    assert_eq!(fills.load(Ordering::SeqCst), 1);
    assert_eq!(
        revalidations.load(Ordering::SeqCst),
        1,
        "20 concurrent revalidations, one origin request"
    );
    assert!(results.iter().all(|(s, _, b)| *s == 200 && b == "v1"));
    // The 304 freshened the stored response.
    let (_, h, body) = get(&gw, "/r", &[]).await;
    assert!(
        cache_status(&h).starts_with("edge; hit"),
        "{}",
        cache_status(&h)
    );
    assert_eq!(body, "v1");
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_purge_method_is_refused_to_other_addresses() {
    let s = scripted().await;
    let top = "[[caches]]\nname = \"edge\"\npurge_method = { allow = [\"10.0.0.0/8\"] }\n";
    let gw = gateway(&guarded_config(
        s.origin.addr,
        top,
        "",
        "",
        "cache = \"edge\"",
    ))
    .await;
    get(&gw, "/fresh", &[]).await;
    settle(&gw).await;
    let r = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").expect("method"),
            gw.url("/fresh"),
        )
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 403);
    let (_, h, _) = get(&gw, "/fresh", &[]).await;
    assert!(cache_status(&h).contains("hit"));
}

#[tokio::test]
async fn the_admin_api_lists_each_cache_with_its_size_and_hit_ratio() {
    let s = scripted().await;
    let gw = gateway(&guarded_config(
        s.origin.addr,
        "[[caches]]\nname = \"edge\"\n",
        "",
        "",
        "cache = \"edge\"",
    ))
    .await;
    let admin = gw.admin_addr();
    let caches = || async move {
        client()
            .get(format!("http://{admin}/caches"))
            .send()
            .await
            .expect("caches")
            .json::<serde_json::Value>()
            .await
            .expect("json")["caches"][0]
            .clone()
    };
    let before = caches().await;
    assert_eq!(before["name"], "edge");
    assert!(before["hit_ratio"].is_null(), "no lookup yet: {before}");
    assert!(before["disk"].is_null(), "no disk tier: {before}");
    for _ in 0..4 {
        let r = client().get(gw.url("/fresh")).send().await.expect("get");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    let after = caches().await;
    assert_eq!(after["lookups"]["miss"], 1, "{after}");
    assert_eq!(after["lookups"]["hit"], 3, "{after}");
    assert_eq!(after["hit_ratio"], 0.75, "{after}");
    assert_eq!(after["memory"]["objects"], 1, "{after}");
    assert!(
        after["memory"]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{after}"
    );
}
