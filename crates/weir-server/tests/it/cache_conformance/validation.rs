//! §4.3 validation and §4.1 `Vary`.

use super::*;

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
