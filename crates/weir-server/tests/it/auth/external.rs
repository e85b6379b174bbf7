//! External (forward) authentication.

use super::*;

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
