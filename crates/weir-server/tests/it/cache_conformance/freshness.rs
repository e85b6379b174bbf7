//! §4.2 freshness and §5.2.1 request directives.

use super::*;

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
