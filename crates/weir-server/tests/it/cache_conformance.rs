//! RFC 9111 (with RFC 5861, 9110, 9211, 9213) conformance of the shared cache, one test per
//! requirement of the cache issue, through real sockets: a client, an in-process Weir with a
//! cache on its one route, and an in-process origin whose answers each test scripts and
//! whose received requests each test inspects. Section numbers are RFC 9111's unless named.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use weir_testkit::Body;

use crate::common::*;

/// A request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: HeaderMap,
}

/// The origin's answer to the `n`th request (from 1) for a target.
type Script = dyn Fn(&Seen, usize) -> Response<Body> + Send + Sync;

struct Rig {
    gw: Gateway,
    origin: Origin,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response<Body> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "text/plain");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(full(body.to_owned())).expect("response")
}

/// An origin script answering 200 with `headers` and the body `v1`, `v2`, … per target.
fn versions(
    headers: &'static [(&'static str, &'static str)],
) -> impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static {
    move |_, n| reply(200, headers, &format!("v{n}"))
}

fn cache_top(extra: &str) -> String {
    format!("[[caches]]\nname = \"edge\"\nmax_memory = \"16MiB\"\n{extra}\n")
}

async fn scripted_origin(script: Arc<Script>, seen: Arc<Mutex<Vec<Seen>>>) -> Origin {
    origin(move |req: Request<Incoming>| {
        let (script, seen) = (script.clone(), seen.clone());
        async move {
            let s = Seen {
                method: req.method().to_string(),
                target: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned(),
                headers: req.headers().clone(),
            };
            let n = {
                let mut all = seen.lock().expect("seen");
                all.push(s.clone());
                all.iter().filter(|x| x.target == s.target).count()
            };
            script(&s, n)
        }
    })
    .await
}

/// Weir with `cache = "edge"` (settings `extra`, route keys `route`) before a scripted origin.
async fn rig_with(
    extra: &str,
    route: &str,
    script: impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static,
) -> Rig {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let origin = scripted_origin(Arc::new(script), seen.clone()).await;
    let route = format!("cache = \"edge\"\n{route}");
    let gw = gateway(&guarded_config(
        origin.addr,
        &cache_top(extra),
        "",
        "",
        &route,
    ))
    .await;
    Rig { gw, origin, seen }
}

async fn rig(
    extra: &str,
    script: impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static,
) -> Rig {
    rig_with(extra, "", script).await
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn cache_status(&self) -> &str {
        self.header("cache-status")
    }
    fn hit(&self) -> bool {
        self.cache_status().starts_with("edge; hit")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Rig {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        let m = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = client().request(m, self.gw.url(path));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let r = r.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        // The store is written once the body has gone by: wait until every fill is done.
        caches_settled(&self.gw).await;
        Got {
            status,
            headers,
            body,
        }
    }
    async fn get(&self, path: &str) -> Got {
        self.send("GET", path, &[]).await
    }
    /// Requests the origin received for `target`.
    fn seen(&self, target: &str) -> Vec<Seen> {
        let all = self.seen.lock().expect("seen");
        all.iter().filter(|s| s.target == target).cloned().collect()
    }
    fn hits(&self, target: &str) -> usize {
        self.seen(target).len()
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

fn days_ago(d: u64) -> String {
    http_date(SystemTime::now() - Duration::from_secs(d * 86_400))
}

// ---- §3 Storing responses ----

#[tokio::test]
async fn s3_get_with_explicit_freshness_is_stored_and_reused() {
    let r = rig("", versions(&[("cache-control", "max-age=60")])).await;
    let a = r.get("/a").await;
    let b = r.get("/a").await;
    assert_eq!((a.body.as_str(), b.body.as_str()), ("v1", "v1"));
    assert!(a.cache_status().contains("fwd=uri-miss") && a.cache_status().contains("stored"));
    assert!(b.hit(), "{}", b.cache_status());
    assert_eq!(r.hits("/a"), 1);
}

#[tokio::test]
async fn s3_head_is_answered_from_a_stored_get() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "hello")
    })
    .await;
    r.get("/h").await;
    let h = r.send("HEAD", "/h", &[]).await;
    assert_eq!(h.status, 200);
    assert!(h.hit());
    assert_eq!(h.header("content-length"), "5");
    assert_eq!(h.body, "");
    assert_eq!(r.hits("/h"), 1);
}

#[tokio::test]
async fn s3_post_is_not_stored_by_default() {
    let r = rig("", |_, n| {
        reply(
            200,
            &[("cache-control", "max-age=60"), ("content-location", "/p")],
            &format!("p{n}"),
        )
    })
    .await;
    r.send("POST", "/p", &[]).await;
    let g = r.get("/p").await;
    assert!(!g.hit());
    assert_eq!(r.hits("/p"), 2);
}

#[tokio::test]
async fn s3_post_with_freshness_and_own_content_location_is_stored_when_configured() {
    // RFC 9110 §9.3.3: reusable for a later GET of the target URI.
    let r = rig("store_post = true", |s, n| {
        let loc = if s.target == "/p" { "/p" } else { "/elsewhere" };
        reply(
            200,
            &[("cache-control", "max-age=60"), ("content-location", loc)],
            &format!("{}{n}", s.method),
        )
    })
    .await;
    assert_eq!(r.send("POST", "/p", &[]).await.body, "POST1");
    let g = r.get("/p").await;
    assert!(g.hit(), "{}", g.cache_status());
    assert_eq!(g.body, "POST1");
    r.send("POST", "/q", &[]).await;
    assert!(
        !r.get("/q").await.hit(),
        "Content-Location names another URI"
    );
}

