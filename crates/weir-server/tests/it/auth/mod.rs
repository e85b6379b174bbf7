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

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

mod combined;
mod external;
mod jwks;
mod jwt;
mod keys;
