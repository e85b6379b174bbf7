//! Proxying: streaming, chunked bodies, connection reuse, h2c, header rules, request ids.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::common::*;

#[tokio::test]
async fn proxies_get_and_round_robins_across_endpoints() {
    let a = origin(|_req: Request<Incoming>| async { Response::new(full("a")) }).await;
    let b = origin(|_req: Request<Incoming>| async { Response::new(full("b")) }).await;
    let gw = gateway(&config(&[a.addr, b.addr], "")).await;
    let c = client();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let r = c.get(gw.url("/x")).send().await.expect("request");
        assert_eq!(r.status(), 200);
        bodies.push(r.text().await.expect("body"));
    }
    bodies.sort();
    assert_eq!(bodies, ["a", "a", "b", "b"]);
}

#[tokio::test]
async fn upstream_connections_are_reused_over_100_sequential_requests() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let c = client();
    for i in 0..100 {
        let r = c
            .get(gw.url(&format!("/n/{i}")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("body");
    }
    assert_eq!(
        o.accepted(),
        1,
        "100 sequential requests should share one pooled upstream connection"
    );
}

#[tokio::test]
async fn chunked_request_and_response_bodies_stream_through() {
    // The origin answers with a chunked body of 50 pieces, echoing how many bytes it got.
    let o = origin(|req: Request<Incoming>| async move {
        let got = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().len())
            .unwrap_or(0);
        let chunks = futures_util::stream::iter((0..50).map(move |i| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(format!("{i}:{got};"))))
        }));
        Response::new(
            http_body_util::StreamBody::new(chunks)
                .map_err(Into::into)
                .boxed_unsync(),
        )
    })
    .await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let upload = futures_util::stream::iter(
        (0..100).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1000]))),
    );
    let r = client()
        .post(gw.url("/up"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "response stays chunked"
    );
    let text = r.text().await.expect("body");
    assert!(text.starts_with("0:100000;1:100000;"), "{text}");
    assert!(text.ends_with("49:100000;"));

    // And over raw TCP with explicit chunked framing.
    let resp = raw(
        gw.addr,
        b"POST /raw HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    assert!(resp.contains("0:11;"), "{resp}");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_without_buffering() {
    // 64 MiB each way through the gateway: the origin counts what it receives, then streams
    // the same amount back. (The 1 GiB run with an RSS bound is in the weir crate's tests.)
    const SIZE: usize = 64 << 20;
    let o = origin(|req: Request<Incoming>| async move {
        let mut body = req.into_body();
        let mut n = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len());
        }
        let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
        let stream = futures_util::stream::iter(
            (0..n / chunk.len())
                .map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone()))),
        );
        Response::new(
            http_body_util::StreamBody::new(stream)
                .map_err(Into::into)
                .boxed_unsync(),
        )
    })
    .await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nmax_request_body_size = \"0\"\n",
    ))
    .await;
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let upload = futures_util::stream::iter(
        (0..SIZE / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = client()
        .post(gw.url("/big"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("chunk").len();
    }
    assert_eq!(total, SIZE);
}

#[tokio::test]
async fn h2c_prior_knowledge_end_to_end() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = c
        .post(gw.url("/h2?q=1"))
        .body("over h2")
        .send()
        .await
        .expect("request");
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let echo: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echo["uri"], "/h2?q=1");
    assert_eq!(echo["body"], "over h2");
    // :authority became Host for the HTTP/1.1 upstream; Via names the h2 hop.
    assert_eq!(echo["headers"]["host"], gw.addr.to_string());
    assert_eq!(echo["headers"]["via"], "2 weir");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let o = origin(|_req: Request<Incoming>| async {
        Response::builder()
            .header("connection", "x-upstream-private")
            .header("x-upstream-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-normal", "kept")
            .body(full("ok"))
            .expect("response")
    })
    .await;
    let e = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let resp = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    let lower = resp.to_ascii_lowercase();
    assert!(!lower.contains("x-upstream-private"), "{resp}");
    assert!(!lower.contains("keep-alive: timeout"), "{resp}");
    assert!(!lower.contains("proxy-authenticate"), "{resp}");
    assert!(lower.contains("x-normal: kept"));
    assert!(lower.contains("via: 1.1 weir"));

    let gw = gateway(&config(&[e.addr], "")).await;
    let resp = raw(
        gw.addr,
        b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: close, x-client-private\r\nX-Client-Private: 1\r\nKeep-Alive: 300\r\nTE: gzip, trailers\r\nProxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\nX-Normal: 1\r\n\r\n",
    )
    .await;
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let echo: serde_json::Value = serde_json::from_str(body).expect("json");
    let h = &echo["headers"];
    for gone in [
        "x-client-private",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(h.get(gone).is_none(), "{gone} forwarded: {h}");
    }
    assert_eq!(h["te"], "trailers");
    assert_eq!(h["x-normal"], "1");
}