#[tokio::test]
async fn s3_heuristically_cacheable_statuses_are_stored_others_need_explicit_freshness() {
    let lm = days_ago(10);
    let r = rig("", move |s, _| match s.target.as_str() {
        "/404" => reply(404, &[("last-modified", &lm)], "gone"),
        "/500" => reply(500, &[("last-modified", &lm)], "err"),
        _ => reply(201, &[("last-modified", &lm)], "made"),
    })
    .await;
    for (path, stored) in [("/404", true), ("/500", false), ("/201", false)] {
        r.get(path).await;
        assert_eq!(r.get(path).await.hit(), stored, "{path}");
    }
}

#[tokio::test]
async fn s3_no_store_is_never_stored() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "no-store, max-age=60")], "x")
    })
    .await;
    let a = r.get("/n").await;
    assert!(a.cache_status().contains("detail=no-store"));
    assert!(!r.get("/n").await.hit());
}

#[tokio::test]
async fn s3_private_is_not_stored_by_a_shared_cache() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "private, max-age=60")], "x")
    })
    .await;
    r.get("/p").await;
    assert!(!r.get("/p").await.hit());
    assert_eq!(r.hits("/p"), 2);
}

#[tokio::test]
async fn s3_5_authorization_needs_public_s_maxage_or_must_revalidate() {
    let r = rig("", |s, _| {
        let cc = match s.target.as_str() {
            "/public" => "public, max-age=60",
            "/smax" => "s-maxage=60",
            "/mr" => "must-revalidate, max-age=60",
            _ => "max-age=60",
        };
        reply(200, &[("cache-control", cc)], "secret")
    })
    .await;
    let auth = [("authorization", "Bearer t")];
    for (path, stored) in [
        ("/plain", false),
        ("/public", true),
        ("/smax", true),
        ("/mr", true),
    ] {
        r.send("GET", path, &auth).await;
        assert_eq!(r.send("GET", path, &auth).await.hit(), stored, "{path}");
    }
}

#[tokio::test]
async fn s4_1_vary_star_is_never_stored() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "max-age=60"), ("vary", "*")], "x")
    })
    .await;
    assert!(r.get("/v").await.cache_status().contains("vary-star"));
    assert!(!r.get("/v").await.hit());
}

#[tokio::test]
async fn s5_2_2_3_must_understand_stores_understood_statuses_despite_no_store() {
    let r = rig("", |s, _| {
        let status = if s.target == "/ok" { 200 } else { 299 };
        reply(
            status,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            "x",
        )
    })
    .await;
    r.get("/ok").await;
    assert!(r.get("/ok").await.hit());
    r.get("/odd").await;
    assert!(!r.get("/odd").await.hit());
}

#[tokio::test]
async fn set_cookie_responses_follow_the_configured_policy() {
    let script = |_: &Seen, n: usize| {
        reply(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "s=1")],
            &format!("c{n}"),
        )
    };
    // Default: not stored.
    let r = rig("", script).await;
    r.get("/c").await;
    assert!(!r.get("/c").await.hit());
    // strip: stored without the cookie; the filling client still got it.
    let r = rig("set_cookie = \"strip\"", script).await;
    let first = r.get("/c").await;
    assert_eq!(first.header("set-cookie"), "s=1");
    let second = r.get("/c").await;
    assert!(second.hit());
    assert!(second.headers.get("set-cookie").is_none());
    // store: stored with it.
    let r = rig("set_cookie = \"store\"", script).await;
    r.get("/c").await;
    let again = r.get("/c").await;
    assert!(again.hit());
    assert_eq!(again.header("set-cookie"), "s=1");
}

// ---- §4.2 Freshness ----

#[tokio::test]
async fn s4_2_1_s_maxage_wins_over_max_age_which_wins_over_expires() {
    let past = days_ago(1);
    let future = http_date(SystemTime::now() + Duration::from_secs(3600));
    let r = rig("", move |s, _| match s.target.as_str() {
        "/smax0" => reply(200, &[("cache-control", "s-maxage=0, max-age=600")], "x"),
        "/maxage-over-expires" => reply(
            200,
            &[("cache-control", "max-age=600"), ("expires", &past)],
            "x",
        ),
        _ => reply(
            200,
            &[("cache-control", "max-age=0"), ("expires", &future)],
            "x",
        ),
    })
    .await;
    r.get("/smax0").await;
    assert!(!r.get("/smax0").await.hit(), "s-maxage=0 makes it stale");
    r.get("/maxage-over-expires").await;
    assert!(r.get("/maxage-over-expires").await.hit());
    r.get("/maxage0-expires-future").await;
    assert!(!r.get("/maxage0-expires-future").await.hit());
}

