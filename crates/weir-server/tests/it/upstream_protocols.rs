//! Upstream protocols: HTTP/2 cleartext (h2c) and over TLS (h2) with multiplexing, HTTP/1.1
//! over TLS with CA verification, SNI override, upstream mTLS and `insecure_skip_verify`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpListener;

use crate::common::*;
use crate::tls::Pki;

/// An origin answering `<version> <path> <client-subject>`; TLS when `tls` is given (h2 and
/// http/1.1 by ALPN), else HTTP/1.1 or h2c by preface. Returns its address and a count of
/// accepted connections.
async fn versatile_origin(tls: Option<ServerConfig>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let acceptor = tls.map(|mut c| {
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(c))
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let handler = |subject: Option<String>| {
                    hyper::service::service_fn(move |req: Request<Incoming>| {
                        let body = format!(
                            "{:?} {} {}",
                            req.version(),
                            req.uri().path(),
                            subject.as_deref().unwrap_or("-")
                        );
                        async move { Ok::<_, Infallible>(Response::new(full(body))) }
                    })
                };
                let builder = auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(tcp), handler(None))
                            .await;
                    }
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let subject = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first().map(|c| c.len().to_string()));
                        let _ = builder
                            .serve_connection(TokioIo::new(tls), handler(subject))
                            .await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

pub(crate) fn server_config(pki: &Pki, stem: &str, client_ca: bool) -> ServerConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = weir_config::pem::load_certs(&pki.path(&format!("{stem}.pem"))).expect("certs");
    let key = weir_config::pem::load_key(&pki.path(&format!("{stem}.key"))).expect("key");
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = if client_ca {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(pki.roots()), provider)
            .build()
            .expect("verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(certs, key).expect("server config")
}

fn upstream_toml(origin: SocketAddr, upstream: &str) -> String {
    TestConfig::new()
        .upstream("up", &[origin], upstream)
        .then("[[routes]]\nproxy = { upstream = \"up\" }")
        .build()
}

