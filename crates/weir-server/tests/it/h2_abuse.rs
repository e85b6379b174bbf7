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
    assert_eq!(max, 128);
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

/// `server.max_request_headers` caps the fields of one request on HTTP/2 (each cookie crumb
/// counted) and HTTP/1.1 alike: many tiny fields — one-byte HPACK references to one
/// dynamic-table entry cost the attacker almost nothing — are refused with 431 and never
/// forwarded, while a request under the cap is served.
#[tokio::test]
async fn too_many_header_fields_are_refused_on_h2_and_http1() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "[server]\nmax_request_headers = 50")).await;
    let mut c = h2(gw.addr).await.ready().await.expect("ready");
    let status = |mut c: h2::client::SendRequest<Bytes>, req: http::Request<()>| async move {
        match c.send_request(req, true) {
            Err(_) => 0,
            Ok((resp, _)) => resp.await.map_or(0, |r| r.status().as_u16()),
        }
    };
    let mut crumbs = get("/crumbs");
    for i in 0..60 {
        crumbs.headers_mut().append(
            http::header::COOKIE,
            http::HeaderValue::from_str(&format!("c{i}=1")).expect("value"),
        );
    }
    assert_eq!(status(c.clone(), crumbs).await, 431, "60 cookie crumbs");
    let mut same = get("/same");
    for _ in 0..200 {
        same.headers_mut()
            .append("x-a", http::HeaderValue::from_static("b"));
    }
    let got = status(c.clone(), same).await;
    assert!(
        got == 431 || got == 0,
        "200 identical one-byte fields: {got}"
    );
    let mut fine = get("/fine");
    for i in 0..20 {
        fine.headers_mut().append(
            http::header::COOKIE,
            http::HeaderValue::from_str(&format!("c{i}=1")).expect("value"),
        );
    }
    c = c.ready().await.expect("ready");
    assert_eq!(status(c, fine).await, 200);
    assert_eq!(
        o.received(),
        1,
        "only the request under the cap was forwarded"
    );

    let mut head = String::from("GET /h1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n");
    for i in 0..60 {
        head.push_str(&format!("x-f{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    let resp = raw(gw.addr, head.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert_eq!(o.received(), 1);
}

/// An origin answering every request with `size` bytes.
async fn big_origin(size: usize) -> Origin {
    let body = Bytes::from(vec![b'x'; size]);
    origin(move |_req: Request<hyper::body::Incoming>| {
        let body = body.clone();
        async move { http::Response::new(full(body)) }
    })
    .await
}

/// Streams whose peer keeps the HTTP/2 flow-control window at zero make no progress: after
/// `send_stall_timeout` the connection is closed (what its streams held is freed), it is
/// counted, and other clients are served throughout.
#[tokio::test]
async fn streams_stalled_by_a_zero_window_are_reaped() {
    let o = big_origin(64 * 1024).await;
    let gw = gateway(&config(
        &[o.addr],
        "admin = { bind = \"127.0.0.1:0\" }\n[server]\nsend_stall_timeout = \"300ms\"",
    ))
    .await;
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    let mut pending = Vec::new();
    // A client whose streams start with a shut window is told 8 concurrent streams.
    for i in 0..8 {
        let mut c = client.clone().ready().await.expect("ready");
        let (resp, _) = c
            .send_request(get(&format!("/stall/{i}")), true)
            .expect("send");
        pending.push(resp);
    }
    // The heads arrive (no window needed); the bodies never can. The responses are kept
    // (dropped, they would reset their streams).
    let mut held = Vec::new();
    for resp in pending.drain(..) {
        let resp = resp.await.expect("head");
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    wait_for_metric(&gw, "weir_send_stalls_total{listener=\"main\"}", 1.0).await;
    // The connection is gone: the driver ends.
    tokio::time::timeout(Duration::from_secs(20), driver)
        .await
        .expect("the stalled connection was closed")
        .ok();
    let r = get_status(&gw, "/fine").await;
    assert_eq!(r, 200);
}

/// The same for an HTTP/1.1 client that stops reading a large response: bounded buffers, then
/// the connection is closed after `send_stall_timeout`.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = big_origin(16 << 20).await;
    let gw = gateway(&config(
        &[o.addr],
        "admin = { bind = \"127.0.0.1:0\" }\n[server]\nsend_stall_timeout = \"300ms\"",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    // Read nothing until Weir gives up on us.
    wait_for_metric(&gw, "weir_send_stalls_total{listener=\"main\"}", 1.0).await;
    // Then what it had sent, and the end: far from the 16 MiB.
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    assert!(got.len() < 16 << 20, "{} bytes", got.len());
    assert_eq!(get_status(&gw, "/fine").await, 200);
}

/// The request memory budget: past it HTTP/2 streams are refused with REFUSED_STREAM (never
/// processed), HTTP/1.1 requests get a 503 and a close, new connections wait in the backlog;
/// all of it comes back when the requests holding the memory finish.
#[tokio::test]
async fn the_request_memory_budget_refuses_streams_and_gives_room_back() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let o = origin({
        let gate = gate.clone();
        move |req: http::Request<hyper::body::Incoming>| {
            let gate = gate.clone();
            async move {
                if req.uri().path() == "/hold" {
                    let _ = gate.acquire().await.map(|p| p.forget());
                }
                http::Response::new(full("ok"))
            }
        }
    })
    .await;
    // Four requests of 8 KiB (these carry no header fields beyond the pseudo-headers) fit in
    // 36 KiB; a fifth does not.
    let gw = gateway(&format!(
        r#"
[server]
request_memory_budget = "36KiB"
[admin]
bind = "127.0.0.1:0"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"
[[upstreams]]
name = "up"
endpoints = ["{}"]
timeouts = {{ response_header = "60s" }}
[[routes]]
proxy = {{ upstream = "up" }}
"#,
        o.addr
    ))
    .await;
    // An HTTP/1.1 keep-alive connection opened while there is room.
    let mut h1 = TcpStream::connect(gw.addr).await.expect("connect");
    let first = h1_exchange(&mut h1, "/fine").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    let mut c = h2(gw.addr).await.ready().await.expect("ready");
    let mut pending = Vec::new();
    for _ in 0..8 {
        c = c.ready().await.expect("ready");
        let (resp, _) = c.send_request(get("/hold"), true).expect("send");
        pending.push(tokio::spawn(resp));
    }
    let held = wait_until("four streams held at the origin", || async {
        (o.received() == 5).then_some(())
    });
    held.await;
    let mut refused = 0;
    let mut waiting = Vec::new();
    for p in pending {
        if p.is_finished() {
            let err = p.await.expect("task").expect_err("refused, not answered");
            assert_eq!(err.reason(), Some(h2::Reason::REFUSED_STREAM), "{err}");
            refused += 1;
        } else {
            waiting.push(p);
        }
    }
    // Refusals are sent as the streams arrive; any still in flight are counted below.
    let m = wait_for_metric(&gw, "weir_request_memory_budget_refused_total", 4.0).await;
    assert_eq!(
        metric_value(&m, "weir_request_memory_budget_refused_total"),
        Some(4.0),
        "four streams refused, none of the held ones"
    );
    // The HTTP/1.1 connection's next request: 503 and a close.
    let busy = h1_exchange(&mut h1, "/fine").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    assert!(busy.contains("\"error\":\"overloaded\""), "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("connection: close"),
        "{busy}"
    );
    // The connection the accept loop was already waiting for is taken and answered 503; after
    // it the listener stops accepting, and a newer connection waits in the backlog ...
    let late = reqwest::get(gw.url("/late")).await.expect("answered");
    assert_eq!(late.status(), 503);
    wait_for_metric(&gw, "weir_request_memory_budget_accept_pauses_total", 1.0).await;
    let late = tokio::spawn(reqwest::get(gw.url("/later")));
    let _ = metrics(&gw).await;
    assert!(!late.is_finished(), "accepted while the budget was spent");
    // ... until the held requests finish and give their memory back.
    gate.add_permits(4);
    let mut answered = 0;
    for p in waiting {
        let resp = p.await.expect("task");
        if let Ok(resp) = resp {
            assert_eq!(resp.status(), 200);
            answered += 1;
        } else {
            refused += 1;
        }
    }
    assert_eq!((answered, refused), (4, 4));
    let late = late
        .await
        .expect("task")
        .expect("served once there is room");
    assert_eq!(late.status(), 200);
    let m = metrics(&gw).await;
    assert!(
        m.contains("weir_request_memory_budget_bytes{state=\"limit\"} 36864"),
        "{m}"
    );
}

/// Sends one HTTP/1.1 GET on `s` and reads its whole answer (the bodies here are small and
/// carry a Content-Length).
async fn h1_exchange(s: &mut TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text.into_owned();
            }
        }
        if n == 0 {
            return text.into_owned();
        }
    }
}