#[tokio::test]
async fn forwarding_headers_replace_untrusted_values() {
    let e = echo_origin().await;
    let gw = gateway(&config(&[e.addr], "")).await;
    let r = client()
        .get(gw.url("/f"))
        .header("host", "shop.example:8443")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .send()
        .await
        .expect("request");
    let echo: serde_json::Value = r.json().await.expect("json");
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example:8443");
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.1;proto=http;host=\"shop.example:8443\""
    );
    assert_eq!(h["host"], "shop.example:8443", "Host passes through");
    assert_eq!(h["via"], "1.1 weir");
}

#[tokio::test]
async fn forwarding_headers_append_to_trusted_values() {
    let e = echo_origin().await;
    let gw = gateway(&config(&[e.addr], "trusted_proxies = [\"127.0.0.0/8\"]")).await;
    let r = client()
        .get(gw.url("/f"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.9;proto=https")
        .header("via", "1.1 edge")
        .send()
        .await
        .expect("request");
    let echo: serde_json::Value = r.json().await.expect("json");
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["forwarded"],
        format!(
            "for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=\"{}\"",
            gw.addr
        )
    );
    assert_eq!(h["via"], "1.1 edge, 1.1 weir");
    let lines = gw.log_lines().await;
    assert_eq!(
        lines[0]["client_ip"], "203.0.113.9",
        "client ip resolved through the trusted hop"
    );
}

#[tokio::test]
async fn upstream_host_header_override() {
    let e = echo_origin().await;
    let toml = config(&[e.addr], "").replace(
        "name = \"up\"",
        "name = \"up\"\nhost_header = \"internal.svc\"",
    );
    let gw = gateway(&toml).await;
    let echo: serde_json::Value = client()
        .get(gw.url("/"))
        .send()
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(echo["headers"]["host"], "internal.svc");
}

#[tokio::test]
async fn request_id_is_generated_sent_upstream_and_returned() {
    let e = echo_origin().await;
    let gw = gateway(&config(&[e.addr], "")).await;
    let r = client().get(gw.url("/id")).send().await.expect("request");
    let id = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32);
    let echo: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echo["headers"]["x-request-id"], id.as_str());

    let r = client()
        .get(gw.url("/id"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let echo: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echo["headers"]["x-request-id"], "abc-123");
}

#[tokio::test]
async fn server_sent_events_reach_the_client_before_the_upstream_finishes() {
    // The origin sends one event, then waits until the test has received it through Weir
    // before sending the rest: a buffering proxy would deadlock here.
    let (seen_tx, seen_rx) = tokio::sync::mpsc::channel::<()>(1);
    let seen_rx = std::sync::Arc::new(tokio::sync::Mutex::new(seen_rx));
    let o = origin(move |_req: Request<Incoming>| {
        let seen_rx = seen_rx.clone();
        async move {
            let events = futures_util::stream::unfold(0u8, move |n| {
                let seen_rx = seen_rx.clone();
                async move {
                    match n {
                        0 => Some((
                            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(
                                "data: first\n\n",
                            ))),
                            1,
                        )),
                        1 => {
                            seen_rx.lock().await.recv().await;
                            Some((
                                Ok(http_body::Frame::data(Bytes::from("data: second\n\n"))),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(
                    http_body_util::StreamBody::new(events)
                        .map_err(|e| e.into())
                        .boxed_unsync(),
                )
                .expect("response")
        }
    })
    .await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let resp = client()
        .get(gw.url("/events"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("first event arrives while the upstream is still open")
        .expect("chunk")
        .expect("ok");
    assert_eq!(&first[..], b"data: first\n\n");
    seen_tx.send(()).await.expect("signal");
    let second = stream.next().await.expect("chunk").expect("ok");
    assert_eq!(&second[..], b"data: second\n\n");
    assert!(stream.next().await.is_none());
}

/// The fields Weir sets going upstream are written beside the request's own (not through its
/// header map): a client's copies must still be gone, each name sent exactly once.
#[tokio::test]
async fn proxy_set_fields_are_sent_once_in_place_of_the_clients() {
    let o = origin(|req: Request<Incoming>| async move {
        let seen: serde_json::Map<String, serde_json::Value> = PROXY_SET_FIELDS
            .iter()
            .map(|n| {
                let values: Vec<serde_json::Value> = req
                    .headers()
                    .get_all(*n)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?").into())
                    .collect();
                ((*n).to_owned(), values.into())
            })
            .collect();
        Response::builder()
            .body(full(serde_json::Value::Object(seen).to_string()))
            .expect("response")
    })
    .await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let resp = raw(
        gw.addr,
        b"GET /f HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=6.6.6.6\r\nVia: 1.1 spoof\r\nX-Request-Id: not/valid id\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let seen: serde_json::Value = serde_json::from_str(body).expect("json");
    for name in PROXY_SET_FIELDS {
        assert_eq!(
            seen[name].as_array().map(Vec::len),
            Some(1),
            "{name}: {seen}"
        );
    }
    assert_eq!(seen["x-forwarded-for"][0], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"][0], "http");
    assert_eq!(seen["x-forwarded-host"][0], "shop.test");
    assert_eq!(
        seen["forwarded"][0],
        "for=127.0.0.1;proto=http;host=shop.test"
    );
    assert_eq!(seen["via"][0], "1.1 spoof, 1.1 weir");
    assert_ne!(seen["x-request-id"][0], "not/valid id");
}
