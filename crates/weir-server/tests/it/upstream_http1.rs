//! Weir's own HTTP/1.1 upstream client against raw origins that misbehave on purpose: idle
//! connections the origin closed, answers that come before the request body was read, and
//! framing that must never let one response's bytes become another's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// An origin that runs `script` on every connection (given its index, from 0); returns its
/// address and the number of connections accepted and finished.
async fn raw_origin<F>(script: F) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>)
where
    F: Fn(usize, BufReader<TcpStream>) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync
        + 'static,
{
    let script = Arc::new(script);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (accepted, finished) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, f) = (accepted.clone(), finished.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let n = a.fetch_add(1, SeqCst);
            let (f, script) = (f.clone(), script.clone());
            tokio::spawn(async move {
                script(n, BufReader::new(s)).await;
                f.fetch_add(1, SeqCst);
            });
        }
    });
    (addr, accepted, finished)
}

/// Reads one request head; `None` at end of stream.
async fn read_head(s: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// An origin answering every request on its first connection with `first` (raw bytes), and on
/// every later connection with `then`.
async fn first_connection_answers(
    first: &'static [u8],
    then: &'static [u8],
) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, accepted, _) = raw_origin(move |n, mut s| {
        Box::pin(async move {
            while read_head(&mut s).await.is_some() {
                let resp = if n == 0 { first } else { then };
                if s.get_mut().write_all(resp).await.is_err() {
                    return;
                }
            }
        })
    })
    .await;
    (addr, accepted)
}

fn no_retries(origin: SocketAddr) -> String {
    upstream_config(&[(origin, 1)], "retry = { attempts = 0 }", "")
}

#[tokio::test]
async fn an_idle_connection_the_origin_closed_is_not_used_again() {
    // Each connection answers one request (keep-alive announced) and is then closed by the
    // origin. With retries off, the second request succeeds only if Weir sees that its
    // pooled connection was closed and opens another instead of writing into it.
    let (o, accepted, finished) = raw_origin(|_, mut s| {
        Box::pin(async move {
            if read_head(&mut s).await.is_some() {
                let _ = s
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        })
    })
    .await;
    let gw = gateway(&no_retries(o)).await;
    let c = client();
    for round in 1..=3 {
        let r = c.get(gw.url("/x")).send().await.expect("request");
        assert_eq!(r.status(), 200, "round {round}");
        assert_eq!(r.text().await.expect("body"), "ok");
        // The origin has closed this round's connection before the next request is sent.
        wait_until("the origin to close its connection", || {
            let n = finished.load(SeqCst);
            async move { (n == round).then_some(()) }
        })
        .await;
    }
    assert_eq!(accepted.load(SeqCst), 3);
}

#[tokio::test]
async fn an_answer_before_the_body_was_read_reaches_the_client() {
    // The origin refuses a 4 MiB upload from its head alone and never reads the body: the
    // 413 is relayed while Weir's upload is still blocked on a full socket.
    let (o, _, _) = raw_origin(|_, mut s| {
        Box::pin(async move {
            if read_head(&mut s).await.is_some() {
                let _ = s
                    .get_mut()
                    .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
                    .await;
                // Hold the connection open with the body unread.
                std::future::pending::<()>().await;
            }
        })
    })
    .await;
    let gw = gateway(&no_retries(o)).await;
    let r = client()
        .post(gw.url("/upload"))
        .body(vec![b'x'; 4 << 20])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    assert_eq!(r.text().await.expect("body"), "too big!");
}

#[tokio::test]
async fn bytes_past_a_response_never_become_the_next_response() {
    // The first connection's response carries a second, unasked-for response right behind
    // its body. That connection must not be used again: the next request gets its answer
    // from a fresh connection, never the planted one.
    let (o, accepted) = first_connection_answers(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nplanted",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh",
    )
    .await;
    let gw = gateway(&no_retries(o)).await;
    let c = client();
    let first = c.get(gw.url("/a")).send().await.expect("first");
    assert_eq!(first.text().await.expect("body"), "ok");
    let second = c.get(gw.url("/b")).send().await.expect("second");
    assert_eq!(second.status(), 200);
    assert_eq!(second.text().await.expect("body"), "fresh");
    assert_eq!(accepted.load(SeqCst), 2);
}

#[tokio::test]
async fn conflicting_framing_from_the_origin_is_a_502() {
    // Two different Content-Lengths: no way to know where the body ends. Weir answers 502
    // and closes that connection; the origin's next connection is served normally.
    let (o, accepted) = first_connection_answers(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let gw = gateway(&no_retries(o)).await;
    let c = client();
    let bad = c.get(gw.url("/a")).send().await.expect("first");
    assert_eq!(bad.status(), 502);
    let good = c.get(gw.url("/b")).send().await.expect("second");
    assert_eq!(good.status(), 200);
    assert_eq!(good.text().await.expect("body"), "ok");
    assert_eq!(accepted.load(SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_the_origin_half_closed_is_swept_without_a_request() {
    // The origin answers, then shuts its side of the connection and waits for Weir's: with
    // no request coming to take it from the pool, the pool's sweep must notice and close it
    // (an idle connection has no task watching it).
    let (o, accepted, finished) = raw_origin(|_, mut s| {
        Box::pin(async move {
            if read_head(&mut s).await.is_some() {
                let _ = s
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = s.get_mut().shutdown().await;
                // Returns when Weir closes its end.
                let mut rest = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest).await;
            }
        })
    })
    .await;
    let toml = config(&[o], "").replace(
        "timeouts = { connect = \"1s\", response_header = \"2s\" }",
        "timeouts = { connect = \"1s\", response_header = \"2s\", idle = \"2s\" }",
    );
    let gw = gateway(&toml).await;
    let r = client().get(gw.url("/x")).send().await.expect("request");
    assert_eq!(r.text().await.expect("body"), "ok");
    wait_until("the pool to close the connection the origin shut", || {
        let n = finished.load(SeqCst);
        async move { (n == 1).then_some(()) }
    })
    .await;
    assert_eq!(accepted.load(SeqCst), 1);
}
