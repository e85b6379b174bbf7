//! Identity with the rest: limits keyed by a claim, several limits in turn, credentials in the query redacted wherever the target is recorded.

use super::*;

#[tokio::test]
async fn limits_count_by_claim_and_several_limits_apply_in_turn() {
    let o = echo_origin().await;
    let policy = format!(
        r#"[[policies]]
name = "jwt"
jwt = {{ algorithms = ["HS256"], keys = [{{ secret = "{SECRET}" }}] }}

[[policies]]
name = "per-tenant"
rate_limit = {{ algorithm = "fixed_window", limit = 2, period = "1h", key = "claim:tenant" }}

[[policies]]
name = "per-route"
rate_limit = {{ algorithm = "fixed_window", limit = 3, period = "1h", key = "route" }}"#
    );
    let gw = gateway(&guarded(
        o.addr,
        &policy,
        "\"jwt\", \"per-tenant\", \"per-route\"",
        "",
    ))
    .await;
    let token = |tenant: &str| {
        format!(
            "Bearer {}",
            hs256(json!({"sub": "u", "tenant": tenant, "exp": unix() + 60}))
        )
    };
    let r = get(&gw, "/x", &[("authorization", &token("a"))]).await;
    assert_eq!(r.status(), 200);
    // Both limits report their state.
    let policies: Vec<&str> = r
        .headers()
        .get_all("ratelimit-policy")
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(
        policies,
        vec!["\"per-tenant\";q=2;w=3600", "\"per-route\";q=3;w=3600"]
    );
    assert_eq!(
        get(&gw, "/x", &[("authorization", &token("a"))])
            .await
            .status(),
        200
    );
    let r = get(&gw, "/x", &[("authorization", &token("a"))]).await;
    assert_eq!(r.status(), 429, "tenant a is out of quota");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        get(&gw, "/x", &[("authorization", &token("b"))])
            .await
            .status(),
        200
    );
    let r = get(&gw, "/x", &[("authorization", &token("b"))]).await;
    assert_eq!(r.status(), 429, "the route's own limit of 3");
    let lines = gw.log_lines().await;
    assert!(lines.iter().any(|l| l["denied_by"] == "per-route"));
    assert!(lines.iter().any(|l| l["denied_by"] == "per-tenant"));
}

/// A credential a policy reads from the query (`query:NAME`, and OAuth's `access_token`) is
/// recorded nowhere: not in the access log (JSON or template), not in the span's `url.query`,
/// not in `weir explain`, not in an error body. The request itself still carries it to the
/// policy.
#[tokio::test]
async fn query_credentials_are_redacted_wherever_the_target_is_recorded() {
    use weir_testkit::otlp::collector;
    let o = echo_origin().await;
    let (spans, at) = collector().await;
    let secrets = [
        "acme-key-0123456789ab",
        "wrong-key-zzzzzzzzzzzz",
        "jwt-in-query-yyyyyyyy",
        "oauth-access-xxxxxxxx",
    ];
    let top = |log: &str| {
        format!(
            r#"{log}
[tracing]
otlp_endpoint = "http://{at}"
sampling_ratio = 1.0
batch_delay = "20ms"

[[consumers]]
name = "acme"
api_keys = ["sha256:{}"]
"#,
            sha256_hex(secrets[0])
        )
    };
    let policies = r#"[[policies]]
name = "keys"
api_key = { key_from = ["query:api_key"] }

[[policies]]
name = "tokens"
jwt = { algorithms = ["HS256"], keys = [{ secret = "0123456789abcdef0123456789abcdef-hmac" }], token_from = ["query:token"] }"#;
    let requests = [
        format!("/x?api_key={}&b=1", secrets[0]),
        format!("/x?api_key={}&token={}", secrets[1], secrets[2]),
        format!("/x?access_token={}&api_key={}", secrets[3], secrets[0]),
    ];
    for log in ["", "access_log = { format = \"$path?$query $status\" }"] {
        let gw = gateway(&guarded_config(o.addr, &top(log), policies, "\"keys\"", "")).await;
        let mut bodies = String::new();
        for path in &requests {
            let r = get(&gw, path, &[]).await;
            let status = r.status();
            let body = r.text().await.expect("body");
            // A 200 is the origin's echo of what travelled (a parameter no policy consumed,
            // like `access_token` here, travels on); Weir's own answers are what is checked.
            let shown = if status == 200 { "" } else { body.as_str() };
            bodies.push_str(&format!("{status} {shown}\n"));
        }
        assert!(bodies.starts_with("200 OK"), "{bodies}");
        assert!(bodies.contains("401 Unauthorized"), "{bodies}");
        let admin = gw.admin_addr();
        for path in &requests {
            let e = client()
                .get(format!("http://{admin}/explain"))
                .query(&[("url", path.as_str())])
                .send()
                .await
                .expect("explain");
            bodies.push_str(&e.text().await.expect("text"));
        }
        gw.server
            .as_ref()
            .expect("server")
            .flush_traces(std::time::Duration::from_secs(5))
            .await;
        gw.server.as_ref().expect("server").flush_access_log();
        let log = gw.log.text();
        let exported = format!("{:?}", spans.spans());
        for place in [&log, &exported, &bodies] {
            for s in secrets {
                assert!(!place.contains(s), "{s} recorded in:\n{place}");
            }
        }
        assert!(log.contains("api_key=REDACTED"), "{log}");
        assert!(exported.contains("api_key=REDACTED"), "{exported}");
        assert!(log.contains("access_token=REDACTED"), "{log}");
    }
}
