//! Gateway policies over real sockets: idempotency keys (in memory), CORS, header edits,
//! concurrency limits, listener IP rules, path rewrites and per-route body limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::common::*;

fn guarded(origin: std::net::SocketAddr, policies: &str, chain: &str, route_extra: &str) -> String {
    guarded_config(origin, "", policies, chain, route_extra)
}

/// An origin that answers POSTs with a counter (`order-N`, 201) after `delay`, or `status`
/// when the body says `fail`.
async fn orders_origin(delay: Duration) -> (Origin, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let o = origin(move |req: Request<Incoming>| {
        let n = n2.clone();
        async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            tokio::time::sleep(delay).await;
            if &body[..] == b"fail" {
                return Response::builder()
                    .status(500)
                    .body(full("boom"))
                    .expect("response");
            }
            let id = n.fetch_add(1, Ordering::SeqCst) + 1;
            Response::builder()
                .status(201)
                .header("x-order", id.to_string())
                .body(full(format!("order-{id}")))
                .expect("response")
        }
    })
    .await;
    (o, n)
}

async fn post(gw: &Gateway, key: Option<&str>, body: &'static str) -> reqwest::Response {
    let mut r = client().post(gw.url("/orders")).body(body);
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    r.send().await.expect("request")
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_reuse_and_release_failures() {
    let (o, made) = orders_origin(Duration::ZERO).await;
    let policy = "[[policies]]\nname = \"idem\"\nidempotency = { required = true }";
    let gw = gateway(&guarded(o.addr, policy, "\"idem\"", "")).await;

    let first = post(&gw, Some("\"k-1\""), "{\"qty\":1}").await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(first.text().await.expect("body"), "order-1");
    // The record is written when the body ends; a repeat is replayed, not forwarded.
    wait_for_metric(
        &gw,
        "weir_policy_events_total{policy=\"idem\",event=\"recorded\"}",
        1.0,
    )
    .await;
    let again = post(&gw, Some("\"k-1\""), "{\"qty\":1}").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["x-order"], "1");
    assert_eq!(again.text().await.expect("body"), "order-1");
    assert_eq!(made.load(Ordering::SeqCst), 1);

    // Same key, other body: 422. No key where required: 400. GET is not covered.
    let r = post(&gw, Some("\"k-1\""), "{\"qty\":2}").await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"],
        "idempotency_key_reused"
    );
    assert_eq!(post(&gw, None, "{}").await.status(), 400);
    assert_eq!(get_status(&gw, "/orders").await, 201);

    // A failed attempt (500 is not stored) releases the key: the retry reaches the upstream.
    assert_eq!(post(&gw, Some("k-2"), "fail").await.status(), 500);
    wait_for_metric(
        &gw,
        "weir_policy_events_total{policy=\"idem\",event=\"released\"}",
        1.0,
    )
    .await;
    let before = o.received();
    assert_eq!(post(&gw, Some("k-2"), "fail").await.status(), 500);
    assert_eq!(o.received(), before + 1, "the key was released");

    let lines = gw.log_lines().await;
    assert!(lines.iter().any(|l| l["idempotency"] == "replayed"));
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"idem\",event=\"replayed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"idem\",event=\"mismatch\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn concurrent_duplicates_reach_the_upstream_once() {
    let (o, made) = orders_origin(Duration::from_millis(300)).await;
    let policy = "[[policies]]\nname = \"idem\"\nidempotency = {}";
    let gw = Arc::new(gateway(&guarded(o.addr, policy, "\"idem\"", "")).await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            post(&gw, Some("dup"), "same").await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert_eq!(made.load(Ordering::SeqCst), 1, "statuses: {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    wait_for_metric(
        &gw,
        "weir_policy_events_total{policy=\"idem\",event=\"recorded\"}",
        1.0,
    )
    .await;
    let r = post(&gw, Some("dup"), "same").await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_gateway() {
    let o = echo_origin().await;
    let policy = r#"[[policies]]
name = "cors"
cors = { allow_origins = ["https://app.example.com", "https://*.example.org"], allow_methods = ["GET", "PUT"], allow_headers = ["x-trace"], expose_headers = ["x-order"], allow_credentials = true, max_age = "10m" }"#;
    let gw = gateway(&guarded(o.addr, policy, "\"cors\"", "")).await;
    let c = client();
    let pre = |origin: &'static str, method: &'static str, headers: &'static str| {
        c.request(reqwest::Method::OPTIONS, gw.url("/things"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let r = pre("https://app.example.com", "PUT", "X-Trace, content-type")
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "x-trace, content-type");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().expect("ascii").contains("origin"));
    assert_eq!(
        pre("https://a.example.org", "GET", "")
            .await
            .expect("request")
            .status(),
        204
    );
    // Disallowed origin, method, header: 403, nothing forwarded.
    for (origin, method, headers) in [
        ("https://evil.example.com", "GET", ""),
        ("https://app.example.com.evil.net", "GET", ""),
        ("null", "GET", ""),
        ("https://app.example.com", "DELETE", ""),
        ("https://app.example.com", "GET", "x-secret"),
    ] {
        let r = pre(origin, method, headers).await.expect("request");
        assert_eq!(r.status(), 403, "{origin} {method} {headers}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }
    assert_eq!(o.received(), 0);
    // Actual requests: allowed origins get the headers, others none; both vary on Origin.
    let r = c
        .get(gw.url("/things"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-expose-headers"], "x-order");
    assert!(r.headers()["vary"]
        .to_str()
        .expect("ascii")
        .contains("origin"));
    let r = c
        .get(gw.url("/things"))
        .header("origin", "https://evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"cors\",event=\"preflight_denied\"}"
        ),
        Some(5.0)
    );
    // A preflight answered is not a denial: `answered_by`; a refused one is `denied_by`.
    let lines = gw.log_lines_at_least(9).await;
    let preflights: Vec<_> = lines.iter().filter(|l| l["method"] == "OPTIONS").collect();
    assert_eq!(preflights.len(), 7, "{lines:?}");
    for l in &preflights {
        if l["status"] == 204 {
            assert_eq!(l["answered_by"], "cors", "{l}");
            assert!(l.get("denied_by").is_none(), "{l}");
        } else {
            assert_eq!(l["denied_by"], "cors", "{l}");
            assert!(l.get("answered_by").is_none(), "{l}");
        }
    }
}

#[tokio::test]
async fn header_edits_rewrites_and_route_body_limits() {
    let o = echo_origin().await;
    let policy = r#"[[policies]]
name = "hdr"
headers = { request = { set = { "x-client" = "$client_ip", "x-route" = "route=${route}" }, remove = ["x-internal"], add = { "x-tag" = "weir" } }, response = { set = { "x-served-by" = "weir $request_id" }, remove = ["x-powered-by"] } }"#;
    let extra = "max_request_body_size = \"10B\"\nrewrite = { strip_prefix = \"/api\", add_prefix = \"/v2\" }";
    let gw = gateway(&guarded(o.addr, policy, "\"hdr\"", extra)).await;
    let r = client()
        .get(gw.url("/api/users?page=2"))
        .header("x-internal", "secret")
        .header("x-client", "spoofed")
        .header("x-request-id", "rid-1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-served-by"], "weir rid-1");
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["uri"], "/v2/users?page=2");
    assert_eq!(echoed["headers"]["x-client"], "127.0.0.1");
    assert_eq!(echoed["headers"]["x-route"], "route=guarded");
    assert_eq!(echoed["headers"]["x-tag"], "weir");
    assert!(echoed["headers"].get("x-internal").is_none());
    // The route's own limit: 10 bytes.
    let r = client()
        .post(gw.url("/api/x"))
        .body("0123456789A")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    let r = client()
        .post(gw.url("/api/x"))
        .body("0123456789")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Chunked (no Content-Length) is cut off too.
    let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>("012345"), Ok("6789AB")]);
    let r = client()
        .post(gw.url("/api/x"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn concurrency_limits_refuse_beyond_the_in_flight_count() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        Response::new(full("done"))
    })
    .await;
    let policy = "[[policies]]\nname = \"two\"\nconcurrency = { limit = 2, key = \"client_ip\" }";
    let gw = Arc::new(gateway(&guarded(slow.addr, policy, "\"two\"", "")).await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move { get_status(&gw, "/x").await }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 429, 429, 429, 429]);
    // Slots are given back when responses end.
    assert_eq!(get_status(&gw, "/x").await, 200);
    assert_eq!(get_status(&gw, "/x").await, 200);
}