/// A raw HTTP/2 client that announces a zero stream window (in its first SETTINGS, or — `late`
/// — in a second one after a first that leaves the default), then opens `streams` GET streams
/// at once whatever the server allows; returns the streams answered with HEADERS and those
/// refused with RST_STREAM(REFUSED_STREAM), once every stream has one or the other.
async fn shut_window_burst(addr: std::net::SocketAddr, streams: u32, late: bool) -> (usize, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// The next whole frame: (type, flags, stream, payload).
    async fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u8, u8, u32, Vec<u8>) {
        loop {
            if buf.len() >= 9 {
                let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
                if buf.len() >= 9 + len {
                    let f = (
                        buf[3],
                        buf[4],
                        u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]),
                        buf[9..9 + len].to_vec(),
                    );
                    buf.drain(..9 + len);
                    return f;
                }
            }
            let mut chunk = [0u8; 16384];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = Vec::new();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    if late {
        // A first SETTINGS that keeps the default window; the shut one follows once the
        // server has answered with its own (so it was set up for an ordinary client).
        out.extend(h2_frame(0x4, 0, 0, &[]));
        s.write_all(&out).await.expect("write");
        out.clear();
        while next_frame(&mut s, &mut buf).await.0 != 0x4 {}
    }
    out.extend(h2_frame(0x4, 0, 0, &[0, 4, 0, 0, 0, 0])); // INITIAL_WINDOW_SIZE = 0
    out.extend(h2_frame(0x4, 0x1, 0, &[])); // ACK of the server's SETTINGS
                                            // :method GET, :scheme http, :path /, :authority a.test (literal, not indexed).
    let block = [&[0x82u8, 0x86, 0x84, 0x01, 6][..], b"a.test"].concat();
    for k in 0..streams {
        out.extend(h2_frame(0x1, 0x5, 1 + 2 * k, &block));
    }
    s.write_all(&out).await.expect("write");
    let (mut answered, mut refused) = (std::collections::HashSet::new(), 0usize);
    while answered.len() + refused < streams as usize {
        let (kind, _, stream, payload) = next_frame(&mut s, &mut buf).await;
        if kind == 0x1 {
            answered.insert(stream);
        } else if kind == 0x3 && payload == [0, 0, 0, 7] {
            refused += 1;
        }
    }
    (answered.len(), refused)
}