#[tokio::test]
async fn h2c_upstream_multiplexes_requests_on_one_connection() {
    let (origin, accepted) = versatile_origin(None).await;
    let gw = gateway(&upstream_toml(origin, "protocol = \"h2c\"")).await;
    let bodies = load(&gw.url("/m"), 200, 32).await;
    assert!(
        bodies.iter().all(|b| b == "HTTP/2.0 /m -"),
        "{:?}",
        &bodies[..3]
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
}

#[tokio::test]
async fn h2_over_tls_upstream_verified_against_a_configured_ca() {
    let pki = Pki::new();
    pki.server("origin", &["127.0.0.1"]);
    let (origin, accepted) = versatile_origin(Some(server_config(&pki, "origin", false))).await;
    let ca = pki.path("ca.pem");
    let gw = gateway(&upstream_toml(
        origin,
        &format!("protocol = \"h2\"\ntls = {{ ca = \"{}\" }}", ca.display()),
    ))
    .await;
    let bodies = load(&gw.url("/s"), 100, 16).await;
    assert!(
        bodies.iter().all(|b| b == "HTTP/2.0 /s -"),
        "{:?}",
        &bodies[..3]
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http1_over_tls_checks_the_certificate_and_sni_override_and_skip_verify() {
    let pki = Pki::new();
    pki.server("origin", &["backend.internal"]);
    let (origin, _) = versatile_origin(Some(server_config(&pki, "origin", false))).await;
    let ca = pki.path("ca.pem").display().to_string();

    // The certificate is for backend.internal, not 127.0.0.1: refused without an SNI override.
    let gw = gateway(&upstream_toml(
        origin,
        &format!("tls = {{ ca = \"{ca}\" }}\nretry = {{ attempts = 0 }}"),
    ))
    .await;
    let r = client().get(gw.url("/v")).send().await.expect("request");
    assert_eq!(r.status(), 502);

    let gw = gateway(&upstream_toml(
        origin,
        &format!("tls = {{ ca = \"{ca}\", sni = \"backend.internal\" }}"),
    ))
    .await;
    let r = client().get(gw.url("/v")).send().await.expect("request");
    assert_eq!(r.text().await.expect("body"), "HTTP/1.1 /v -");

    // Another CA: refused; with verification off: served.
    let other = Pki::new();
    let other_ca = other.path("ca.pem").display().to_string();
    let gw = gateway(&upstream_toml(origin, &format!("tls = {{ ca = \"{other_ca}\", sni = \"backend.internal\" }}\nretry = {{ attempts = 0 }}"))).await;
    assert_eq!(get_status(&gw, "/v").await, 502);
    let gw = gateway(&upstream_toml(
        origin,
        "tls = { insecure_skip_verify = true }",
    ))
    .await;
    assert_eq!(get_status(&gw, "/v").await, 200);
}

#[tokio::test]
async fn upstream_mtls_presents_the_configured_client_certificate() {
    let pki = Pki::new();
    pki.server("origin", &["127.0.0.1"]);
    let (origin, _) = versatile_origin(Some(server_config(&pki, "origin", true))).await;
    // Weir's client identity, issued by the CA the origin trusts.
    let (chain, key) = pki.client("weir");
    let to_pem = |label: &str, der: &[u8]| {
        use base64_engine::encode;
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            encode(der)
        )
    };
    std::fs::write(pki.path("weir.pem"), to_pem("CERTIFICATE", &chain[0])).expect("write");
    std::fs::write(
        pki.path("weir.key"),
        to_pem("PRIVATE KEY", key.secret_der()),
    )
    .expect("write");
    let ca = pki.path("ca.pem").display().to_string();
    let without = gateway(&upstream_toml(
        origin,
        &format!("tls = {{ ca = \"{ca}\" }}\nretry = {{ attempts = 0 }}"),
    ))
    .await;
    assert_eq!(get_status(&without, "/c").await, 502);
    let with = gateway(&upstream_toml(
        origin,
        &format!(
            "tls = {{ ca = \"{ca}\", client_cert = \"{}\", client_key = \"{}\" }}",
            pki.path("weir.pem").display(),
            pki.path("weir.key").display()
        ),
    ))
    .await;
    let r = client().get(with.url("/c")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    let body = r.text().await.expect("body");
    assert!(
        body.starts_with("HTTP/1.1 /c ") && !body.ends_with(" -"),
        "{body}"
    );
}

#[tokio::test]
async fn a_policy_service_over_tls_is_verified_against_the_policy_ca() {
    let pki = Pki::new();
    pki.server("auth", &["127.0.0.1"]);
    // An auth service that admits every request (it answers 200), over TLS.
    let (auth, accepted) = versatile_origin(Some(server_config(&pki, "auth", false))).await;
    let o = echo_origin().await;
    let ca = pki.path("ca.pem").display().to_string();
    let policy = |tls: &str| {
        format!(
            "[[policies]]\nname = \"ext\"\next_auth = {{ url = \"https://{auth}/check\"{tls} }}"
        )
    };
    // The system's roots do not know the test CA: the service is never trusted (503).
    let untrusted = gateway(&guarded_config(o.addr, "", &policy(""), "\"ext\"", "")).await;
    assert_eq!(get_status(&untrusted, "/x").await, 503);
    // With the policy's CA it is.
    let trusted = gateway(&guarded_config(
        o.addr,
        "",
        &policy(&format!(", tls = {{ ca = \"{ca}\" }}")),
        "\"ext\"",
        "",
    ))
    .await;
    assert_eq!(get_status(&trusted, "/x").await, 200);
    assert!(accepted.load(Ordering::SeqCst) >= 2);
}

/// Minimal base64 for writing PEM files in tests.
mod base64_engine {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(data: &[u8]) -> String {
        let mut out = String::new();
        for (i, chunk) in data.chunks(3).enumerate() {
            if i > 0 && i % 16 == 0 {
                out.push('\n');
            }
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(TABLE[((n >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// An origin speaking only HTTP/2 with prior knowledge (h2c), answering each request with
/// `answer`: an HTTP/1.1 probe fails there.
async fn h2c_origin<B, F>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<B> + Clone + Send + Sync + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = answer(req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// An h2c-only origin answering `<version> <path>`.
async fn h2c_only_origin() -> SocketAddr {
    h2c_origin(|req| Response::new(full(format!("{:?} {}", req.version(), req.uri().path())))).await
}

/// An HTTP/1.1 origin that serves only connections starting with a PROXY v2 header.
async fn proxy_v2_origin() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 16];
                if tcp.read_exact(&mut head).await.is_err()
                    || &head[..12] != b"\r\n\r\n\0\r\nQUIT\n"
                {
                    return;
                }
                let mut rest = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
                if tcp.read_exact(&mut rest).await.is_err() {
                    return;
                }
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(full(format!("pp {}", req.uri().path()))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// Active HTTP checks use the upstream's own connect path: TLS with its CA (HTTP/1.1 and h2
/// by ALPN), h2c, and the PROXY header. Before, every probe of such an upstream failed and all
/// its endpoints were taken out of service.
#[tokio::test]
async fn active_health_checks_speak_the_upstreams_protocol() {
    let pki = Pki::new();
    pki.server("origin", &["127.0.0.1"]);
    let ca = pki.path("ca.pem");
    let (tls_origin, _) = versatile_origin(Some(server_config(&pki, "origin", false))).await;
    let cases = [
        (
            "http/1.1 over TLS",
            tls_origin,
            format!("tls = {{ ca = \"{}\" }}", ca.display()),
            "HTTP/1.1 /after -",
        ),
        (
            "h2 over TLS",
            tls_origin,
            format!("protocol = \"h2\"\ntls = {{ ca = \"{}\" }}", ca.display()),
            "HTTP/2.0 /after -",
        ),
        (
            "h2c",
            h2c_only_origin().await,
            "protocol = \"h2c\"".to_owned(),
            "HTTP/2.0 /after",
        ),
        (
            "PROXY v2",
            proxy_v2_origin().await,
            "proxy_protocol = \"v2\"".to_owned(),
            "pp /after",
        ),
    ];
    for (name, origin, upstream, want) in cases {
        let health = "health.active = { path = \"/health\", interval = \"20ms\", jitter = \"5ms\", timeout = \"2s\", unhealthy_threshold = 1, healthy_threshold = 1 }\npanic_threshold = 0";
        let gw = gateway(&format!(
            "admin = {{ bind = \"127.0.0.1:0\" }}\n{}",
            upstream_toml(origin, &format!("{upstream}\n{health}"))
        ))
        .await;
        let probes =
            format!("weir_upstream_endpoint_probes_total{{upstream=\"up\",endpoint=\"{origin}\"}}");
        let m = wait_for_metric(&gw, &probes, 3.0).await;
        let failed = format!(
            "weir_upstream_endpoint_probe_failures_total{{upstream=\"up\",endpoint=\"{origin}\"}}"
        );
        assert_eq!(
            metric_value(&m, &failed),
            Some(0.0),
            "{name}: probes failed\n{m}"
        );
        let r = client()
            .get(gw.url("/after"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.text().await.expect("body"), want, "{name}");
    }
}

#[tokio::test]
async fn a_small_body_read_whole_keeps_its_frames_bytes_and_trailers() {
    // An h2c origin answers with a declared length, the body in two DATA frames and trailers:
    // Weir reads such a small body whole before answering, and the client still gets every
    // byte and the trailers.
    let origin = h2c_origin(|_req| {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(http_body::Frame::data(bytes::Bytes::from("hel"))),
            Ok(http_body::Frame::data(bytes::Bytes::from("lo"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let mut resp = Response::new(http_body_util::StreamBody::new(frames));
        resp.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("5"));
        resp
    })
    .await;
    let gw = gateway(&upstream_toml(origin, "protocol = \"h2c\"")).await;
    let mut send = h2c_sender(gw.addr).await;
    let req = Request::get(format!("http://{}/t", gw.addr))
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let got = resp.into_body().collect().await.expect("body");
    assert_eq!(
        got.trailers().map(|t| t["x-checksum"].clone()),
        Some(http::HeaderValue::from_static("abc"))
    );
    assert_eq!(got.to_bytes(), "hello");
}

/// An HTTP/2 upstream gets the fields Weir sets (kept beside the request's header map on the
/// way) inserted into the request it sends: each once, the client's own replaced.
#[tokio::test]
async fn an_h2c_upstream_gets_the_proxy_set_fields_once() {
    let origin = h2c_origin(|req| {
        let seen: Vec<String> = PROXY_SET_FIELDS
            .iter()
            .map(|n| {
                let values: Vec<&str> = req
                    .headers()
                    .get_all(*n)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?"))
                    .collect();
                format!("{n}={}", values.join("|"))
            })
            .collect();
        Response::new(full(seen.join("\n")))
    })
    .await;
    let gw = gateway(&upstream_toml(origin, "protocol = \"h2c\"")).await;
    let resp = raw(
        gw.addr,
        b"GET /f HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nX-Request-Id: abc-123\r\nConnection: close\r\n\r\n",
    )
    .await;
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines,
        [
            "x-forwarded-for=127.0.0.1",
            "x-forwarded-proto=http",
            "x-forwarded-host=shop.test",
            "forwarded=for=127.0.0.1;proto=http;host=shop.test",
            "via=1.1 weir",
            "x-request-id=abc-123",
        ],
        "{resp}"
    );
}
