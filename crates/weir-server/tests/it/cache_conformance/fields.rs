//! RFC 9211 `Cache-Status`, RFC 9213 targeted fields, the cache key, ranges from a stored object, compressed variants.

use super::*;

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
