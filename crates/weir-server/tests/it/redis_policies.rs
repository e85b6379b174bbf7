//! Policies shared through a real `redis-server`: rate limits held exactly across three Weir
//! instances, `on_store_error` when Redis goes away, and idempotency records replayed across
//! instances with locks that expire.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use weir_testkit::redis::RedisServer;

use crate::common::*;

fn shared_config(origin: std::net::SocketAddr, redis: &str, policies: &str, chain: &str) -> String {
    let top = format!("[redis]\nurl = \"{redis}\"\ntimeout = \"200ms\"\n");
    guarded_config(origin, &top, policies, chain, "")
}

/// Sends `per_gateway` GETs to each gateway at once (`concurrency` in flight per gateway) with
/// header `x-tenant: t`; returns how many were admitted.
async fn hammer(gws: &[Gateway], per_gateway: usize, concurrency: usize) -> usize {
    use futures_util::StreamExt;
    let mut all = Vec::new();
    for gw in gws {
        let url = gw.url("/x");
        let c = client();
        all.push(tokio::spawn(async move {
            futures_util::stream::iter(0..per_gateway)
                .map(|_| {
                    let c = c.clone();
                    let url = url.clone();
                    async move {
                        let r = c
                            .get(&url)
                            .header("x-tenant", "t")
                            .send()
                            .await
                            .expect("request");
                        usize::from(r.status() == 200)
                    }
                })
                .buffer_unordered(concurrency)
                .fold(0, |a, b| async move { a + b })
                .await
        }));
    }
    let mut admitted = 0;
    for t in all {
        admitted += t.await.expect("task");
    }
    admitted
}

fn unix_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[tokio::test]
async fn three_instances_share_one_limit_through_redis() {
    let redis = RedisServer::start().await;
    let o = echo_origin().await;
    // Every algorithm, one key (a header), 100 per period: the shared count is exact.
    let mut policies = String::new();
    for alg in ["fixed_window", "sliding_window", "gcra", "token_bucket"] {
        let period = if alg == "fixed_window" { "10s" } else { "1h" };
        policies.push_str(&format!(
            "[[policies]]\nname = \"{alg}\"\nrate_limit = {{ algorithm = \"{alg}\", limit = 100, period = \"{period}\", key = \"header:x-tenant\", store = \"redis\" }}\n\n"
        ));
    }
    for alg in ["sliding_window", "gcra", "token_bucket"] {
        let cfg = shared_config(o.addr, &redis.url(), &policies, &format!("\"{alg}\""));
        let gws = vec![
            gateway(&cfg).await,
            gateway(&cfg).await,
            gateway(&cfg).await,
        ];
        let admitted = hammer(&gws, 150, 8).await;
        assert!(
            (98..=102).contains(&admitted),
            "{alg}: {admitted} admitted of 450, limit 100"
        );
        assert_eq!(
            admitted, 100,
            "{alg}: Redis decides atomically, so exactly the limit"
        );
    }
    // Fixed 10 s windows on Redis's clock: start just after a boundary, stay inside it.
    let cfg = shared_config(o.addr, &redis.url(), &policies, "\"fixed_window\"");
    let gws = vec![
        gateway(&cfg).await,
        gateway(&cfg).await,
        gateway(&cfg).await,
    ];
    let into = unix_secs_f64() % 10.0;
    if !(0.2..5.0).contains(&into) {
        tokio::time::sleep(Duration::from_secs_f64((10.2 - into) % 10.0)).await;
    }
    let admitted = hammer(&gws, 150, 8).await;
    assert!(
        unix_secs_f64() % 10.0 > 0.2,
        "the hammer stayed within one window"
    );
    assert!(
        (98..=102).contains(&admitted),
        "fixed_window: {admitted} admitted, limit 100 per 10 s"
    );
    let m = metrics(&gws[0]).await;
    let allowed = metric_value(
        &m,
        "weir_policy_decisions_total{policy=\"fixed_window\",result=\"allowed\"}",
    )
    .unwrap_or(0.0);
    assert!(
        allowed > 0.0 && allowed < 100.0,
        "each instance admitted a share: {allowed}"
    );
}

