//! Test harness: the gateway in-process on 127.0.0.1:0, in-process origin servers, raw TCP.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub use weir_testkit::*;

/// Collects access-log lines written by the gateway.
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("log lock").clone()).expect("utf8 log")
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().expect("log lock").clone()).expect("utf8 log");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

pub struct Gateway {
    pub server: Option<weir_server::Server>,
    pub addr: SocketAddr,
    pub log: LogBuf,
}

impl Gateway {
    /// The admin listener's address (the config must have `admin`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.admin_addr())
            .expect("admin")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Flushes and returns the access log lines so far.
    /// The access log once it holds at least `n` lines (or what it holds after a bounded wait).
    pub async fn log_lines_at_least(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            if let Some(s) = &self.server {
                s.flush_access_log();
            }
            let lines = self.log.lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.log.lines()
    }

    pub async fn log_lines(&self) -> Vec<serde_json::Value> {
        // The log line is written when the response body is dropped, just after the client
        // has read it; give the writer thread a moment.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Some(s) = &self.server {
                s.flush_access_log();
            }
            let lines = self.log.lines();
            if !lines.is_empty() {
                return lines;
            }
        }
        self.log.lines()
    }
}

/// Starts the gateway with `toml`; the listener named `main` must bind 127.0.0.1:0.
pub async fn gateway(toml: &str) -> Gateway {
    let config = weir_config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let log = LogBuf::default();
    let server =
        weir_server::Server::start(config, weir_observe::AccessLog::to_writer(log.clone()))
            .await
            .expect("gateway starts");
    let addr = server.local_addr("main").expect("main listener");
    Gateway {
        server: Some(server),
        addr,
        log,
    }
}

/// A test config assembled from parts: top-level TOML, the `main` listener on a free port
/// (with extra keys), upstreams, and what follows them (policies, routes). The config
/// helpers below are built on it, and so is any test that needs a little more.
#[derive(Debug, Default, Clone)]
pub struct TestConfig {
    top: Vec<String>,
    listener: Vec<String>,
    upstreams: Vec<String>,
    rest: Vec<String>,
}

impl TestConfig {
    /// Listener `main` on `127.0.0.1:0`, nothing else.
    pub fn new() -> Self {
        Self::default()
    }

    /// Top-level TOML (keys, or tables such as `[[caches]]`), before the listener.
    pub fn top(mut self, toml: &str) -> Self {
        self.top.push(toml.to_owned());
        self
    }

    /// The admin API on a free port.
    pub fn admin(self) -> Self {
        self.top("admin = { bind = \"127.0.0.1:0\" }")
    }

    /// Keys of the `main` listener.
    pub fn listener(mut self, keys: &str) -> Self {
        self.listener.push(keys.to_owned());
        self
    }

    /// An upstream named `name` with `endpoints` and extra `keys`.
    pub fn upstream(mut self, name: &str, endpoints: &[SocketAddr], keys: &str) -> Self {
        let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
        self.upstreams.push(format!(
            "[[upstreams]]\nname = \"{name}\"\nendpoints = [{}]\n{keys}\n",
            list.join(", ")
        ));
        self
    }

    /// A route named `name` with `keys` (its `match`, action …).
    pub fn route(self, name: &str, keys: &str) -> Self {
        self.then(&format!("[[routes]]\nname = \"{name}\"\n{keys}\n"))
    }

    /// TOML after the upstreams (policies, routes), in order.
    pub fn then(mut self, toml: &str) -> Self {
        self.rest.push(toml.to_owned());
        self
    }

    /// The config text.
    pub fn build(&self) -> String {
        format!(
            "{}\n\n[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n{}\n\n{}\n{}\n",
            self.top.join("\n"),
            self.listener.join("\n"),
            self.upstreams.join("\n"),
            self.rest.join("\n"),
        )
    }
}

/// A config with listener `main` and upstream `up` pointing at `origins`, plus `extra` TOML.
pub fn config(origins: &[SocketAddr], extra: &str) -> String {
    TestConfig::new()
        .top("shutdown_timeout = \"5s\"")
        .top(extra)
        .upstream(
            "up",
            origins,
            "timeouts = { connect = \"1s\", response_header = \"2s\" }",
        )
        .route("to-up", "proxy = { upstream = \"up\" }")
        .build()
}

/// The fields Weir sets on every request it sends upstream (a client's own are replaced).
pub const PROXY_SET_FIELDS: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
    "x-request-id",
];

/// An origin that answers every request with its method, path, headers and body as JSON.
pub async fn echo_origin() -> Origin {
    origin(|req: Request<Incoming>| async move {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    serde_json::Value::String(v.to_str().unwrap_or("?").to_owned()),
                )
            })
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json = serde_json::json!({
            "method": method,
            "uri": uri,
            "headers": headers,
            "body_len": body.len(),
            "body": String::from_utf8_lossy(&body),
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(full(json.to_string()))
            .expect("response")
    })
    .await
}

