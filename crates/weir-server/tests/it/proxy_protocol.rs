//! PROXY protocol: accepted on listeners that enable it (the client address then used in
//! `X-Forwarded-For` and the access log) and sent to upstreams that want it.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

fn listener_with_proxy_protocol(origin: SocketAddr) -> String {
    TestConfig::new()
        .admin()
        .listener("proxy_protocol = true")
        .upstream("up", &[origin], "")
        .route("to-up", "proxy = { upstream = \"up\" }")
        .build()
}

#[tokio::test]
async fn v1_and_v2_headers_set_the_client_address() {
    let o = echo_origin().await;
    let gw = gateway(&listener_with_proxy_protocol(o.addr)).await;
    let v1 = raw(
        gw.addr,
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET /v1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(v1.contains("\"x-forwarded-for\":\"203.0.113.7\""), "{v1}");

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb,
    ]);
    v2.extend_from_slice(b"GET /v2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let resp = raw(gw.addr, &v2).await;
    assert!(
        resp.contains("\"x-forwarded-for\":\"198.51.100.9\""),
        "{resp}"
    );

    let lines = gw.log_lines().await;
    let ips: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["client_ip"].as_str())
        .collect();
    assert!(
        ips.contains(&"203.0.113.7") && ips.contains(&"198.51.100.9"),
        "{ips:?}"
    );
}

/// A v2 header longer than any fixed buffer (1 KiB of TLVs), sent whole with the request
/// after it in one write, and sent in many small writes: both served, with the client address
/// from the header.
#[tokio::test]
async fn long_v2_headers_in_one_write_or_many_are_served() {
    let o = echo_origin().await;
    let gw = gateway(&listener_with_proxy_protocol(o.addr)).await;
    let mut whole = weir_testkit::proxy_v2_header([198, 51, 100, 20], 4000, 1024);
    whole.extend_from_slice(b"GET /tlv HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let resp = raw(gw.addr, &whole).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.contains("\"x-forwarded-for\":\"198.51.100.20\""),
        "{resp}"
    );

    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    for chunk in whole.chunks(7) {
        s.write_all(chunk).await.expect("write");
    }
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert_eq!(status_of(&out), 200, "{out}");
    assert_eq!(o.received(), 2);
}

#[tokio::test]
async fn a_connection_without_the_header_is_closed_unanswered() {
    let o = echo_origin().await;
    let gw = gateway(&listener_with_proxy_protocol(o.addr)).await;
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(resp, "");
    assert_eq!(o.received(), 0);
    let m = metrics(&gw).await;
    assert!(
        m.contains("weir_proxy_protocol_errors_total{listener=\"main\"} 1"),
        "{m}"
    );
}

/// A raw origin that answers each connection with the bytes that preceded the HTTP request.
async fn header_echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let complete = |b: &[u8]| {
                    b.windows(4)
                        .position(|w| w == b"GET ")
                        .is_some_and(|at| b[at..].windows(4).any(|w| w == b"\r\n\r\n"))
                };
                while !complete(&buf) {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let start = buf.windows(4).position(|w| w == b"GET ").unwrap_or(0);
                let prefix: String = buf[..start].iter().map(|b| format!("{b:02x}")).collect();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{prefix}",
                    prefix.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn headers_are_sent_to_upstreams_that_want_them() {
    let o = header_echo_origin().await;
    for (version, expect_prefix) in [
        ("v1", "50524f585920544350342031"),
        ("v2", "0d0a0d0a000d0a515549540a2111000c7f000001"),
    ] {
        let gw = gateway(&upstream_config(
            &[(o, 1)],
            &format!("proxy_protocol = \"{version}\""),
            "",
        ))
        .await;
        let body = client()
            .get(gw.url("/pp"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        // v1: "PROXY TCP4 1…" (the client is 127.0.0.1); v2: signature, PROXY, TCP4, 12, 127.0.0.1.
        assert!(body.starts_with(expect_prefix), "{version}: {body}");
    }
}

/// A connection that announced one client carries only that client's request, and is closed
/// after it (never parked in the pool, where it would only hold a socket): the origin keeps
/// connections alive, answers every request with the PROXY line its connection began with,
/// and counts the connections Weir closes.
#[tokio::test]
async fn a_connection_that_announced_one_client_is_closed_after_its_request() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let o = listener.local_addr().expect("addr");
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o2, c2) = (opened.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            o2.fetch_add(1, SeqCst);
            let closed = c2.clone();
            tokio::spawn(async move {
                let _count_close = CountOnDrop(closed);
                let mut s = tokio::io::BufReader::new(s);
                let mut proxy_line = String::new();
                if s.read_line(&mut proxy_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let proxy_line = proxy_line.trim_end().to_owned();
                loop {
                    // One request head per turn; the requests here have no body.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match s.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{proxy_line}",
                        proxy_line.len()
                    );
                    if s.get_mut().write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gw = gateway(&upstream_config(&[(o, 1)], "proxy_protocol = \"v1\"", "")).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        // A client of its own each time: another source port, another PROXY line.
        let body = client()
            .get(gw.url("/pp"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        assert!(body.starts_with("PROXY TCP4 127.0.0.1 "), "{body}");
        seen.push(body);
    }
    assert_ne!(
        seen[0], seen[1],
        "the second client's request went out under the first's header"
    );
    assert_eq!(opened.load(SeqCst), 2);
    wait_until("Weir to close both single-use connections", || {
        let n = closed.load(SeqCst);
        async move { (n == 2).then_some(()) }
    })
    .await;
}

/// Adds one to its counter when dropped (the origin's connection task ended: Weir closed it).
struct CountOnDrop(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
