//! Route policies over real sockets: IP rules (403) and rate limits (429 with `Retry-After`
//! and the IETF `RateLimit-Policy` / `RateLimit` fields), counted in `/metrics` and named in
//! the access log.

use crate::common::*;

fn policy_config(origin: std::net::SocketAddr, policies: &str, chain: &str) -> String {
    guarded_config(origin, "", policies, chain, "")
}

#[tokio::test]
async fn ip_rules_refuse_with_403_and_allow_lists_admit() {
    let o = echo_origin().await;
    let deny = policy_config(
        o.addr,
        "[[policies]]\nname = \"no-loopback\"\nip = { deny = [\"127.0.0.0/8\"] }",
        "\"no-loopback\"",
    );
    let gw = gateway(&deny).await;
    let r = client().get(gw.url("/x")).send().await.expect("request");
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "ip_denied");
    assert_eq!(o.received(), 0, "nothing reached the upstream");
    let lines = gw.log_lines().await;
    assert_eq!(lines[0]["denied_by"], "no-loopback");

    let allow_other = policy_config(
        o.addr,
        "[[policies]]\nname = \"office\"\nip = { allow = [\"10.0.0.0/8\", \"::1\"] }",
        "\"office\"",
    );
    let gw = gateway(&allow_other).await;
    assert_eq!(get_status(&gw, "/x").await, 403);

    let allow_loopback = policy_config(
        o.addr,
        "[[policies]]\nname = \"local\"\nip = { allow = [\"127.0.0.1\"], deny = [\"10.0.0.0/8\"] }",
        "\"local\"",
    );
    let gw = gateway(&allow_loopback).await;
    assert_eq!(get_status(&gw, "/x").await, 200);
}

#[tokio::test]
async fn a_rate_limit_admits_the_quota_then_answers_429_with_its_fields() {
    let o = echo_origin().await;
    let toml = policy_config(
        o.addr,
        "[[policies]]\nname = \"per-ip\"\nrate_limit = { limit = 5, period = \"10s\" }",
        "\"per-ip\"",
    );
    let gw = gateway(&toml).await;
    let c = client();
    for i in 0..5u64 {
        let r = c.get(gw.url("/x")).send().await.expect("request");
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.headers()["ratelimit-policy"], "\"per-ip\";q=5;w=10");
        let state = r.headers()["ratelimit"].to_str().expect("ascii").to_owned();
        assert!(
            state.starts_with(&format!("\"per-ip\";r={};t=", 4 - i)),
            "{state}"
        );
        r.bytes().await.expect("body");
    }
    let r = c.get(gw.url("/x")).send().await.expect("request");
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=2).contains(&retry_after),
        "one request's spacing is 2 s: {retry_after}"
    );
    assert_eq!(r.headers()["ratelimit-policy"], "\"per-ip\";q=5;w=10");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .expect("ascii")
        .starts_with("\"per-ip\";r=0;t="));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        o.received(),
        5,
        "the refused request never reached the upstream"
    );

    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_decisions_total{policy=\"per-ip\",result=\"allowed\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_decisions_total{policy=\"per-ip\",result=\"denied\"}"
        ),
        Some(1.0)
    );
    let lines = gw.log_lines().await;
    assert!(lines
        .iter()
        .any(|l| l["status"] == 429 && l["denied_by"] == "per-ip"));
}

#[tokio::test]
async fn a_header_key_limits_each_value_apart_and_policies_run_in_order() {
    let o = echo_origin().await;
    let toml = policy_config(
        o.addr,
        "[[policies]]\nname = \"office\"\nip = { allow = [\"127.0.0.0/8\"] }\n\n[[policies]]\nname = \"per-key\"\nrate_limit = { algorithm = \"fixed_window\", limit = 2, period = \"1h\", key = \"header:x-api-key\", headers = false }",
        "\"office\", \"per-key\"",
    );
    let gw = gateway(&toml).await;
    let c = client();
    let mut statuses = Vec::new();
    for key in ["a", "a", "a", "b", "b", "b"] {
        let r = c
            .get(gw.url("/x"))
            .header("x-api-key", key)
            .send()
            .await
            .expect("request");
        // `headers = false`: admitted responses carry no fields; the 429 still does.
        assert_eq!(r.headers().contains_key("ratelimit"), r.status() == 429);
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 200, 200, 429]);

    // `explain` shows the chain in order.
    let config = weir_config::parse(&toml, "weir.toml").expect("valid");
    let rt = weir_server::Runtime::compile(&config).expect("compiles");
    let e = weir_server::explain::explain(&rt, None, "GET", "/x", &http::HeaderMap::new())
        .expect("explained");
    assert_eq!(e.policies.len(), 2, "{e}");
    assert!(
        e.policies[0].starts_with("office (ip: allow 127.0.0.0/8"),
        "{e}"
    );
    assert!(
        e.policies[1]
            .starts_with("per-key (rate_limit: \"per-key\";q=2;w=3600 by header:x-api-key"),
        "{e}"
    );
}

#[test]
fn an_unknown_policy_is_refused_with_its_place_and_a_suggestion() {
    let toml = policy_config(
        "127.0.0.1:1".parse().expect("addr"),
        "[[policies]]\nname = \"per-ip\"\nrate_limit = { limit = 5, period = \"10s\" }",
        "\"per_ip\"",
    );
    let err = weir_config::parse(&toml, "weir.toml")
        .expect_err("unknown policy")
        .to_string();
    assert!(err.contains("unknown policy `per_ip`"), "{err}");
    assert!(err.contains("did you mean `per-ip`?"), "{err}");
    let two_kinds = policy_config(
        "127.0.0.1:1".parse().expect("addr"),
        "[[policies]]\nname = \"both\"\nip = { deny = [\"10.0.0.0/8\"] }\nrate_limit = { limit = 5, period = \"10s\" }",
        "\"both\"",
    );
    let err = weir_config::parse(&two_kinds, "weir.toml")
        .expect_err("two kinds")
        .to_string();
    assert!(err.contains("exactly one kind"), "{err}");
}

#[tokio::test]
async fn a_reload_keeps_the_counts_of_unchanged_policies_and_resets_changed_ones() {
    let o = echo_origin().await;
    let limited = |limit: u32, extra: &str| {
        format!(
            "{}{extra}",
            policy_config(
                o.addr,
                &format!(
                    "[[policies]]\nname = \"per-ip\"\nrate_limit = {{ algorithm = \"fixed_window\", limit = {limit}, period = \"1h\" }}"
                ),
                "\"per-ip\"",
            )
        )
    };
    let gw = gateway(&limited(2, "")).await;
    assert_eq!(get_status(&gw, "/x").await, 200);
    assert_eq!(get_status(&gw, "/x").await, 200);
    let server = gw.server.as_ref().expect("server");
    // Another route added, the policy untouched: its count carries over.
    let same = limited(
        2,
        "\n[[routes]]\nname = \"hello\"\nmatch = { path = \"/hello\" }\nrespond = { status = 200, body = \"hi\" }\n",
    );
    server
        .reload(weir_config::parse(&same, "weir.toml").expect("valid"))
        .await
        .expect("reload");
    assert_eq!(get_status(&gw, "/hello").await, 200, "the reload applied");
    assert_eq!(
        get_status(&gw, "/x").await,
        429,
        "the count survived the reload"
    );
    // The policy changed: it starts afresh.
    server
        .reload(weir_config::parse(&limited(3, ""), "weir.toml").expect("valid"))
        .await
        .expect("reload");
    assert_eq!(get_status(&gw, "/x").await, 200);
}
