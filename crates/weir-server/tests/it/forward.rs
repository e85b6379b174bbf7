//! Forward-proxy mode: CONNECT tunnels and absolute-form requests to allowed destinations
//! only, each decision in the access log.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// A forward listener allowing `allow`; the test origins live on loopback, which a forward
/// proxy refuses unless `allow_private` names it.
fn forward_config(allow: &[String]) -> String {
    forward_config_with(allow, r#"allow_private = ["127.0.0.0/8"]"#, "")
}

fn forward_config_with(allow: &[String], forward_extra: &str, listener_extra: &str) -> String {
    let allow: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
    let sep = if forward_extra.is_empty() { "" } else { ", " };
    TestConfig::new()
        .admin()
        .listener(&format!(
            "mode = \"forward\"\nforward = {{ allow = [{}]{sep}{forward_extra} }}\n{listener_extra}",
            allow.join(", ")
        ))
        .build()
}

/// Sends `head`, reads the response head; returns it and the stream.
async fn request_head(addr: std::net::SocketAddr, head: &str) -> (String, TcpStream) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .expect("response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.push(byte[0]);
    }
    (String::from_utf8_lossy(&got).into_owned(), s)
}

#[tokio::test]
async fn connect_tunnels_to_allowed_destinations_only() {
    let o = echo_origin().await;
    let allowed = format!("127.0.0.1:{}", o.addr.port());
    let gw = gateway(&forward_config(std::slice::from_ref(&allowed))).await;

    let (head, mut tunnel) = request_head(
        gw.addr,
        &format!("CONNECT {allowed} HTTP/1.1\r\nHost: {allowed}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Speak HTTP to the origin through the tunnel.
    tunnel
        .write_all(b"GET /through HTTP/1.1\r\nHost: inner\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tunnel.read_to_string(&mut out).await.expect("read");
    assert!(out.contains("\"uri\":\"/through\""), "{out}");

    let (denied, _) = request_head(
        gw.addr,
        "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
    )
    .await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");

    let lines = gw.log_lines().await;
    let decisions: Vec<(&str, &str)> = lines
        .iter()
        .filter_map(|l| Some((l["forward"].as_str()?, l["endpoint"].as_str()?)))
        .collect();
    assert!(
        decisions.contains(&("allowed", allowed.as_str())),
        "{lines:?}"
    );
    assert!(decisions.contains(&("denied", "127.0.0.1:1")), "{lines:?}");
    let m = metrics(&gw).await;
    assert!(
        m.contains("weir_forward_allowed_total{listener=\"main\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("weir_forward_denied_total{listener=\"main\"} 1"),
        "{m}"
    );
}

#[tokio::test]
async fn connect_over_http2_tunnels_on_its_stream() {
    let o = echo_origin().await;
    let allowed = format!("127.0.0.1:{}", o.addr.port());
    let gw = gateway(&forward_config(std::slice::from_ref(&allowed))).await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(conn);
    // RFC 9113 §8.5: :method CONNECT and :authority only.
    let req = http::Request::builder()
        .method("CONNECT")
        .uri(allowed.as_str())
        .body(())
        .expect("request");
    let (answer, mut up) = client.send_request(req, false).expect("send");
    let resp = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answer in time")
        .expect("answer");
    assert_eq!(resp.status(), 200);
    // Speak HTTP/1.1 to the origin through the stream.
    up.send_data(
        bytes::Bytes::from_static(
            b"GET /through-h2 HTTP/1.1\r\nHost: inner\r\nConnection: close\r\n\r\n",
        ),
        false,
    )
    .expect("data");
    let mut down = resp.into_body();
    let mut out = Vec::new();
    let read = async {
        while let Some(chunk) = down.data().await {
            let chunk = chunk.expect("chunk");
            let _ = down.flow_control().release_capacity(chunk.len());
            out.extend_from_slice(&chunk);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the origin's answer, then the end of the stream");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"uri\":\"/through-h2\""), "{out}");

    let denied = http::Request::builder()
        .method("CONNECT")
        .uri("127.0.0.1:1")
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(denied, true).expect("send");
    assert_eq!(answer.await.expect("answer").status(), 403);
}

#[tokio::test]
async fn absolute_form_requests_are_forwarded_and_origin_form_refused() {
    let o = echo_origin().await;
    let gw = gateway(&forward_config(&["*:*".to_owned()])).await;
    let resp = raw(
        gw.addr,
        format!(
            "GET http://127.0.0.1:{}/abs?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nProxy-Authorization: secret\r\nConnection: close\r\n\r\n",
            o.addr.port(),
            o.addr.port()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("\"uri\":\"/abs?q=1\""), "{resp}");
    assert!(
        !resp.contains("secret"),
        "Proxy-Authorization must not be forwarded: {resp}"
    );

    let resp = raw(
        gw.addr,
        b"GET /not-a-proxy-request HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400);
}

#[tokio::test]
async fn deny_by_default_and_patterns() {
    let o = echo_origin().await;
    let gw = gateway(&forward_config(&[])).await;
    let (head, _) = request_head(
        gw.addr,
        &format!(
            "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
            o.addr.port()
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(o.accepted(), 0);
    let p = weir_config::parse_destination_pattern("*.example.com:443").expect("pattern");
    assert!(p.matches("api.example.com", 443));
    assert!(p.matches("a.b.example.com", 443));
    assert!(!p.matches("example.com", 443));
    assert!(!p.matches("evilexample.com", 443));
    assert!(!p.matches("api.example.com", 80));
}

/// An absolute-form `GET http://TARGET/x` through the forward listener at `addr`.
async fn absolute_get(addr: std::net::SocketAddr, target: &str) -> String {
    let head =
        format!("GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    raw(addr, head.as_bytes()).await
}

/// `CONNECT TARGET` (its response head) and an absolute-form GET to it (its response).
async fn both_ways(addr: std::net::SocketAddr, target: &str) -> (String, String) {
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let (head, _) = request_head(addr, &connect).await;
    (head, absolute_get(addr, target).await)
}

/// A forward listener restricted by `ip` refuses other clients before looking at the request:
/// an egress proxy for some hosts is not an open proxy for everyone.
#[tokio::test]
async fn listener_ip_rules_apply_to_forward_listeners() {
    let o = echo_origin().await;
    let gw = gateway(&forward_config_with(
        &["*:*".to_owned()],
        r#"allow_private = ["127.0.0.0/8"]"#,
        r#"ip = { allow = ["10.0.0.0/8"] }"#,
    ))
    .await;
    let target = format!("127.0.0.1:{}", o.addr.port());
    let (head, resp) = both_ways(gw.addr, &target).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(resp.contains("ip_denied"), "{resp}");
    assert_eq!(o.accepted(), 0, "nothing reached the destination");
}

/// `*` in the allow-list does not reach internal addresses: the name is resolved first and
/// loopback (Weir's own admin listener among them), in any spelling, is refused unless
/// `allow_private` names it.
#[tokio::test]
async fn internal_destinations_are_refused_after_resolution() {
    let o = echo_origin().await;
    let gw = gateway(&forward_config_with(&["*:*".to_owned()], "", "")).await;
    let port = o.addr.port();
    let admin = gw.admin_addr().port();
    for target in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        format!("[::1]:{port}"),
        format!("127.0.0.1:{admin}"),
        format!("0.0.0.0:{port}"),
    ] {
        let (head, resp) = both_ways(gw.addr, &target).await;
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
        assert_eq!(status_of(&resp), 403, "{target}: {resp}");
        assert!(resp.contains("forward_denied"), "{target}: {resp}");
    }
    assert_eq!(o.accepted(), 0, "nothing reached an internal address");

    // Named in allow_private: allowed.
    let gw = gateway(&forward_config_with(
        &["*:*".to_owned()],
        r#"allow_private = ["127.0.0.1/32"]"#,
        "",
    ))
    .await;
    let resp = absolute_get(gw.addr, &format!("localhost:{port}")).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(o.accepted(), 1);
}
