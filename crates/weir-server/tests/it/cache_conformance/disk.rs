//! The disk tier, and fills that fail.

use super::*;

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
