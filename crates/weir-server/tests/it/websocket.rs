//! WebSocket through Weir: the upgrade goes to the upstream, the tunnel opens on its 101, text
//! and binary frames echo both ways, and an idle tunnel is closed.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A WebSocket echo server on 127.0.0.1:0.
async fn ws_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_frames_echo_through_weir() {
    let origin = ws_echo().await;
    let gw = gateway(&config(&[origin], "")).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr))
        .await
        .expect("websocket handshake through weir");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()["upgrade"]
            .to_str()
            .expect("ascii")
            .to_ascii_lowercase(),
        "websocket"
    );
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::text(format!("hello {i}"))
        );
        let bin: Vec<u8> = (0..=255u8).cycle().take(70_000 + i).collect();
        ws.send(Message::binary(bin.clone())).await.expect("send");
        assert_eq!(
            ws.next().await.expect("frame").expect("ok"),
            Message::binary(bin)
        );
    }
    ws.close(None).await.expect("close");
    // The handshake is logged with its 101.
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["status"], 101);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let origin = ws_echo().await;
    let toml = config(&[origin], "").replace(
        "timeouts = { connect = \"1s\", response_header = \"2s\" }",
        "timeouts = { connect = \"1s\", response_header = \"2s\", tunnel_idle = \"300ms\" }",
    );
    let gw = gateway(&toml).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/idle", gw.addr))
        .await
        .expect("handshake");
    ws.send(Message::text("ping")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("frame").expect("ok"),
        Message::text("ping")
    );
    // Nothing moves: Weir closes the tunnel, which the client sees as the stream ending.
    let end = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    match end.expect("tunnel closed within 5 s") {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        Some(Ok(other)) => panic!("unexpected frame {other:?}"),
    }
}

#[tokio::test]
async fn an_upgrade_the_upstream_refuses_is_an_ordinary_response() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "")).await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/nows", gw.addr)).await;
    match err {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 200),
        other => panic!("expected an HTTP 200 refusal, got {other:?}"),
    }
}
