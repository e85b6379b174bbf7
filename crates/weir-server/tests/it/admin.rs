//! The admin API: bearer token, health and readiness (also during a drain), status, and
//! draining an endpoint by hand.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::*;

const TOKEN: &str = "s3cret-admin-token-0123";

async fn admin_get(gw: &Gateway, path: &str, token: Option<&str>) -> reqwest::Response {
    let admin = gw.admin_addr();
    let mut req = client().get(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("admin request")
}

async fn admin_post(gw: &Gateway, path: &str) -> reqwest::Response {
    let admin = gw.admin_addr();
    client()
        .post(format!("http://{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin request")
}

fn with_admin(toml: String) -> String {
    toml.replacen(
        "shutdown_timeout = \"5s\"",
        &format!(
            "shutdown_timeout = \"5s\"\nadmin = {{ bind = \"127.0.0.1:0\", token = \"{TOKEN}\" }}"
        ),
        1,
    )
}

#[tokio::test]
async fn the_token_is_required_and_health_and_status_answer() {
    let o = echo_origin().await;
    let gw = gateway(&with_admin(config(&[o.addr], ""))).await;
    assert_eq!(admin_get(&gw, "/metrics", None).await.status(), 401);
    assert_eq!(
        admin_get(&gw, "/metrics", Some("wrong-token-wrong-token"))
            .await
            .status(),
        401
    );
    assert_eq!(admin_get(&gw, "/healthz", Some(TOKEN)).await.status(), 200);
    assert_eq!(admin_get(&gw, "/readyz", Some(TOKEN)).await.status(), 200);
    let status: serde_json::Value = admin_get(&gw, "/status", Some(TOKEN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    // No reload has happened: null, not a record dated 1970.
    assert_eq!(status["last_reload"], serde_json::Value::Null);
    assert!(status["started_unix_time"]
        .as_u64()
        .is_some_and(|t| t > 1_700_000_000));
    assert_eq!(status["config_hash"].as_str().map(str::len), Some(16));
    // The effective config, defaults filled in, the token never shown.
    let config: serde_json::Value = admin_get(&gw, "/config", Some(TOKEN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(config["admin"]["token"], "<redacted>");
    assert_eq!(config["upstreams"][0]["retry"]["attempts"], 2);
    assert_eq!(config["server"]["max_request_header_size"], "32KiB");
    let text = config.to_string();
    assert!(!text.contains(TOKEN));
}

#[tokio::test]
async fn a_wrong_method_gets_405_with_allow_and_an_unknown_path_lists_the_endpoints() {
    let o = echo_origin().await;
    let gw = gateway(&with_admin(config(&[o.addr], ""))).await;
    let r = admin_get(&gw, "/reload", Some(TOKEN)).await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = admin_get(&gw, "/caches/edge/purge", Some(TOKEN)).await;
    assert_eq!(r.status(), 405, "patterned paths are known too");
    let r = admin_post(&gw, "/metrics").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = admin_get(&gw, "/nope", Some(TOKEN)).await;
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("json");
    let listed: Vec<&str> = body["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(listed.contains(&"POST /caches/{name}/purge"), "{listed:?}");
    assert!(listed.contains(&"GET /metrics"), "{listed:?}");
}

#[tokio::test]
async fn a_drained_endpoint_gets_no_new_requests_until_enabled() {
    let origins = numbered_origins(2).await;
    let gw = gateway(&with_admin(upstream_config(
        &[(origins[0].addr, 1), (origins[1].addr, 1)],
        "",
        "",
    )))
    .await;
    let target = origins[1].addr.to_string();
    let r = admin_post(&gw, &format!("/upstreams/up/endpoints/{target}/drain")).await;
    assert_eq!(r.status(), 200);
    let bodies = load(&gw.url("/d"), 200, 4).await;
    assert_eq!(tally(&bodies, 2), [200, 0]);
    let ups: serde_json::Value = admin_get(&gw, "/upstreams", Some(TOKEN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(ups["upstreams"][0]["endpoints"][1]["drained"], true);
    assert_eq!(
        admin_post(&gw, &format!("/upstreams/up/endpoints/{target}/enable"))
            .await
            .status(),
        200
    );
    let bodies = load(&gw.url("/d"), 200, 4).await;
    assert_eq!(tally(&bodies, 2), [100, 100]);
    assert_eq!(
        admin_post(&gw, "/upstreams/up/endpoints/10.9.9.9:1/drain")
            .await
            .status(),
        404
    );
    assert_eq!(
        admin_post(&gw, "/upstreams/nope/endpoints/x/drain")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn readyz_says_no_while_draining() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        Response::new(full("done"))
    })
    .await;
    let mut gw = gateway(&with_admin(config(&[slow.addr], ""))).await;
    let admin = gw.admin_addr();
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    wait_until("the request reached the origin", || async {
        (slow.received() >= 1).then_some(())
    })
    .await;
    let server = gw.server.take().expect("server");
    let shutdown = tokio::spawn(server.shutdown());
    // Not ready from the moment the drain begins, while the request is still in flight.
    wait_until("/readyz to say no", || async {
        let ready = client()
            .get(format!("http://{admin}/readyz"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("readyz during drain");
        (ready.status() == 503).then_some(())
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "the drain is still waiting for it"
    );
    assert_eq!(
        in_flight.await.expect("task").expect("response").as_u16(),
        200
    );
    assert!(shutdown.await.expect("shutdown"));
}

#[tokio::test]
async fn explain_names_the_route_and_why_earlier_ones_missed() {
    let o = echo_origin().await;
    let toml = with_admin(config(&[o.addr], "")).replace(
        "[[routes]]\nname = \"to-up\"",
        "[[routes]]\nname = \"admin-only\"\nmatch = { path_prefix = \"/admin\", methods = [\"POST\"] }\nrespond = { status = 403 }\n\n[[routes]]\nname = \"to-up\"",
    );
    let gw = gateway(&toml).await;
    let e: serde_json::Value = admin_get(&gw, "/explain?method=GET&url=/admin/x", Some(TOKEN))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(e["steps"][0]["route"], "admin-only");
    assert_eq!(e["steps"][0]["reason"], "method is not one of POST");
    assert_eq!(e["steps"][1]["route"], "to-up");
    assert_eq!(e["steps"][1]["matched"], true);
    assert!(
        e["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("proxy to upstream `up`")),
        "{e}"
    );
    // The facts under the action are plain strings, not indented text.
    assert!(
        e["details"].as_array().is_some_and(|d| d
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with("endpoint ")))),
        "{e}"
    );
    let bad = admin_get(&gw, "/explain?method=GET", Some(TOKEN)).await;
    assert_eq!(bad.status(), 400);
    let routes: serde_json::Value = admin_get(&gw, "/routes", Some(TOKEN))
        .await
        .json()
        .await
        .expect("json");
    let listed = &routes["listeners"][0]["routes"];
    assert_eq!(listed[0]["name"], "admin-only");
    assert_eq!(listed[0]["match"], "path prefix \"/admin\", method POST");
    assert_eq!(listed[1]["match"], "everything");
}

fn admin_addr(gw: &Gateway) -> std::net::SocketAddr {
    gw.admin_addr()
}

/// The admin token can come from a file like every other secret, and is checked as before.
#[tokio::test]
async fn the_admin_token_is_a_secret_read_from_a_file() {
    let dir = TempDir::new("admin-token");
    let path = dir.0.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        &format!(
            "admin = {{ bind = \"127.0.0.1:0\", token = {{ file = \"{}\" }} }}",
            path.display()
        ),
    ))
    .await;
    assert_eq!(admin_get(&gw, "/status", None).await.status(), 401);
    assert_eq!(admin_get(&gw, "/status", Some("x")).await.status(), 401);
    assert_eq!(
        admin_get(&gw, "/status", Some(&format!("{TOKEN}x")))
            .await
            .status(),
        401
    );
    assert_eq!(admin_get(&gw, "/status", Some(TOKEN)).await.status(), 200);
}

/// A client that opens the admin API and never finishes its request head is cut off after
/// `server.header_read_timeout`, as on traffic listeners (slowloris on the operator's door).
#[tokio::test]
async fn the_admin_listener_times_out_slow_request_heads() {
    use tokio::io::AsyncWriteExt;
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "admin = { bind = \"127.0.0.1:0\" }\n[server]\nheader_read_timeout = \"300ms\"",
    ))
    .await;
    let mut slow = tokio::net::TcpStream::connect(admin_addr(&gw))
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        .await
        .expect("write");
    // A generous deadline: the timeout is 300 ms; without one the connection stays open.
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)).await,
        "slow head not cut off"
    );
    // An idle connection that sent nothing is closed too.
    let mut idle = tokio::net::TcpStream::connect(admin_addr(&gw))
        .await
        .expect("connect");
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)).await,
        "idle connection kept"
    );
    assert_eq!(admin_get(&gw, "/healthz", None).await.status(), 200);
}

