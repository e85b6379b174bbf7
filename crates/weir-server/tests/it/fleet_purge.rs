//! Purges that reach the fleet: three instances sharing a real `redis-server` with
//! `fleet_purge = true`. A purge on one (admin API or `PURGE`) empties the object on all three;
//! with Redis restarted in the middle of a stream of purges, or one instance cut off from it
//! and reconnected, no instance serves a purged object once it is connected again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use weir_testkit::redis::RedisServer;

use crate::cache::{cache_status, get, settle};
use crate::common::*;

/// A TCP relay to `to` that can be cut (every connection dropped, the port closed) and
/// restored on the same port: one instance's link to Redis.
struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Relay {
    async fn start(at: SocketAddr, to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(at).await.expect("relay bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = s.cancelled() => return,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = s.cancelled() => {}
                    }
                });
            }
        });
        Self { addr, stop }
    }

    fn cut(&self) {
        self.stop.cancel();
    }
}

fn fleet_config(origin: SocketAddr, redis: SocketAddr) -> String {
    let top = format!(
        "[redis]\nurl = \"redis://{redis}\"\ntimeout = \"300ms\"\n\n[[caches]]\nname = \"edge\"\nfleet_purge = true\npurge_method = {{ allow = [\"127.0.0.1\"] }}\n"
    );
    guarded_config(origin, &top, "", "", "cache = \"edge\"")
}

/// Fetches `path` on each gateway until every one holds it (a hit).
async fn cached_everywhere(gws: &[Gateway], path: &str) {
    for gw in gws {
        get(gw, path, &[]).await;
        settle(gw).await;
        let (_, h, _) = get(gw, path, &[]).await;
        assert!(cache_status(&h).contains("hit"), "{path} stored: {h:?}");
    }
}

/// Waits until `gw` has applied `n` purges made elsewhere.
async fn applied(gw: &Gateway, n: f64) {
    wait_for_metric(
        gw,
        "weir_cache_fleet_purges_total{cache=\"edge\",event=\"applied\"}",
        n,
    )
    .await;
}

/// Waits until each reader has found the top of the stream (before the first purge).
async fn readers_connected(gws: &[Gateway]) {
    for gw in gws {
        wait_until("the readers to connect", || async {
            let m = metrics(gw).await;
            m.contains("weir_cache_fleet_purges_total{cache=\"edge\",event=\"applied\"} 0")
                .then_some(())
        })
        .await;
    }
}

/// Whether `gw` would answer `path` from its store.
async fn holds(gw: &Gateway, path: &str) -> bool {
    let (_, h, _) = get(gw, path, &[("cache-control", "only-if-cached")]).await;
    cache_status(&h).contains("hit")
}

