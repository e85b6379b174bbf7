//! Graceful shutdown: in-flight requests finish; new connections are refused.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::common::*;

#[tokio::test]
async fn in_flight_request_finishes_during_shutdown() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Response::new(full("finished"))
    })
    .await;
    let mut gw = gateway(&config(&[slow.addr], "")).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move {
        client()
            .get(url)
            .send()
            .await
            .expect("request")
            .text()
            .await
    });
    wait_until("the request reached the origin", || async {
        (slow.received() >= 1).then_some(())
    })
    .await;
    let server = gw.server.take().expect("server");
    let drained = server.shutdown().await;
    assert!(drained, "shutdown waited for the in-flight request");
    assert_eq!(in_flight.await.expect("join").expect("body"), "finished");
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn h2_connection_gets_goaway_and_stream_finishes() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Response::new(full("h2 done"))
    })
    .await;
    let mut gw = gateway(&config(&[slow.addr], "")).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let url = gw.url("/slow");
    let in_flight =
        tokio::spawn(async move { c.get(url).send().await.expect("request").text().await });
    wait_until("the request reached the origin", || async {
        (slow.received() >= 1).then_some(())
    })
    .await;
    assert!(gw.server.take().expect("server").shutdown().await);
    assert_eq!(in_flight.await.expect("join").expect("body"), "h2 done");
}
