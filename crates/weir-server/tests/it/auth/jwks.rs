//! JWKS key sets: fetched, cached, refreshed under throttles, kept when a refresh fails.

use super::*;

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