#[tokio::test]
async fn listener_ip_rules_refuse_before_routing() {
    let o = echo_origin().await;
    let toml = format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"
ip = {{ deny = ["127.0.0.0/8", "::1"] }}

[[upstreams]]
name = "up"
endpoints = ["{}"]

[[routes]]
proxy = {{ upstream = "up" }}
"#,
        o.addr
    );
    let gw = gateway(&toml).await;
    let r = client().get(gw.url("/x")).send().await.expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"],
        "ip_denied"
    );
    assert_eq!(o.received(), 0);
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["denied_by"], "listener");
}

#[tokio::test]
async fn idempotency_records_fixed_responses_too() {
    let toml = r#"
admin = { bind = "127.0.0.1:0" }

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[policies]]
name = "idem"
idempotency = {}

[[routes]]
policies = ["idem"]
respond = { status = 201, body = "made" }
"#;
    let gw = gateway(toml).await;
    assert_eq!(post(&gw, Some("r-1"), "a").await.status(), 201);
    wait_for_metric(
        &gw,
        "weir_policy_events_total{policy=\"idem\",event=\"recorded\"}",
        1.0,
    )
    .await;
    let again = post(&gw, Some("r-1"), "a").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.expect("body"), "made");
    assert_eq!(post(&gw, Some("r-1"), "b").await.status(), 422);
}
