//! Every error status, each from a real failure: malformed and oversized requests over raw TCP,
//! a dead upstream, a slow upstream, an empty pool, no route.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::*;

/// The JSON error body carries the status, a code and the request id.
fn assert_error_body(resp: &str, status: u16, code: &str) {
    assert_eq!(status_of(resp), status, "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {resp}"));
    assert_eq!(json["status"], status);
    assert_eq!(json["error"], code);
    let id = json["request_id"].as_str().expect("request id");
    assert!(
        resp.to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "{resp}"
    );
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let resp = raw(gw.addr, bad).await;
        assert_eq!(
            status_of(&resp),
            400,
            "{:?} -> {resp}",
            String::from_utf8_lossy(bad)
        );
    }
    // Requests hyper parses but HTTP/1.1 forbids: no Host, two Hosts, a bogus Host.
    for bad in [
        &b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\nConnection: close\r\n\r\n",
        b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\n",
    ] {
        let resp = raw(gw.addr, bad).await;
        assert_error_body(&resp, 400, "bad_request");
    }
    assert_eq!(o.accepted(), 0, "nothing malformed reached the upstream");
}

#[tokio::test]
async fn oversized_header_gets_431() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nmax_request_header_size = \"8KiB\"\n",
    ))
    .await;
    let big = "a".repeat(16 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    // Under the limit passes.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(4000)
    );
    assert_eq!(status_of(&raw(gw.addr, ok.as_bytes()).await), 200);
}

#[tokio::test]
async fn oversized_body_gets_413_by_length_and_by_chunks() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nmax_request_body_size = \"1KiB\"\n",
    ))
    .await;
    let body = "x".repeat(2000);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_error_body(&raw(gw.addr, req.as_bytes()).await, 413, "body_too_large");
    assert_eq!(
        o.accepted(),
        0,
        "a declared oversized body never reaches the upstream"
    );

    // Chunked: no length up front; cut off once the limit is crossed.
    let mut req = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_error_body(&raw(gw.addr, &req).await, 413, "body_too_large");

    // At the limit passes.
    let body = "x".repeat(1024);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{body}"
    );
    assert_eq!(status_of(&raw(gw.addr, req.as_bytes()).await), 200);
}

#[tokio::test]
async fn unreachable_upstream_gets_502() {
    // Bind then drop a listener: its port refuses connections.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gw = gateway(&config(&[dead], "")).await;
    let resp = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_error_body(&resp, 502, "upstream_unreachable");
    assert!(!resp.contains("refused"), "no internals leak: {resp}");
}

#[tokio::test]
async fn slow_upstream_gets_504() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Response::new(full("late"))
    })
    .await;
    let toml =
        config(&[slow.addr], "").replace("response_header = \"2s\"", "response_header = \"200ms\"");
    let gw = gateway(&toml).await;
    let resp = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_error_body(&resp, 504, "upstream_timeout");
}

#[tokio::test]
async fn empty_pool_gets_503() {
    let gw = gateway(&config(&[], "")).await;
    let resp = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_error_body(&resp, 503, "no_healthy_endpoint");
}

#[tokio::test]
async fn no_route_gets_404() {
    let o = echo_origin().await;
    let toml = config(&[o.addr], "").replace(
        "name = \"to-up\"",
        "name = \"to-up\"\nmatch = { path_prefix = \"/api/\" }",
    );
    let gw = gateway(&toml).await;
    let resp = raw(
        gw.addr,
        b"GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_error_body(&resp, 404, "no_route");
}
