//! The static action: index files, content types, conditional requests, HEAD, traversal.

use crate::common::*;

/// A test's own site: the root, and a file outside it that a link in the root points to; both
/// removed when the test is done.
struct Site {
    /// Holds `root/` and the `secret` file beside it.
    dir: TempDir,
}

impl Site {
    fn root(&self) -> std::path::PathBuf {
        self.dir.0.join("root")
    }
}

fn site() -> Site {
    let site = Site {
        dir: TempDir::new("static"),
    };
    let dir = site.root();
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    write(&dir.join("index.html"), "<h1>home</h1>");
    write(&dir.join("app.js"), "let x = 1;");
    write(&dir.join("sub/index.html"), "sub home");
    let outside = site.dir.0.join("secret");
    write(&outside, "secret");
    link(&outside, &dir.join("escape"));
    site
}

/// Writes a file of the shared site atomically: tests run concurrently and each builds the
/// site, so a plain rewrite (truncate, then write) could let another test read it empty.
fn write(path: &std::path::Path, text: &str) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{n}"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Makes `at` a symlink to `target`; a test about links must not pass because the link is
/// missing.
fn link(target: &std::path::Path, at: &std::path::Path) {
    // Tests sharing a site may make the same link concurrently: an existing one must be it.
    match std::os::unix::fs::symlink(target, at) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("symlink {}: {e}", at.display()),
    }
    assert_eq!(std::fs::read_link(at).expect("a symlink"), target);
}

async fn static_gateway() -> (Gateway, Site) {
    let site = site();
    let root = site.root();
    let gw = gateway(&format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
static = {{ root = "{}" }}
"#,
        root.display()
    ))
    .await;
    (gw, site)
}

#[tokio::test]
async fn serves_files_with_types_and_index() {
    let (gw, _site) = static_gateway().await;
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
    let (gw, _site) = static_gateway().await;
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
    let (gw, _site) = static_gateway().await;
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
    // A symlink pointing outside the root is not followed out (the link exists: `site`
    // checks it, and a route that allows links serves it).
    let r = client().get(gw.url("/escape")).send().await.expect("r");
    assert_eq!(r.status(), 404);
    let site = site();
    let root = site.root();
    let always = gateway(&format!(
        "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nstatic = {{ root = \"{}\", symlinks = \"always\" }}\n",
        root.display()
    ))
    .await;
    let r = client().get(always.url("/escape")).send().await.expect("r");
    assert_eq!(r.text().await.expect("body"), "secret");
}

/// A site with a 10,000-byte file, precompressed siblings of `app.css`, an SPA shell, and
/// links inside and outside the root; returns the root.
fn rich_site(tag: &str) -> Site {
    let site = Site {
        dir: TempDir::new(&format!("static-{tag}")),
    };
    let dir = site.root();
    std::fs::create_dir_all(dir.join("assets")).expect("mkdir");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("data.bin"), &data).expect("write");
    std::fs::write(dir.join("index.html"), "<div id=app></div>").expect("write");
    std::fs::write(dir.join("assets/app.css"), "body { color: red }").expect("write");
    std::fs::write(dir.join("assets/app.css.br"), "BR-BYTES").expect("write");
    std::fs::write(dir.join("assets/app.css.gz"), "GZ-BYTES").expect("write");
    // The inner link's target differs from the SPA shell, so following it is told apart
    // from the fallback answering.
    std::fs::write(dir.join("inner-target.html"), "inner target").expect("write");
    link(&dir.join("inner-target.html"), &dir.join("inner-link.html"));
    let outside = site.dir.0.join("outside");
    std::fs::write(&outside, "outside").expect("write");
    link(&outside, &dir.join("outer-link"));
    site
}

async fn rich_gateway(tag: &str, extra: &str) -> (Gateway, Site) {
    let site = rich_site(tag);
    let root = site.root();
    let gw = gateway(&format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
static = {{ root = "{}"{extra} }}
"#,
        root.display()
    ))
    .await;
    (gw, site)
}

