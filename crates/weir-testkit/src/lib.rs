//! Test support shared by Weir's test suites: in-process HTTP/1.1 origins on 127.0.0.1:0 that
//! count their connections, and raw-TCP helpers for sending what no well-behaved client would.

pub mod dns;
pub mod etcd;
pub mod otlp;
pub mod pebble;
pub mod pebble_ari;
pub mod redis;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A directory removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A fresh, empty directory under the system's temporary directory.
    pub fn new(name: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weir-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The body type origins answer with.
pub type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body of exactly these bytes.
pub fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|e| match e {}).boxed_unsync()
}

/// An in-process origin server.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepts: Arc<AtomicUsize>,
    /// Requests received so far.
    pub requests: Arc<AtomicUsize>,
    /// Stops the listener and every connection.
    stop: CancellationToken,
}

impl Origin {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Requests received so far.
    pub fn received(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Kills the origin as a crash would: the listener closes and every open connection is
    /// dropped mid-whatever.
    pub fn kill(&self) {
        self.stop.cancel();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An HTTP/1.1 origin on 127.0.0.1:0 answering with `handler`, counting accepted connections.
pub async fn origin<F, Fut>(handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    origin_at("127.0.0.1:0".parse().expect("addr"), handler).await
}

/// An origin on a given address (to restart one on the port it had), with `SO_REUSEADDR`.
pub async fn origin_at<F, Fut>(addr: SocketAddr, handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("reuseaddr");
    socket.bind(addr).expect("bind origin");
    let listener = socket.listen(1024).expect("listen");
    let addr = listener.local_addr().expect("origin addr");
    let accepts = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (counter, req_counter, token) = (accepts.clone(), requests.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = token.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let req_counter = req_counter.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    req_counter.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                // With upgrades: a handler may answer 101 and take the connection over.
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades();
                tokio::select! {
                    () = token.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
    Origin {
        addr,
        accepts,
        requests,
        stop,
    }
}

/// A loopback port to hand to a server that is started later (pebble, redis, a config file):
/// picked below the kernel's ephemeral range, so no `:0` bind or outgoing connection of the
/// tests running in parallel can take it in between (only another such pick could, at random
/// among thousands), and bindable now.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_001));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    // Two picks in the same nanosecond still differ.
    static PICKS: AtomicUsize = AtomicUsize::new(0);
    seed = seed.wrapping_add(
        (PICKS.fetch_add(1, Ordering::Relaxed) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    for _ in 0..1000 {
        // xorshift: enough to spread the picks of parallel tests.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = from + (seed % u64::from(to - from)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {low}");
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

/// An address nothing listens on (a port bound, read and released): connections are refused.
pub fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A PROXY protocol v2 header (PROXY, TCP over IPv4) for `client:port` to 10.0.0.1:443,
/// carrying `tlv` bytes of custom TLVs (type 0xE0), as cloud load balancers send long ones.
/// `tlv` is 0 or at least 3.
pub fn proxy_v2_header(client: [u8; 4], port: u16, tlv: usize) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&client);
    body.extend_from_slice(&[10, 0, 0, 1]);
    body.extend_from_slice(&port.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    let mut left = tlv;
    while left > 0 {
        let n = left.saturating_sub(3).min(1000);
        body.push(0xE0);
        body.extend_from_slice(&u16::try_from(n).unwrap_or(0).to_be_bytes());
        body.extend(std::iter::repeat_n(b'x', n));
        left = left.saturating_sub(n + 3);
    }
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
    h.extend_from_slice(&body);
    h
}
