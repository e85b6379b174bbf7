//! Route matching through real requests: hosts, paths, methods, headers, query, precedence,
//! and the respond / redirect actions.

use crate::common::*;

const ROUTES: &str = r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "fallback"
respond = { body = "fallback" }

[[routes]]
name = "prefix-api"
match = { path_prefix = "/api/" }
respond = { body = "prefix-api" }

[[routes]]
name = "prefix-api-v2"
match = { path_prefix = "/api/v2/" }
respond = { body = "prefix-api-v2" }

[[routes]]
name = "exact-health"
match = { path = "/api/health" }
respond = { body = "exact-health" }

[[routes]]
name = "regex-user"
match = { path_regex = "^/users/[0-9]+$" }
respond = { body = "regex-user" }

[[routes]]
name = "wildcard-host"
match = { hosts = ["*.example.com"] }
respond = { body = "wildcard-host" }

[[routes]]
name = "exact-host"
match = { hosts = ["www.example.com"] }
respond = { body = "exact-host" }

[[routes]]
name = "post-only"
match = { path_prefix = "/api/", methods = ["POST"] }
respond = { status = 201, body = "post-only" }

[[routes]]
name = "header"
match = { path_prefix = "/api/", headers = [{ name = "x-canary", value = "yes" }] }
respond = { body = "header" }

[[routes]]
name = "query"
match = { path_prefix = "/api/", query = [{ name = "debug", regex = "^(1|true)$" }] }
respond = { body = "query" }

[[routes]]
name = "redirect"
match = { path = "/old" }
redirect = { status = 301, location = "https://{host}/new{request_uri}" }

[[routes]]
name = "priority"
priority = 10
match = { path = "/api/health", headers = [{ name = "x-override" }] }
respond = { status = 418, headers = { x-teapot = "1" }, body = "priority" }
"#;

async fn body_of(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = client().request(method, gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// A request path, its extra headers, and the route that must answer it.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn precedence_and_predicates() {
    let gw = gateway(ROUTES).await;
    let get = reqwest::Method::GET;
    let cases: &[Case<'_>] = &[
        ("/", &[], "fallback"),
        ("/api/x", &[], "prefix-api"),
        ("/api/v2/x", &[], "prefix-api-v2"),
        ("/api/health", &[], "exact-health"),
        ("/users/42", &[], "regex-user"),
        ("/users/abc", &[], "fallback"),
        ("/", &[("host", "shop.example.com")], "wildcard-host"),
        ("/", &[("host", "www.example.com")], "exact-host"),
        ("/", &[("host", "WWW.Example.com:8080")], "exact-host"),
        ("/", &[("host", "example.com")], "fallback"),
        ("/api/x", &[("x-canary", "yes")], "header"),
        ("/api/x", &[("x-canary", "no")], "prefix-api"),
        ("/api/x?debug=true", &[], "query"),
        ("/api/x?debug=0", &[], "prefix-api"),
        ("/api/../users/7", &[], "regex-user"),
        ("/%61pi/x", &[], "prefix-api"),
    ];
    for (path, headers, want) in cases {
        let (_, body) = body_of(&gw, get.clone(), path, headers).await;
        assert_eq!(&body, want, "{path} {headers:?}");
    }
    let (status, body) = body_of(&gw, reqwest::Method::POST, "/api/x", &[]).await;
    assert_eq!((status, body.as_str()), (201, "post-only"));
    let (status, body) = body_of(&gw, get.clone(), "/api/health", &[("x-override", "")]).await;
    assert_eq!((status, body.as_str()), (418, "priority"));
}

#[tokio::test]
async fn redirect_fills_its_template() {
    let gw = gateway(ROUTES).await;
    let resp = raw(
        gw.addr,
        b"GET /old?a=1 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 301);
    assert!(
        resp.to_ascii_lowercase()
            .contains("location: https://site.test/new/old?a=1"),
        "{resp}"
    );
}

/// A redirect whose template begins with a request part stays on this site: `//evil.example`
/// (and `/\\evil.example`, which browsers read the same way) must not become a
/// protocol-relative `Location` that sends the user elsewhere.
#[tokio::test]
async fn a_redirect_template_starting_with_the_path_stays_on_site() {
    let gw = gateway(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "slash"
redirect = { status = 301, location = "{path}/" }

[[routes]]
name = "uri"
match = { path_prefix = "/q/" }
redirect = { status = 302, location = "{request_uri}" }
"#,
    )
    .await;
    for (target, want) in [
        ("//evil.example", "/evil.example/"),
        ("///evil.example", "/evil.example/"),
        ("/\\evil.example", "/evil.example/"),
        ("/docs", "/docs/"),
    ] {
        let resp = raw(
            gw.addr,
            format!("GET {target} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status_of(&resp), 301, "{target}: {resp}");
        let location = resp
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("location: ")
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        assert_eq!(location, want, "{target}");
    }
    let resp = raw(
        gw.addr,
        b"GET /q/x?next=1 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.contains("location: /q/x?next=1"), "{resp}");
}

#[tokio::test]
async fn routes_are_bound_to_their_listeners() {
    let toml = r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[listeners]]
name = "other"
bind = "127.0.0.1:0"

[[routes]]
listeners = ["other"]
respond = { body = "other" }

[[routes]]
listeners = ["main"]
respond = { body = "main" }
"#;
    let gw = gateway(toml).await;
    let other = gw
        .server
        .as_ref()
        .and_then(|s| s.local_addr("other"))
        .expect("other");
    assert_eq!(
        client()
            .get(gw.url("/"))
            .send()
            .await
            .expect("r")
            .text()
            .await
            .expect("b"),
        "main"
    );
    let r = client()
        .get(format!("http://{other}/"))
        .send()
        .await
        .expect("r");
    assert_eq!(r.text().await.expect("b"), "other");
}