#[tokio::test]
async fn s5_3_expires_counts_from_date_and_an_invalid_one_means_stale() {
    let date = http_date(SystemTime::now());
    let later = http_date(SystemTime::now() + Duration::from_secs(600));
    let r = rig("", move |s, _| match s.target.as_str() {
        "/valid" => reply(200, &[("date", &date), ("expires", &later)], "x"),
        "/zero" => reply(200, &[("expires", "0")], "x"),
        _ => reply(200, &[("expires", "not a date")], "x"),
    })
    .await;
    r.get("/valid").await;
    let v = r.get("/valid").await;
    assert!(v.hit());
    let ttl: i64 = v
        .cache_status()
        .split("ttl=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|t| t.trim().parse().ok())
        .expect("ttl");
    assert!((590..=600).contains(&ttl), "{ttl}");
    for p in ["/zero", "/garbage"] {
        r.get(p).await;
        assert!(!r.get(p).await.hit(), "{p}");
    }
}

#[tokio::test]
async fn s4_2_3_received_age_is_honoured_and_age_is_sent_on_hits() {
    let r = rig("", |s, _| {
        let age = if s.target == "/young" { "50" } else { "100" };
        reply(200, &[("cache-control", "max-age=60"), ("age", age)], "x")
    })
    .await;
    r.get("/young").await;
    let hit = r.get("/young").await;
    assert!(hit.hit());
    let age: u64 = hit.header("age").parse().expect("Age");
    assert!((50..=60).contains(&age), "{age}");
    r.get("/old").await;
    assert!(!r.get("/old").await.hit(), "arrived already stale");
}

#[tokio::test]
async fn s4_2_2_heuristic_freshness_only_without_explicit_freshness() {
    let lm = days_ago(10);
    let r = rig("", move |s, _| match s.target.as_str() {
        "/heuristic" => reply(200, &[("last-modified", &lm)], "x"),
        _ => reply(
            200,
            &[("last-modified", &lm), ("cache-control", "max-age=0")],
            "x",
        ),
    })
    .await;
    r.get("/heuristic").await;
    let h = r.get("/heuristic").await;
    assert!(h.hit(), "10% of 10 days");
    r.get("/explicit").await;
    assert!(!r.get("/explicit").await.hit(), "explicit max-age=0 wins");
}

#[tokio::test]
async fn s5_2_2_4_no_cache_responses_are_revalidated_every_time() {
    let r = rig("", |s, _| {
        if s.headers.get("if-none-match").is_some() {
            return reply(304, &[("etag", "\"e\"")], "");
        }
        reply(
            200,
            &[
                ("cache-control", "no-cache, max-age=600"),
                ("etag", "\"e\""),
            ],
            "body",
        )
    })
    .await;
    r.get("/nc").await;
    let second = r.get("/nc").await;
    assert_eq!(second.body, "body", "served from the store after a 304");
    assert_eq!(r.hits("/nc"), 2);
    assert_eq!(
        r.seen("/nc")[1].headers["if-none-match"],
        "\"e\"",
        "conditional"
    );
}

#[tokio::test]
async fn s5_2_2_2_must_revalidate_is_never_served_stale_on_error() {
    let r = rig("grace = \"60s\"", |_, n| {
        if n > 1 {
            return reply(503, &[], "down");
        }
        reply(
            200,
            &[(
                "cache-control",
                "max-age=0, must-revalidate, stale-if-error=60",
            )],
            "x",
        )
    })
    .await;
    r.get("/mr").await;
    assert_eq!(r.get("/mr").await.status, 503);
}

// ---- §5.2.1 Request directives ----

#[tokio::test]
async fn s5_2_1_request_max_age_and_no_cache_go_forward() {
    let r = rig("", versions(&[("cache-control", "max-age=600")])).await;
    r.get("/r").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for cc in ["max-age=0", "no-cache"] {
        let g = r.send("GET", "/r", &[("cache-control", cc)]).await;
        assert!(!g.hit(), "{cc}");
        assert!(
            g.cache_status().contains("fwd=request"),
            "{}",
            g.cache_status()
        );
    }
    assert!(r
        .send("GET", "/r", &[("cache-control", "max-age=600")])
        .await
        .hit());
}

#[tokio::test]
async fn s5_2_1_2_request_max_stale_accepts_a_stale_response() {
    let r = rig(
        "",
        versions(&[("cache-control", "max-age=1"), ("age", "5")]),
    )
    .await;
    r.get("/s").await;
    let g = r
        .send("GET", "/s", &[("cache-control", "max-stale=60")])
        .await;
    assert!(g.hit(), "{}", g.cache_status());
    assert_eq!(g.body, "v1");
    assert!(
        !r.get("/s").await.hit(),
        "without max-stale it goes forward"
    );
}

#[tokio::test]
async fn s5_2_1_3_request_min_fresh_goes_forward_when_not_fresh_enough() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "x")
    })
    .await;
    r.get("/m").await;
    assert!(r
        .send("GET", "/m", &[("cache-control", "min-fresh=10")])
        .await
        .hit());
    assert!(!r
        .send("GET", "/m", &[("cache-control", "min-fresh=120")])
        .await
        .hit());
}

#[tokio::test]
async fn s5_2_1_5_request_no_store_is_not_stored() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "x")
    })
    .await;
    let a = r.send("GET", "/ns", &[("cache-control", "no-store")]).await;
    assert!(a.cache_status().contains("request-no-store"));
    assert!(!r.get("/ns").await.hit());
}

