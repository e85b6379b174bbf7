//! Runtime endpoint changes through the admin API: add, reweight, remove (draining, with the
//! requests in flight finishing), the churn drill, and a reload that forgets the changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::*;

const TOKEN: &str = "runtime-endpoints-token-42";

fn admin_url(gw: &Gateway, path: &str) -> String {
    let admin = gw.admin_addr();
    format!("http://{admin}{path}")
}

async fn add(gw: &Gateway, address: &str, weight: u32) -> (u16, serde_json::Value) {
    let r = client()
        .post(admin_url(gw, "/upstreams/up/endpoints"))
        .bearer_auth(TOKEN)
        .body(serde_json::json!({"address": address, "weight": weight}).to_string())
        .send()
        .await
        .expect("admin");
    (r.status().as_u16(), r.json().await.expect("json"))
}

async fn remove(gw: &Gateway, address: &str) -> u16 {
    client()
        .delete(admin_url(gw, &format!("/upstreams/up/endpoints/{address}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin")
        .status()
        .as_u16()
}

async fn authed_metrics(gw: &Gateway) -> String {
    client()
        .get(admin_url(gw, "/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn config_with(endpoints: &[SocketAddr], upstream: &str) -> String {
    TestConfig::new()
        .top("shutdown_timeout = \"5s\"")
        .top(&format!(
            "admin = {{ bind = \"127.0.0.1:0\", token = \"{TOKEN}\" }}"
        ))
        .upstream("up", endpoints, upstream)
        .route("to-up", "proxy = { upstream = \"up\" }")
        .build()
}

#[tokio::test]
async fn add_reweight_and_remove_through_the_admin_api() {
    let origins = numbered_origins(3).await;
    let gw = gateway(&config_with(&[origins[0].addr], "")).await;

    // The token is required.
    let anon = client()
        .post(admin_url(&gw, "/upstreams/up/endpoints"))
        .body(r#"{"address": "127.0.0.1:1"}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(anon.status(), 401);
    // Bad input: a clear 400, nothing changes.
    for body in [
        r#"{"address": "nope"}"#,
        r#"{"address": "127.0.0.1:1", "weight": 0}"#,
        "{",
        r#"{"adress": "127.0.0.1:1"}"#,
    ] {
        let r = client()
            .post(admin_url(&gw, "/upstreams/up/endpoints"))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status(), 400, "{body}");
    }
    // An endpoint added, then removed: back to one.
    assert_eq!(add(&gw, "127.0.0.1:1", 1).await.0, 201);
    assert_eq!(remove(&gw, "127.0.0.1:1").await, 200);
    assert_eq!(set_now(&gw).len(), 1);
    let unknown = client()
        .post(admin_url(&gw, "/upstreams/nope/endpoints"))
        .bearer_auth(TOKEN)
        .body(r#"{"address": "127.0.0.1:1"}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(unknown.status(), 404);
    assert_eq!(remove(&gw, "127.0.0.1:9").await, 404);

    // Add two: weights 1 (static), 2 and 7.
    let (status, body) = add(&gw, &origins[1].addr.to_string(), 2).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(add(&gw, &origins[2].addr.to_string(), 3).await.0, 201);
    let (status, body) = add(&gw, &origins[2].addr.to_string(), 7).await;
    assert_eq!(
        (status, body["reweighted"].as_bool()),
        (200, Some(true)),
        "{body}"
    );

    let bodies = load(&gw.url("/w"), 10_000, 16).await;
    let counts = tally(&bodies, 3);
    assert_eq!(counts.iter().sum::<usize>(), 10_000, "{counts:?}");
    for (got, share) in counts.iter().zip([0.1, 0.2, 0.7]) {
        assert!((*got as f64 / 10_000.0 - share).abs() < 0.02, "{counts:?}");
    }

    // `/upstreams` says where each came from.
    let ups: serde_json::Value = client()
        .get(admin_url(&gw, "/upstreams"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let sources: Vec<(&str, &str)> = ups["upstreams"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["address"].as_str().unwrap_or(""),
                e["source"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(sources.len(), 3, "{ups}");
    assert_eq!(sources[0].1, "static");
    assert_eq!((sources[1].1, sources[2].1), ("admin", "admin"));

    // Remove one: it gets nothing more.
    assert_eq!(remove(&gw, &origins[2].addr.to_string()).await, 200);
    let before = origins[2].requests.load(Ordering::SeqCst);
    let bodies = load(&gw.url("/w"), 600, 8).await;
    assert!(bodies.iter().all(|b| b == "0" || b == "1"), "{bodies:?}");
    assert_eq!(origins[2].requests.load(Ordering::SeqCst), before);

    let m = authed_metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_upstream_endpoints{upstream=\"up\",state=\"in_service\"}"
        ),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_removed_endpoint_finishes_its_requests_in_flight() {
    let release = Arc::new(Notify::new());
    let arrived = Arc::new(Notify::new());
    let (r, a) = (release.clone(), arrived.clone());
    let slow = origin(move |_req: Request<Incoming>| {
        let (r, a) = (r.clone(), a.clone());
        async move {
            a.notify_one();
            r.notified().await;
            Response::new(full("slow"))
        }
    })
    .await;
    let other = numbered_origins(1).await;
    let gw = gateway(&config_with(&[slow.addr], "")).await;
    let url = gw.url("/held");
    let held =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    arrived.notified().await;

    assert_eq!(add(&gw, &other[0].addr.to_string(), 1).await.0, 201);
    assert_eq!(remove(&gw, &slow.addr.to_string()).await, 200);
    // Draining: out of the set, one request still in flight.
    let stats = &gw.server.as_ref().expect("server").upstream_stats()[0];
    assert_eq!(stats.draining.len(), 1);
    assert_eq!(stats.draining[0].in_flight, 1);
    let m = authed_metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_upstream_endpoints{upstream=\"up\",state=\"draining\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // New requests go to the endpoint that stays.
    assert_eq!(body_of(&gw, "/new").await, "0");
    release.notify_one();
    assert_eq!(held.await.expect("join").expect("held request"), 200);
    wait_until("the drain to finish", || async {
        gw.server.as_ref().expect("server").upstream_stats()[0]
            .draining
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn churn_drill_through_the_admin_api() {
    let origins = drill_origins().await;
    let gw = gateway(&config_with(&[], "")).await;
    let addrs: Vec<String> = origins.iter().map(|o| o.addr.to_string()).collect();
    let names = addrs.clone();
    let gw_ref = &gw;
    let steps = churn_drill(
        &gw,
        &origins,
        |i| names[i].clone(),
        |set: Vec<usize>| {
            let addrs = addrs.clone();
            async move {
                let want: BTreeSet<String> = set.iter().map(|&i| addrs[i].clone()).collect();
                for a in &want {
                    add(gw_ref, a, 1).await;
                }
                for a in set_now(gw_ref).difference(&want) {
                    assert_eq!(remove(gw_ref, a).await, 200);
                }
            }
        },
    )
    .await;
    assert!(steps >= 4);
}

#[tokio::test]
async fn a_reload_forgets_the_admin_changes() {
    let origins = numbered_origins(2).await;
    let dir = TempDir::new("runtime-reload");
    let path = dir.0.join("weir.toml");
    let toml = config_with(&[origins[0].addr], "");
    std::fs::write(&path, &toml).expect("write config");
    let config = weir_config::load(&path).expect("config");
    let server = weir_server::Server::start_with_file(
        config,
        Some(path.clone()),
        weir_observe::AccessLog::disabled(),
    )
    .await
    .expect("start");
    let gw = Gateway {
        addr: server.local_addr("main").expect("main"),
        server: Some(server),
        log: LogBuf::default(),
    };
    assert_eq!(add(&gw, &origins[1].addr.to_string(), 1).await.0, 201);
    assert_eq!(set_now(&gw).len(), 2);
    let r = client()
        .post(admin_url(&gw, "/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    assert_eq!(set_now(&gw), BTreeSet::from([origins[0].addr.to_string()]));
}