/// A client whose streams start with a zero window (the HTTP/2 "bomb") is told 8 concurrent
/// streams and served that many: streams past them are refused with REFUSED_STREAM before
/// their fields pile up, the connection is counted, a slot comes back when one of its streams
/// ends, and a client with an ordinary window is served all its streams at once.
#[tokio::test]
async fn a_client_with_a_shut_window_is_served_eight_streams_at_a_time() {
    let o = big_origin(4096).await;
    let gw = gateway(&config(&[o.addr], "admin = { bind = \"127.0.0.1:0\" }")).await;
    assert_eq!(shut_window_burst(gw.addr, 20, false).await, (8, 12));
    wait_for_metric(
        &gw,
        "weir_http2_shut_window_connections_total{listener=\"main\"}",
        1.0,
    )
    .await;
    // A client that shuts its window only after its first SETTINGS was told 128 streams; Weir
    // serves 8 and refuses the rest itself, counted.
    assert_eq!(shut_window_burst(gw.addr, 20, true).await, (8, 12));
    wait_for_metric(
        &gw,
        "weir_http2_streams_refused_shut_window_total{listener=\"main\"}",
        12.0,
    )
    .await;
    // A well-behaved client keeps to the 8 it was told; a slot comes back when a stream ends.
    let tcp = TcpStream::connect(gw.addr).await.expect("connect");
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let mut served = Vec::new();
    for i in 0..8 {
        let mut c = client.clone().ready().await.expect("ready");
        let (resp, _) = c
            .send_request(get(&format!("/shut/{i}")), true)
            .expect("send");
        served.push(resp.await.expect("head"));
    }
    assert!(served.iter().all(|r| r.status() == 200));
    // Dropping a served stream resets it: its slot comes back for a new stream.
    drop(served.pop());
    wait_until("a new stream to be served after one ended", || {
        let client = client.clone();
        async move {
            let mut c = client.ready().await.ok()?;
            let (resp, _) = c.send_request(get("/shut/again"), true).ok()?;
            resp.await.ok().map(|r| assert_eq!(r.status(), 200))
        }
    })
    .await;
    // An ordinary client opens 20 streams at once and every one is answered whole.
    let ordinary = h2(gw.addr).await;
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let client = ordinary.clone();
        async move {
            let mut c = client.ready().await.expect("ready");
            let (resp, _) = c
                .send_request(get(&format!("/open/{i}")), true)
                .expect("send");
            let mut body = resp.await.expect("head").into_body();
            let mut n = 0;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("data");
                n += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            n
        }
    }))
    .await;
    assert!(answers.iter().all(|&n| n == 4096), "{answers:?}");
}
