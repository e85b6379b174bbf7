//! Connection limits: slowloris head timeout, keep-alive idle timeout, max connections.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nheader_read_timeout = \"300ms\"\nkeepalive_timeout = \"60s\"\n",
    ))
    .await;
    // Sends a partial head and then nothing: a slowloris client.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "slow head must be closed"
    );
    // A client that connects and says nothing at all is cut off too.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "silent connection must be closed"
    );
    assert_eq!(o.accepted(), 0);
}

#[tokio::test]
async fn idle_keepalive_connection_is_closed_but_not_before_its_timeout_class() {
    let o = echo_origin().await;
    let gw = gateway(&config(
        &[o.addr],
        "[server]\nheader_read_timeout = \"100ms\"\nkeepalive_timeout = \"1s\"\n",
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.expect("read");
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    // Idle past the head timeout but within keep-alive: still usable.
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let n = s.read(&mut buf).await.expect("read");
    assert_eq!(
        status_of(&String::from_utf8_lossy(&buf[..n])),
        200,
        "keep-alive outlives the head timeout"
    );
    // Then idle: closed by the keep-alive timeout.
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn max_connections_holds_further_clients_in_the_backlog() {
    let o = echo_origin().await;
    let gw = gateway(&config(&[o.addr], "[server]\nmax_connections = 1\n")).await;
    let mut first = TcpStream::connect(gw.addr).await.expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = first.read(&mut buf).await.expect("read");
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);

    // The second connection is accepted by the kernel but not served while the first is open.
    let second = tokio::spawn(raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second client must wait for a connection slot"
    );
    drop(first);
    let resp = second.await.expect("join");
    assert_eq!(status_of(&resp), 200);
}
