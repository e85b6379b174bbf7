//! ACME Renewal Information (RFC 9773) in front of Debian's pebble, whose version (2.4) has
//! none: an HTTPS front that passes every request through to pebble unchanged (same `Host`, so
//! pebble's URLs and its JWS `url` checks name the front), adds `renewalInfo` to the directory,
//! answers `GET /renewal-info/{id}` with the window the test chose, and — as an ARI CA must —
//! reflects a new order's `replaces` in its answer (pebble 2.4 ignores the field). What the
//! client asked and named is recorded for the test to check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::pebble::Pebble;

/// What the front tells a client of the certificates it asks about: the first distinct one is
/// due at once (its window has started), every later one a month out.
#[derive(Default, Debug, Clone)]
pub struct AriLog {
    /// Certificate identifiers asked about, in order (repeats included).
    pub asked: Vec<String>,
    /// `replaces` named by new orders, in order.
    pub replaces: Vec<String>,
}

/// The running front.
pub struct PebbleAri {
    pub addr: SocketAddr,
    log: Arc<Mutex<AriLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl PebbleAri {
    /// Starts a front for `pebble` on a free loopback port, with pebble's own HTTPS identity
    /// (so the same `directory_ca` trusts both).
    pub async fn start(pebble: &Pebble) -> Self {
        let (cert, key) = pebble.https_identity();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .expect("cert")
            .collect::<Result<_, _>>()
            .expect("cert pem");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(pebble.ca_pem_path()).expect("ca") {
            roots.add(c.expect("ca pem")).expect("root");
        }
        let client = Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(AriLog::default()));
        let upstream = pebble.addr;
        let shared = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, client, log) = (acceptor.clone(), client.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, upstream, client.clone(), log.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, log, task }
    }

    /// The directory URL (pebble's, through the front).
    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    /// What clients asked and named so far.
    pub fn log(&self) -> AriLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for PebbleAri {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}Z", weir_core::text::civil_second(secs))
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    log: Arc<Mutex<AriLog>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(id) = path.strip_prefix("/renewal-info/") {
        let first = {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.asked.push(id.to_owned());
            l.asked.first().is_some_and(|f| f == id)
        };
        let now = SystemTime::now();
        let (start, end) = if first {
            (now - Duration::from_secs(60), now - Duration::from_secs(30))
        } else {
            (
                now + Duration::from_secs(30 * 86_400),
                now + Duration::from_secs(31 * 86_400),
            )
        };
        let mut r = json(
            StatusCode::OK,
            &serde_json::json!({
                "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) },
                "explanationURL": "https://ca.weir.test/why",
            }),
        );
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3600"),
        );
        return Ok(r);
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // The order's `replaces`, from the JWS payload (base64url JSON).
    let replaces = (path == "/order-plz")
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten()
        .and_then(|jws| {
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(jws["payload"].as_str()?)
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
            v["replaces"].as_str().map(str::to_owned)
        });
    let answer = match forward(parts, body, upstream, client).await {
        Ok(a) => a,
        Err(e) => {
            return Ok(json(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "detail": e }),
            ))
        }
    };
    let (mut parts, body) = answer.into_parts();
    let body = if path == "/dir" || replaces.is_some() {
        let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if path == "/dir" {
            v["renewalInfo"] = format!("https://{host}/renewal-info").into();
        }
        if let Some(r) = replaces {
            v["replaces"] = r.clone().into();
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .replaces
                .push(r);
        }
        Bytes::from(v.to_string())
    } else {
        body
    };
    parts.headers.remove(http::header::CONTENT_LENGTH);
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// One request to pebble, on a connection of its own.
async fn forward(
    parts: http::request::Parts,
    body: Bytes,
    upstream: SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> Result<Response<Bytes>, String> {
    let tcp = tokio::net::TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(client)
        .connect(
            ServerName::try_from("localhost").map_err(|e| e.to_string())?,
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::from_parts(parts, Full::new(body));
    *req.version_mut() = http::Version::HTTP_11;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
