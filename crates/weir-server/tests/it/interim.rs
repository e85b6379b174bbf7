//! Interim responses (RFC 9110 §15.2): an upstream's 103 Early Hints reaches the client before
//! the final response — HTTP/1.1 as a status line of its own, HTTP/2 as a HEADERS frame on the
//! request's stream — without its hop-by-hop fields, never to HTTP/1.0 clients, and never from
//! the cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::common::*;

/// How long a test waits for a 103 the origin sent at once.
const HINT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// An origin that answers each request with a 103 at once, then — when the test adds a permit
/// to `finals` — a cacheable 200 `ok`.
struct HintingOrigin {
    addr: std::net::SocketAddr,
    finals: Arc<Semaphore>,
    requests: Arc<AtomicUsize>,
}

async fn hinting_origin() -> HintingOrigin {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let finals = Arc::new(Semaphore::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (f, r) = (finals.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (finals, requests) = (f.clone(), r.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_head(&mut conn, &mut buf).await.is_some() {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let hints = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\
                                 connection: x-hop\r\nx-hop: 1\r\n\r\n";
                    if conn.write_all(hints.as_bytes()).await.is_err() {
                        return;
                    }
                    let Ok(permit) = finals.acquire().await else {
                        return;
                    };
                    permit.forget();
                    let answer = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n\
                                  content-length: 2\r\n\r\nok";
                    if conn.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    HintingOrigin {
        addr,
        finals,
        requests,
    }
}

/// Reads up to the end of the next head; returns it, and keeps what follows in `buf`.
async fn read_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads `n` body bytes after a head.
async fn read_body(conn: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> String {
    while buf.len() < n {
        let mut chunk = [0u8; 4096];
        let got = conn.read(&mut chunk).await.expect("body");
        assert!(got > 0, "closed before the body");
        buf.extend_from_slice(&chunk[..got]);
    }
    String::from_utf8_lossy(&buf.drain(..n).collect::<Vec<u8>>()).into_owned()
}

/// Reads the 103 the origin sent at once (the deadline only turns a missing 103 into a
/// failure rather than a hang).
async fn read_hints(conn: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let hints = tokio::time::timeout(HINT_DEADLINE, read_head(conn, buf))
        .await
        .expect("a 103 before the final response")
        .expect("103");
    assert!(hints.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{hints}");
    hints
}

/// Reads the final `200 ok`, which carries none of the hints.
async fn read_final_ok(conn: &mut TcpStream, buf: &mut Vec<u8>) {
    let head = read_head(conn, buf).await.expect("final");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.contains("link:"), "the hints are not merged: {head}");
    assert_eq!(read_body(conn, buf, 2).await, "ok");
}

fn hinted_config(origin: std::net::SocketAddr) -> String {
    TestConfig::new()
        .top("[[caches]]\nname = \"edge\"\nmax_memory = \"16MiB\"\n")
        .upstream("up", &[origin], "timeouts = { response_header = \"30s\" }")
        .route("pages", "proxy = { upstream = \"up\" }\ncache = \"edge\"")
        .build()
}

#[tokio::test]
async fn early_hints_reach_http1_clients_first_and_never_come_from_the_cache() {
    let o = hinting_origin().await;
    let gw = gateway(&hinted_config(o.addr)).await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    let mut buf = Vec::new();
    conn.write_all(b"GET /page HTTP/1.1\r\nhost: hints.test\r\n\r\n")
        .await
        .expect("write");
    // The 103 arrives while the origin still holds its final answer back.
    let hints = read_hints(&mut conn, &mut buf).await;
    assert!(
        hints.contains("link: </style.css>; rel=preload\r\n"),
        "{hints}"
    );
    assert!(
        !hints.contains("x-hop") && !hints.contains("connection"),
        "{hints}"
    );
    o.finals.add_permits(1);
    read_final_ok(&mut conn, &mut buf).await;

    // The same page again on the same connection: from the cache, with no 103.
    conn.write_all(b"GET /page HTTP/1.1\r\nhost: hints.test\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut conn, &mut buf).await.expect("cached");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("cache-status:") && head.contains("hit"),
        "{head}"
    );
    assert!(!head.contains("link:"), "{head}");
    assert_eq!(read_body(&mut conn, &mut buf, 2).await, "ok");
    assert_eq!(o.requests.load(Ordering::SeqCst), 1);

    // HTTP/1.0 clients never get a 1xx.
    o.finals.add_permits(1);
    let mut old = TcpStream::connect(gw.addr).await.expect("connect");
    old.write_all(b"GET /other HTTP/1.0\r\nhost: hints.test\r\n\r\n")
        .await
        .expect("write");
    let mut all = String::new();
    old.read_to_string(&mut all).await.expect("read");
    assert!(
        all.starts_with("HTTP/1.0 200 OK\r\n") || all.starts_with("HTTP/1.1 200 OK\r\n"),
        "{all}"
    );
    assert!(!all.contains(" 103 ") && !all.contains("link:"), "{all}");
    assert!(all.ends_with("ok"), "{all}");
}

#[tokio::test]
async fn early_hints_reach_http2_clients_on_their_stream() {
    let o = hinting_origin().await;
    let gw = gateway(&hinted_config(o.addr)).await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut h2, conn) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::get("http://hints.test/h2page")
        .body(())
        .expect("request");
    let (mut answer, _) = h2.send_request(req, true).expect("send");
    let hints = tokio::time::timeout(
        HINT_DEADLINE,
        std::future::poll_fn(|cx| answer.poll_informational(cx)),
    )
    .await
    .expect("a 103 before the final response")
    .expect("an interim response")
    .expect("103");
    assert_eq!(hints.status(), 103);
    assert_eq!(hints.headers()["link"], "</style.css>; rel=preload");
    assert!(hints.headers().get("x-hop").is_none(), "{hints:?}");
    o.finals.add_permits(1);
    let resp = answer.await.expect("final");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("link").is_none());
    let mut body = resp.into_body();
    let data = body.data().await.expect("data").expect("chunk");
    assert_eq!(&data[..], b"ok");
}

/// An h2c origin (the `h2` crate's server) that answers each stream with a 103 at once, then —
/// when the test adds a permit to `finals` — a 200 `ok`.
async fn hinting_h2_origin() -> (std::net::SocketAddr, Arc<Semaphore>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let finals = Arc::new(Semaphore::new(0));
    let f = finals.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let finals = f.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let finals = finals.clone();
                    tokio::spawn(async move {
                        let hints = http::Response::builder()
                            .status(103)
                            .header("link", "</h2.css>; rel=preload")
                            .body(())
                            .expect("103");
                        if respond.send_informational(hints).is_err() {
                            return;
                        }
                        let Ok(permit) = finals.acquire().await else {
                            return;
                        };
                        permit.forget();
                        let answer = http::Response::builder()
                            .status(200)
                            .header("content-length", "2")
                            .body(())
                            .expect("200");
                        if let Ok(mut body) = respond.send_response(answer, false) {
                            let _ = body.send_data(bytes::Bytes::from_static(b"ok"), true);
                        }
                    });
                }
            });
        }
    });
    (addr, finals)
}

#[tokio::test]
async fn early_hints_from_an_http2_upstream_reach_the_client() {
    let (origin, finals) = hinting_h2_origin().await;
    let gw = gateway(
        &TestConfig::new()
            .upstream(
                "up",
                &[origin],
                "protocol = \"h2c\"\ntimeouts = { response_header = \"30s\" }",
            )
            .route("pages", "proxy = { upstream = \"up\" }")
            .build(),
    )
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    let mut buf = Vec::new();
    conn.write_all(b"GET /page HTTP/1.1\r\nhost: hints.test\r\n\r\n")
        .await
        .expect("write");
    let hints = read_hints(&mut conn, &mut buf).await;
    assert!(
        hints.contains("link: </h2.css>; rel=preload\r\n"),
        "{hints}"
    );
    finals.add_permits(1);
    read_final_ok(&mut conn, &mut buf).await;
}
