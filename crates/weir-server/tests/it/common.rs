//! Test harness: the gateway in-process on 127.0.0.1:0, in-process origin servers, raw TCP.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|e| match e {}).boxed_unsync()
}

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
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().expect("log lock").clone()).expect("utf8 log");
        text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect()
    }
}

pub struct Gateway {
    pub server: Option<weir_server::Server>,
    pub addr: SocketAddr,
    pub log: LogBuf,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Flushes and returns the access log lines so far.
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
    let server = weir_server::Server::start(config, weir_observe::AccessLog::to_writer(log.clone()))
        .await
        .expect("gateway starts");
    let addr = server.local_addr("main").expect("main listener");
    Gateway {
        server: Some(server),
        addr,
        log,
    }
}

/// A config with listener `main` and upstream `up` pointing at `origins`, plus `extra` TOML.
pub fn config(origins: &[SocketAddr], extra: &str) -> String {
    let endpoints: Vec<String> = origins.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
shutdown_timeout = "5s"
{extra}

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[upstreams]]
name = "up"
endpoints = [{}]
timeouts = {{ connect = "1s", response_header = "2s" }}

[[routes]]
name = "to-up"
proxy = {{ upstream = "up" }}
"#,
        endpoints.join(", ")
    )
}

pub struct Origin {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// An HTTP/1.1 origin on 127.0.0.1:0 answering with `handler`, counting accepted connections.
pub async fn origin<F, Fut>(handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin addr");
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Origin {
        addr,
        accepts,
        _task: task,
    }
}

/// An origin that answers every request with its method, path, headers and body as JSON.
pub async fn echo_origin() -> Origin {
    origin(|req: Request<Incoming>| async move {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("?").to_owned())))
            .collect();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
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

/// Sends raw bytes and reads until the peer closes (or 5 s pass); returns what came back.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .expect("client")
}
