//! Request-smuggling regression suite over raw TCP. Every ambiguous or malformed framing is
//! answered 400 and the connection closed, and nothing reaches the upstream. Cases come from
//! RFC 9112 §6 and published advisories against other proxies (CL.TE / TE.CL desync, TE
//! obfuscation, obs-fold, chunk-size tricks, bare LF, h2c upgrade smuggling).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const CASES: &[(&str, &str)] = &[
    ("CL and TE together", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE and CL together", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
    ("duplicate identical CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    ("differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    ("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"),
    ("CL with sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
    ("CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
    ("CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("TE not ending in chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
    ("TE gzip only", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n"),
    ("TE misspelled", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"),
    ("TE with space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
    ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-Foo: bar\r\n baz\r\n\r\n"),
    ("obs-fold of TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"),
    ("invalid chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with leading space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with garbage", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n"),
    ("chunk extension with bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext\nhello\r\n0\r\n\r\n"),
    ("chunk extension with control byte", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e\x01x\r\nhello\r\n0\r\n\r\n"),
    ("chunk data longer than its size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"),
    ("bare LF line endings", "GET / HTTP/1.1\nHost: a\n\n"),
    ("bare LF in one header", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
    ("bare CR", "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
    ("NUL in header value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"),
    ("invalid header name", "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n"),
    ("HTTP/1.0 with TE", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("h2c upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
    ("space in request target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("extra token in request line", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"),
    ("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n"),
];

/// Sends `input`; returns what came back and whether the gateway closed the connection
/// (within 3 s).
async fn exchange(addr: std::net::SocketAddr, input: &str) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(input.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn send(addr: std::net::SocketAddr, input: &str) -> String {
    let (out, closed) = exchange(addr, input).await;
    assert!(closed, "connection left open after {input:?}");
    out
}

#[tokio::test]
async fn ambiguous_framing_is_refused_with_400_and_never_forwarded() {
    let origin = echo_origin().await;
    let gw = gateway(&config(&[origin.addr], "")).await;
    let cases = futures_util::future::join_all(CASES.iter().map(|(name, input)| async move {
        let (resp, closed) = exchange(gw.addr, input).await;
        (name, resp, closed)
    }))
    .await;
    let mut failures = Vec::new();
    for (name, resp, closed) in cases {
        let status = resp
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .unwrap_or("none");
        if status != "400" || resp.matches("HTTP/1.1 ").count() != 1 || !closed {
            failures.push(format!("{name}: got {status}, closed: {closed}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(origin.received(), 0, "something was forwarded");
}

#[tokio::test]
async fn bytes_after_an_unanswered_upgrade_are_not_tunnelled() {
    // The origin does not agree to upgrade (it answers 200): the bytes after the head must be
    // parsed by Weir as the next request, routed and logged like any other — not passed raw.
    let origin = echo_origin().await;
    let gw = gateway(&config(&[origin.addr], "")).await;
    let resp = send(
        gw.addr,
        "GET /first HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    // Both went through Weir's proxy path: each carries Weir's Via header upstream.
    assert_eq!(resp.matches("\"via\":\"1.1 weir\"").count(), 2, "{resp}");
    assert_eq!(origin.received(), 2);
}

/// An `Upgrade` header that no upstream accepted does not switch the framing guard off: each
/// vector the guard refuses, sent on the same connection after an unanswered upgrade, is still
/// refused and never forwarded.
#[tokio::test]
async fn an_unanswered_upgrade_leaves_the_framing_guard_armed() {
    let origin = echo_origin().await;
    let gw = gateway(&config(&[origin.addr], "")).await;
    let upgrade =
        "GET /first HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let cases = futures_util::future::join_all(CASES.iter().map(|(name, input)| async move {
        let (resp, closed) = exchange(gw.addr, &format!("{upgrade}{input}")).await;
        (name, resp, closed)
    }))
    .await;
    let mut failures = Vec::new();
    for (name, resp, closed) in cases {
        let statuses: Vec<&str> = resp
            .match_indices("HTTP/1.1 ")
            .filter_map(|(i, _)| resp.get(i + 9..i + 12))
            .collect();
        // The upgrade request answered 200 (no upgrade), then the vector 400, then closed.
        if statuses != ["200", "400"] || !closed {
            failures.push(format!("{name}: got {statuses:?}, closed: {closed}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases not refused after an unanswered upgrade:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        origin.received(),
        CASES.len(),
        "only the upgrade requests were forwarded"
    );
}
