//! Mirrored traffic: the mirror gets its share of requests, each the same method, path,
//! headers and body, marked as a copy; a mirror that hangs or refuses connections changes
//! nothing for clients; bodies past the limit and copies past the in-flight cap are dropped
//! and counted.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::common::*;

fn mirror_config(app: std::net::SocketAddr, shadow: std::net::SocketAddr, mirror: &str) -> String {
    TestConfig::new()
        .admin()
        .upstream(
            "app",
            &[app],
            "timeouts = { connect = \"1s\", response_header = \"5s\" }",
        )
        .upstream(
            "shadow",
            &[shadow],
            "timeouts = { connect = \"1s\", response_header = \"30s\" }\nretry = { attempts = 1 }",
        )
        .route(
            "app",
            &format!("proxy = {{ upstream = \"app\" }}\nmirror = {{ {mirror} }}"),
        )
        .build()
}

type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap, bytes::Bytes)>>>;

/// An origin that records every request it gets.
async fn recording_origin() -> (Origin, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let o = origin(move |req: Request<Incoming>| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            s.lock().expect("seen").push((
                parts.method.to_string(),
                parts.uri.to_string(),
                parts.headers,
                body,
            ));
            Response::new(full("shadow"))
        }
    })
    .await;
    (o, seen)
}

#[tokio::test]
async fn the_mirror_gets_its_share_as_exact_copies_marked_as_such() {
    let app = echo_origin().await;
    let (shadow, seen) = recording_origin().await;
    let gw = gateway(&mirror_config(
        app.addr,
        shadow.addr,
        "upstream = \"shadow\", percent = 10",
    ))
    .await;
    let got = load(&gw.url("/share"), 10_000, 32).await;
    assert!(got.iter().all(|b| !b.starts_with("ERR")));
    let m = wait_for_metric(
        &gw,
        "weir_mirror_requests_total{route=\"app\",upstream=\"shadow\",outcome=\"sent\"}",
        1.0,
    )
    .await;
    let sent = metric_value(
        &m,
        "weir_mirror_requests_total{route=\"app\",upstream=\"shadow\",outcome=\"sent\"}",
    )
    .expect("sent");
    let share = sent / 10_000.0;
    assert!((share - 0.10).abs() <= 0.02, "mirrored {share}");
    let answered = wait_until("every copy answered", || async {
        let m = metrics(&gw).await;
        let n = metric_value(
            &m,
            "weir_mirror_responses_total{route=\"app\",upstream=\"shadow\",status_class=\"2xx\"}",
        )?;
        (n >= sent).then_some(n)
    })
    .await;
    assert_eq!(answered, sent);
    assert_eq!(shadow.received() as f64, sent);

    // A POST with a body, mirrored at 100 %: the same method, target, headers and body; Host
    // as the client sent it; the copy marked with the route's name.
    let gw = gateway(&mirror_config(
        app.addr,
        shadow.addr,
        "upstream = \"shadow\"",
    ))
    .await;
    seen.lock().expect("seen").clear();
    let body = "x".repeat(20_000);
    let r = client()
        .post(gw.url("/orders?id=7"))
        .header("host", "shop.example")
        .header("x-custom", "kept")
        .body(body.clone())
        .send()
        .await
        .expect("request");
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["body_len"], 20_000);
    assert!(
        echoed["headers"].get("x-weir-mirror").is_none(),
        "the client's request is not marked"
    );
    let (method, uri, headers, got) = wait_until("the copy", || async {
        seen.lock().expect("seen").first().cloned()
    })
    .await;
    assert_eq!((method.as_str(), uri.as_str()), ("POST", "/orders?id=7"));
    assert_eq!(got, bytes::Bytes::from(body));
    assert_eq!(headers["host"], "shop.example");
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["x-weir-mirror"], "app");
    assert!(headers.contains_key("x-request-id") && headers.contains_key("x-forwarded-for"));
}

#[tokio::test]
async fn a_hanging_or_refusing_mirror_changes_nothing_for_clients() {
    let app = numbered_origins(1).await;
    // A mirror that never answers: every copy it gets stays open.
    let hold = Arc::new(tokio::sync::Notify::new());
    let h = hold.clone();
    let hanging = origin(move |_req: Request<Incoming>| {
        let h = h.clone();
        async move {
            h.notified().await;
            Response::new(full("late"))
        }
    })
    .await;
    let gw = gateway(&mirror_config(
        app[0].addr,
        hanging.addr,
        "upstream = \"shadow\", max_in_flight = 8, timeout = \"30s\"",
    ))
    .await;
    // 500 requests complete while the mirror holds 8 copies unanswered: none waited on it.
    let got = load(&gw.url("/"), 500, 8).await;
    assert!(
        got.iter().all(|b| b == "0"),
        "{:?}",
        got.iter().find(|b| *b != "0")
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_mirror_in_flight{route=\"app\",upstream=\"shadow\"}"
        ),
        Some(8.0)
    );
    let dropped = metric_value(&m, "weir_mirror_requests_total{route=\"app\",upstream=\"shadow\",outcome=\"dropped_in_flight\"}")
        .expect("dropped");
    assert_eq!(dropped, 492.0, "{m}");
    hold.notify_waiters();

    // A mirror that refuses connections: every client request still succeeds, the copies
    // are counted as errors.
    let gw = gateway(&mirror_config(
        app[0].addr,
        closed_addr(),
        "upstream = \"shadow\"",
    ))
    .await;
    let got = load(&gw.url("/"), 300, 8).await;
    assert!(got.iter().all(|b| b == "0"));
    wait_for_metric(
        &gw,
        "weir_mirror_responses_total{route=\"app\",upstream=\"shadow\",status_class=\"error\"}",
        1.0,
    )
    .await;
}

#[tokio::test]
async fn bodies_past_the_limit_are_not_mirrored_and_are_counted() {
    let app = echo_origin().await;
    let (shadow, seen) = recording_origin().await;
    let gw = gateway(&mirror_config(
        app.addr,
        shadow.addr,
        "upstream = \"shadow\", max_body = \"1KiB\"",
    ))
    .await;
    let c = client();
    // Declared too large.
    let r = c
        .post(gw.url("/big"))
        .body("y".repeat(4096))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Chunked, growing past the limit as it streams.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from("z".repeat(600)))),
    );
    let r = c
        .post(gw.url("/chunked"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["body_len"], 2400);
    // A small one is mirrored.
    c.post(gw.url("/small"))
        .body("ok")
        .send()
        .await
        .expect("request");
    wait_until("the small copy", || async {
        (!seen.lock().expect("seen").is_empty()).then_some(())
    })
    .await;
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(&m, "weir_mirror_requests_total{route=\"app\",upstream=\"shadow\",outcome=\"dropped_body_too_large\"}"),
        Some(2.0)
    );
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, "/small");
}
