//! Canary plans through real sockets: a failing canary is rolled back and gets nothing
//! afterwards; a healthy one climbs every step to 100 %; operators pause, promote and abort;
//! a reload keeps an unchanged plan's progress; two instances sharing a real `redis-server`
//! move together. (The judgement's arithmetic is unit-tested on tokio's paused clock in
//! `deploy/canary.rs`.)

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use weir_testkit::redis::RedisServer;

use super::{admin_json, versions_config};
use crate::common::*;

fn plan(canary: &str) -> String {
    format!(
        r#"split = [{{ upstream = "v1" }}, {{ upstream = "v2" }}], canary = {{ upstream = "v2", check_interval = "20ms", {canary} }}"#
    )
}

async fn failing_origin() -> Origin {
    origin(|_req: Request<Incoming>| async move {
        Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(full("down"))
            .expect("response")
    })
    .await
}

async fn state(gw: &Gateway) -> serde_json::Value {
    admin_json(gw, "/canaries").await["splits"][0]["canary"].clone()
}

/// Sends requests until the plan's state is `want`; returns the plan.
async fn drive_until(gw: &Gateway, want: &str) -> serde_json::Value {
    let c = client();
    wait_until(&format!("the canary to be {want}"), || {
        let c = c.clone();
        async move {
            for _ in 0..20 {
                c.get(gw.url("/")).send().await.expect("request");
            }
            let s = state(gw).await;
            (s["state"] == want).then_some(s)
        }
    })
    .await
}

async fn post(gw: &Gateway, path: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{}{path}", gw.admin_addr()))
        .send()
        .await
        .expect("admin");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn a_canary_answering_5xx_is_rolled_back_and_gets_nothing_afterwards() {
    let stable = numbered_origins(1).await;
    let bad = failing_origin().await;
    let toml = versions_config(
        stable[0].addr,
        bad.addr,
        &plan("steps = [20, 100], step_time = \"1h\", min_requests = 30"),
        "",
    );
    let gw = gateway(&toml).await;
    let s = drive_until(&gw, "rolled_back").await;
    assert_eq!(s["share_percent"], 0.0);
    let why = s["history"][1]["why"].as_str().expect("why").to_owned();
    assert!(why.starts_with("5xx ratio 100.00%"), "{why}");
    // Judged only once the minimum was there.
    assert!(s["comparison"]["canary"]["requests"].as_u64().expect("n") >= 30);

    let before = bad.received();
    let got = load(&gw.url("/"), 500, 16).await;
    assert!(got.iter().all(|b| b == "0"), "everything to the baseline");
    assert_eq!(
        bad.received(),
        before,
        "the rolled-back canary got requests"
    );
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(&m, "weir_canary_rollbacks_total{route=\"app\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "weir_canary_state{route=\"app\",state=\"rolled_back\"}"),
        Some(1.0)
    );
    // An operator may start it over.
    let (status, body) = post(&gw, "/canaries/app/restart").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("progressing")));
}

