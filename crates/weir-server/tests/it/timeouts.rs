//! Upstream timeouts through real sockets: connect, total, and pooled-connection idle.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpSocket;

use crate::common::*;

#[tokio::test]
async fn connect_timeout_gets_504() {
    // A listener that never accepts, with a backlog of 1 that we fill: Linux then drops further
    // SYNs, so a connect to it hangs until the connect timeout.
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let toml = config(&[addr], "").replace("connect = \"1s\"", "connect = \"300ms\"");
    let gw = gateway(&toml).await;
    let resp = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 504, "{resp}");
    assert!(resp.contains("\"error\":\"upstream_timeout\""), "{resp}");
    drop(listener);
}

#[tokio::test]
async fn total_timeout_cuts_a_stalled_body() {
    let o = origin(|_req: Request<Incoming>| async {
        // Head and a first chunk at once, then the body stalls.
        let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
            http_body::Frame::data(Bytes::from("first")),
        )])
        .chain(futures_util::stream::pending());
        Response::new(
            http_body_util::StreamBody::new(stream)
                .map_err(Into::into)
                .boxed_unsync(),
        )
    })
    .await;
    let toml = config(&[o.addr], "").replace(
        "response_header = \"2s\"",
        "response_header = \"2s\", total = \"400ms\"",
    );
    let gw = gateway(&toml).await;
    let r = client()
        .get(gw.url("/stall"))
        .send()
        .await
        .expect("head arrives");
    assert_eq!(r.status(), 200);
    assert!(
        r.bytes().await.is_err(),
        "the body must be cut off, not hang"
    );
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["error"], "upstream_timeout");
    assert_eq!(lines[0]["completed"], false);
}

#[tokio::test]
async fn idle_pooled_connections_are_closed_after_the_idle_timeout() {
    let o = echo_origin().await;
    let toml = config(&[o.addr], "").replace(
        "response_header = \"2s\"",
        "response_header = \"2s\", idle = \"200ms\"",
    );
    let gw = gateway(&toml).await;
    let c = client();
    let fetch = |path: &'static str| {
        let req = c.get(gw.url(path)).send();
        async move { req.await.expect("response").bytes().await.expect("body") }
    };
    fetch("/1").await;
    fetch("/2").await;
    assert_eq!(o.accepted(), 1, "reused while fresh");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    fetch("/3").await;
    assert_eq!(
        o.accepted(),
        2,
        "an idle pooled connection was dropped and a new one opened"
    );
}

#[tokio::test]
async fn endpoint_host_names_are_resolved() {
    let o = echo_origin().await;
    let toml = config(&[o.addr], "").replace(
        &format!("\"{}\"", o.addr),
        &format!("\"localhost:{}\"", o.addr.port()),
    );
    let gw = gateway(&toml).await;
    let r = client().get(gw.url("/dns")).send().await.expect("r");
    assert_eq!(r.status(), 200);
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["endpoint"], format!("localhost:{}", o.addr.port()));
}