#[tokio::test]
async fn s5_2_1_7_only_if_cached_is_504_on_a_miss_and_a_hit_when_stored() {
    let r = rig("", |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "x")
    })
    .await;
    let miss = r
        .send("GET", "/o", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(miss.status, 504);
    assert_eq!(r.hits("/o"), 0, "the origin is not asked");
    r.get("/o").await;
    let hit = r
        .send("GET", "/o", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(hit.status, 200);
}

// ---- §4.3 Validation ----

#[tokio::test]
async fn s4_3_1_stale_responses_are_revalidated_with_if_modified_since() {
    let lm = days_ago(3);
    // The date the origin sent, not one computed again later (a second may have passed).
    let sent = lm.clone();
    let r = rig("", move |s, _| {
        if s.headers.get("if-modified-since").is_some() {
            return reply(304, &[("cache-control", "max-age=60")], "");
        }
        reply(
            200,
            &[("cache-control", "max-age=0"), ("last-modified", &lm)],
            "body",
        )
    })
    .await;
    r.get("/lm").await;
    let second = r.get("/lm").await;
    assert_eq!(second.body, "body");
    assert_eq!(
        r.seen("/lm")[1].headers["if-modified-since"].to_str().ok(),
        Some(sent.as_str())
    );
    assert!(
        r.get("/lm").await.hit(),
        "the 304's max-age=60 freshened it"
    );
}

#[tokio::test]
async fn s4_3_4_a_304_updates_stored_headers_but_not_the_body() {
    let r = rig("", |s, _| {
        if s.headers.get("if-none-match").is_some() {
            return reply(
                304,
                &[
                    ("etag", "\"v\""),
                    ("cache-control", "max-age=60"),
                    ("x-version", "2"),
                ],
                "",
            );
        }
        reply(
            200,
            &[
                ("etag", "\"v\""),
                ("cache-control", "max-age=0"),
                ("x-version", "1"),
            ],
            "original",
        )
    })
    .await;
    r.get("/u").await;
    let fresh = r.get("/u").await;
    assert_eq!(
        (fresh.body.as_str(), fresh.header("x-version")),
        ("original", "2")
    );
    let hit = r.get("/u").await;
    assert!(hit.hit());
    assert_eq!(
        (hit.body.as_str(), hit.header("x-version")),
        ("original", "2")
    );
}

#[tokio::test]
async fn s4_3_2_client_conditionals_are_answered_from_the_store() {
    let lm = days_ago(2);
    let r = rig("", move |_, _| {
        reply(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"t\""),
                ("last-modified", &lm),
            ],
            "x",
        )
    })
    .await;
    r.get("/c").await;
    let inm = r.send("GET", "/c", &[("if-none-match", "\"t\"")]).await;
    assert_eq!(inm.status, 304);
    assert_eq!(inm.header("etag"), "\"t\"");
    let ims = r
        .send("GET", "/c", &[("if-modified-since", &days_ago(1))])
        .await;
    assert_eq!(ims.status, 304);
    let other = r.send("GET", "/c", &[("if-none-match", "\"other\"")]).await;
    assert_eq!((other.status, other.body.as_str()), (200, "x"));
    assert_eq!(r.hits("/c"), 1);
}

// ---- §4.1 Vary ----

#[tokio::test]
async fn s4_1_variants_of_one_url_live_side_by_side() {
    let r = rig("", |s, _| {
        let lang = s
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        reply(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            &lang,
        )
    })
    .await;
    for lang in ["en", "fr", "en", "fr"] {
        let g = r.send("GET", "/v", &[("accept-language", lang)]).await;
        assert_eq!(g.body, lang);
    }
    assert_eq!(r.hits("/v"), 2);
    let third = r.send("GET", "/v", &[("accept-language", "de")]).await;
    assert!(third.cache_status().contains("fwd=vary-miss"));
}

#[tokio::test]
async fn s4_1_accept_encoding_values_are_normalised_before_matching() {
    let r = rig(
        "",
        versions(&[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]),
    )
    .await;
    r.send("GET", "/e", &[("accept-encoding", "gzip, br")])
        .await;
    for same in [
        "br,gzip",
        "BR , gzip",
        "gzip;q=0.5, br, identity",
        "br, gzip, zstd;q=0",
    ] {
        let g = r.send("GET", "/e", &[("accept-encoding", same)]).await;
        assert!(g.hit(), "{same}: {}", g.cache_status());
    }
    assert!(!r
        .send("GET", "/e", &[("accept-encoding", "gzip")])
        .await
        .hit());
}

// ---- §4.4 Invalidation ----

#[tokio::test]
async fn s4_4_unsafe_success_invalidates_the_url_and_same_origin_locations() {
    let r = rig("", |s, n| {
        if s.method == "POST" {
            return reply(
                201,
                &[
                    ("location", "/item"),
                    ("content-location", "http://elsewhere.test/other"),
                ],
                "",
            );
        }
        reply(200, &[("cache-control", "max-age=60")], &format!("v{n}"))
    })
    .await;
    for p in ["/list", "/item", "/other"] {
        r.get(p).await;
    }
    r.send("POST", "/list", &[]).await;
    assert!(!r.get("/list").await.hit(), "target URI");
    assert!(!r.get("/item").await.hit(), "same-origin Location");
    assert!(
        r.get("/other").await.hit(),
        "another origin's URI is not touched"
    );
}

#[tokio::test]
async fn s4_4_failed_unsafe_requests_do_not_invalidate() {
    let r = rig("", |s, _| {
        if s.method == "DELETE" {
            return reply(500, &[], "");
        }
        reply(200, &[("cache-control", "max-age=60")], "x")
    })
    .await;
    r.get("/f").await;
    r.send("DELETE", "/f", &[]).await;
    assert!(r.get("/f").await.hit());
}

// ---- RFC 5861 and grace ----

