//! API keys of consumers and basic authentication with bcrypt and argon2 hashes.

use super::*;

#[tokio::test]
async fn api_keys_identify_consumers_and_never_travel_upstream() {
    let o = echo_origin().await;
    // Removed when the test ends.
    let tmp = TempDir::new("keys");
    let dir = tmp.0.clone();
    let file = dir.join("globex.keys");
    std::fs::write(
        &file,
        format!("# globex\nsha256:{}\n", sha256_hex("globex-key-0123456789")),
    )
    .expect("write");
    let extra = format!(
        r#"
[[consumers]]
name = "acme"
metadata = {{ tier = "gold" }}
api_keys = ["sha256:{}"]

[[consumers]]
name = "globex"
api_keys_file = "{}"
"#,
        sha256_hex("acme-key-0123456789ab"),
        file.display()
    );
    let policy = r#"[[policies]]
name = "keys"
api_key = { key_from = ["header:x-api-key", "query:api_key"], consumer_header = "x-consumer" }

[[policies]]
name = "per-consumer"
rate_limit = { limit = 2, period = "1m", key = ["consumer", "route"] }"#;
    let gw = gateway(&guarded(
        o.addr,
        policy,
        "\"keys\", \"per-consumer\"",
        &extra,
    ))
    .await;
    let r = get(
        &gw,
        "/x",
        &[
            ("x-api-key", "acme-key-0123456789ab"),
            ("x-consumer", "root"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["headers"]["x-consumer"], "acme");
    assert!(
        echoed["headers"].get("x-api-key").is_none(),
        "the key is hidden"
    );
    let r = get(&gw, "/x?api_key=globex-key-0123456789&b=1", &[]).await;
    assert_eq!(r.status(), 200);
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["uri"], "/x?b=1");
    assert_eq!(echoed["headers"]["x-consumer"], "globex");
    // Wrong and missing keys: 401 with a challenge.
    for h in [vec![("x-api-key", "nope-nope-nope-nope")], vec![]] {
        let r = get(&gw, "/x", &h).await;
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // Limits per consumer: acme's third request is refused, globex is untouched.
    assert_eq!(
        get(&gw, "/x", &[("x-api-key", "acme-key-0123456789ab")])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&gw, "/x", &[("x-api-key", "acme-key-0123456789ab")])
            .await
            .status(),
        429
    );
    assert_eq!(
        get(&gw, "/x?api_key=globex-key-0123456789", &[])
            .await
            .status(),
        200
    );
    let lines = gw.log_lines().await;
    assert!(lines.iter().any(|l| l["consumer"] == "globex"));
}

#[tokio::test]
async fn basic_auth_with_bcrypt_and_argon2_hashes() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let o = echo_origin().await;
    let bc = bcrypt::hash("open sesame", 4).expect("bcrypt");
    let salt = SaltString::encode_b64(b"weir-test-salt-1").expect("salt");
    let ar = argon2::Argon2::default()
        .hash_password(b"hunter2", &salt)
        .expect("argon2")
        .to_string();
    let policy = format!(
        r#"[[policies]]
name = "ops"
basic_auth = {{ realm = "ops area", users = {{ alice = "{bc}", bob = "{ar}" }}, consumer_header = "x-user" }}"#
    );
    let gw = gateway(&guarded(o.addr, &policy, "\"ops\"", "")).await;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let r = get(&gw, "/x", &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"ops area\", charset=\"UTF-8\""
    );
    for _ in 0..3 {
        let r = get(
            &gw,
            "/x",
            &[
                ("authorization", &basic("alice", "open sesame")),
                ("x-user", "root"),
            ],
        )
        .await;
        assert_eq!(r.status(), 200);
        let echoed: serde_json::Value = r.json().await.expect("json");
        assert_eq!(echoed["headers"]["x-user"], "alice");
    }
    assert_eq!(
        get(&gw, "/x", &[("authorization", &basic("bob", "hunter2"))])
            .await
            .status(),
        200
    );
    // An unknown user is checked against a real hash (alice's) but never admitted, even
    // with the password that hash matches.
    for (u, p) in [
        ("alice", "wrong"),
        ("bob", "open sesame"),
        ("nobody", "x"),
        ("nobody", "open sesame"),
        ("nobody", "hunter2"),
    ] {
        assert_eq!(
            get(&gw, "/x", &[("authorization", &basic(u, p))])
                .await
                .status(),
            401,
            "{u}"
        );
    }
    for bad in ["Basic !!!", "Basic", "Bearer x", "Basic Zm9v"] {
        assert_eq!(
            get(&gw, "/x", &[("authorization", bad)]).await.status(),
            401,
            "{bad}"
        );
    }
}