#[tokio::test]
async fn on_store_error_decides_when_redis_is_gone() {
    let mut redis = RedisServer::start().await;
    let o = echo_origin().await;
    let mut policies = String::new();
    for mode in ["allow", "deny", "local"] {
        policies.push_str(&format!(
            "[[policies]]\nname = \"{mode}\"\nrate_limit = {{ limit = 2, period = \"1h\", store = \"redis\", on_store_error = \"{mode}\" }}\n\n"
        ));
    }
    let gw = |mode: &str| shared_config(o.addr, &redis.url(), &policies, &format!("\"{mode}\""));
    let (allow, deny, local) = (
        gateway(&gw("allow")).await,
        gateway(&gw("deny")).await,
        gateway(&gw("local")).await,
    );
    // While Redis answers, the limit holds.
    for g in [&allow, &deny, &local] {
        assert_eq!(get_status(g, "/x").await, 200);
    }
    redis.stop();
    for _ in 0..3 {
        assert_eq!(get_status(&allow, "/x").await, 200);
    }
    let r = client().get(deny.url("/x")).send().await.expect("request");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"],
        "policy_store_unavailable"
    );
    // `local`: this instance's own memory takes over (2 per hour).
    let local_statuses = [
        get_status(&local, "/x").await,
        get_status(&local, "/x").await,
        get_status(&local, "/x").await,
    ];
    assert_eq!(local_statuses, [200, 200, 429]);
    let m = metrics(&allow).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"allow\",event=\"store_error\"}"
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn idempotency_records_are_shared_and_locks_expire() {
    let redis = RedisServer::start().await;
    let made = Arc::new(AtomicUsize::new(0));
    let made2 = made.clone();
    let o = origin(move |req: Request<Incoming>| {
        let made = made2.clone();
        async move {
            let slow = req.uri().path() == "/slow";
            if slow {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let n = made.fetch_add(1, Ordering::SeqCst) + 1;
            Response::builder()
                .status(201)
                .body(full(format!("made-{n}")))
                .expect("response")
        }
    })
    .await;
    let policies =
        "[[policies]]\nname = \"idem\"\nidempotency = { store = \"redis\", lock_ttl = \"500ms\" }";
    let cfg = shared_config(o.addr, &redis.url(), policies, "\"idem\"");
    let a = Arc::new(gateway(&cfg).await);
    let b = Arc::new(gateway(&cfg).await);
    let post = |gw: Arc<Gateway>, path: &'static str, key: &'static str| async move {
        let r = client()
            .post(gw.url(path))
            .header("idempotency-key", key)
            .body("payload")
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let replayed = r.headers().contains_key("idempotent-replayed");
        (status, replayed, r.text().await.expect("body"))
    };
    // Concurrent duplicates across both instances: exactly one upstream call.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let gw = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(post(gw, "/orders", "same")));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    assert_eq!(made.load(Ordering::SeqCst), 1, "{results:?}");
    assert_eq!(
        results.iter().filter(|r| r.0 == 201).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().all(|r| r.0 == 201 || r.0 == 409),
        "{results:?}"
    );
    // Once the record is written (by whichever instance made the call)...
    let recorded = "weir_policy_events_total{policy=\"idem\",event=\"recorded\"}";
    wait_until("the idempotency record", || async {
        let n = metric_value(&metrics(&a).await, recorded).unwrap_or(0.0)
            + metric_value(&metrics(&b).await, recorded).unwrap_or(0.0);
        (n >= 1.0).then_some(())
    })
    .await;
    // ...it is replayed by the other instance.
    let (status, replayed, body) = post(b.clone(), "/orders", "same").await;
    assert_eq!((status, replayed, body.as_str()), (201, true, "made-1"));
    let (_, replayed, _) = post(a.clone(), "/orders", "same").await;
    assert!(replayed);
    assert_eq!(made.load(Ordering::SeqCst), 1);

    // A lock held by a request that takes longer than lock_ttl (as if its instance died)
    // expires: the same key is then taken by another instance.
    let before = o.received();
    let first = tokio::spawn(post(a.clone(), "/slow", "long"));
    wait_until("the first request to hold the lock", || async {
        (o.received() > before).then_some(())
    })
    .await;
    assert_eq!(post(b.clone(), "/slow", "long").await.0, 409);
    // Refused while the lock lives; taken over once it expired (lock_ttl = 500 ms).
    let second = wait_until("the lock to expire", || async {
        let r = post(b.clone(), "/slow", "long").await;
        assert!(r.0 == 409 || r.0 == 201, "{r:?}");
        (r.0 == 201).then_some(r)
    })
    .await;
    assert_eq!(second.0, 201, "the expired lock was taken over");
    assert_eq!(first.await.expect("task").0, 201);
}

#[tokio::test]
async fn concurrency_slots_are_shared_across_instances_through_redis() {
    let mut redis = RedisServer::start().await;
    // The origin holds every request until the test opens the gate.
    let (open, gate) = tokio::sync::watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let seen = arrived.clone();
    let held = weir_testkit::origin(move |_req: Request<Incoming>| {
        let (mut gate, seen) = (gate.clone(), seen.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            Response::new(weir_testkit::full("ok"))
        }
    })
    .await;
    // A 1 s lease, renewed every third of it while a request is in flight.
    let policies = "[[policies]]\nname = \"two\"\nconcurrency = { limit = 2, key = \"header:x-tenant\", store = \"redis\", lease = \"1s\", on_store_error = \"deny\" }\n";
    let cfg = shared_config(held.addr, &redis.url(), policies, "\"two\"");
    let gws = Arc::new([gateway(&cfg).await, gateway(&cfg).await]);
    let send = |i: usize| {
        let gws = gws.clone();
        tokio::spawn(async move {
            client()
                .get(gws[i % 2].url("/x"))
                .header("x-tenant", "t")
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        })
    };
    // One request through each instance takes the two slots...
    let first = [send(0), send(1)];
    for _ in 0..500 {
        if arrived.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(arrived.load(Ordering::SeqCst), 2);
    // ...so four more, through either, are refused at once without reaching the origin;
    // still so after the first lease would have run out (the slots are renewed).
    for i in 0..4 {
        assert_eq!(send(i).await.expect("task"), 429);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(send(0).await.expect("task"), 429);
    assert_eq!(arrived.load(Ordering::SeqCst), 2);
    let _ = open.send(true);
    for t in first {
        assert_eq!(t.await.expect("task"), 200);
    }
    // The slots came back: two at once are admitted again (the release is asynchronous).
    let mut admitted = 0;
    for _ in 0..50 {
        let again = [send(0), send(1)];
        admitted = 0;
        for t in again {
            admitted += usize::from(t.await.expect("task") == 200);
        }
        if admitted == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admitted, 2);
    // Redis gone: `on_store_error = "deny"` answers 503 and counts the failure.
    redis.stop();
    assert_eq!(send(0).await.expect("task"), 503);
    let m = metrics(&gws[0]).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"two\",event=\"store_error\"}"
        ),
        Some(1.0)
    );
}
