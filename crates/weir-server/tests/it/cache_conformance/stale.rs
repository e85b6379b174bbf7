//! §4.4 invalidation, RFC 5861 (stale-while-revalidate, stale-if-error) and the grace.

use super::*;

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