#[tokio::test]
async fn byte_ranges_single_multiple_unsatisfiable_and_if_range() {
    let (gw, _site_gw) = rich_gateway("ranges", "").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let c = client();
    let get = |range: &'static str| c.get(gw.url("/data.bin")).header("range", range).send();
    let r = get("bytes=100-199").await.expect("request");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(&r.bytes().await.expect("body")[..], &data[100..200]);
    let r = get("bytes=-10").await.expect("request");
    assert_eq!(&r.bytes().await.expect("body")[..], &data[9_990..]);
    let r = get("bytes=9990-").await.expect("request");
    assert_eq!(r.headers()["content-range"], "bytes 9990-9999/10000");
    // Several ranges: multipart/byteranges with exact parts and length.
    let r = get("bytes=0-4, 9995-").await.expect("request");
    assert_eq!(r.status(), 206);
    let ctype = r.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart")
        .to_owned();
    let declared: usize = r.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    let body = r.bytes().await.expect("body");
    assert_eq!(body.len(), declared);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Content-Range: bytes 0-4/10000"));
    assert!(text.contains("Content-Range: bytes 9995-9999/10000"));
    assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    let first = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("part head")
        + 4;
    assert_eq!(&body[first..first + 5], &data[0..5]);
    // Past the end: 416 with the length.
    let r = get("bytes=20000-").await.expect("request");
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
    // Malformed or foreign units: the whole file.
    for ignored in ["bytes=5-1", "items=0-5", "bytes=x"] {
        let r = get(ignored).await.expect("request");
        assert_eq!(r.status(), 200, "{ignored}");
        assert_eq!(r.bytes().await.expect("body").len(), 10_000);
    }
    // If-Range: the range only while the validator matches.
    let full = c.get(gw.url("/data.bin")).send().await.expect("request");
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    let etag = full.headers()["etag"].to_str().expect("ascii").to_owned();
    let r = c
        .get(gw.url("/data.bin"))
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 206);
    let r = c
        .get(gw.url("/data.bin"))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), 10_000);
}

/// A range set can never make Weir send more than the object: overlapping ranges are merged,
/// and ranges that add up to more than the object get the object once.
#[tokio::test]
async fn overlapping_ranges_never_amplify_the_response() {
    let (gw, _site_gw) = rich_gateway("amplify", "").await;
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let c = client();
    let get = |range: String| c.get(gw.url("/data.bin")).header("range", range).send();
    // 16 times the whole file: the file once, as a 200.
    let r = get(format!("bytes={}", vec!["0-"; 16].join(",")))
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").len(), 10_000);
    // 16 overlapping small ranges: one part covering them.
    let many: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 99))
        .collect();
    let r = get(format!("bytes={}", many.join(",")))
        .await
        .expect("request");
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 0-249/10000");
    assert_eq!(&r.bytes().await.expect("body")[..], &data[0..250]);
}

#[tokio::test]
async fn precompressed_siblings_fallback_and_symlinks() {
    let (gw, _site_gw) = rich_gateway("pre", ", fallback = \"index.html\"").await;
    let c = client();
    let fetch = |accept: &'static str| {
        c.get(gw.url("/assets/app.css"))
            .header("accept-encoding", accept)
            .send()
    };
    let r = fetch("gzip, br").await.expect("request");
    assert_eq!(r.headers()["content-encoding"], "br");
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert_eq!(r.text().await.expect("body"), "BR-BYTES");
    let r = fetch("gzip, br;q=0.5").await.expect("request");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.text().await.expect("body"), "GZ-BYTES");
    let r = fetch("zstd").await.expect("request");
    assert!(
        r.headers().get("content-encoding").is_none(),
        "no .zst sibling: the file itself"
    );
    assert_eq!(r.text().await.expect("body"), "body { color: red }");
    // A single-page app: unknown paths get the shell, 200.
    let r = c.get(gw.url("/orders/42")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "<div id=app></div>");
    // Links: inside the root followed, outside refused (the fallback answers instead).
    assert_eq!(
        c.get(gw.url("/inner-link.html"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body"),
        "inner target"
    );
    // The outer link is refused: the SPA shell answers in its place.
    let r = c.get(gw.url("/outer-link")).send().await.expect("request");
    assert_eq!(r.text().await.expect("body"), "<div id=app></div>");

    let (never, _site_never) = rich_gateway("never", ", symlinks = \"never\"").await;
    assert_eq!(get_status(&never, "/inner-link.html").await, 404);
    assert_eq!(get_status(&never, "/inner-target.html").await, 200);
    let (always, _site_always) =
        rich_gateway("always", ", symlinks = \"always\", precompressed = false").await;
    let r = c
        .get(always.url("/outer-link"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.text().await.expect("body"), "outside");
    let r = c
        .get(always.url("/assets/app.css"))
        .header("accept-encoding", "br")
        .send()
        .await
        .expect("request");
    assert!(r.headers().get("content-encoding").is_none());
}
