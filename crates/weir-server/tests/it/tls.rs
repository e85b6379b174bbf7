//! TLS termination: certificates by SNI (exact, wildcard, default), ALPN h2 and http/1.1,
//! minimum version, certificate reload without dropping connections (and refusal of a bad new
//! file), mTLS with the subject forwarded, redirect to https, HSTS.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::common::*;

/// A throwaway CA that issues certificates into a temporary directory.
pub(crate) struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

impl Drop for Pki {
    fn drop(&mut self) {
        // Certificates and keys written for one test go with it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Weir Test CA");
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let dir = std::env::temp_dir().join(format!(
            "weir-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let pki = Self { ca, dir };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).expect("write ca");
        pki
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Issues a server certificate for `names` into `<stem>.pem` / `<stem>.key`; returns its DER.
    pub(crate) fn server(&self, stem: &str, names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        std::fs::write(self.path(&format!("{stem}.pem")), cert.pem()).expect("write");
        std::fs::write(self.path(&format!("{stem}.key")), key.serialize_pem()).expect("write");
        cert.der().clone()
    }

    /// A client certificate with common name `cn`.
    pub(crate) fn client(
        &self,
        cn: &str,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.client_named(&[(DnType::CommonName, cn)])
    }

    /// A client certificate whose subject has these attributes, in this (DER) order.
    pub(crate) fn client_named(
        &self,
        subject: &[(DnType, &str)],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        // rcgen starts with a CN of its own; the subject is exactly what was asked for.
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in subject {
            params.distinguished_name.push(ty.clone(), *value);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("der");
        (vec![cert.der().clone()], key)
    }

    pub(crate) fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("root");
        roots
    }
}

struct Client {
    roots: RootCertStore,
    alpn: Vec<Vec<u8>>,
    tls12_only: bool,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Client {
    fn new(pki: &Pki) -> Self {
        Self {
            roots: pki.roots(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            tls12_only: false,
            identity: None,
        }
    }

    async fn connect(
        &self,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client cert"),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        let server_name = ServerName::try_from(name.to_owned()).expect("name");
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
    }
}

/// One GET over an established TLS stream, HTTP/1.1 or HTTP/2 as negotiated.
async fn get(tls: TlsStream<TcpStream>, path: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut req = Request::get(format!("https://a.test{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        send.send_request(req).await.expect("response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = path.parse().expect("path");
        parts
            .headers
            .insert("host", "a.test".parse().expect("host"));
        send.send_request(Request::from_parts(parts, body))
            .await
            .expect("response")
    };
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, body.collect().await.expect("body").to_bytes())
}

fn peer_cert(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("certs")[0]
        .clone()
        .into_owned()
}

fn tls_config(
    pki: &Pki,
    origin: std::net::SocketAddr,
    tls_extra: &str,
    listener_extra: &str,
) -> String {
    format!(
        r#"
admin = {{ bind = "127.0.0.1:0" }}

[[listeners]]
name = "main"
bind = "127.0.0.1:0"
tls = {{ certificates = [{{ cert = "{a}", key = "{ak}" }}, {{ cert = "{b}", key = "{bk}" }}], reload_interval = "100ms"{tls_extra} }}
{listener_extra}

[[upstreams]]
name = "up"
endpoints = ["{origin}"]

[[routes]]
proxy = {{ upstream = "up" }}
"#,
        a = pki.path("a.pem").display(),
        ak = pki.path("a.key").display(),
        b = pki.path("b.pem").display(),
        bk = pki.path("b.key").display(),
    )
}

#[tokio::test]
async fn sni_chooses_exact_then_wildcard_then_the_default_certificate() {
    let pki = Pki::new();
    let a = pki.server("a", &["a.test", "127.0.0.1"]);
    let b = pki.server("b", &["*.b.test"]);
    let o = echo_origin().await;
    let gw = gateway(&tls_config(&pki, o.addr, "", "")).await;
    let client = Client::new(&pki);
    assert_eq!(
        peer_cert(&client.connect(gw.addr, "a.test").await.expect("a")),
        a
    );
    assert_eq!(
        peer_cert(&client.connect(gw.addr, "api.b.test").await.expect("b")),
        b
    );
    // No SNI (an IP address): the first certificate.
    assert_eq!(
        peer_cert(&client.connect(gw.addr, "127.0.0.1").await.expect("ip")),
        a
    );
    // A wildcard covers one label only: deep.api.b.test gets the default, which does not match.
    assert!(client.connect(gw.addr, "deep.api.b.test").await.is_err());
}

#[tokio::test]
async fn alpn_negotiates_h2_or_http11_and_requests_are_proxied_as_https() {
    let pki = Pki::new();
    pki.server("a", &["a.test"]);
    pki.server("b", &["b.test"]);
    let o = echo_origin().await;
    let gw = gateway(&tls_config(&pki, o.addr, "", "hsts = \"max-age=31536000\"")).await;
    let mut client = Client::new(&pki);
    for (alpn, want) in [
        (vec![b"h2".to_vec()], "h2"),
        (vec![b"http/1.1".to_vec()], "http/1.1"),
    ] {
        client.alpn = alpn;
        let tls = client.connect(gw.addr, "a.test").await.expect("connect");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(want.as_bytes()));
        let resp = get(tls, "/x", &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["strict-transport-security"],
            "max-age=31536000"
        );
        let echo: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
        assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    }
    // The access log says what each connection negotiated.
    let lines = gw.log_lines_at_least(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, proto) in lines.iter().zip(["HTTP/2.0", "HTTP/1.1"]) {
        assert_eq!(line["scheme"], "https", "{line}");
        assert_eq!(line["proto"], proto, "{line}");
        assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
        assert!(
            line["tls_cipher"]
                .as_str()
                .is_some_and(|c| c.starts_with("TLS13_")),
            "{line}"
        );
        assert_eq!(line["sni"], "a.test", "{line}");
        assert_eq!(line["upstream_status"], 200, "{line}");
    }
}

#[tokio::test]
async fn min_version_13_refuses_tls12_clients() {
    let pki = Pki::new();
    pki.server("a", &["a.test"]);
    pki.server("b", &["b.test"]);
    let o = echo_origin().await;
    let gw = gateway(&tls_config(&pki, o.addr, ", min_version = \"1.3\"", "")).await;
    let mut client = Client::new(&pki);
    assert!(client.connect(gw.addr, "a.test").await.is_ok());
    client.tls12_only = true;
    assert!(client.connect(gw.addr, "a.test").await.is_err());
    let m = metrics(&gw).await;
    assert!(
        m.contains("weir_tls_handshake_errors_total{listener=\"main\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("weir_listener_connections_accepted_total{listener=\"main\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn certificates_reload_without_dropping_connections_and_bad_files_are_refused() {
    let pki = Pki::new();
    let first = pki.server("a", &["a.test"]);
    pki.server("b", &["b.test"]);
    let o = echo_origin().await;
    let gw = gateway(&tls_config(&pki, o.addr, "", "")).await;
    let mut client = Client::new(&pki);
    client.alpn = vec![b"http/1.1".to_vec()];
    // A keep-alive connection made before the reload.
    let tls = client.connect(gw.addr, "a.test").await.expect("connect");
    assert_eq!(peer_cert(&tls), first);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);

    let second = pki.server("a", &["a.test"]);
    assert_ne!(first, second);
    let mut served = first.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        served = peer_cert(&client.connect(gw.addr, "a.test").await.expect("connect"));
        if served == second {
            break;
        }
    }
    assert_eq!(served, second, "new certificate not served");
    // The old connection still works.
    let req = Request::get("/after-reload")
        .header("host", "a.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    assert_eq!(
        send.send_request(req).await.expect("response").status(),
        200
    );

    // A broken file is refused; the certificate already loaded keeps serving.
    std::fs::write(
        pki.path("a.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    // Refused once the reload looked at it (counted), the old certificate still serving.
    let m = wait_for_metric(
        &gw,
        "weir_tls_certificate_reload_errors_total{listener=\"main\"}",
        1.0,
    )
    .await;
    assert_eq!(
        peer_cert(&client.connect(gw.addr, "a.test").await.expect("connect")),
        second
    );
    let refused = metric_value(
        &m,
        "weir_tls_certificate_reload_errors_total{listener=\"main\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{m}");
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_and_forwards_its_subject() {
    let pki = Pki::new();
    pki.server("a", &["a.test"]);
    pki.server("b", &["b.test"]);
    let o = echo_origin().await;
    let extra = format!(
        ", client_ca = \"{}\", client_subject_header = \"x-client-subject\"",
        pki.path("ca.pem").display()
    );
    let gw = gateway(&tls_config(&pki, o.addr, &extra, "")).await;
    let mut client = Client::new(&pki);
    client.alpn = vec![b"http/1.1".to_vec()];
    // Without a certificate the handshake fails (TLS 1.3 reports it on first use).
    let refused = match client.connect(gw.addr, "a.test").await {
        Err(_) => true,
        Ok(tls) => {
            let io = TokioIo::new(tls);
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io).await {
                Err(_) => true,
                Ok((mut send, conn)) => {
                    tokio::spawn(conn);
                    let req = Request::get("/")
                        .header("host", "a.test")
                        .body(Empty::new())
                        .expect("req");
                    send.send_request(req).await.is_err()
                }
            }
        }
    };
    assert!(refused, "a client without a certificate was served");

    client.identity = Some(pki.client("alice"));
    let tls = client
        .connect(gw.addr, "a.test")
        .await
        .expect("connect with a certificate");
    let resp = get(tls, "/whoami", &[("x-client-subject", "CN=mallory")]).await;
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(echo["headers"]["x-client-subject"], "CN=alice");

    // RFC 4514: the last RDN first, specials escaped, so a CN that spells another attribute
    // stays one CN.
    client.identity = Some(pki.client_named(&[
        (DnType::CountryName, "DE"),
        (DnType::OrganizationName, "Example"),
        (DnType::CommonName, "alice, O=Admins+OU=root"),
    ]));
    let tls = client.connect(gw.addr, "a.test").await.expect("connect");
    let resp = get(tls, "/whoami", &[]).await;
    let echo: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(
        echo["headers"]["x-client-subject"],
        "CN=alice\\, O=Admins\\+OU=root,O=Example,C=DE"
    );
}

#[tokio::test]
async fn a_plaintext_listener_redirects_to_https() {
    let o = origin(|_req: Request<Incoming>| async { Response::new(full("never")) }).await;
    let gw = gateway(&config(&[o.addr], "").replace(
        "bind = \"127.0.0.1:0\"",
        "bind = \"127.0.0.1:0\"\nredirect_https = { port = 8443 }",
    ))
    .await;
    let resp = raw(gw.addr, b"POST /p?q=1 HTTP/1.1\r\nHost: example.test:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&resp), 308);
    assert!(
        resp.contains("location: https://example.test:8443/p?q=1"),
        "{resp}"
    );
    assert_eq!(o.received(), 0);
}
