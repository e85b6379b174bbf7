//! Load balancing, health and resilience through real sockets: distribution, steering away
//! from slow endpoints, hashing stability, failover under load, breaker, budget, caps, sticky.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::AsyncReadExt;

use crate::common::*;

fn addrs(origins: &[Origin], weights: &[u32]) -> Vec<(SocketAddr, u32)> {
    origins
        .iter()
        .enumerate()
        .map(|(i, o)| (o.addr, weights.get(i).copied().unwrap_or(1)))
        .collect()
}

#[tokio::test]
async fn weights_are_honoured_within_two_percent_over_10000_requests() {
    for balance in ["weighted", "random"] {
        let origins = numbered_origins(3).await;
        let gw = gateway(&upstream_config(
            &addrs(&origins, &[1, 2, 7]),
            &format!("balance = \"{balance}\""),
            "",
        ))
        .await;
        let bodies = load(&gw.url("/w"), 10_000, 16).await;
        let counts = tally(&bodies, 3);
        assert_eq!(
            counts.iter().sum::<usize>(),
            10_000,
            "{balance}: {counts:?}"
        );
        for (got, share) in counts.iter().zip([0.1, 0.2, 0.7]) {
            let err = (*got as f64 / 10_000.0 - share).abs();
            assert!(err < 0.02, "{balance}: {counts:?}");
        }
    }
}

#[tokio::test]
async fn least_conn_p2c_and_ewma_steer_away_from_a_slow_endpoint() {
    for balance in ["least_conn", "p2c", "ewma"] {
        let mut origins = numbered_origins(2).await;
        origins.push(
            origin(|_req: Request<Incoming>| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Response::new(full("2"))
            })
            .await,
        );
        let gw = gateway(&upstream_config(
            &addrs(&origins, &[]),
            &format!("balance = \"{balance}\""),
            "",
        ))
        .await;
        let bodies = load(&gw.url("/s"), 1500, 16).await;
        let counts = tally(&bodies, 3);
        assert_eq!(counts.iter().sum::<usize>(), 1500, "{balance}: {counts:?}");
        // Round robin would send it a third (500).
        assert!(
            counts[2] < 150,
            "{balance} sent the slow endpoint {counts:?}"
        );
    }
}

#[tokio::test]
async fn hashing_balancers_are_stable_for_a_key() {
    for upstream in [
        "balance = \"consistent_hash\"\nhash = \"ring\"\nhash_key = \"header:x-user\"",
        "balance = \"consistent_hash\"\nhash = \"maglev\"\nhash_key = \"header:x-user\"",
        "balance = \"consistent_hash\"\nhash_key = \"query:user\"",
        "balance = \"consistent_hash\"\nhash_key = \"cookie:sid\"",
    ] {
        let origins = numbered_origins(4).await;
        let gw = gateway(&upstream_config(&addrs(&origins, &[]), upstream, "")).await;
        let c = client();
        let mut seen = std::collections::HashSet::new();
        for user in 0..40 {
            let mut first = None;
            for _ in 0..3 {
                let r = c
                    .get(gw.url(&format!("/h?user=u{user}")))
                    .header("x-user", format!("u{user}"))
                    .header("cookie", format!("sid=u{user}"))
                    .send()
                    .await
                    .expect("request");
                let body = r.text().await.expect("body");
                assert_eq!(
                    *first.get_or_insert(body.clone()),
                    body,
                    "{upstream}: user {user}"
                );
            }
            seen.extend(first);
        }
        assert!(
            seen.len() >= 3,
            "{upstream}: 40 keys should spread, got {seen:?}"
        );
    }
    // ip_hash: every request from 127.0.0.1 lands on one endpoint.
    let origins = numbered_origins(4).await;
    let gw = gateway(&upstream_config(
        &addrs(&origins, &[]),
        "balance = \"ip_hash\"",
        "",
    ))
    .await;
    let bodies = load(&gw.url("/ip"), 100, 4).await;
    let counts = tally(&bodies, 4);
    assert_eq!(counts.iter().filter(|c| **c > 0).count(), 1, "{counts:?}");
}