/// The status of a GET of `path` through the gateway.
pub async fn get_status(gw: &Gateway, path: &str) -> u16 {
    client()
        .get(gw.url(path))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .expect("client")
}

/// A config whose upstream `up` has `origins` (with weights) and the extra upstream keys
/// `upstream` (TOML lines inside `[[upstreams]]`), plus a catch-all route to it.
pub fn upstream_config(origins: &[(SocketAddr, u32)], upstream: &str, route: &str) -> String {
    let endpoints: Vec<String> = origins
        .iter()
        .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
        .collect();
    format!(
        r#"
shutdown_timeout = "5s"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[upstreams]]
name = "up"
endpoints = [{}]
timeouts = {{ connect = "1s", response_header = "5s" }}
{upstream}

[[routes]]
name = "to-up"
proxy = {{ upstream = "up"{route} }}
"#,
        endpoints.join(", ")
    )
}

/// `n` origins each answering its own index as the body.
pub async fn numbered_origins(n: usize) -> Vec<Origin> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            origin(
                move |_req: Request<Incoming>| async move { Response::new(full(i.to_string())) },
            )
            .await,
        );
    }
    out
}

/// Sends `total` GETs over `concurrency` connections; returns the body (or `ERR <status>`)
/// of each.
pub async fn load(url: &str, total: usize, concurrency: usize) -> Vec<String> {
    use futures_util::StreamExt;
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    futures_util::stream::iter(0..total)
        .map(|_| {
            let c = c.clone();
            async move {
                match c.get(url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.text().await.unwrap_or_else(|e| format!("ERR body {e}"))
                    }
                    Ok(r) => format!("ERR {}", r.status().as_u16()),
                    Err(e) => format!("ERR {e}"),
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// How many of `bodies` are each of `0..n`.
pub fn tally(bodies: &[String], n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for b in bodies {
        if let Ok(i) = b.parse::<usize>() {
            if i < n {
                counts[i] += 1;
            }
        }
    }
    counts
}

/// The gateway's `/metrics` text (its config must have `admin = { bind = "127.0.0.1:0" }`).
pub async fn metrics(gw: &Gateway) -> String {
    let admin = gw.admin_addr();
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one sample (`name{labels}`) in a metrics text.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// A config with the admin API, `top`, upstream `up` at `origin`, `policies`, and route
/// `guarded` applying `chain` and proxying to `up` (with `route_extra` keys).
pub fn guarded_config(
    origin: SocketAddr,
    top: &str,
    policies: &str,
    chain: &str,
    route_extra: &str,
) -> String {
    TestConfig::new()
        .admin()
        .top(top)
        .upstream("up", &[origin], "timeouts = { response_header = \"5s\" }")
        .then(policies)
        .route(
            "guarded",
            &format!("policies = [{chain}]\nproxy = {{ upstream = \"up\" }}\n{route_extra}"),
        )
        .build()
}

pub use weir_testkit::TempDir;

/// Polls `check` until it gives a value, under a generous deadline (30 s) that only a broken
/// build reaches: a test waits on the condition it needs, never for a guessed time.
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the gateway's `/metrics` has `sample` at `at_least` or more; returns the text.
pub async fn wait_for_metric(gw: &Gateway, sample: &str, at_least: f64) -> String {
    wait_until(sample, || async {
        let m = metrics(gw).await;
        metric_value(&m, sample)
            .is_some_and(|v| v >= at_least)
            .then_some(m)
    })
    .await
}

/// Waits until no cache of the gateway is filling (every response read so far is stored or
/// abandoned): the store is written once a body has gone by, just after the client read it.
pub async fn caches_settled(gw: &Gateway) {
    wait_until("cache fills to finish", || async {
        let m = metrics(gw).await;
        m.lines()
            .filter(|l| l.starts_with("weir_cache_fills_in_flight{"))
            .all(|l| l.ends_with(" 0"))
            .then_some(())
    })
    .await;
}

/// Waits (at most `limit`) for the peer to close; true if it did.
pub async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One HTTP/2 frame, as bytes (for hand-framed clients).
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HTTP/2 client connection with prior knowledge (h2c) to `addr`, its driver spawned.
pub async fn h2c_sender<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2");
    tokio::spawn(conn);
    send
}

/// A connection to a test `redis-server` and the keys matching `pattern` in it.
pub async fn redis_keys(
    redis: &weir_testkit::redis::RedisServer,
    pattern: &str,
) -> (::redis::aio::MultiplexedConnection, Vec<String>) {
    let client = ::redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("keys");
    (conn, keys)
}