async fn admin_purge(gw: &Gateway, q: &str) {
    let r = client()
        .post(format!("http://{}/caches/edge/purge?{q}", gw.admin_addr()))
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_purge_on_one_instance_reaches_all_even_across_redis_restarts_and_cut_links() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let o = origin(move |req: Request<Incoming>| {
        let n = h.fetch_add(1, Ordering::SeqCst);
        async move {
            Response::builder()
                .header("cache-control", "max-age=600")
                .body(full(format!("{}-{n}", req.uri().path())))
                .expect("response")
        }
    })
    .await;
    let mut redis = RedisServer::start().await;
    // The third instance reaches Redis through a relay that the test cuts.
    let relay = Relay::start("127.0.0.1:0".parse().expect("addr"), redis.addr).await;
    let gws = vec![
        gateway(&fleet_config(o.addr, redis.addr)).await,
        gateway(&fleet_config(o.addr, redis.addr)).await,
        gateway(&fleet_config(o.addr, relay.addr)).await,
    ];
    readers_connected(&gws).await;
    cached_everywhere(&gws, "/a").await;
    cached_everywhere(&gws, "/b").await;

    // The admin API on the first instance: gone from all three.
    admin_purge(&gws[0], "url=127.0.0.1/a").await;
    applied(&gws[1], 1.0).await;
    applied(&gws[2], 1.0).await;
    for gw in &gws {
        assert!(!holds(gw, "/a").await, "purged /a still served");
        assert!(holds(gw, "/b").await, "/b was not purged");
    }
    // `PURGE` on the second: the same.
    let r = client()
        .request(
            http::Method::from_bytes(b"PURGE").expect("method"),
            gws[1].url("/b"),
        )
        .send()
        .await
        .expect("purge");
    assert_eq!(r.status(), 200);
    applied(&gws[0], 1.0).await;
    applied(&gws[2], 2.0).await;
    for gw in &gws {
        assert!(!holds(gw, "/b").await, "purged /b still served");
    }

    // Redis restarts in the middle of a stream of purges: the ones made while it was down
    // apply locally at once, wait, and reach the others once it is back.
    for p in ["/c", "/d", "/e"] {
        cached_everywhere(&gws, p).await;
    }
    admin_purge(&gws[0], "url=127.0.0.1/c").await;
    redis.stop();
    admin_purge(&gws[0], "url=127.0.0.1/d").await;
    assert!(!holds(&gws[0], "/d").await, "applied here at once");
    wait_for_metric(
        &gws[0],
        "weir_cache_fleet_purges_total{cache=\"edge\",event=\"publish_error\"}",
        1.0,
    )
    .await;
    redis.restart().await;
    admin_purge(&gws[1], "url=127.0.0.1/e").await;
    for (gw, n) in [(&gws[0], 2.0), (&gws[1], 3.0), (&gws[2], 5.0)] {
        applied(gw, n).await;
    }
    for gw in &gws {
        for p in ["/c", "/d", "/e"] {
            assert!(!holds(gw, p).await, "{p} still served after the restart");
        }
    }

    // One instance cut off from Redis: purges made meanwhile reach it once it reconnects,
    // replayed from the stream.
    for p in ["/f", "/g"] {
        cached_everywhere(&gws, p).await;
    }
    relay.cut();
    admin_purge(&gws[0], "url=127.0.0.1/f").await;
    admin_purge(&gws[1], "url=127.0.0.1/g").await;
    applied(&gws[1], 4.0).await;
    assert!(
        holds(&gws[2], "/f").await,
        "the cut-off instance cannot know yet"
    );
    let _relay = Relay::start(relay.addr, redis.addr).await;
    applied(&gws[2], 7.0).await;
    assert!(!holds(&gws[2], "/f").await && !holds(&gws[2], "/g").await);
    // Nothing was applied twice: each instance applied exactly the purges the others made.
    let m = metrics(&gws[2]).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_cache_fleet_purges_total{cache=\"edge\",event=\"applied\"}"
        ),
        Some(7.0)
    );
}

/// Publishing is at least once: an `XADD` Redis ran but whose reply was lost is sent again, so
/// the stream can hold one purge twice. The reader applies it once (the maker's number).
#[tokio::test]
async fn a_purge_the_stream_holds_twice_is_applied_once() {
    let o = origin(|req: Request<Incoming>| async move {
        Response::builder()
            .header("cache-control", "max-age=600")
            .body(full(req.uri().path().to_owned()))
            .expect("response")
    })
    .await;
    let redis = RedisServer::start().await;
    let gws = vec![
        gateway(&fleet_config(o.addr, redis.addr)).await,
        gateway(&fleet_config(o.addr, redis.addr)).await,
    ];
    readers_connected(&gws).await;
    cached_everywhere(&gws, "/a").await;
    admin_purge(&gws[0], "url=127.0.0.1/a").await;
    applied(&gws[1], 1.0).await;
    cached_everywhere(&gws, "/a").await;
    cached_everywhere(&gws, "/b").await;

    // The retry of a lost reply, as Redis would hold it: the same entry once more.
    let (mut conn, keys) = redis_keys(&redis, "*purge:edge").await;
    let [stream] = keys.as_slice() else {
        panic!("one purge stream: {keys:?}")
    };
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    let [(_, fields)] = entries.as_slice() else {
        panic!("one entry: {entries:?}")
    };
    assert!(
        fields.iter().any(|(k, _)| k == "seq"),
        "numbered: {fields:?}"
    );
    let mut again = ::redis::cmd("XADD");
    again.arg(stream).arg("*");
    for (k, v) in fields {
        again.arg(k).arg(v);
    }
    let _: String = again.query_async(&mut conn).await.expect("xadd");

    // A later purge, read after the repeat: once it has arrived the repeat has been read.
    admin_purge(&gws[0], "url=127.0.0.1/b").await;
    wait_until("the later purge to arrive", || async {
        (!holds(&gws[1], "/b").await).then_some(())
    })
    .await;
    assert!(holds(&gws[1], "/a").await, "the repeat purged /a again");
    let m = wait_for_metric(
        &gws[1],
        "weir_cache_fleet_purges_total{cache=\"edge\",event=\"applied\"}",
        2.0,
    )
    .await;
    assert_eq!(
        metric_value(
            &m,
            "weir_cache_fleet_purges_total{cache=\"edge\",event=\"applied\"}"
        ),
        Some(2.0)
    );
}
