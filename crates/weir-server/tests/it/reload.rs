//! Hot reload under load: 20 reloads alternating two valid configs and an invalid one while
//! 16 connections send requests and a WebSocket stays open. Nothing fails, the WebSocket keeps
//! echoing, responses follow the config, and an invalid config is refused with diagnostics.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn config_text(which: &str, ws: std::net::SocketAddr, up: std::net::SocketAddr) -> String {
    format!(
        r#"
shutdown_timeout = "5s"
admin = {{ bind = "127.0.0.1:0" }}

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[upstreams]]
name = "ws"
endpoints = ["{ws}"]

[[upstreams]]
name = "up"
endpoints = ["{up}"]

[[routes]]
match = {{ path = "/which" }}
respond = {{ status = 200, body = "{which}" }}

[[routes]]
match = {{ path_prefix = "/ws" }}
proxy = {{ upstream = "ws" }}

[[routes]]
proxy = {{ upstream = "up" }}
"#
    )
}

#[tokio::test]
async fn twenty_reloads_under_load_drop_nothing() {
    // A WebSocket echo origin and two HTTP origins.
    let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ws_addr = ws_listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = ws_listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let origins = numbered_origins(2).await;
    // Removed when the test ends.
    let tmp = TempDir::new("reload");
    let dir = tmp.0.clone();
    let path = dir.join("weir.toml");
    let a = config_text("A", ws_addr, origins[0].addr);
    let b = config_text("B", ws_addr, origins[1].addr);
    let invalid = b.replace(
        "proxy = { upstream = \"up\" }",
        "proxy = { upstream = \"upp\" }",
    );
    std::fs::write(&path, &a).expect("write");

    let config = weir_config::load(&path).expect("config");
    let log = LogBuf::default();
    let server = weir_server::Server::start_with_file(
        config,
        Some(path.clone()),
        weir_observe::AccessLog::to_writer(log.clone()),
    )
    .await
    .expect("start");
    let addr = server.local_addr("main").expect("main");
    let gw = Gateway {
        server: Some(server),
        addr,
        log,
    };
    let server = gw.server.as_ref().expect("server");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("websocket");
    let url = gw.url("/load");
    let load_task = tokio::spawn(async move { load(&url, 4_000, 16).await });

    let mut ok = 0;
    for i in 0..20 {
        let (text, valid) = match i % 3 {
            0 => (&b, true),
            1 => (&a, true),
            _ => (&invalid, false),
        };
        std::fs::write(&path, text).expect("write");
        let result = server.reload_from_file().await;
        assert_eq!(result.is_ok(), valid, "reload {i}: {result:?}");
        if let Ok(summary) = &result {
            ok += 1;
            // New requests follow the new config at once.
            let which = client().get(gw.url("/which")).send().await.expect("which");
            let want = if i % 3 == 0 { "B" } else { "A" };
            assert_eq!(which.text().await.expect("body"), want);
            assert!(
                summary.upstreams_kept >= 1,
                "the WebSocket upstream is carried over: {summary:?}"
            );
            assert!(summary.listeners_changed.is_empty() && summary.listeners_added.is_empty());
        } else if let Err(e) = &result {
            assert!(e.to_string().contains("unknown upstream `upp`"), "{e}");
        }
        // The tunnel opened before any reload still echoes.
        ws.send(Message::text(format!("ping {i}")))
            .await
            .expect("ws send");
        let echo = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        assert_eq!(
            echo.expect("echo in time").expect("frame").expect("ok"),
            Message::text(format!("ping {i}"))
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies = load_task.await.expect("load");
    let failed = bodies.iter().filter(|b| b.starts_with("ERR")).count();
    assert_eq!(failed, 0, "{failed} of 4000 requests failed during reloads");
    assert_eq!(ok, 14);

    // The last valid config applied was A (i = 19 → 19 % 3 == 1); the invalid one before it
    // changed nothing.
    let which = client()
        .get(gw.url("/which"))
        .send()
        .await
        .expect("which")
        .text()
        .await
        .expect("body");
    assert_eq!(which, "A");
    let m = metrics(&gw).await;
    assert!(
        m.contains("weir_config_reloads_total{result=\"ok\"} 14"),
        "{m}"
    );
    assert!(
        m.contains("weir_config_reloads_total{result=\"error\"} 6"),
        "{m}"
    );
}

#[tokio::test]
async fn watch_reloads_when_the_file_is_replaced() {
    // Removed when the test ends.
    let tmp = TempDir::new("watch");
    let dir = tmp.0.clone();
    let path = dir.join("weir.toml");
    let text = |body: &str| {
        format!(
            "watch = true\n\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nrespond = {{ status = 200, body = \"{body}\" }}\n"
        )
    };
    std::fs::write(&path, text("one")).expect("write");
    let config = weir_config::load(&path).expect("config");
    let server = weir_server::Server::start_with_file(
        config,
        Some(path.clone()),
        weir_observe::AccessLog::disabled(),
    )
    .await
    .expect("start");
    let addr = server.local_addr("main").expect("main");
    let get = || async move {
        reqwest::get(format!("http://{addr}/"))
            .await
            .expect("get")
            .text()
            .await
            .expect("body")
    };
    assert_eq!(get().await, "one");
    // As editors do: write a new file, rename it over the old one.
    let tmp = dir.join("weir.toml.tmp");
    std::fs::write(&tmp, text("two")).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    let mut body = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        body = get().await;
        if body == "two" {
            break;
        }
    }
    assert_eq!(body, "two");
}

/// `GET /status` on the admin address `addr` with `token`: the status code.
async fn admin_status(addr: std::net::SocketAddr, token: &str) -> u16 {
    client()
        .get(format!("http://{addr}/status"))
        .bearer_auth(token)
        .send()
        .await
        .expect("admin answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_reload_moves_the_admin_listener_and_rotates_its_token() {
    let admin = |bind: &str, token: &str| {
        let text = format!(
            "admin = {{ bind = \"{bind}\", token = \"{token}\" }}\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nrespond = {{ status = 200 }}\n"
        );
        weir_config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    };
    let (one, two, three) = (
        "token-one-0123456789",
        "token-two-0123456789",
        "token-three-012345678",
    );
    let server = weir_server::Server::start(
        admin("127.0.0.1:0", one),
        weir_observe::AccessLog::to_writer(LogBuf::default()),
    )
    .await
    .expect("start");
    let first = server.admin_addr().expect("admin");
    assert_eq!(admin_status(first, one).await, 200);

    // A new address and a new token: the old address closes, the old token stops working.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
    let moved_to = free.local_addr().expect("addr");
    drop(free);
    let summary = server
        .reload(admin(&moved_to.to_string(), two))
        .await
        .expect("reload");
    assert!(summary.admin_changed);
    assert_eq!(server.admin_addr(), Some(moved_to));
    assert_eq!(admin_status(moved_to, one).await, 401);
    assert_eq!(admin_status(moved_to, two).await, 200);
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(first).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "the old admin address no longer accepts");

    // Only the token changes: same listener, the new token at once.
    let summary = server
        .reload(admin(&moved_to.to_string(), three))
        .await
        .expect("reload");
    assert!(!summary.admin_changed);
    assert_eq!(admin_status(moved_to, two).await, 401);
    assert_eq!(admin_status(moved_to, three).await, 200);

    // No `[admin]` any more: the listener closes.
    let none = weir_config::parse(
        "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n[[routes]]\nrespond = { status = 200 }\n",
        "test.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(server.reload(none).await.expect("reload").admin_changed);
    assert_eq!(server.admin_addr(), None);
    assert!(server.shutdown().await);
}

/// A reload that changes settings only a restart applies says so by key (in its answer and
/// `/status`, while they differ) and keeps the running values; `shutdown_timeout` it applies:
/// the next drain waits the new time, not the one Weir started with.
#[tokio::test]
async fn restart_only_settings_are_reported_and_shutdown_timeout_applied() {
    // An origin that accepts and never answers: a request to it stays in flight.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let (reached, mut reached_rx) = tokio::sync::mpsc::unbounded_channel();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
            let _ = reached.send(());
        }
    });
    let text = |extra: &str| {
        let src = format!(
            "{extra}\nadmin = {{ bind = \"127.0.0.1:0\" }}\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"up\"\nendpoints = [\"{silent_addr}\"]\ntimeouts = {{ response_header = \"1h\" }}\n[[routes]]\nproxy = {{ upstream = \"up\" }}\n"
        );
        weir_config::parse(&src, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    };
    let server = weir_server::Server::start(
        text("shutdown_timeout = \"1h\""),
        weir_observe::AccessLog::to_writer(LogBuf::default()),
    )
    .await
    .expect("start");
    let admin = server.admin_addr().expect("admin");
    let status = || async {
        client()
            .get(format!("http://{admin}/status"))
            .send()
            .await
            .expect("status")
            .json::<serde_json::Value>()
            .await
            .expect("json")
    };
    let summary = server
        .reload(text(
            "shutdown_timeout = \"100ms\"\nworkers = 3\naccess_log = { path = \"/tmp/weir-never-opened.log\" }",
        ))
        .await
        .expect("reload");
    assert_eq!(summary.needs_restart, ["workers", "access_log.path"]);
    assert_eq!(
        status().await["needs_restart"],
        serde_json::json!(["workers", "access_log.path"])
    );
    // Back to what is running: nothing pending.
    let summary = server
        .reload(text("shutdown_timeout = \"100ms\""))
        .await
        .expect("reload");
    assert!(summary.needs_restart.is_empty());
    assert_eq!(status().await["needs_restart"], serde_json::json!([]));

    // A request in flight for an hour; the drain gives up after the reloaded 100 ms, not the
    // hour Weir started with (the deadline here is only a generous bound).
    let url = format!("http://{}/hang", server.local_addr("main").expect("main"));
    let pending = tokio::spawn(async move { client().get(url).send().await });
    // In flight once the origin has its connection.
    tokio::time::timeout(Duration::from_secs(20), reached_rx.recv())
        .await
        .expect("the request reached the origin");
    let drained = tokio::time::timeout(Duration::from_secs(30), server.shutdown())
        .await
        .expect("the drain used the reloaded shutdown_timeout");
    assert!(!drained, "the hanging request was cut off");
    pending.abort();
    held.abort();
}