#[tokio::test]
async fn rfc5861_stale_while_revalidate_serves_stale_and_refreshes_once_in_the_background() {
    // Arrives 100 s old with 10 s of freshness: stale, inside its SWR window.
    let r = rig(
        "",
        versions(&[
            ("cache-control", "max-age=10, stale-while-revalidate=600"),
            ("age", "100"),
        ]),
    )
    .await;
    r.get("/swr").await;
    let (a, b, c) = tokio::join!(r.get("/swr"), r.get("/swr"), r.get("/swr"));
    for g in [&a, &b, &c] {
        assert_eq!(g.body, "v1", "served stale at once");
        assert!(g.cache_status().contains("stale-while-revalidate"));
    }
    for _ in 0..100 {
        if r.hits("/swr") >= 2 {
            break;
        }
        settle().await;
    }
    settle().await;
    assert_eq!(
        r.hits("/swr"),
        2,
        "one background refresh for three stale hits"
    );
    assert_eq!(r.get("/swr").await.body, "v2", "the refresh replaced it");
}

#[tokio::test]
async fn rfc5861_stale_if_error_serves_stale_when_the_origin_is_unreachable() {
    let r = rig("", |_, _| {
        reply(
            200,
            &[("cache-control", "max-age=0, stale-if-error=600")],
            "kept",
        )
    })
    .await;
    r.get("/e").await;
    r.origin.kill();
    settle().await;
    let g = r.get("/e").await;
    assert_eq!((g.status, g.body.as_str()), (200, "kept"));
    assert!(
        g.cache_status().contains("stale-if-error"),
        "{}",
        g.cache_status()
    );
}

#[tokio::test]
async fn grace_serves_stale_on_error_without_stale_if_error_but_never_against_no_cache() {
    let r = rig("grace = \"600s\"", |s, n| {
        if n > 1 {
            return reply(502, &[], "down");
        }
        let cc = if s.target == "/nc" {
            "no-cache"
        } else {
            "max-age=0"
        };
        reply(200, &[("cache-control", cc), ("etag", "\"g\"")], "kept")
    })
    .await;
    r.get("/g").await;
    assert_eq!(r.get("/g").await.body, "kept");
    r.get("/nc").await;
    assert_eq!(r.get("/nc").await.status, 502);
}

// ---- RFC 9211 and RFC 9213 ----

#[tokio::test]
async fn rfc9211_cache_status_on_every_response_of_a_cached_route() {
    let r = rig("", |s, _| match s.target.as_str() {
        "/private" => reply(200, &[("cache-control", "private")], "x"),
        _ => reply(200, &[("cache-control", "max-age=60")], "x"),
    })
    .await;
    let miss = r.get("/ok").await;
    assert!(miss
        .cache_status()
        .starts_with("edge; fwd=uri-miss; fwd-status=200"));
    assert!(miss.cache_status().contains("stored"));
    assert!(r
        .get("/ok")
        .await
        .cache_status()
        .starts_with("edge; hit; ttl="));
    let p = r.get("/private").await;
    assert!(
        p.cache_status().contains("detail=private"),
        "{}",
        p.cache_status()
    );
    let post = r.send("POST", "/ok", &[]).await;
    assert!(
        post.cache_status().contains("fwd=method"),
        "{}",
        post.cache_status()
    );
}

#[tokio::test]
async fn rfc9213_targeted_fields_take_precedence_over_cache_control() {
    let r = rig(
        "targeted_fields = [\"weir-cache-control\", \"cdn-cache-control\"]",
        |s, _| match s.target.as_str() {
            "/cdn" => reply(
                200,
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60"),
                ],
                "x",
            ),
            "/weir" => reply(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "max-age=60"),
                    ("weir-cache-control", "no-store"),
                ],
                "x",
            ),
            _ => reply(200, &[("cache-control", "no-store")], "x"),
        },
    )
    .await;
    r.get("/cdn").await;
    assert!(
        r.get("/cdn").await.hit(),
        "CDN-Cache-Control over Cache-Control"
    );
    r.get("/weir").await;
    assert!(!r.get("/weir").await.hit(), "the first listed field wins");
    r.get("/plain").await;
    assert!(!r.get("/plain").await.hit());
}

/// RFC 9213 §2.1: a targeted field is a structured dictionary. A member of the wrong type is
/// ignored (`no-store="yes"` is no `no-store`), and a field that does not parse is ignored
/// whole: `Cache-Control` applies instead of half the targeted field.
#[tokio::test]
async fn rfc9213_targeted_fields_are_structured_dictionaries() {
    let r = rig(
        "targeted_fields = [\"cdn-cache-control\"]",
        |s, _| match s.target.as_str() {
            "/wrong-type" => reply(
                200,
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60, no-store=\"yes\""),
                ],
                "x",
            ),
            "/string-age" => reply(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "max-age=\"60\", no-store"),
                ],
                "x",
            ),
            "/unparsable" => reply(
                200,
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60;;"),
                ],
                "x",
            ),
            _ => reply(200, &[], "x"),
        },
    )
    .await;
    r.get("/wrong-type").await;
    assert!(
        r.get("/wrong-type").await.hit(),
        "a no-store of the wrong type is ignored"
    );
    r.get("/string-age").await;
    assert!(
        !r.get("/string-age").await.hit(),
        "the targeted field (no-store) applies, its string max-age ignored"
    );
    r.get("/unparsable").await;
    assert!(
        !r.get("/unparsable").await.hit(),
        "an unparsable targeted field falls back to Cache-Control (no-store)"
    );
}

// ---- Cache key ----