#[tokio::test]
async fn killing_a_backend_under_load_loses_at_most_a_tenth_of_a_percent() {
    let origins = numbered_origins(3).await;
    let victim = origins[1].addr;
    let upstream = r#"
balance = "round_robin"
health.active = { path = "/", interval = "200ms", jitter = "50ms", timeout = "500ms", healthy_threshold = 2, unhealthy_threshold = 2 }
health.passive = { consecutive_failures = 3, base_ejection_time = "1s" }
retry = { attempts = 2, on = ["connect", "reset", 502, 503] }
"#;
    let gw = gateway(&upstream_config(&addrs(&origins, &[]), upstream, "")).await;
    let url = gw.url("/f");
    let run = tokio::spawn(async move { load(&url, 20_000, 32).await });
    while origins.iter().map(Origin::received).sum::<usize>() < 5_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    origins[1].kill();
    let bodies = run.await.expect("load");
    let failed: Vec<&String> = bodies.iter().filter(|b| b.starts_with("ERR")).collect();
    assert!(
        failed.len() <= 20,
        "{} of 20000 failed (limit 0.1%): {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    eprintln!(
        "failover: {} of 20000 failed; {} retries; {} ejections; killed endpoint: {:?}",
        failed.len(),
        stats.retries,
        stats.ejections,
        stats.endpoints[1]
    );
    let down = &stats.endpoints[1];
    assert!(
        !down.in_service,
        "killed endpoint still in service: {down:?}"
    );
    assert!(stats.retries > 0, "{stats:?}");

    // Restarted on its port, it is back after the healthy threshold and takes traffic again.
    let revived = origin_at(victim, |_req: Request<Incoming>| async {
        Response::new(full("1"))
    })
    .await;
    let server = gw.server.as_ref().expect("server");
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if server.upstream_stats()[0].endpoints[1].in_service {
            back = true;
            break;
        }
    }
    assert!(
        back,
        "endpoint not back: {:?}",
        server.upstream_stats()[0].endpoints[1]
    );
    let bodies = load(&gw.url("/f"), 300, 4).await;
    assert!(bodies.iter().all(|b| !b.starts_with("ERR")));
    assert!(revived.received() > 0 || tally(&bodies, 3)[1] > 0);
}