/// `admin.max_connections` caps concurrent admin connections: past it, a client waits in the
/// backlog until one closes, then is served.
#[tokio::test]
async fn the_admin_listener_caps_its_connections() {
    use tokio::io::AsyncWriteExt;
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "admin = { bind = \"127.0.0.1:0\", max_connections = 2 }",
    ))
    .await;
    let addr = admin_addr(&gw);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        // Answered, and the connection stays open (keep-alive): it holds a slot.
        let mut buf = [0u8; 512];
        let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    // Not served while both slots are held (a window that can only make this test pass
    // wrongly, never fail wrongly).
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::io::AsyncReadExt::read(&mut third, &mut buf),
    )
    .await;
    assert!(early.is_err(), "a third admin connection was served");
    drop(held.pop());
    let mut got = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncReadExt::read_to_end(&mut third, &mut got),
    )
    .await
    .expect("served once a slot freed")
    .expect("read");
    let text = String::from_utf8_lossy(&buf[..0]).into_owned() + &String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Every admin error has the same shape: status, a code, a message.
#[tokio::test]
async fn admin_errors_share_one_shape() {
    let o = echo_origin().await;
    let gw = gateway(&with_admin(config(&[o.addr], ""))).await;
    let admin = gw.admin_addr();
    let c = client();
    let post = |path: &str| {
        c.post(format!("http://{admin}{path}"))
            .bearer_auth(TOKEN)
            .send()
    };
    for (resp, status, code) in [
        (admin_get(&gw, "/metrics", None).await, 401, "unauthorized"),
        (admin_get(&gw, "/nope", Some(TOKEN)).await, 404, "not_found"),
        (
            admin_get(&gw, "/reload", Some(TOKEN)).await,
            405,
            "method_not_allowed",
        ),
        (
            admin_get(&gw, "/explain?method=GET", Some(TOKEN)).await,
            400,
            "bad_request",
        ),
        (
            post("/upstreams/nope/endpoints/1.2.3.4:80/drain")
                .await
                .expect("post"),
            404,
            "not_found",
        ),
        (
            post("/caches/nope/purge?all=1").await.expect("post"),
            404,
            "not_found",
        ),
    ] {
        assert_eq!(resp.status(), status);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body["error"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}