#[tokio::test]
async fn cache_key_query_rules_headers_and_cookies() {
    let r = rig(
        "key_query = { keep = [\"id\", \"page\"] }\nkey_sort_query = true\nkey_headers = [\"x-tenant\"]\nkey_cookies = [\"region\"]",
        |s, _| reply(200, &[("cache-control", "max-age=60")], &s.target),
    )
    .await;
    r.get("/k?id=1&page=2&utm=a").await;
    assert!(
        r.get("/k?page=2&utm=b&id=1").await.hit(),
        "sorted, utm ignored"
    );
    assert!(!r.get("/k?id=2&page=2").await.hit());
    r.send("GET", "/t", &[("x-tenant", "a")]).await;
    assert!(r.send("GET", "/t", &[("x-tenant", "a")]).await.hit());
    assert!(!r.send("GET", "/t", &[("x-tenant", "b")]).await.hit());
    r.send("GET", "/r", &[("cookie", "region=eu; session=1")])
        .await;
    assert!(r
        .send("GET", "/r", &[("cookie", "session=2; region=eu")])
        .await
        .hit());
    assert!(!r.send("GET", "/r", &[("cookie", "region=us")]).await.hit());
}

// ---- RFC 9110 §14 ranges from a stored object ----

#[tokio::test]
async fn ranges_are_served_as_206_from_a_complete_stored_object() {
    let r = rig("", |s, _| {
        assert!(
            s.headers.get("range").is_none(),
            "the whole object is fetched"
        );
        reply(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"r\"")],
            "0123456789",
        )
    })
    .await;
    let first = r.send("GET", "/r", &[("range", "bytes=2-4")]).await;
    assert_eq!(
        (first.status, first.body.len()),
        (200, 10),
        "a miss gets it all"
    );
    let one = r.send("GET", "/r", &[("range", "bytes=2-4")]).await;
    assert_eq!((one.status, one.body.as_str()), (206, "234"));
    assert_eq!(one.header("content-range"), "bytes 2-4/10");
    assert!(one.hit());
    let many = r.send("GET", "/r", &[("range", "bytes=0-0,-2")]).await;
    assert_eq!(many.status, 206);
    assert!(many
        .header("content-type")
        .starts_with("multipart/byteranges"));
    assert!(many.body.contains("Content-Range: bytes 0-0/10\r\n\r\n0"));
    assert!(many.body.contains("Content-Range: bytes 8-9/10\r\n\r\n89"));
    let out = r.send("GET", "/r", &[("range", "bytes=50-")]).await;
    assert_eq!(
        (out.status, out.header("content-range")),
        (416, "bytes */10")
    );
    let changed = r
        .send(
            "GET",
            "/r",
            &[("range", "bytes=2-4"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!((changed.status, changed.body.as_str()), (200, "0123456789"));
    let same = r
        .send(
            "GET",
            "/r",
            &[("range", "bytes=2-4"), ("if-range", "\"r\"")],
        )
        .await;
    assert_eq!(same.status, 206);
    assert_eq!(r.hits("/r"), 1);
}

// ---- Compression ----

#[tokio::test]
async fn compressed_responses_are_stored_as_variants() {
    let big = "weir ".repeat(400);
    let body = big.clone();
    let r = rig_with(
        "",
        "compress = { algorithms = [\"gzip\", \"br\"], min_size = 100 }",
        move |_, _| reply(200, &[("cache-control", "max-age=60")], &body),
    )
    .await;
    let gz = r.send("GET", "/z", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    let gz2 = r.send("GET", "/z", &[("accept-encoding", "gzip")]).await;
    assert!(gz2.hit());
    assert_eq!(gz2.header("content-encoding"), "gzip");
    assert!(gz2
        .header("vary")
        .to_ascii_lowercase()
        .contains("accept-encoding"));
    let plain = r
        .send("GET", "/z", &[("accept-encoding", "identity")])
        .await;
    assert!(plain.cache_status().contains("fwd=vary-miss"));
    assert_eq!(plain.body, big);
    let br = r.send("GET", "/z", &[("accept-encoding", "br")]).await;
    assert_eq!(br.header("content-encoding"), "br");
    assert!(r
        .send("GET", "/z", &[("accept-encoding", "br")])
        .await
        .hit());
    assert!(r
        .send("GET", "/z", &[("accept-encoding", "identity")])
        .await
        .hit());
    assert_eq!(r.hits("/z"), 3, "one fill per coding");
    let m = metrics(&r.gw).await;
    assert_eq!(
        metric_value(&m, "weir_compression_responses_total{encoding=\"gzip\"}"),
        Some(1.0),
        "compressed once, then served compressed from the store"
    );
}

// ---- Disk tier ----

fn disk_top(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "disk = {{ path = \"{}\", max_size = \"1MiB\", large_object_size = \"64KiB\" }}\nmax_object_size = \"512KiB\"\n{extra}",
        dir.display()
    )
}

/// Waits until the cache has written `n` objects to disk; returns the metrics text.
async fn disk_writes(gw: &Gateway, n: f64) -> String {
    let mut m = String::new();
    for _ in 0..100 {
        m = metrics(gw).await;
        if metric_value(&m, "weir_cache_disk_total{cache=\"edge\",event=\"write\"}") == Some(n) {
            break;
        }
        settle().await;
    }
    m
}

/// A disk-tier cache in `dir` before an origin answering `v1`, `v2`, … per target, fresh 600 s.
async fn versioned_disk_rig(dir: &TempDir) -> Rig {
    rig(
        &disk_top(&dir.0, ""),
        versions(&[("cache-control", "max-age=600")]),
    )
    .await
}

#[tokio::test]
async fn disk_tier_survives_a_restart() {
    let dir = TempDir::new("disk-restart");
    let r = versioned_disk_rig(&dir).await;
    r.get("/d").await;
    let m = disk_writes(&r.gw, 1.0).await;
    assert_eq!(
        metric_value(&m, "weir_cache_objects{cache=\"edge\",tier=\"disk\"}"),
        Some(1.0)
    );
    let Rig {
        mut gw,
        origin,
        seen,
    } = r;
    assert!(gw.server.take().expect("server").shutdown().await);
    // A new process on the same directory, its origin answering differently.
    let again = gateway(&guarded_config(
        origin.addr,
        &cache_top(&disk_top(&dir.0, "")),
        "",
        "",
        "cache = \"edge\"",
    ))
    .await;
    let r = Rig {
        gw: again,
        origin,
        seen,
    };
    let g = r.get("/d").await;
    assert!(g.hit(), "{}", g.cache_status());
    assert_eq!(g.body, "v1");
    assert_eq!(r.hits("/d"), 1, "the origin was not asked again");
    let m = metrics(&r.gw).await;
    assert_eq!(
        metric_value(&m, "weir_cache_disk_total{cache=\"edge\",event=\"hit\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_cache_keeps_what_it_stores() {
    let dir = TempDir::new("disk-reload");
    let r = versioned_disk_rig(&dir).await;
    r.get("/a").await;
    r.get("/b").await;
    disk_writes(&r.gw, 2.0).await;
    let server = r.gw.server.as_ref().expect("server");
    let reload = |extra: &str, memory: &str| {
        let top = cache_top(&disk_top(&dir.0, extra)).replace("\"16MiB\"", memory);
        let text = guarded_config(r.origin.addr, &top, "", "", "cache = \"edge\"");
        weir_config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    };

    // A changed setting (grace): the memory tier, the disk index and the counters carry over.
    server
        .reload(reload("grace = \"30s\"", "\"16MiB\""))
        .await
        .expect("reload");
    let g = r.get("/a").await;
    assert!(g.hit(), "{}", g.cache_status());
    assert_eq!(g.body, "v1");
    let m = metrics(&r.gw).await;
    let sample = |name: &str| metric_value(&m, name);
    assert_eq!(
        sample("weir_cache_requests_total{cache=\"edge\",result=\"hit\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample("weir_cache_requests_total{cache=\"edge\",result=\"miss\"}"),
        Some(2.0),
        "counters continue across the reload"
    );
    assert_eq!(
        sample("weir_cache_disk_total{cache=\"edge\",event=\"hit\"}"),
        Some(0.0),
        "answered from the memory tier it kept"
    );
    assert_eq!(
        sample("weir_cache_objects{cache=\"edge\",tier=\"disk\"}"),
        Some(2.0)
    );

    // A new memory size: a new memory tier, so the hit comes from the disk tier kept.
    server.reload(reload("", "\"8MiB\"")).await.expect("reload");
    let g = r.get("/b").await;
    assert!(g.hit(), "{}", g.cache_status());
    assert_eq!(g.body, "v1");
    assert_eq!(
        r.hits("/a") + r.hits("/b"),
        2,
        "the origin was not asked again"
    );
    let m = metrics(&r.gw).await;
    assert_eq!(
        metric_value(&m, "weir_cache_disk_total{cache=\"edge\",event=\"hit\"}"),
        Some(1.0)
    );

    // One index for the directory: what is written now is counted once, and the files on
    // disk are the objects indexed.
    r.get("/c").await;
    let m = disk_writes(&r.gw, 3.0).await;
    assert_eq!(
        metric_value(&m, "weir_cache_objects{cache=\"edge\",tier=\"disk\"}"),
        Some(3.0)
    );
    let files = std::fs::read_dir(&dir.0)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .count();
    assert_eq!(files, 3);
}

#[tokio::test]
async fn large_objects_go_to_disk_only_and_are_streamed_from_their_file() {
    let dir = TempDir::new("disk-large");
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let body = big.clone();
    let r = rig(&disk_top(&dir.0, ""), move |_, _| {
        reply(200, &[("cache-control", "max-age=600")], &body)
    })
    .await;
    assert_eq!(r.get("/big").await.body.len(), 200_000);
    for _ in 0..100 {
        let m = metrics(&r.gw).await;
        if metric_value(&m, "weir_cache_disk_total{cache=\"edge\",event=\"write\"}") == Some(1.0) {
            break;
        }
        settle().await;
    }
    let hit = r.get("/big").await;
    assert!(hit.hit());
    assert_eq!(hit.body, big);
    let part = r
        .send("GET", "/big", &[("range", "bytes=100000-100009")])
        .await;
    assert_eq!(
        (part.status, part.body.as_str()),
        (206, &big[100_000..100_010])
    );
    let m = metrics(&r.gw).await;
    assert_eq!(
        metric_value(&m, "weir_cache_objects{cache=\"edge\",tier=\"memory\"}"),
        Some(0.0),
        "never held in memory"
    );
    assert_eq!(r.hits("/big"), 1);
}

#[tokio::test]
async fn the_disk_tier_evicts_to_stay_under_its_cap() {
    let dir = TempDir::new("disk-evict");
    let chunk = "x".repeat(200_000);
    let r = rig(&disk_top(&dir.0, ""), move |_, _| {
        reply(200, &[("cache-control", "max-age=600")], &chunk)
    })
    .await;
    for i in 0..8 {
        r.get(&format!("/o{i}")).await;
        // Each write lands before the next (the order decides what is evicted).
        for _ in 0..100 {
            let m = metrics(&r.gw).await;
            let w = metric_value(&m, "weir_cache_disk_total{cache=\"edge\",event=\"write\"}");
            if w == Some(f64::from(i + 1)) {
                break;
            }
            settle().await;
        }
    }
    let m = metrics(&r.gw).await;
    let bytes = metric_value(&m, "weir_cache_bytes{cache=\"edge\",tier=\"disk\"}").expect("bytes");
    assert!(bytes <= 1_048_576.0, "{bytes}");
    let evicted = metric_value(
        &m,
        "weir_cache_evictions_total{cache=\"edge\",tier=\"disk\"}",
    )
    .expect("evictions");
    assert!(evicted >= 3.0, "{evicted}");
    let files = std::fs::read_dir(&dir.0).expect("dir").count() as f64;
    assert_eq!(
        Some(files),
        metric_value(&m, "weir_cache_objects{cache=\"edge\",tier=\"disk\"}")
    );
    assert!(r.get("/o7").await.hit(), "the newest is kept");
    assert!(!r.get("/o0").await.hit(), "the oldest went");
}

// ---- Fills that fail ----

/// A body that sends a few bytes and then fails (the origin dies mid-response).
fn broken_body() -> Body {
    use futures_util::StreamExt;
    let head: Result<_, Box<dyn std::error::Error + Send + Sync>> = Ok(http_body::Frame::data(
        bytes::Bytes::from_static(b"partial"),
    ));
    // The failure comes after the head and first bytes are on their way (before it, Weir
    // would rightly retry the GET elsewhere).
    let frames =
        futures_util::stream::once(async move { head }).chain(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(Box::<dyn std::error::Error + Send + Sync>::from("cut"))
        }));
    http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(frames))
}

fn breaks_first_time(_: &Seen, n: usize) -> Response<Body> {
    let mut r = reply(200, &[("cache-control", "max-age=600")], "whole");
    if n == 1 {
        *r.body_mut() = broken_body();
    }
    r
}

async fn fetch_broken(r: &Rig, path: &str) {
    let resp = client()
        .get(r.gw.url(path))
        .send()
        .await
        .expect("head arrives");
    let text = resp.text().await;
    assert!(text.is_err(), "the body is cut short: {text:?}");
    settle().await;
}

/// Nothing was stored: the next request goes to the origin and gets the whole body.
async fn assert_refilled(r: &Rig, path: &str) {
    let g = r.get(path).await;
    assert!(
        g.cache_status().contains("fwd=uri-miss"),
        "{}",
        g.cache_status()
    );
    assert_eq!(g.body, "whole");
}

#[tokio::test]
async fn a_fill_cut_short_is_abandoned_in_memory() {
    let r = rig("", breaks_first_time).await;
    fetch_broken(&r, "/cut").await;
    assert_refilled(&r, "/cut").await;
    assert!(r.get("/cut").await.hit());
}

#[tokio::test]
async fn a_fill_cut_short_is_abandoned_on_disk_and_leaves_no_file() {
    let dir = TempDir::new("disk-cut");
    let r = rig(&disk_top(&dir.0, ""), breaks_first_time).await;
    fetch_broken(&r, "/cut").await;
    assert_eq!(
        std::fs::read_dir(&dir.0).expect("dir").count(),
        0,
        "no file left"
    );
    assert_refilled(&r, "/cut").await;
}

#[tokio::test]
async fn objects_over_max_object_size_pass_through_unstored() {
    let big = "y".repeat(600_000);
    let body = big.clone();
    let r = rig("max_object_size = \"512KiB\"", move |s, _| {
        let mut resp = reply(200, &[("cache-control", "max-age=600")], &body);
        if s.target == "/chunked" {
            // No declared length: found too large only while streaming.
            let chunks: Vec<
                Result<http_body::Frame<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
            > = (0..6)
                .map(|_| {
                    Ok(http_body::Frame::data(bytes::Bytes::from(vec![
                        b'y';
                        100_000
                    ])))
                })
                .collect();
            *resp.body_mut() = http_body_util::BodyExt::boxed_unsync(
                http_body_util::StreamBody::new(futures_util::stream::iter(chunks)),
            );
        }
        resp
    })
    .await;
    for path in ["/declared", "/chunked"] {
        let first = r.get(path).await;
        assert_eq!(
            first.body.len(),
            big.len(),
            "{path}: the client gets it all"
        );
        assert!(!r.get(path).await.hit(), "{path}: not stored");
    }
    assert!(r
        .get("/declared")
        .await
        .cache_status()
        .contains("too-large"));
}

#[tokio::test]
async fn coalesced_waiters_fall_through_to_their_own_request_after_the_lock_timeout() {
    let r = rig("lock_timeout = \"100ms\"", |_, n| {
        let mut resp = reply(200, &[("cache-control", "max-age=60")], &format!("v{n}"));
        if n == 1 {
            // The first fill takes its time: its body arrives two seconds later.
            use futures_util::StreamExt;
            let late = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(
                    bytes::Bytes::from_static(b"v1"),
                ))
            })
            .boxed();
            *resp.body_mut() =
                http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(late));
        }
        resp
    })
    .await;
    let leader = tokio::spawn({
        let url = r.gw.url("/slow");
        async move { client().get(url).send().await.expect("leader").text().await }
    });
    // Wait until the leader's request is at the origin, so the second one finds it filling.
    while r.hits("/slow") == 0 {
        settle().await;
    }
    let follower = r.get("/slow").await;
    // Had it waited for the fill, the store would have answered it with v1.
    assert_eq!(follower.body, "v2", "went to the origin itself");
    assert_eq!(leader.await.expect("join").expect("body"), "v1");
    assert_eq!(r.hits("/slow"), 2);
}