#[tokio::test]
async fn retries_go_to_a_different_endpoint_and_are_logged() {
    let bad = origin(|_req: Request<Incoming>| async {
        let mut r = Response::new(full("bad"));
        *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        r
    })
    .await;
    let good = origin(|_req: Request<Incoming>| async { Response::new(full("good")) }).await;
    let gw = gateway(&upstream_config(
        &[(bad.addr, 1), (good.addr, 1)],
        "retry = { attempts = 1, on = [503] }",
        "",
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        let r = c.get(gw.url("/r")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "good");
    }
    assert!(
        bad.received() >= 5,
        "round robin sends first tries to the bad one too"
    );
    let lines = gw.log_lines().await;
    let retried: Vec<_> = lines.iter().filter(|l| l["tries"] == 2).collect();
    assert_eq!(retried.len(), bad.received(), "{lines:?}");
    assert!(retried
        .iter()
        .all(|l| l["endpoint"] == good.addr.to_string()));
}

/// An origin that reads the request and drops the connection without answering.
async fn resetting_origin() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn non_idempotent_requests_are_retried_only_when_the_route_opts_in() {
    let (reset, _) = resetting_origin().await;
    let good = origin(|_req: Request<Incoming>| async { Response::new(full("ok")) }).await;
    let endpoints = [(reset, 1), (good.addr, 1)];
    let retry =
        "retry = { attempts = 1, on = [\"reset\"] }\nhealth.passive = { consecutive_failures = 0 }";
    let statuses = |gw: &Gateway, method: reqwest::Method| {
        let url = gw.url("/p");
        async move {
            let c = client();
            let mut out = Vec::new();
            for _ in 0..6 {
                let r = c.request(method.clone(), &url).body("payload").send().await;
                out.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            out
        }
    };
    let gw = gateway(&upstream_config(&endpoints, retry, "")).await;
    assert!(statuses(&gw, reqwest::Method::PUT)
        .await
        .iter()
        .all(|s| *s == 200));
    let post = statuses(&gw, reqwest::Method::POST).await;
    assert_eq!(post.iter().filter(|s| **s == 502).count(), 3, "{post:?}");

    let gw = gateway(&upstream_config(
        &endpoints,
        retry,
        ", retry_non_idempotent = true",
    ))
    .await;
    let post = statuses(&gw, reqwest::Method::POST).await;
    assert!(post.iter().all(|s| *s == 200), "{post:?}");
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after_without_touching_the_upstream() {
    let failing = origin(|_req: Request<Incoming>| async {
        let mut r = Response::new(full("boom"));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
    .await;
    let gw = gateway(&upstream_config(
        &[(failing.addr, 1)],
        "circuit_breaker = { failure_rate = 50, min_requests = 5, window = \"10s\", open_for = \"30s\" }",
        "",
    ))
    .await;
    let c = client();
    for _ in 0..5 {
        let r = c.get(gw.url("/b")).send().await.expect("request");
        assert_eq!(r.status(), 500);
    }
    let r = c.get(gw.url("/b")).send().await.expect("request");
    assert_eq!(r.status(), 503);
    let after: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((29..=30).contains(&after), "{after}");
    assert!(r.text().await.expect("body").contains("circuit_open"));
    assert_eq!(failing.received(), 5);
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert_eq!(stats.breaker, Some(weir_upstream::BreakerState::Open));
    assert_eq!(stats.breaker_rejected, 1);
}

#[tokio::test]
async fn with_every_endpoint_failing_attempts_stay_within_the_retry_budget() {
    let origins: Vec<Origin> = futures_util::future::join_all((0..3).map(|_| {
        origin(|_req: Request<Incoming>| async {
            let mut r = Response::new(full("down"));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            r
        })
    }))
    .await;
    let upstream = r#"
retry = { attempts = 3, on = [503], backoff = { base = "1ms", max = "5ms" }, budget = { percent = 20, min_per_second = 1, window = "10s" } }
"#;
    let gw = gateway(&upstream_config(&addrs(&origins, &[]), upstream, "")).await;
    let bodies = load(&gw.url("/down"), 300, 8).await;
    assert!(bodies.iter().all(|b| b == "ERR 503"));
    let attempts: usize = origins.iter().map(Origin::received).sum();
    // 300 requests + 20% of them + a floor of 1/s over the 10 s window.
    assert!(attempts <= 300 + 60 + 10, "{attempts} attempts");
    assert!(attempts > 300, "no retries at all: {attempts}");
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert!(stats.retry_budget_exhausted > 0, "{stats:?}");
}

#[tokio::test]
async fn max_in_flight_with_a_full_queue_answers_503() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Response::new(full("slow"))
    })
    .await;
    let gw = gateway(&upstream_config(
        &[(slow.addr, 1)],
        "max_in_flight = 1\nqueue = { size = 1, timeout = \"2s\" }",
        "",
    ))
    .await;
    let mut statuses: Vec<u16> = futures_util::future::join_all((0..3).map(|_| {
        let url = gw.url("/q");
        async move {
            reqwest::get(&url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    }))
    .await;
    statuses.sort_unstable();
    // One runs, one waits in the queue and then runs, one finds the queue full.
    assert_eq!(statuses, [200, 200, 503]);
    assert_eq!(slow.received(), 2);
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert_eq!(stats.busy_rejected, 1);
}

#[tokio::test]
async fn sticky_cookie_pins_a_client_and_forged_cookies_are_ignored() {
    let origins = numbered_origins(3).await;
    let gw = gateway(&upstream_config(
        &addrs(&origins, &[]),
        "sticky = { cookie = \"wb\", secret = \"0123456789abcdef-secret\" }",
        "",
    ))
    .await;
    let c = client();
    let r = c.get(gw.url("/s")).send().await.expect("request");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(set.starts_with("wb=") && set.contains("HttpOnly"), "{set}");
    let pinned = r.text().await.expect("body");
    let pair = set.split(';').next().expect("pair").to_owned();
    for _ in 0..12 {
        let r = c
            .get(gw.url("/s"))
            .header("cookie", &pair)
            .send()
            .await
            .expect("request");
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(r.text().await.expect("body"), pinned);
    }
    // A cookie with an edited endpoint id is not believed: the client is re-assigned.
    let forged = format!(
        "wb=0000000000000001{}",
        &pair[pair.find('.').expect("dot")..]
    );
    let r = c
        .get(gw.url("/s"))
        .header("cookie", forged)
        .send()
        .await
        .expect("request");
    assert!(r.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn active_checks_take_a_failing_endpoint_out_and_metrics_show_it() {
    let healthy = origin(|req: Request<Incoming>| async move {
        Response::new(full(if req.uri().path() == "/healthz" {
            "ok"
        } else {
            "0"
        }))
    })
    .await;
    let sick = origin(|req: Request<Incoming>| async move {
        if req.uri().path() == "/healthz" {
            let mut r = Response::new(full("not ok"));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            return r;
        }
        Response::new(full("1"))
    })
    .await;
    let upstream = "health.active = { path = \"/healthz\", interval = \"100ms\", jitter = \"10ms\", unhealthy_threshold = 2, body_contains = \"ok\" }\npanic_threshold = 0";
    let gw = gateway(&upstream_config(
        &[(healthy.addr, 1), (sick.addr, 1)],
        upstream,
        "",
    ))
    .await;
    let server = gw.server.as_ref().expect("server");
    let mut out = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !server.upstream_stats()[0].endpoints[1].in_service {
            out = true;
            break;
        }
    }
    assert!(out, "{:?}", server.upstream_stats());
    let before = sick.received();
    let bodies = load(&gw.url("/a"), 100, 4).await;
    assert_eq!(tally(&bodies, 2), [100, 0]);
    // Only probes reached the sick endpoint.
    let e = &server.upstream_stats()[0].endpoints[1];
    assert!(!e.active_healthy && e.probes_failed >= 2, "{e:?}");
    assert!(sick.received() - before < 20);
}

#[tokio::test]
async fn metrics_and_admin_api_show_endpoint_health() {
    let good = origin(|_req: Request<Incoming>| async { Response::new(full("ok")) }).await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let toml = upstream_config(
        &[(good.addr, 1), (dead, 1)],
        "health.passive = { consecutive_failures = 2, base_ejection_time = \"30s\" }",
        "",
    )
    .replacen(
        "shutdown_timeout = \"5s\"",
        "shutdown_timeout = \"5s\"\nadmin = { bind = \"127.0.0.1:0\" }",
        1,
    );
    let gw = gateway(&toml).await;
    let bodies = load(&gw.url("/m"), 20, 1).await;
    assert!(bodies.iter().all(|b| b == "ok"), "{bodies:?}");
    let admin = gw.admin_addr();
    // The membership task applies the ejection asynchronously.
    let mut text = String::new();
    for _ in 0..50 {
        text = reqwest::get(format!("http://{admin}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if text.contains(&format!(
            "weir_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{dead}\"}} 0"
        )) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for line in [
        format!("weir_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{dead}\"}} 0"),
        format!(
            "weir_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}} 1",
            good.addr
        ),
        format!("weir_upstream_endpoint_ejected{{upstream=\"up\",endpoint=\"{dead}\"}} 1"),
        "weir_upstream_ejections_total{upstream=\"up\"} 1".to_owned(),
        "# TYPE weir_upstream_retries_total counter".to_owned(),
    ] {
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    let json: serde_json::Value = reqwest::get(format!("http://{admin}/upstreams"))
        .await
        .expect("upstreams")
        .json()
        .await
        .expect("json");
    assert_eq!(json["upstreams"][0]["endpoints"][1]["in_service"], false);
    assert_eq!(json["upstreams"][0]["endpoints"][1]["ejected"], true);
}

#[tokio::test]
async fn a_slow_try_times_out_and_is_retried_elsewhere() {
    let stuck = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("late"))
    })
    .await;
    let fast = origin(|_req: Request<Incoming>| async { Response::new(full("fast")) }).await;
    let gw = gateway(&upstream_config(
        &[(stuck.addr, 1), (fast.addr, 1)],
        "retry = { attempts = 1, on = [\"timeout\"], per_try_timeout = \"200ms\" }\nhealth.passive = { consecutive_failures = 0 }",
        "",
    ))
    .await;
    let bodies = load(&gw.url("/t"), 6, 3).await;
    assert!(bodies.iter().all(|b| b == "fast"), "{bodies:?}");
    assert!(stuck.received() >= 1);
}

#[tokio::test]
async fn a_long_retry_after_ends_the_retries_and_the_503_passes_through() {
    let busy = origin(|_req: Request<Incoming>| async {
        Response::builder()
            .status(503)
            .header("retry-after", "120")
            .body(full("later"))
            .expect("response")
    })
    .await;
    let gw = gateway(&upstream_config(
        &[(busy.addr, 1)],
        "retry = { attempts = 2, on = [503], max_retry_after = \"1s\" }",
        "",
    ))
    .await;
    let r = client().get(gw.url("/ra")).send().await.expect("request");
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "120");
    assert_eq!(
        busy.received(),
        1,
        "a Retry-After beyond max_retry_after is not retried"
    );
    // A short one is waited, then retried.
    let soon = origin(|_req: Request<Incoming>| async {
        Response::builder()
            .status(503)
            .header("retry-after", "0")
            .body(full("again"))
            .expect("response")
    })
    .await;
    let gw = gateway(&upstream_config(
        &[(soon.addr, 1)],
        "retry = { attempts = 2, on = [503], backoff = { base = \"1ms\", max = \"2ms\" } }",
        "",
    ))
    .await;
    let r = client().get(gw.url("/ra")).send().await.expect("request");
    assert_eq!(r.status(), 503);
    assert_eq!(soon.received(), 3);
}
