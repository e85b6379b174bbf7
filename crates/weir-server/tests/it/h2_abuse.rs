//! HTTP/2 abuse regressions with a raw h2 client: a rapid-reset flood ends in GOAWAY without
//! hurting other clients; an oversized header list is refused; stream concurrency is capped.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tokio::net::TcpStream;

use crate::common::*;

async fn h2(addr: std::net::SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://a.test{path}"))
        .body(())
        .expect("request")
}

#[tokio::test]
async fn a_rapid_reset_flood_is_cut_off_and_others_are_still_served() {
    let o = origin(|_req: http::Request<hyper::body::Incoming>| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        http::Response::new(full("ok"))
    })
    .await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let mut attacker = h2(gw.addr).await;
    let mut cut_off = false;
    for _ in 0..5_000 {
        let ready = tokio::time::timeout(Duration::from_secs(2), attacker.clone().ready()).await;
        let Ok(Ok(ready)) = ready else {
            cut_off = true;
            break;
        };
        attacker = ready;
        match attacker.send_request(get("/flood"), true) {
            Ok((_, mut stream)) => {
                // Let the connection task put HEADERS on the wire, then cancel the stream.
                tokio::task::yield_now().await;
                stream.send_reset(h2::Reason::CANCEL);
                tokio::task::yield_now().await;
            }
            Err(_) => {
                cut_off = true;
                break;
            }
        }
    }
    assert!(cut_off, "5000 opened-and-reset streams were all accepted");
    // Requests that reached the origin are bounded, far below the flood.
    assert!(
        o.received() < 1_000,
        "{} flood requests reached the origin",
        o.received()
    );
    // A well-behaved client is served meanwhile.
    let r = client().get(gw.url("/fine")).send().await.expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let mut c = h2(gw.addr).await.ready().await.expect("ready");
    let mut req = get("/big");
    for i in 0..40 {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).expect("name"),
            http::HeaderValue::from_str(&"a".repeat(1000)).expect("value"),
        );
    }
    let refused = match c.send_request(req, true) {
        Err(_) => true,
        Ok((resp, _)) => match resp.await {
            Err(_) => true,
            Ok(r) => r.status() == 431,
        },
    };
    assert!(refused, "a 40 KB header list was accepted");
    assert_eq!(o.received(), 0);
}

#[tokio::test]
async fn concurrent_streams_are_capped_by_settings() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (client, mut conn) = h2::client::handshake(tcp).await.expect("handshake");
    // The server's SETTINGS arrive with the first exchange; drive the connection meanwhile.
    let exchange = async move {
        let mut c = client.ready().await.expect("ready");
        let (resp, _) = c.send_request(get("/s"), true).expect("send");
        resp.await.expect("response").status()
    };
    let status = tokio::select! {
        s = exchange => s,
        _ = &mut conn => panic!("connection ended"),
    };
    assert_eq!(status, 200);
    let max = conn.max_concurrent_send_streams();
    assert_eq!(max, 256);
}

#[tokio::test]
async fn a_client_that_cancels_most_requests_after_they_start_is_disconnected() {
    // The slower variant of rapid reset: each stream is cancelled only after Weir accepted it
    // and started proxying, which the h2 library's pending-accept limit does not see.
    let o = origin(|_req: http::Request<hyper::body::Incoming>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        http::Response::new(full("slow"))
    })
    .await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let mut attacker = h2(gw.addr).await;
    let mut cancelled = 0;
    for _ in 0..1_000 {
        let Ok(Ok(ready)) =
            tokio::time::timeout(Duration::from_secs(2), attacker.clone().ready()).await
        else {
            break;
        };
        attacker = ready;
        let Ok((_, mut stream)) = attacker.send_request(get("/slow"), true) else {
            break;
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        stream.send_reset(h2::Reason::CANCEL);
        cancelled += 1;
    }
    assert!(
        cancelled < 1_000,
        "the connection survived {cancelled} cancelled requests"
    );
    assert!(cancelled >= 100, "cut off too early: {cancelled}");
}
