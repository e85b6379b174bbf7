//! The `weir` binary as a user runs it: `check` exit codes, the quickstart answering, SIGTERM
//! draining an in-flight request, and 1 GiB each way with Weir's peak RSS bounded.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use weir_testkit::{full, origin, raw, status_of};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file in a directory of its own, both removed when the test is done with it.
struct TempFile {
    path: PathBuf,
    _dir: weir_testkit::TempDir,
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

fn temp_file(name: &str, contents: &str) -> TempFile {
    let dir = weir_testkit::TempDir::new("cli");
    let path = dir.0.join(name);
    std::fs::write(&path, contents).expect("write");
    TempFile { path, _dir: dir }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kills the child when the test ends, however it ends.
struct Weir(Child);

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path) -> Weir {
    spawn_logging(config, Stdio::null())
}

/// Like [`spawn`], with Weir's own log (stderr) going to `log`.
fn spawn_logging(config: &Path, log: impl Into<Stdio>) -> Weir {
    let child = Command::new(WEIR)
        .args(["run", "-c"])
        .arg(config)
        .current_dir(repo_root())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weir");
    Weir(child)
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("weir did not start listening on {addr}");
}

fn proxy_config(port: u16, origin: SocketAddr, extra: &str) -> String {
    format!(
        r#"
workers = 1
shutdown_timeout = "10s"
{extra}
[access_log]
enabled = false

[[listeners]]
name = "main"
bind = "127.0.0.1:{port}"

[[upstreams]]
name = "origin"
endpoints = ["{origin}"]

[[routes]]
proxy = {{ upstream = "origin" }}
"#
    )
}

#[test]
fn check_exit_codes() {
    let ok = Command::new(WEIR)
        .args(["check", "examples/quickstart.toml"])
        .current_dir(repo_root())
        .output()
        .expect("run");
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok (3 listeners, 1 upstreams, 6 routes)"));
    for example in [
        "examples/api-gateway.toml",
        "examples/cdn.toml",
        "examples/docker.toml",
        "examples/compose-weir.toml",
        "examples/deployments.toml",
    ] {
        let checked = Command::new(WEIR)
            .args(["check", example])
            .current_dir(repo_root())
            .output()
            .expect("run");
        assert!(checked.status.success(), "{example}: {checked:?}");
    }
    // The Kubernetes example's embedded weir.toml (the admin token comes from a Secret file
    // there; here from a literal of the same length rule).
    let manifest = std::fs::read_to_string(repo_root().join("examples/kubernetes/weir.yaml"))
        .expect("kubernetes example");
    let embedded: String = manifest
        .split("weir.toml: |\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .expect("weir.toml in the ConfigMap")
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let embedded = embedded.replace(
        "{ file = \"/run/secrets/weir/admin-token\" }",
        "\"a-token-of-sixteen-chars\"",
    );
    let k8s = temp_file("k8s.toml", &embedded);
    let checked = Command::new(WEIR)
        .arg("check")
        .arg(&k8s)
        .output()
        .expect("run");
    assert!(checked.status.success(), "kubernetes example: {checked:?}");

    let bad = temp_file(
        "bad.toml",
        "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:8080\"\n\n[[routes]]\nproxy = { upstream = \"apis\" }\n",
    );
    let out = Command::new(WEIR)
        .arg("check")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:6:22: error: routes[0].proxy.upstream: unknown upstream `apis`"),
        "{err}"
    );

    let missing = Command::new(WEIR)
        .args(["check", "/nonexistent/weir.toml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config"));

    let version = Command::new(WEIR).arg("--version").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("weir {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn quickstart_starts_and_answers() {
    let text =
        std::fs::read_to_string(repo_root().join("examples/quickstart.toml")).expect("quickstart");
    let (main, a, b, admin) = (free_port(), free_port(), free_port(), free_port());
    let text = text
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{main}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:9002", &format!("127.0.0.1:{b}"));
    let config = temp_file("quickstart.toml", &text);
    let _weir = spawn(&config);
    let addr: SocketAddr = format!("127.0.0.1:{main}").parse().expect("addr");
    wait_listening(addr).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");
    let home = c.get(url("/")).send().await.expect("GET /");
    assert_eq!(home.status(), 200);
    assert!(home.text().await.expect("body").contains("Weir is running"));
    assert_eq!(
        c.get(url("/hello"))
            .send()
            .await
            .expect("hello")
            .text()
            .await
            .expect("b"),
        "Hello from Weir!\n"
    );
    let mut served_by = Vec::new();
    for _ in 0..2 {
        let r = c.get(url("/api/users")).send().await.expect("api");
        assert_eq!(r.status(), 200);
        served_by.push(r.headers()["x-served-by"].to_str().expect("hdr").to_owned());
    }
    served_by.sort();
    assert_eq!(served_by, ["backend-a", "backend-b"]);
    let resp = raw(
        addr,
        b"GET /docs HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 302);
    let metrics = c
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let healthy =
        format!("weir_upstream_endpoint_healthy{{upstream=\"api\",endpoint=\"127.0.0.1:{a}\"}} 1");
    assert!(metrics.contains(&healthy), "{metrics}");
    // The binary's build facts reach weir_build_info, the same as `weir version` prints.
    let version = Command::new(WEIR)
        .args(["version", "--json"])
        .output()
        .expect("version");
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).expect("json");
    let commit = version["commit"].as_str().expect("commit");
    assert!(
        metrics.contains(&format!("commit=\"{commit}\"")),
        "{commit} not in weir_build_info:\n{metrics}"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_request_and_exits_zero() {
    let slow = origin(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        Response::new(full("drained"))
    })
    .await;
    let port = free_port();
    let config = temp_file("drain.toml", &proxy_config(port, slow.addr, ""));
    let mut weir = spawn(&config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_listening(addr).await;
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://{addr}/slow"))
            .await?
            .text()
            .await
    });
    // SIGTERM once the request is in flight (it reached the origin).
    for _ in 0..3000 {
        if slow.received() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slow.received(), 1, "the request reached the origin");
    let pid = weir.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    assert_eq!(in_flight.await.expect("join").expect("response"), "drained");
    let status = tokio::task::spawn_blocking(move || {
        let s = weir.0.wait();
        (s, weir)
    })
    .await
    .expect("join")
    .0
    .expect("wait");
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}

/// Peak resident set size of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn one_gib_each_way_streams_with_bounded_memory() {
    const GIB: u64 = 1 << 30;
    const CHUNK: usize = 256 * 1024;
    // Upload: the origin counts what arrives. Download: it streams 1 GiB back.
    let o = origin(|req: Request<Incoming>| async move {
        if req.uri().path() == "/download" {
            let chunk = Bytes::from(vec![b'd'; CHUNK]);
            let n = usize::try_from(GIB).unwrap_or(usize::MAX) / CHUNK;
            let stream = futures_util::stream::iter(
                (0..n).map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone()))),
            );
            return Response::new(
                http_body_util::StreamBody::new(stream)
                    .map_err(Into::into)
                    .boxed_unsync(),
            );
        }
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Response::new(full(n.to_string()))
    })
    .await;
    let port = free_port();
    let config = temp_file(
        "big.toml",
        &proxy_config(port, o.addr, "[server]\nmax_request_body_size = \"0\"\n"),
    );
    let weir = spawn(&config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_listening(addr).await;
    let c = reqwest::Client::new();

    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let n = usize::try_from(GIB).unwrap_or(usize::MAX) / CHUNK;
    let upload =
        futures_util::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = c
        .post(format!("http://{addr}/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.text().await.expect("count"), GIB.to_string());

    let r = c
        .get(format!("http://{addr}/download"))
        .send()
        .await
        .expect("download");
    let mut stream = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(got, GIB);

    let peak = peak_rss_kib(weir.0.id());
    println!(
        "weir peak RSS after 1 GiB up + 1 GiB down: {:.1} MiB",
        peak as f64 / 1024.0
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB exceeds 64 MiB");
}

#[tokio::test]
async fn sighup_reloads_the_config_file_and_a_bad_file_keeps_the_old_one() {
    let port = free_port();
    let text = |body: &str| {
        format!(
            "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n\n[[routes]]\nrespond = {{ status = 200, body = \"{body}\" }}\n"
        )
    };
    let config = temp_file("hup.toml", &text("first"));
    let log_path = temp_file("hup.log", "");
    let log = std::fs::File::create(&log_path).expect("log file");
    let weir = spawn_logging(&config, log);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    wait_listening(addr).await;
    let get = || async move {
        reqwest::get(format!("http://{addr}/"))
            .await
            .expect("request")
            .text()
            .await
            .expect("body")
    };
    assert_eq!(get().await, "first");
    let hup = |pid: u32| {
        assert!(Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success());
    };
    std::fs::write(&config, text("second")).expect("write");
    hup(weir.0.id());
    let mut body = String::new();
    for _ in 0..100 {
        body = get().await;
        if body == "second" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body, "second");
    // The reload is logged in words, not as a Rust struct.
    let mut log = String::new();
    for _ in 0..500 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("config reloaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        log.contains("config reloaded: listeners unchanged; upstreams 0 kept, 0 new"),
        "{log}"
    );
    assert!(!log.contains("ReloadSummary"), "{log}");
    // An invalid file is refused; the running config keeps serving.
    std::fs::write(&config, "[[listeners]]\nname = \"main\"\nbind = \"nope\"\n").expect("write");
    hup(weir.0.id());
    // Wait for Weir to say it refused the file, then check it still serves the old config.
    let mut refused = false;
    for _ in 0..500 {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("config reload refused") {
            refused = log.contains("nope");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the refusal, naming the bad value, is logged");
    assert_eq!(get().await, "second");
}

#[test]
fn explain_prints_the_matching_route_and_the_misses() {
    let out = Command::new(WEIR)
        .current_dir(repo_root())
        .args(["explain", "-c"])
        .arg(repo_root().join("examples/quickstart.toml"))
        .args(["GET", "http://localhost/api/users"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✗ hello: path is not \"/hello\""), "{text}");
    assert!(text.contains("✓ api"), "{text}");
    assert!(
        text.contains("proxy to upstream `api` (balance round_robin)"),
        "{text}"
    );
}

/// `weir healthcheck`: 0 on a 2xx, a failure naming the status otherwise, and a failure (not a
/// hang) when nothing listens.
#[test]
fn healthcheck_exit_status_follows_the_answer() {
    let port = free_port();
    let admin = free_port();
    let config = temp_file(
        "healthcheck.toml",
        &format!(
            "admin = {{ bind = \"127.0.0.1:{admin}\" }}\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n[[routes]]\nname = \"ok\"\nmatch = {{ path = \"/ok\" }}\nrespond = {{ status = 200, body = \"ok\" }}\n[[routes]]\nname = \"down\"\nrespond = {{ status = 503, body = \"down\" }}\n"
        ),
    );
    let health = |url: String| {
        Command::new(WEIR)
            .args(["healthcheck", &url, "--timeout", "5"])
            .output()
            .expect("run")
    };
    // Nothing listens yet: refused at once.
    let refused = health(format!("http://127.0.0.1:{port}/ok"));
    assert!(!refused.status.success());
    let _weir = spawn(&config);
    let mut ok = health(format!("http://127.0.0.1:{admin}/healthz"));
    for _ in 0..200 {
        if ok.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        ok = health(format!("http://127.0.0.1:{admin}/healthz"));
    }
    assert!(ok.status.success(), "{ok:?}");
    assert!(health(format!("http://127.0.0.1:{port}/ok"))
        .status
        .success());
    let down = health(format!("http://127.0.0.1:{port}/other"));
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("answered 503"),
        "{down:?}"
    );
    let tls = health(format!("https://127.0.0.1:{port}/ok"));
    assert!(
        String::from_utf8_lossy(&tls.stderr).contains("only http://"),
        "{tls:?}"
    );
}

/// A bare `weir run` never serves the demo: with no `-c`, no `$WEIR_CONFIG` and no
/// `/etc/weir/weir.toml` it fails and says where it looked; `weir demo` says it is a demo.
#[test]
fn run_without_a_config_says_where_it_looked() {
    if Path::new("/etc/weir/weir.toml").exists() {
        // This machine has a system config, which `weir run` rightly uses.
        return;
    }
    let out = Command::new(WEIR)
        .arg("run")
        .env_remove("WEIR_CONFIG")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for place in ["-c", "$WEIR_CONFIG", "/etc/weir/weir.toml", "weir demo"] {
        assert!(err.contains(place), "{place} missing from: {err}");
    }
    // An explicit WEIR_CONFIG that does not exist is reported as that file, not skipped.
    let out = Command::new(WEIR)
        .arg("run")
        .env("WEIR_CONFIG", "/nonexistent/from-env.toml")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/from-env.toml"));
    // `check` reads WEIR_CONFIG the same way.
    let out = Command::new(WEIR)
        .arg("check")
        .current_dir(repo_root())
        .env("WEIR_CONFIG", repo_root().join("examples/quickstart.toml"))
        .output()
        .expect("check");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn version_completions_and_manpage() {
    let text = Command::new(WEIR).arg("version").output().expect("version");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    for field in [
        "commit: ",
        "built: ",
        "rustc: rustc ",
        "features: ",
        "http2",
    ] {
        assert!(text.contains(field), "{field} missing from: {text}");
    }
    let json = Command::new(WEIR)
        .args(["version", "--json"])
        .output()
        .expect("version --json");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(json["build_date"]
        .as_str()
        .is_some_and(|d| d.len() == 10 && d.starts_with("20")));
    assert!(json["features"].as_array().is_some_and(|f| !f.is_empty()));
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef weir"),
        ("fish", "complete -c weir"),
    ] {
        let out = Command::new(WEIR)
            .args(["completions", shell])
            .output()
            .expect("completions");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains(marker),
            "{shell}: {script}"
        );
        assert!(
            script.contains("healthcheck"),
            "{shell} completes subcommands"
        );
    }
    let man = Command::new(WEIR).arg("manpage").output().expect("manpage");
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(man.starts_with(".ie") || man.contains(".TH weir"), "{man}");
    assert!(
        man.contains("completions") && man.contains("WEIR_CONFIG"),
        "{man}"
    );
}

/// Under systemd's `Type=notify`: READY=1 once listeners are bound, RELOADING=1 (with
/// MONOTONIC_USEC) then READY=1 around a SIGHUP reload, STOPPING=1 when SIGTERM starts the drain.
#[tokio::test]
async fn sd_notify_ready_reloading_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("weir-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    // A bound on a wait for a message that must come, so a regression fails instead of hanging.
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let recv = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let port = free_port();
    let config = temp_file(
        "notify.toml",
        &format!("[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n[[routes]]\nrespond = {{ status = 200, body = \"ok\" }}\n"),
    );
    let mut child = Command::new(WEIR)
        .args(["run", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let ready = recv();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    assert!(ready.contains("STATUS=serving 1 listeners"), "{ready}");
    // READY means bound: a connection succeeds now, with no retry.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("listener bound when READY=1 arrives");
    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("kill")
            .success());
    };
    signal("-HUP");
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC is a number");
    assert!(usec > 0);
    let ready_again = recv();
    assert!(ready_again.starts_with("READY=1\n"), "{ready_again}");
    assert!(ready_again.contains("last reload applied"), "{ready_again}");
    signal("-TERM");
    let stopping = recv();
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert!(child.wait().expect("wait").success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A listener whose port is taken: one error, at the `bind` key, with what to do — not the
/// OS error twice without a place.
#[test]
fn a_taken_port_is_one_error_at_its_bind_key() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = temp_file(
        "taken.toml",
        &format!("[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n\n[[routes]]\nrespond = {{ status = 200 }}\n"),
    );
    let out = Command::new(WEIR)
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let at = format!(
        "{}:3:8: error: listeners[0].bind: cannot bind 127.0.0.1:{port}: ",
        config.display()
    );
    assert!(err.contains(&at), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains("ss -ltnp"), "{err}");
    drop(taken);
}

/// `[log] format = "json"`: every line of Weir's own log is one JSON object; `weir check`
/// refuses a `level` that is not a filter, at its place.
#[tokio::test]
async fn the_process_log_can_be_json() {
    let port = free_port();
    let admin = free_port();
    let config = temp_file(
        "jsonlog.toml",
        &format!("admin = {{ bind = \"127.0.0.1:{admin}\" }}\n[log]\nformat = \"json\"\nlevel = \"info\"\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:{port}\"\n[[routes]]\nrespond = {{ status = 200 }}\n"),
    );
    let log_path = temp_file("jsonlog.log", "");
    let log = std::fs::File::create(&log_path).expect("log file");
    let weir = spawn_logging(&config, log);
    let mut text = String::new();
    for _ in 0..500 {
        text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("ready") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(weir);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let listener = format!("listener main on http://127.0.0.1:{port}");
    let found = lines
        .iter()
        .find(|l| l["message"] == listener.as_str())
        .unwrap_or_else(|| panic!("no `{listener}` in {text}"));
    assert_eq!(found["level"], "INFO");
    assert!(found["timestamp"]
        .as_str()
        .is_some_and(|t| t.starts_with("20")));
    assert!(lines.iter().any(|l| l["message"]
        == format!("admin API and dashboard on http://127.0.0.1:{admin}/").as_str()));

    let bad = temp_file(
        "badlevel.toml",
        "[log]\nlevel = \"weir=[\"\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:1\"\n",
    );
    let out = Command::new(WEIR)
        .arg("check")
        .arg(&bad)
        .output()
        .expect("check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2:9: error: log.level: not a log filter",
            bad.display()
        )),
        "{err}"
    );
}

/// `weir explain` on a caching route names the cache and the key, after its query rules.
#[test]
fn explain_shows_the_cache_and_its_key() {
    let out = Command::new(WEIR)
        .current_dir(repo_root())
        .args(["explain", "-c", "examples/cdn.toml", "--listener", "edge"])
        .args([
            "GET",
            "http://localhost:8091/index.html?utm_source=x&b=2&a=1",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // utm_source is dropped and the rest sorted, as examples/cdn.toml's key rules say.
    assert!(
        text.contains("cache: `edge`, key http://localhost/index.html?a=1&b=2"),
        "{text}"
    );
    let json = Command::new(WEIR)
        .current_dir(repo_root())
        .args([
            "explain",
            "-c",
            "examples/cdn.toml",
            "--listener",
            "origin",
            "--json",
        ])
        .args(["GET", "http://localhost/news.json"])
        .output()
        .expect("run");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["cache"], serde_json::Value::Null, "{json}");
    assert_eq!(json["steps"][0]["route"], "news");
}
