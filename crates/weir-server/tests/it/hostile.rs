//! Hostile input over raw TCP: random bytes and mutated requests. Every connection must end
//! with a 4xx (or a valid answer, if the mutation is still a valid request) or a close, never a
//! 5xx, a panic or a hang; and the gateway must go on serving.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const VALID: &[u8] = b"POST /api/items?x=1 HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\nX-Request-Id: abc\r\nConnection: close\r\n\r\n{\"name\":\"a\"}\n";

fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..rng.usize(1..6) {
        let i = rng.usize(..out.len().max(1));
        match rng.u8(..4) {
            0 => out[i] = rng.u8(..),
            1 => out.insert(i, *rng.choice(b"\r\n :\x00\x7f%/.".iter()).unwrap_or(&b'x')),
            2 if out.len() > 1 => {
                out.remove(i);
            }
            _ => {
                let n = rng.usize(1..2048);
                let filler = rng.u8(b'a'..=b'z');
                out.splice(i..i, std::iter::repeat_n(filler, n));
            }
        }
    }
    out
}

/// Sends `input`, then reads until the gateway closes; returns the status, if one came.
async fn exchange(addr: std::net::SocketAddr, input: Vec<u8>) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(&input).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "gateway hung on input {:?}",
        String::from_utf8_lossy(&input)
    );
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn random_and_mutated_requests_never_get_a_5xx_or_a_hang() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nheader_read_timeout = \"500ms\"\nkeepalive_timeout = \"1s\"\nmax_request_body_size = \"64KiB\"\n",
    ))
    .await;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut inputs: Vec<Vec<u8>> = (0..150).map(|_| mutate(&mut rng, VALID)).collect();
    inputs.extend((0..50).map(|_| {
        let n = rng.usize(1..1500);
        (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>()
    }));
    let statuses: Vec<Option<u16>> = stream::iter(inputs)
        .map(|input| exchange(gw.addr, input))
        .buffer_unordered(32)
        .collect()
        .await;
    let answered = statuses.iter().flatten().count();
    for status in statuses.iter().flatten() {
        assert!(*status < 500, "a hostile request produced {status}");
    }
    assert!(
        answered > 50,
        "most inputs should get an answer, got {answered}"
    );
    // Still serving.
    let r = client()
        .get(gw.url("/after"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}
