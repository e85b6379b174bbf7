//! Weighted splits: shares by weight, stickiness by header and by a cookie Weir sets,
//! tester overrides before the split, per-version metrics and the access log's `split`.

use std::collections::HashMap;

use super::{admin_json, versions_config};
use crate::common::*;

/// Sends `n` GETs with the given headers; the bodies.
async fn bodies(gw: &Gateway, n: usize, headers: &[(&str, String)]) -> Vec<String> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = c.get(gw.url("/"));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        out.push(
            req.send()
                .await
                .expect("request")
                .text()
                .await
                .expect("body"),
        );
    }
    out
}

#[tokio::test]
async fn a_split_shares_by_weight_and_overrides_pin_a_version() {
    let o = numbered_origins(2).await;
    let toml = versions_config(
        o[0].addr,
        o[1].addr,
        r#"split = [{ upstream = "v1", weight = 90 }, { upstream = "v2", weight = 10 }], override = "header:x-version""#,
        "",
    );
    let gw = gateway(&toml).await;
    let got = load(&gw.url("/"), 10_000, 32).await;
    let counts = tally(&got, 2);
    assert_eq!(
        counts[0] + counts[1],
        10_000,
        "every request answered: {counts:?}"
    );
    let share = counts[1] as f64 / 10_000.0;
    assert!((share - 0.10).abs() < 0.015, "v2 got {share}");

    // A tester's header wins over the split, both ways; an unknown name is ignored.
    let pinned = bodies(&gw, 50, &[("x-version", "v2".into())]).await;
    assert!(pinned.iter().all(|b| b == "1"), "{pinned:?}");
    let pinned = bodies(&gw, 50, &[("x-version", "v1".into())]).await;
    assert!(pinned.iter().all(|b| b == "0"));
    let unknown = bodies(&gw, 200, &[("x-version", "v9".into())]).await;
    assert!(unknown.iter().any(|b| b == "0"));

    // Per-version metrics and the access log name the version and how it was chosen.
    let m = metrics(&gw).await;
    let v2 = metric_value(
        &m,
        "weir_split_requests_total{route=\"app\",upstream=\"v2\",status_class=\"2xx\"}",
    )
    .expect("v2 counted");
    assert!(v2 >= counts[1] as f64 + 50.0, "{v2}");
    assert_eq!(
        metric_value(
            &m,
            "weir_split_share_percent{route=\"app\",upstream=\"v2\"}"
        ),
        Some(10.0)
    );
    assert!(m.contains("weir_split_response_head_seconds_bucket{route=\"app\",upstream=\"v1\""));
    let lines = gw.log_lines_at_least(10_300).await;
    let overridden: Vec<_> = lines.iter().filter(|l| l["split"] == "override").collect();
    assert_eq!(overridden.len(), 100);
    assert!(overridden.iter().any(|l| l["upstream"] == "v2"));
    assert!(lines
        .iter()
        .any(|l| l["split"] == "weight" && l["upstream"] == "v1"));
    let canaries = admin_json(&gw, "/canaries").await;
    assert_eq!(canaries["splits"][0]["versions"][1]["share_percent"], 10.0);
}

#[tokio::test]
async fn sticky_clients_stay_and_a_weight_change_moves_only_the_share_that_must() {
    let o = numbered_origins(2).await;
    let proxy = |a: u32, b: u32| {
        format!(
            r#"split = [{{ upstream = "v1", weight = {a} }}, {{ upstream = "v2", weight = {b} }}], sticky = "header:x-user""#
        )
    };
    let gw = gateway(&versions_config(o[0].addr, o[1].addr, &proxy(95, 5), "")).await;
    let users = 400;
    let mut before = HashMap::new();
    for u in 0..users {
        let got = bodies(&gw, 3, &[("x-user", format!("user-{u}"))]).await;
        assert!(
            got.windows(2).all(|w| w[0] == w[1]),
            "user-{u} flipped: {got:?}"
        );
        before.insert(u, got[0].clone());
    }
    let on_v2 = before.values().filter(|v| *v == "1").count();
    assert!(
        (5..=40).contains(&on_v2),
        "{on_v2} of {users} users on v2 at 5%"
    );

    let config = weir_config::parse(
        &versions_config(o[0].addr, o[1].addr, &proxy(75, 25), ""),
        "t.toml",
    )
    .expect("config");
    gw.server
        .as_ref()
        .expect("server")
        .reload(config)
        .await
        .expect("reload");
    let mut moved = 0;
    for u in 0..users {
        let now = bodies(&gw, 1, &[("x-user", format!("user-{u}"))])
            .await
            .remove(0);
        if now != before[&u] {
            assert_eq!(
                (before[&u].as_str(), now.as_str()),
                ("0", "1"),
                "user-{u} moved back"
            );
            moved += 1;
        }
    }
    let share = moved as f64 / users as f64;
    assert!(
        (0.12..=0.28).contains(&share),
        "{moved} of {users} users moved (20% expected)"
    );
    let lines = gw.log_lines_at_least(users * 4).await;
    assert!(lines.iter().all(|l| l["split"] == "sticky"));
}

#[tokio::test]
async fn a_cookie_split_gives_new_clients_a_cookie_that_keeps_them() {
    let o = numbered_origins(2).await;
    let toml = versions_config(
        o[0].addr,
        o[1].addr,
        r#"split = [{ upstream = "v1", weight = 50 }, { upstream = "v2", weight = 50 }], sticky = "cookie:weir_v""#,
        "",
    );
    let gw = gateway(&toml).await;
    let mut seen = [0, 0];
    for _ in 0..40 {
        let first = client().get(gw.url("/")).send().await.expect("request");
        let cookie = first
            .headers()
            .get("set-cookie")
            .expect("a new client gets a cookie")
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            cookie.starts_with("weir_v=") && cookie.contains("HttpOnly"),
            "{cookie}"
        );
        let version = first.text().await.expect("body");
        let pair = cookie.split(';').next().expect("pair").to_owned();
        let again = bodies(&gw, 5, &[("cookie", pair)]).await;
        assert!(
            again.iter().all(|b| *b == version),
            "{version} then {again:?}"
        );
        seen[usize::from(version == "1")] += 1;
        // A client with the cookie is not given another.
        let with = client()
            .get(gw.url("/"))
            .header("cookie", cookie.split(';').next().expect("pair"))
            .send()
            .await
            .expect("request");
        assert!(with.headers().get("set-cookie").is_none());
    }
    assert!(seen[0] > 5 && seen[1] > 5, "both versions drawn: {seen:?}");
}

#[tokio::test]
async fn weir_check_refuses_bad_split_and_mirror_keys_with_their_place() {
    let bad = r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[upstreams]]
name = "v1"
endpoints = ["127.0.0.1:1"]

[[routes]]
name = "app"
proxy = { upstream = "v1", split = [{ upstream = "v1" }, { upstream = "v3", weight = 1 }], canary = { upstream = "v2", steps = [5, 1] } }
mirror = { upstream = "shadow", percent = 0 }
"#;
    let err = weir_config::parse(bad, "bad.toml")
        .expect_err("refused")
        .to_string();
    for want in [
        "bad.toml:12:",
        "routes[0].proxy.split: `upstream` and `split` cannot be combined",
        "routes[0].proxy.split[1].upstream: unknown upstream `v3`",
        "routes[0].proxy.canary.upstream: `v2` is not in the split",
        "routes[0].proxy.canary.steps[1]: steps must rise: 1 follows 5",
        "routes[0].mirror.upstream: unknown upstream `shadow`",
        "routes[0].mirror.percent: 0 is not a share",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}
