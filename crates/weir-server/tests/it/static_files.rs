//! The static action: index files, content types, conditional requests, HEAD, traversal.

use crate::common::*;

fn site() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-static-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("index.html"), "<h1>home</h1>").expect("write");
    std::fs::write(dir.join("app.js"), "let x = 1;").expect("write");
    std::fs::write(dir.join("sub/index.html"), "sub home").expect("write");
    let outside = std::env::temp_dir().join(format!("weir-secret-{}", std::process::id()));
    std::fs::write(&outside, "secret").expect("write");
    let _ = std::os::unix::fs::symlink(&outside, dir.join("escape"));
    dir
}

async fn static_gateway() -> Gateway {
    let root = site();
    gateway(&format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
static = {{ root = "{}" }}
"#,
        root.display()
    ))
    .await
}

#[tokio::test]
async fn serves_files_with_types_and_index() {
    let gw = static_gateway().await;
    let r = client().get(gw.url("/")).send().await.expect("r");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.text().await.expect("b"), "<h1>home</h1>");
    let r = client().get(gw.url("/app.js")).send().await.expect("r");
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(r.headers()["content-length"], "10");
    let r = client().get(gw.url("/sub/")).send().await.expect("r");
    assert_eq!(r.text().await.expect("b"), "sub home");
    // A directory without its slash is redirected.
    let resp = raw(
        gw.addr,
        b"GET /sub HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 301);
    assert!(resp.to_ascii_lowercase().contains("location: /sub/"));
    assert_eq!(
        client()
            .get(gw.url("/missing"))
            .send()
            .await
            .expect("r")
            .status(),
        404
    );
    assert_eq!(
        client().post(gw.url("/")).send().await.expect("r").status(),
        405
    );
}

#[tokio::test]
async fn conditional_requests_and_head() {
    let gw = static_gateway().await;
    let r = client().get(gw.url("/app.js")).send().await.expect("r");
    let etag = r.headers()["etag"].clone();
    let modified = r.headers()["last-modified"].clone();
    let r = client()
        .get(gw.url("/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 304);
    let r = client()
        .get(gw.url("/app.js"))
        .header("if-modified-since", modified)
        .send()
        .await
        .expect("r");
    assert_eq!(r.status(), 304);
    let resp = raw(
        gw.addr,
        b"HEAD /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200);
    assert!(resp.contains("content-length: 10"));
    assert!(resp.ends_with("\r\n\r\n"), "HEAD has no body: {resp:?}");
}

#[tokio::test]
async fn traversal_is_refused() {
    let gw = static_gateway().await;
    for path in [
        "/../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/sub/..%2f..%2f..%2fetc/passwd",
        "/..%5c..%5cetc/passwd",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        let status = status_of(&resp);
        assert!(status == 400 || status == 404, "{path} -> {resp}");
        assert!(!resp.contains("root:"), "{path} leaked a file");
    }
    // A symlink pointing outside the root is not followed out.
    let r = client().get(gw.url("/escape")).send().await.expect("r");
    assert_eq!(r.status(), 404);
}
