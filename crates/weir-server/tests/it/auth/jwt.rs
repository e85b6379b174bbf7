//! JWT: HMAC and EdDSA keys, claims, time, audience, issuer, token sources.

use super::*;

#[tokio::test]
async fn jwt_with_an_hmac_key_checks_signature_time_audience_issuer_and_claims() {
    let o = echo_origin().await;
    let policy = format!(
        r#"[[policies]]
name = "jwt"
jwt = {{ algorithms = ["HS256"], keys = [{{ secret = "{SECRET}" }}], issuers = ["https://idp.test"], audiences = ["orders"], required_claims = ["sub"], rules = [{{ claim = "scope", contains = "orders:read" }}], forward_claims = {{ sub = "x-user-id", scope = "x-scopes" }} }}"#
    );
    let gw = gateway(&guarded(o.addr, &policy, "\"jwt\"", "")).await;
    let now = unix();
    let good = json!({"sub": "alice", "iss": "https://idp.test", "aud": "orders", "exp": now + 600, "scope": "orders:read orders:write"});

    // A valid token passes; claims travel upstream; client copies of those headers do not.
    let r = get(
        &gw,
        "/x",
        &[
            ("authorization", &format!("Bearer {}", hs256(good.clone()))),
            ("x-user-id", "mallory"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["headers"]["x-user-id"], "alice");
    assert_eq!(echoed["headers"]["x-scopes"], "orders:read orders:write");

    // No token: 401 with a bare challenge.
    let r = get(&gw, "/x", &[("x-user-id", "mallory")]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"weir\"");

    let mut cases: Vec<(&str, String)> = Vec::new();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        hs256(c)
    };
    cases.push(("expired", with("exp", json!(now - 3600))));
    cases.push(("not yet valid", with("nbf", json!(now + 3600))));
    cases.push(("wrong audience", with("aud", json!("billing"))));
    cases.push(("wrong issuer", with("iss", json!("https://evil.test"))));
    let mut no_sub = good.clone();
    no_sub.as_object_mut().expect("object").remove("sub");
    cases.push(("missing sub", hs256(no_sub)));
    let wrong_key = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another-secret-another-secret-32"),
    )
    .expect("sign");
    cases.push(("wrong key", wrong_key));
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(good.to_string().as_bytes());
    cases.push(("alg none", format!("{header_none}.{body}.")));
    cases.push(("alg none, no dot", format!("{header_none}.{body}")));
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &good,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    cases.push(("alg not allowed", hs512));
    cases.push(("malformed", "not.a.jwt".to_owned()));
    cases.push(("garbage", "%%%".to_owned()));
    cases.push(("oversized", "a".repeat(20_000)));
    for (what, token) in cases {
        let r = get(&gw, "/x", &[("authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }

    // A valid token without the required scope: 403 insufficient_scope.
    let r = get(
        &gw,
        "/x",
        &[(
            "authorization",
            &format!("Bearer {}", with("scope", json!("orders:write"))),
        )],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("insufficient_scope"));
    assert_eq!(
        o.received(),
        1,
        "only the valid request reached the upstream"
    );

    // The consumer (sub) is in the access log; the metrics count the refusals.
    let lines = gw.log_lines().await;
    assert!(lines
        .iter()
        .any(|l| l["status"] == 200 && l["consumer"] == "alice"));
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_decisions_total{policy=\"jwt\",result=\"allowed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"jwt\",event=\"expired\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn jwt_tokens_from_a_cookie_or_query_and_eddsa_keys() {
    let o = echo_origin().await;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
    // Removed when the test ends.
    let tmp = TempDir::new("jwt");
    let dir = tmp.0.clone();
    let pem_file = dir.join("ed.pub.pem");
    std::fs::write(&pem_file, kp.public_key_pem()).expect("write");
    let policy = format!(
        r#"[[policies]]
name = "jwt"
jwt = {{ algorithms = ["EdDSA"], keys = [{{ kid = "ed1", pem = {{ file = "{}" }} }}], token_from = ["cookie:session", "query:access_token"] }}"#,
        pem_file.display()
    );
    let gw = gateway(&guarded(o.addr, &policy, "\"jwt\"", "")).await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed1".into());
    let key = EncodingKey::from_ed_pem(kp.serialize_pem().as_bytes()).expect("key");
    let token = encode(&header, &json!({"sub": "bob", "exp": unix() + 60}), &key).expect("sign");
    assert_eq!(
        get(&gw, "/x", &[("cookie", &format!("a=1; session={token}"))])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&gw, &format!("/x?access_token={token}"), &[])
            .await
            .status(),
        200
    );
    // The header is not a source here.
    assert_eq!(
        get(&gw, "/x", &[("authorization", &format!("Bearer {token}"))])
            .await
            .status(),
        401
    );
    // Algorithm confusion: an HS256 token "signed" with the public key's PEM is refused.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "eve", "exp": unix() + 60}),
        &EncodingKey::from_secret(kp.public_key_pem().as_bytes()),
    )
    .expect("sign");
    assert_eq!(
        get(&gw, &format!("/x?access_token={confused}"), &[])
            .await
            .status(),
        401
    );
}
