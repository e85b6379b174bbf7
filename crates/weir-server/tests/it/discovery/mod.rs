//! Endpoint sets that change while Weir runs: the admin API, files, DNS and etcd, each through
//! the churn drill (the set changes every 200 ms under load, with a WebSocket held open to an
//! endpoint that stays: no client request fails, removed endpoints get no new request).

mod admin;
mod dns;
mod etcd;
mod file;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// An origin answering its index `i` as the body, and echoing WebSocket frames on an upgrade
/// (its 101 says `x-origin: i`).
pub async fn ws_origin(i: usize) -> Origin {
    origin(move |mut req: Request<Incoming>| async move {
        let key = req.headers().get("sec-websocket-key").cloned();
        let Some(key) = key else {
            return Response::new(full(i.to_string()));
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let io = hyper_util::rt::TokioIo::new(upgraded);
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                io,
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", accept)
            .header("x-origin", i.to_string())
            .body(full(""))
            .expect("101")
    })
    .await
}

/// A config whose upstream `up` has no static endpoints and `discovery = { DISCOVERY }`,
/// with `extra` upstream keys, the admin API and a route to it.
pub fn provider_config(discovery: &str, extra: &str) -> String {
    TestConfig::new()
        .top("shutdown_timeout = \"5s\"")
        .admin()
        .upstream(
            "up",
            &[],
            &format!("discovery = {{ {discovery} }}\n{extra}"),
        )
        .route("to-up", "proxy = { upstream = \"up\" }")
        .build()
}

/// The body of a GET to `path` through the gateway.
pub async fn body_of(gw: &Gateway, path: &str) -> String {
    client()
        .get(gw.url(path))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
}

/// The addresses in upstream 0's set now.
pub fn set_now(gw: &Gateway) -> BTreeSet<String> {
    gw.server.as_ref().expect("server").upstream_stats()[0]
        .endpoints
        .iter()
        .map(|e| e.address.to_string())
        .collect()
}

/// Waits until upstream 0's set is exactly `want` and no removed endpoint has a request in
/// flight any more.
pub async fn settled(gw: &Gateway, want: &BTreeSet<String>) {
    wait_until("the endpoint set to be applied and drained", || async {
        let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
        let now: BTreeSet<String> = stats
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        (now == *want && stats.draining.is_empty()).then_some(())
    })
    .await;
}

/// The sizes the drill's set goes through, in turn.
const SIZES: [usize; 4] = [3, 5, 2, 4];

/// The churn drill: 20,000 requests over 32 connections while `apply` changes the set every
/// 200 ms (3 → 5 → 2 → 4 → … of `origins`, always keeping the endpoint a WebSocket opened at
/// the start is on). `address` names origin `i` as the provider lists it; `apply` makes the
/// provider say exactly the given set. Returns how many set changes were made.
pub async fn churn_drill<F, Fut>(
    gw: &Gateway,
    origins: &[Origin],
    address: impl Fn(usize) -> String,
    mut apply: F,
) -> usize
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let first: Vec<usize> = (0..SIZES[0]).collect();
    let names = |set: &[usize]| set.iter().map(|&i| address(i)).collect::<BTreeSet<_>>();
    apply(first.clone()).await;
    settled(gw, &names(&first)).await;

    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .expect("websocket through weir");
    let anchor: usize = resp.headers()["x-origin"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("origin index");

    let url = gw.url("/drill");
    let load = tokio::spawn(async move { load(&url, 20_000, 32).await });
    let mut current = first;
    let mut step = 0usize;
    // Per origin: requests it had when it last left the set (None: in the set).
    let mut left_at: Vec<Option<usize>> = vec![None; origins.len()];
    let mut received_while_in = vec![0usize; origins.len()];
    let mut joined_at: Vec<usize> = origins
        .iter()
        .map(|o| o.requests.load(Ordering::SeqCst))
        .collect();
    for (i, at) in left_at.iter_mut().enumerate() {
        if !current.contains(&i) {
            *at = Some(origins[i].requests.load(Ordering::SeqCst));
        }
    }
    while !load.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A removed endpoint got no request since it left (its drain had finished then).
        for (i, at) in left_at.iter().enumerate() {
            if let Some(n) = at {
                assert_eq!(
                    origins[i].requests.load(Ordering::SeqCst),
                    *n,
                    "origin {i} got a request after it was removed (step {step})"
                );
            }
        }
        step += 1;
        let size = SIZES[step % SIZES.len()];
        let others: Vec<usize> = (0..origins.len()).filter(|&i| i != anchor).collect();
        let mut next = vec![anchor];
        next.extend((0..size - 1).map(|k| others[(step + k) % others.len()]));
        next.sort_unstable();
        apply(next.clone()).await;
        settled(gw, &names(&next)).await;
        for i in 0..origins.len() {
            let n = origins[i].requests.load(Ordering::SeqCst);
            match (current.contains(&i), next.contains(&i)) {
                (true, false) => {
                    received_while_in[i] += n - joined_at[i];
                    left_at[i] = Some(n);
                }
                (false, true) => {
                    left_at[i] = None;
                    joined_at[i] = n;
                }
                _ => {}
            }
        }
        current = next;
    }
    let bodies = load.await.expect("load");
    let failed: Vec<&String> = bodies.iter().filter(|b| b.starts_with("ERR")).collect();
    assert!(
        failed.is_empty(),
        "{} of 20000 requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    for i in &current {
        received_while_in[*i] += origins[*i].requests.load(Ordering::SeqCst) - joined_at[*i];
    }
    assert!(
        step >= 4,
        "the set changed only {step} times during the load"
    );
    for (i, n) in received_while_in.iter().enumerate() {
        assert!(
            *n > 0,
            "origin {i} was in the set and got no traffic: {received_while_in:?}"
        );
    }
    ws.send(Message::text("still there"))
        .await
        .expect("ws send");
    assert_eq!(
        ws.next().await.expect("frame").expect("ok"),
        Message::text("still there"),
        "the WebSocket opened before the churn still echoes"
    );
    step
}

/// Origins for the drill: six, each answering its index.
pub async fn drill_origins() -> Vec<Origin> {
    let mut out = Vec::new();
    for i in 0..6 {
        out.push(ws_origin(i).await);
    }
    out
}
