//! §3: what a shared cache stores.

use super::*;

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
