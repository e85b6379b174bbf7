//! Identity policies over real sockets: JWT (inline HMAC and Ed25519 keys, a JWKS set served by
//! a real origin), API keys of consumers, basic auth, and an external auth service — with the
//! hostile inputs: no token, malformed and oversized tokens, `alg: none`, algorithm confusion,
//! expired and not-yet-valid tokens, wrong audience and issuer, forged `kid`s, a JWKS server
//! that is down, and clients injecting the headers Weir forwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use http::{Request, Response};
use hyper::body::Incoming;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::common::*;

fn guarded(origin: std::net::SocketAddr, policies: &str, chain: &str, top: &str) -> String {
    guarded_config(origin, top, policies, chain, "")
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-hmac";

fn unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// An ES256 token for `kid`, valid for a minute.
fn es256(kp: &rcgen::KeyPair, kid: &str) -> String {
    let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("key");
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_owned());
    encode(&h, &json!({"sub": "carol", "exp": unix() + 60}), &key).expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().get(gw.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.expect("request")
}

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
    let dir = std::env::temp_dir().join(format!("weir-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
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

/// A JWKS origin serving one EC key (P-256) as `kid` "k1" for `max_age` seconds, counting
/// fetches; `down` makes it answer 500; each fetch first takes a permit of `gate` (and keeps
/// it), so a gate with one permit answers the first fetch and holds every later one.
async fn jwks_origin(
    kp: &rcgen::KeyPair,
    fetches: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
    max_age: u32,
    gate: Arc<tokio::sync::Semaphore>,
) -> Origin {
    let raw = kp.public_key_raw().to_vec();
    let (x, y) = (b64(&raw[1..33]), b64(&raw[33..65]));
    let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig", "x": x, "y": y}]}).to_string();
    origin(move |_req: Request<Incoming>| {
        let doc = doc.clone();
        let fetches = fetches.clone();
        let down = down.clone();
        let gate = gate.clone();
        async move {
            fetches.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            if down.load(Ordering::SeqCst) {
                return Response::builder()
                    .status(500)
                    .body(full("down"))
                    .expect("response");
            }
            Response::builder()
                .header("content-type", "application/json")
                .header("cache-control", format!("max-age={max_age}"))
                .body(full(doc))
                .expect("response")
        }
    })
    .await
}

/// An echo origin behind a gateway whose `jwt` policy trusts a live JWKS issuer.
struct JwksSetup {
    gw: Gateway,
    kp: rcgen::KeyPair,
    fetches: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
    _idp: Origin,
    _origin: Origin,
}

async fn jwks_setup(min_refresh: &str) -> JwksSetup {
    jwks_setup_with(
        min_refresh,
        false,
        300,
        tokio::sync::Semaphore::MAX_PERMITS,
        "5s",
    )
    .await
}

async fn jwks_setup_with(
    min_refresh: &str,
    down_from_start: bool,
    max_age: u32,
    permits: usize,
    timeout: &str,
) -> JwksSetup {
    let origin = echo_origin().await;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(down_from_start));
    let gate = Arc::new(tokio::sync::Semaphore::new(permits));
    let idp = jwks_origin(&kp, fetches.clone(), down.clone(), max_age, gate).await;
    let policy = format!(
        r#"[[policies]]
name = "jwt"
jwt = {{ algorithms = ["ES256"], jwks_url = "http://{}/.well-known/jwks.json", jwks_min_refresh = "{min_refresh}", jwks_timeout = "{timeout}" }}"#,
        idp.addr
    );
    let gw = gateway(&guarded(origin.addr, &policy, "\"jwt\"", "")).await;
    JwksSetup {
        gw,
        kp,
        fetches,
        down,
        _idp: idp,
        _origin: origin,
    }
}

#[tokio::test]
async fn jwks_keys_are_fetched_cached_and_not_hammered_by_forged_kids() {
    let JwksSetup {
        gw,
        kp,
        fetches,
        down,
        // Bound, not `..`: the origins must live as long as the test.
        _idp,
        _origin,
    } = jwks_setup("30s").await;
    let sign = |kid: &str| es256(&kp, kid);
    for _ in 0..10 {
        let r = get(
            &gw,
            "/x",
            &[("authorization", &format!("Bearer {}", sign("k1")))],
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "cached per Cache-Control"
    );
    // A flood of bogus kids: each refused, and the issuer asked at most once more.
    for i in 0..30 {
        let r = get(
            &gw,
            "/x",
            &[(
                "authorization",
                &format!("Bearer {}", sign(&format!("forged-{i}"))),
            )],
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "fetches: {}",
        fetches.load(Ordering::SeqCst)
    );
    let m = metrics(&gw).await;
    assert!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"jwt\",event=\"jwks_refresh_throttled\"}"
        )
        .unwrap_or(0.0)
            >= 28.0
    );
    // The issuer going down changes nothing for known keys.
    down.store(true, Ordering::SeqCst);
    assert_eq!(
        get(
            &gw,
            "/x",
            &[("authorization", &format!("Bearer {}", sign("k1")))]
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn a_jwks_server_that_is_down_gives_503_not_a_pass() {
    let o = echo_origin().await;
    let policy = format!(
        r#"[[policies]]
name = "jwt"
jwt = {{ algorithms = ["ES256"], jwks_url = "http://{}/jwks", jwks_timeout = "500ms" }}"#,
        closed_addr()
    );
    let gw = gateway(&guarded(o.addr, &policy, "\"jwt\"", "")).await;
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let token = es256(&kp, "k1");
    let r = get(&gw, "/x", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "auth_unavailable");
    assert_eq!(o.received(), 0);
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn api_keys_identify_consumers_and_never_travel_upstream() {
    let o = echo_origin().await;
    let dir = std::env::temp_dir().join(format!("weir-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
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

#[tokio::test]
async fn external_auth_admits_copies_headers_or_returns_its_refusal() {
    let o = echo_origin().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let auth = origin(move |req: Request<Incoming>| {
        let seen = seen2.clone();
        async move {
            let h = req.headers();
            let s = |n: &str| {
                h.get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            seen.lock().expect("lock").push(format!(
                "{} {} {}",
                s("x-forwarded-method"),
                s("x-forwarded-uri"),
                s("x-forwarded-for")
            ));
            if s("authorization") == "Bearer good" {
                Response::builder()
                    .status(200)
                    .header("x-user", "alice")
                    .body(full(""))
                    .expect("response")
            } else {
                Response::builder()
                    .status(403)
                    .header("x-reason", "policy")
                    .header("content-type", "text/plain")
                    .body(full("nope"))
                    .expect("response")
            }
        }
    })
    .await;
    let policy = format!(
        r#"[[policies]]
name = "authz"
ext_auth = {{ url = "http://{}/check", upstream_headers = ["x-user"] }}

[[policies]]
name = "authz-open"
ext_auth = {{ url = "http://{}/check", timeout = "300ms", on_error = "allow" }}

[[policies]]
name = "authz-closed"
ext_auth = {{ url = "http://{}/check", timeout = "300ms" }}"#,
        auth.addr,
        closed_addr(),
        closed_addr()
    );
    let gw = gateway(&guarded(o.addr, &policy, "\"authz\"", "")).await;
    let r = client()
        .post(gw.url("/orders?id=7"))
        .header("authorization", "Bearer good")
        .header("x-user", "mallory")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let echoed: serde_json::Value = r.json().await.expect("json");
    assert_eq!(echoed["headers"]["x-user"], "alice");
    assert_eq!(echoed["body"], "{}");
    assert_eq!(seen.lock().expect("lock")[0], "POST /orders?id=7 127.0.0.1");
    let r = get(&gw, "/x", &[("authorization", "Bearer bad")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-reason"], "policy");
    assert_eq!(r.text().await.expect("body"), "nope");
    assert_eq!(o.received(), 1);

    // The auth service unreachable: on_error decides.
    let open = gateway(&guarded(o.addr, &policy, "\"authz-open\"", "")).await;
    assert_eq!(get(&open, "/x", &[]).await.status(), 200);
    let closed = gateway(&guarded(o.addr, &policy, "\"authz-closed\"", "")).await;
    assert_eq!(get(&closed, "/x", &[]).await.status(), 503);
    let m = metrics(&closed).await;
    assert_eq!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"authz-closed\",event=\"error\"}"
        ),
        Some(1.0)
    );
}

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

#[tokio::test]
async fn a_failed_jwks_refresh_keeps_the_known_keys() {
    let JwksSetup {
        gw,
        kp,
        fetches,
        down,
        // Bound, not `..`: the origins must live as long as the test.
        _idp,
        _origin,
    } = jwks_setup("0s").await;
    let sign = |kid: &str| format!("Bearer {}", es256(&kp, kid));
    assert_eq!(
        get(&gw, "/x", &[("authorization", &sign("k1"))])
            .await
            .status(),
        200
    );
    down.store(true, Ordering::SeqCst);
    // An unknown kid forces a refresh, which fails; the known key still verifies.
    assert_eq!(
        get(&gw, "/x", &[("authorization", &sign("k9"))])
            .await
            .status(),
        401
    );
    assert!(fetches.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        get(&gw, "/x", &[("authorization", &sign("k1"))])
            .await
            .status(),
        200
    );
    let m = metrics(&gw).await;
    assert!(
        metric_value(
            &m,
            "weir_policy_events_total{policy=\"jwt\",event=\"jwks_refresh_failed\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );
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
        let admin = gw
            .server
            .as_ref()
            .and_then(|s| s.admin_addr())
            .expect("admin");
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

/// When the key set expires, known keys keep verifying while one refresh runs in the
/// background: here the issuer never answers the refresh (and the fetch timeout is an hour),
/// and 20 concurrent requests are still served at once. Before, every request queued behind
/// the fetch.
#[tokio::test]
async fn an_expired_key_set_keeps_serving_while_one_refresh_runs() {
    let JwksSetup {
        gw,
        kp,
        fetches,
        _idp,
        _origin,
        ..
    } = jwks_setup_with("0s", false, 1, 1, "1h").await;
    let bearer = format!("Bearer {}", es256(&kp, "k1"));
    // Requests until the set has expired and its refresh began (a second fetch, held).
    wait_until("a background refresh of the expired set", || async {
        let r = get(&gw, "/x", &[("authorization", &bearer)]).await;
        assert_eq!(r.status(), 200);
        (fetches.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    let header = [("authorization", bearer.as_str())];
    let all = futures_util::future::join_all((0..20).map(|_| get(&gw, "/x", &header)));
    let served = tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .expect("requests did not wait for the refresh");
    assert!(served.iter().all(|r| r.status() == 200));
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        2,
        "one refresh, still running"
    );
}

/// An issuer that is down from the start: the first request waits for the one fetch running
/// and gets 503 `auth_unavailable`; later ones get it at once, and the issuer is not asked
/// again within `jwks_min_refresh` (before, each request fetched, each waiting its timeout).
#[tokio::test]
async fn a_never_fetched_key_set_is_throttled_too() {
    let JwksSetup {
        gw,
        kp,
        fetches,
        _idp,
        _origin,
        ..
    } = jwks_setup_with("1h", true, 300, tokio::sync::Semaphore::MAX_PERMITS, "5s").await;
    let bearer = format!("Bearer {}", es256(&kp, "k1"));
    for _ in 0..10 {
        let r = get(&gw, "/x", &[("authorization", &bearer)]).await;
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"], "auth_unavailable");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "the issuer was asked once"
    );
}
