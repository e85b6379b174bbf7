//! Weir's HTTP/1.1 server over raw TCP: `Expect: 100-continue`, request bodies the pipeline
//! leaves unread (drained so the connection goes on, or the connection closed), pipelined
//! requests, HTTP/1.0 clients.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// A gateway whose only route answers at once, never reading the request body.
async fn answering_gateway() -> Gateway {
    gateway(
        &TestConfig::new()
            .route("answer", "respond = { body = \"answered\" }")
            .build(),
    )
    .await
}

/// Reads from `s` until `done` says the bytes so far are complete (or the peer closes).
async fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        while !done(&String::from_utf8_lossy(&out)) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    // A bound for a broken build only; the condition ends the wait.
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_asked_for() {
    let origin = echo_origin().await;
    let gw = gateway(&config(&[origin.addr], "")).await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("head");
    // The client waits for the 100 before it sends its body.
    let interim = read_until(&mut s, |r| r.contains("\r\n\r\n")).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
        "{interim:?}"
    );
    s.write_all(b"hello").await.expect("body");
    let resp = read_until(&mut s, |r| r.contains("\"body\":\"hello\"")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("\"body\":\"hello\""), "{resp}");
    assert_eq!(origin.received(), 1);
}

#[tokio::test]
async fn a_body_answered_without_being_read_gets_no_100_and_the_connection_closes() {
    let gw = answering_gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("head");
    let resp = read_until(&mut s, |r| r.ends_with("answered")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("\r\nconnection: close\r\n"), "{resp}");
    assert!(!resp.contains("100 Continue"), "{resp}");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

/// A body the route never reads is read past (not parsed as requests: this one holds a
/// whole request) and the connection serves the next request.
#[tokio::test]
async fn an_unread_body_is_drained_and_the_next_request_is_served() {
    let gw = answering_gateway().await;
    let inner = "GET /inside-a-body HTTP/1.1\r\nHost: a\r\n\r\n";
    let chunked_inner = format!("{:x}\r\n{inner}\r\n0\r\n\r\n", inner.len());
    let input = format!(
        "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{inner}\
         POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_inner}\
         GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        inner.len()
    );
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(input.as_bytes()).await.expect("write");
    let resp = read_until(&mut s, |r| r.matches("answered").count() >= 3).await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 3, "{resp}");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    let lines = gw.log_lines_at_least(3).await;
    let paths: Vec<&str> = lines.iter().filter_map(|l| l["path"].as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/last"], "{lines:?}");
}

/// A body too large to read past (over 64 KiB unread) closes the connection once the
/// response is written, rather than holding it to read the rest.
#[tokio::test]
async fn a_large_unread_body_closes_the_connection_after_the_response() {
    let gw = answering_gateway().await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let size = 1 << 20;
    s.write_all(format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n").as_bytes())
        .await
        .expect("head");
    s.write_all(&vec![b'x'; 128 * 1024])
        .await
        .expect("some body");
    let resp = read_until(&mut s, |r| r.ends_with("answered")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn an_http10_client_gets_its_own_connection_rules() {
    let gw = answering_gateway().await;
    // Without keep-alive the connection closes after the response.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let resp = read_until(&mut s, |r| r.ends_with("answered")).await;
    assert!(resp.contains("\r\nconnection: close\r\n"), "{resp}");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    // With it, the connection stays for the next request.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .expect("write");
    let resp = read_until(&mut s, |r| r.ends_with("answered")).await;
    assert!(resp.contains("\r\nconnection: keep-alive\r\n"), "{resp}");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let resp = read_until(&mut s, |r| r.ends_with("answered")).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
}
