//! Purging the cache through real sockets: by URL, prefix, tag and everything, hard and soft,
//! through the admin API and the `PURGE` method.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::cache::{cache_status, get, settle};
use crate::common::*;

#[tokio::test]
async fn purges_by_url_prefix_tag_and_all_through_the_admin_api_and_purge_method() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let o = origin(move |req: Request<Incoming>| {
        let hits = h.clone();
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            let tag = if req.uri().path().starts_with("/shoes") {
                "shoes all"
            } else {
                "hats all"
            };
            Response::builder()
                .header("cache-control", "max-age=600")
                .header("surrogate-key", tag)
                .body(full(format!("{}-{n}", req.uri().path())))
                .expect("response")
        }
    })
    .await;
    let top = "[[caches]]\nname = \"edge\"\npurge_method = { allow = [\"127.0.0.1\"] }\n";
    let gw = gateway(&guarded_config(o.addr, top, "", "", "cache = \"edge\"")).await;
    let admin = gw.admin_addr();
    let purge = |q: &'static str| async move {
        let r = client()
            .post(format!("http://{admin}/caches/edge/purge?{q}"))
            .send()
            .await
            .expect("purge");
        assert_eq!(r.status(), 200, "{q}");
        r.json::<serde_json::Value>().await.expect("json")["purged"]
            .as_u64()
            .expect("count")
    };
    let paths = ["/shoes/1", "/shoes/2", "/hats/1"];
    let fill = || async {
        for p in paths {
            let (_, h, _) = get(&gw, p, &[]).await;
            assert!(
                h.get("surrogate-key").is_none(),
                "tags stay inside the cache"
            );
        }
        settle(&gw).await;
    };
    let origin_hits_for = |before: usize| hits.load(Ordering::SeqCst) - before;
    fill().await;
    let before = hits.load(Ordering::SeqCst);
    fill().await;
    assert_eq!(origin_hits_for(before), 0, "all stored");

    assert_eq!(purge("tag=shoes").await, 2);
    let before = hits.load(Ordering::SeqCst);
    fill().await;
    assert_eq!(
        origin_hits_for(before),
        2,
        "the shoes were fetched again, the hat was not"
    );

    // URIs are stored as host (without port) + path and query.
    assert_eq!(purge("prefix=127.0.0.1/hats").await, 1);
    assert_eq!(purge("all=1").await, 2, "the two shoes left");
    let before = hits.load(Ordering::SeqCst);
    fill().await;
    assert_eq!(origin_hits_for(before), 3);

    // Soft purge: kept but stale (no must-revalidate here, so it is revalidated, i.e. fetched).
    assert_eq!(purge("tag=hats&soft=1").await, 1);
    let (_, h, _) = get(&gw, "/hats/1", &[]).await;
    assert!(
        cache_status(&h).contains("fwd=stale"),
        "{}",
        cache_status(&h)
    );

    // PURGE on the traffic listener, from an allowed address.
    let r = client()
        .request(
            reqwest::Method::from_bytes(b"PURGE").expect("method"),
            gw.url("/shoes/1"),
        )
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 200);
    let (_, h, _) = get(&gw, "/shoes/1", &[]).await;
    assert!(
        cache_status(&h).contains("fwd=uri-miss"),
        "{}",
        cache_status(&h)
    );
    let r = client()
        .post(format!("http://{admin}/caches/edge/purge"))
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 400);
    let r = client()
        .post(format!("http://{admin}/caches/nope/purge?all=1"))
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 404);
}