#[tokio::test]
async fn a_healthy_canary_climbs_through_every_step_to_100_percent() {
    let o = numbered_origins(2).await;
    let toml = versions_config(
        o[0].addr,
        o[1].addr,
        &plan("steps = [10, 30, 60, 100], step_time = \"50ms\", min_requests = 10, p99_floor = \"1s\""),
        "",
    );
    let gw = gateway(&toml).await;
    let s = drive_until(&gw, "promoted").await;
    let shares: Vec<f64> = s["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["share"].as_f64().expect("share"))
        .collect();
    assert_eq!(shares, vec![10.0, 30.0, 60.0, 100.0]);
    let got = load(&gw.url("/"), 200, 8).await;
    assert!(
        got.iter().all(|b| b == "1"),
        "everything to the canary once promoted"
    );
}

#[tokio::test]
async fn operators_pause_promote_and_abort_and_a_reload_keeps_an_unchanged_plan() {
    let o = numbered_origins(2).await;
    let steps = "steps = [10, 50, 100], step_time = \"1h\", min_requests = 1";
    let toml = versions_config(o[0].addr, o[1].addr, &plan(steps), "");
    let gw = gateway(&toml).await;
    let server = gw.server.as_ref().expect("server");
    assert_eq!(post(&gw, "/canaries/app/pause").await.0, 200);
    let (status, body) = post(&gw, "/canaries/app/pause").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("canary_state"))
    );
    let (_, body) = post(&gw, "/canaries/app/promote").await;
    assert_eq!(body["share_percent"], 50.0);
    assert_eq!(post(&gw, "/canaries/nope/pause").await.0, 404);
    assert_eq!(post(&gw, "/canaries/app/jump").await.0, 404);

    // The same plan: progress kept, and the reload says so.
    let same = weir_config::parse(&toml, "t.toml").expect("config");
    let summary = server.reload(same).await.expect("reload");
    assert_eq!(summary.canaries_kept, vec!["app".to_owned()]);
    assert_eq!(state(&gw).await["share_percent"], 50.0);
    // A changed plan starts over.
    let changed = versions_config(
        o[0].addr,
        o[1].addr,
        &plan("steps = [5, 100], step_time = \"1h\""),
        "",
    );
    let summary = server
        .reload(weir_config::parse(&changed, "t.toml").expect("config"))
        .await
        .expect("reload");
    assert_eq!(summary.canaries_started, vec!["app".to_owned()]);
    let s = state(&gw).await;
    assert_eq!(
        (s["state"].as_str(), s["share_percent"].as_f64()),
        (Some("progressing"), Some(5.0))
    );

    let (_, body) = post(&gw, "/canaries/app/abort").await;
    assert_eq!(body["state"], "aborted");
    let got = load(&gw.url("/"), 200, 8).await;
    assert!(
        got.iter().all(|b| b == "0"),
        "an aborted canary gets nothing"
    );
}

#[tokio::test]
async fn instances_sharing_redis_move_together() {
    let redis = RedisServer::start().await;
    let stable = numbered_origins(1).await;
    let canary = numbered_origins(1).await;
    let bad = failing_origin().await;
    let top = format!("[redis]\nurl = \"{}\"\ntimeout = \"500ms\"", redis.url());
    let healthy = plan("steps = [20, 50, 100], step_time = \"1h\", min_requests = 20");
    let a = gateway(&versions_config(
        stable[0].addr,
        canary[0].addr,
        &healthy,
        &top,
    ))
    .await;
    let b = gateway(&versions_config(
        stable[0].addr,
        canary[0].addr,
        &healthy,
        &top,
    ))
    .await;
    assert_eq!(state(&b).await["shared"], true);

    // A promotion on one instance reaches the other.
    let (_, body) = post(&a, "/canaries/app/promote").await;
    assert_eq!(body["share_percent"], 50.0);
    wait_until("b to follow a's promotion", || async {
        (state(&b).await["share_percent"] == 50.0).then_some(())
    })
    .await;
    // An abort on the other reaches the first.
    post(&b, "/canaries/app/abort").await;
    wait_until("a to follow b's abort", || async {
        (state(&a).await["state"] == "aborted").then_some(())
    })
    .await;

    // A failing canary judged on both instances' counts together: 25 answers on each (pinned
    // to it by the override) are fewer than the 40 each needs alone, 50 across the fleet.
    let failing = format!(
        "{}, override = \"header:x-version\"",
        plan("steps = [50, 100], step_time = \"1h\", min_requests = 40")
    );
    let a = gateway(&versions_config(stable[0].addr, bad.addr, &failing, &top)).await;
    let b = gateway(&versions_config(stable[0].addr, bad.addr, &failing, &top)).await;
    let c = client();
    for gw in [&a, &b] {
        for _ in 0..25 {
            let r = c
                .get(gw.url("/"))
                .header("x-version", "v2")
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 503);
        }
    }
    wait_until("the fleet to roll back", || async {
        let (sa, sb) = (state(&a).await, state(&b).await);
        (sa["state"] == "rolled_back" && sb["state"] == "rolled_back").then_some(())
    })
    .await;
    let s = state(&a).await;
    assert_eq!(s["history"].as_array().map(Vec::len), Some(2), "{s}");
    let m = metrics(&a).await;
    assert_eq!(
        metric_value(&m, "weir_canary_store_errors_total{route=\"app\"}"),
        Some(0.0)
    );
    // Whichever instance judged, it judged the fleet's 50 (the other adopted its state): alone,
    // neither would have judged at all.
    let s = state(&a).await;
    let why = s["history"][1]["why"].as_str().expect("why");
    assert!(why.starts_with("5xx ratio 100.00%"), "{why}");
}
