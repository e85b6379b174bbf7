//! ACME against a real CA: Debian's `pebble`, validating against Weir on loopback and resolving
//! the names through a test DNS server. Issuance over HTTP-01 and over TLS-ALPN-01, a client
//! handshake verified against pebble's root, a restart reusing the stored account and
//! certificate without a new order, renewal before expiry, and a CA that is down at renewal
//! time leaving the current certificate serving and the error visible; the CA's renewal
//! information (RFC 9773) bringing a renewal forward.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use weir_testkit::dns::{Answer, DnsServer, Rec};
use weir_testkit::pebble::{Pebble, PebbleOptions};

use crate::common::*;

use weir_testkit::free_port;

fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// One HTTP/1.1 GET over TLS to `addr` for `name`, trusting `roots`; the raw answer.
async fn https_get(
    addr: SocketAddr,
    name: &str,
    roots: RootCertStore,
    path: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let server = ServerName::try_from(name.to_owned()).expect("name");
    let mut tls = TlsConnector::from(client_config(roots, &[b"http/1.1"]))
        .connect(server, tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {name}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.ok();
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// One GET on an open keep-alive TLS connection; the response head and body.
async fn get_on(tls: &mut tokio_rustls::client::TlsStream<TcpStream>, name: &str) -> String {
    tls.write_all(format!("GET / HTTP/1.1\r\nhost: {name}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "the connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

/// The certificate Weir presents to a client that trusts nothing in particular.
async fn presented(addr: SocketAddr, name: &str) -> CertificateDer<'static> {
    #[derive(Debug)]
    struct AnyCert;
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_owned()).expect("name"), tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certs")[0]
        .clone()
        .into_owned()
}

/// Pebble's root (what it signs issued chains with), from its management API.
async fn pebble_root(pebble: &Pebble) -> RootCertStore {
    let mut trust = RootCertStore::empty();
    for c in weir_config::pem::load_certs(&pebble.ca_pem_path()).expect("ca") {
        trust.add(c).expect("add");
    }
    let text = https_get(pebble.management, "localhost", trust, "/roots/0")
        .await
        .expect("roots");
    let pem = text.split("\r\n\r\n").nth(1).expect("body");
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile_certs(pem) {
        roots.add(c).expect("root");
    }
    roots
}

fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use base64::Engine;
    pem.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|b| b.split("-----END CERTIFICATE-----").next())
        .map(|b| {
            let clean: String = b.chars().filter(|c| !c.is_whitespace()).collect();
            CertificateDer::from(
                base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .expect("pem"),
            )
        })
        .collect()
}

struct Setup {
    dns: DnsServer,
    pebble: Pebble,
    plain: u16,
    tls: u16,
    state: TempDir,
    origin: Origin,
}

async fn setup(name: &str, validity_secs: Option<u64>) -> Setup {
    let dns = DnsServer::start().await;
    dns.set(
        name,
        Answer::Records(vec![Rec::Ip([127, 0, 0, 1].into())], 60),
    );
    let (plain, tls) = (free_port(), free_port());
    let pebble = Pebble::start(PebbleOptions {
        http_port: plain,
        tls_port: tls,
        dns: dns.addr,
        validity_secs,
    })
    .await;
    Setup {
        dns,
        pebble,
        plain,
        tls,
        state: TempDir::new("acme-state"),
        origin: numbered_origins(1).await.remove(0),
    }
}

fn acme_config(s: &Setup, name: &str, challenge: &str) -> String {
    instance_config(Instance {
        top: "",
        plain: s.plain,
        tls: s.tls,
        acme: format!(
            r#"domains = ["{name}"], directory = "{}", directory_ca = "{}", state_dir = "{}", contact = ["mailto:ops@weir.test"], challenge = "{challenge}""#,
            s.pebble.directory(),
            s.pebble.ca_pem_path().display(),
            s.state.0.display(),
        ),
        origin: s.origin.addr,
    })
}

/// One Weir: a plain listener `main`, a TLS listener `https` with `acme`, a catch-all route.
struct Instance<'a> {
    top: &'a str,
    plain: u16,
    tls: u16,
    acme: String,
    origin: SocketAddr,
}

fn instance_config(i: Instance<'_>) -> String {
    format!(
        r#"
admin = {{ bind = "127.0.0.1:0" }}
{top}

[[listeners]]
name = "main"
bind = "127.0.0.1:{plain}"

[[listeners]]
name = "https"
bind = "127.0.0.1:{tls}"
tls = {{ acme = {{ {acme} }} }}

[[upstreams]]
name = "up"
endpoints = ["{origin}"]

[[routes]]
proxy = {{ upstream = "up" }}
"#,
        top = i.top,
        plain = i.plain,
        tls = i.tls,
        acme = i.acme,
        origin = i.origin,
    )
}

async fn status(gw: &Gateway) -> serde_json::Value {
    reqwest::get(format!("http://{}/status", gw.admin_addr()))
        .await
        .expect("status")
        .json::<serde_json::Value>()
        .await
        .expect("json")["certificates"][0]
        .clone()
}

async fn issued(gw: &Gateway, orders: u64) -> serde_json::Value {
    wait_until("the CA to issue the certificate", || async {
        let s = status(gw).await;
        (s["orders_ok"].as_u64() >= Some(orders)).then_some(s)
    })
    .await
}

#[tokio::test]
async fn http01_issues_a_certificate_clients_verify_and_a_restart_reuses_it() {
    let name = "http01.weir.test";
    let s = setup(name, None).await;
    let toml = acme_config(&s, name, "http-01");
    let gw = gateway(&toml).await;
    let tls_addr: SocketAddr = ([127, 0, 0, 1], s.tls).into();
    // Before the CA answers, a temporary self-signed certificate serves (and says so).
    let first = status(&gw).await;
    assert!(
        ["self_signed", "acme"].contains(&first["source"].as_str().unwrap_or("")),
        "{first}"
    );

    let st = issued(&gw, 1).await;
    assert_eq!(st["source"], "acme");
    assert!(st["last_error"].is_null(), "{st}");
    let roots = pebble_root(&s.pebble).await;
    let answer = https_get(tls_addr, name, roots.clone(), "/")
        .await
        .expect("verified handshake");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with('0'),
        "{answer}"
    );
    let m = metrics(&gw).await;
    let expiry = metric_value(
        &m,
        &format!("weir_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}"),
    )
    .expect("expiry metric");
    assert_eq!(expiry as u64, st["not_after"].as_u64().expect("not_after"));
    // Stored 0600, account and certificate.
    use std::os::unix::fs::PermissionsExt;
    let files: Vec<_> = std::fs::read_dir(&s.state.0)
        .expect("state")
        .flatten()
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert_eq!(
            f.metadata().expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let served = presented(tls_addr, name).await;
    drop(gw);

    // A restart serves the stored certificate at once and orders nothing.
    let gw = gateway(&toml).await;
    let st = status(&gw).await;
    assert_eq!(st["source"], "acme", "{st}");
    assert_eq!(presented(tls_addr, name).await, served);
    assert_eq!(st["orders_ok"], 0);
    assert!(
        st["next_attempt"].as_u64() > st["not_after"].as_u64().map(|n| n / 2),
        "{st}"
    );
    let _ = s.dns;
}

#[tokio::test]
async fn tls_alpn01_issues_in_the_handshake() {
    let name = "alpn.weir.test";
    let s = setup(name, None).await;
    let gw = gateway(&acme_config(&s, name, "tls-alpn-01")).await;
    let st = issued(&gw, 1).await;
    assert_eq!(st["source"], "acme");
    let roots = pebble_root(&s.pebble).await;
    let answer = https_get(([127, 0, 0, 1], s.tls).into(), name, roots, "/")
        .await
        .expect("verified handshake");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // An `acme-tls/1` handshake for a name with no order outstanding is refused.
    let tcp = TcpStream::connect(("127.0.0.1", s.tls))
        .await
        .expect("connect");
    let refused = TlsConnector::from(client_config(RootCertStore::empty(), &[b"acme-tls/1"]))
        .connect(ServerName::try_from(name.to_owned()).expect("name"), tcp)
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn renewal_before_expiry_and_a_ca_that_is_down_leaves_the_certificate_serving() {
    let name = "renew.weir.test";
    // Issued for 12 s: renewal is due after 8.
    let mut s = setup(name, Some(12)).await;
    let gw = gateway(&acme_config(&s, name, "http-01")).await;
    let tls_addr: SocketAddr = ([127, 0, 0, 1], s.tls).into();
    let first = issued(&gw, 1).await;
    let before = presented(tls_addr, name).await;
    // A connection opened on the first certificate outlives the swap.
    let roots = pebble_root(&s.pebble).await;
    let tcp = TcpStream::connect(tls_addr).await.expect("connect");
    let mut open = TlsConnector::from(client_config(roots, &[b"http/1.1"]))
        .connect(ServerName::try_from(name.to_owned()).expect("name"), tcp)
        .await
        .expect("verified handshake");
    assert!(get_on(&mut open, name).await.starts_with("HTTP/1.1 200"));
    let renewed = issued(&gw, 2).await;
    assert!(
        renewed["not_after"].as_u64() > first["not_after"].as_u64(),
        "{renewed}"
    );
    let after = presented(tls_addr, name).await;
    assert_ne!(before, after, "a new certificate is in service");
    assert!(
        get_on(&mut open, name).await.starts_with("HTTP/1.1 200"),
        "the connection made before the swap still serves"
    );

    // The CA goes away: the next renewal fails, the error is visible, and the current
    // certificate keeps serving.
    s.pebble.stop();
    let failed = wait_until("a failed renewal", || async {
        let st = status(&gw).await;
        (st["orders_failed"].as_u64() >= Some(1)).then_some(st)
    })
    .await;
    assert!(
        failed["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert!(failed["next_attempt"].as_u64() > failed["last_attempt"].as_u64());
    assert_eq!(presented(tls_addr, name).await, after);
    let m = metrics(&gw).await;
    assert!(
        metric_value(
            &m,
            &format!("weir_acme_orders_total{{name=\"{name}\",result=\"error\"}}")
        ) >= Some(1.0)
    );
}

/// RFC 9773's certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER).
fn ari_id(der: &[u8]) -> String {
    use base64::Engine;
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("x509");
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("AKI");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}",
        b64.encode(aki),
        b64.encode(cert.tbs_certificate.raw_serial())
    )
}

#[tokio::test]
async fn renewal_information_brings_a_renewal_forward_and_names_what_it_replaces() {
    let name = "ari.weir.test";
    // Pebble's default validity (about five years): by lifetime alone nothing is due for years.
    let s = setup(name, None).await;
    let front = weir_testkit::pebble_ari::PebbleAri::start(&s.pebble).await;
    let toml = acme_config(&s, name, "http-01").replace(&s.pebble.directory(), &front.directory());
    let gw = gateway(&toml).await;
    let tls_addr: SocketAddr = ([127, 0, 0, 1], s.tls).into();
    // The CA says of the first certificate that its window has started: renewed at once.
    let st = wait_until("a renewal brought forward by the CA's window", || async {
        let st = status(&gw).await;
        (st["orders_ok"].as_u64() >= Some(2) && !st["renewal_window"].is_null()).then_some(st)
    })
    .await;
    assert_eq!(st["orders_ok"], 2, "{st}");
    let log = front.log();
    assert_eq!(
        log.replaces,
        vec![log.asked[0].clone()],
        "the renewal order names exactly the certificate the CA asked to replace: {log:?}"
    );
    // The new certificate serves, and the CA's window for it (a month out) sets the next
    // renewal — well before two thirds of five years.
    let served = ari_id(&presented(tls_addr, name).await);
    assert_ne!(served, log.asked[0]);
    assert!(log.asked.contains(&served), "{log:?} {served}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let w = &st["renewal_window"];
    let (start, end) = (
        w["start"].as_u64().expect("start"),
        w["end"].as_u64().expect("end"),
    );
    assert!(start > now + 29 * 86_400 && end < now + 32 * 86_400, "{st}");
    assert_eq!(w["explanation_url"], "https://ca.weir.test/why");
    assert_eq!(st["next_attempt_reason"], "renewal information", "{st}");
    let next = st["next_attempt"].as_u64().expect("next");
    assert!((start..=end).contains(&next), "{st}");
    let m = metrics(&gw).await;
    assert_eq!(
        metric_value(
            &m,
            &format!("weir_acme_renewal_window_start_timestamp_seconds{{name=\"{name}\"}}")
        ),
        Some(start as f64)
    );
    // Without ARI (pebble itself) the lifetime rule holds and no window is shown.
    let plain = TempDir::new("acme-plain");
    let gw2 = gateway(
        &acme_config(&s, name, "http-01")
            .replace(
                &s.state.0.display().to_string(),
                &plain.0.display().to_string(),
            )
            .replace(&format!("127.0.0.1:{}", s.tls), "127.0.0.1:0")
            .replace(&format!("127.0.0.1:{}", s.plain), "127.0.0.1:0"),
    )
    .await;
    let st2 = wait_until("the lifetime rule to set the next renewal", || async {
        let st = status(&gw2).await;
        (st["next_attempt_reason"] == "two thirds of lifetime").then_some(st)
    })
    .await;
    assert!(st2["renewal_window"].is_null(), "{st2}");
    assert_eq!(st2["orders_ok"], 1, "{st2}");
}

#[test]
fn weir_check_places_every_acme_mistake() {
    let state = TempDir::new("acme-check");
    let file = state.0.join("not-a-dir");
    std::fs::write(&file, "x").expect("file");
    let bad = format!(
        r#"
[[listeners]]
name = "https"
bind = "127.0.0.1:0"
tls = {{ acme = {{ domains = ["*.wild.example", "no_dots"], directory = "http://ca.example/dir", contact = ["ops@example.com"], state_dir = "{}" }} }}
"#,
        file.display()
    );
    let err = weir_config::parse(&bad, "bad.toml")
        .expect_err("refused")
        .to_string();
    for want in [
        "bad.toml:5:",
        "listeners[0].tls.acme.domains[0]: `*.wild.example`: wildcard names need the dns-01 challenge",
        "listeners[0].tls.acme.domains[1]: `no_dots` is not a DNS name",
        "listeners[0].tls.acme.directory: `http://ca.example/dir` is not an https:// URL",
        "listeners[0].tls.acme.contact[0]: `ops@example.com` is not a mailto: URL",
        "listeners[0].tls.acme.challenge: http-01 is answered on a plain listener, and every listener has TLS",
        "listeners[0].tls.acme.state_dir:",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// A TCP relay handing each connection to the next of `to` in turn; counts per target.
async fn round_robin(at: u16, to: Vec<SocketAddr>) -> Arc<Vec<std::sync::atomic::AtomicUsize>> {
    let counts: Arc<Vec<std::sync::atomic::AtomicUsize>> = Arc::new(
        to.iter()
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", at))
        .await
        .expect("relay");
    let c = counts.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            let i = n % to.len();
            n += 1;
            c[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let target = to[i];
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    counts
}

#[tokio::test]
async fn a_fleet_sharing_redis_is_one_acme_client() {
    let names = [
        "a.fleet.weir.test",
        "b.fleet.weir.test",
        "c.fleet.weir.test",
    ];
    let dns = DnsServer::start().await;
    for n in names {
        dns.set(n, Answer::Records(vec![Rec::Ip([127, 0, 0, 1].into())], 60));
    }
    let redis = weir_testkit::redis::RedisServer::start().await;
    // The CA's validations reach the instances in turn, whichever of them ordered.
    let relay = free_port();
    let pebble = Pebble::start(PebbleOptions {
        http_port: relay,
        tls_port: free_port(),
        dns: dns.addr,
        validity_secs: None,
    })
    .await;
    let origin = numbered_origins(1).await.remove(0);
    let mut plains = Vec::new();
    let mut gateways = Vec::new();
    let mut states = Vec::new();
    let mut tls_addrs = Vec::new();
    let configs: Vec<(u16, u16, TempDir)> = (0..3)
        .map(|i| {
            (
                free_port(),
                free_port(),
                TempDir::new(&format!("acme-fleet-{i}")),
            )
        })
        .collect();
    for (plain, _, _) in &configs {
        plains.push(SocketAddr::from(([127, 0, 0, 1], *plain)));
    }
    let counts = round_robin(relay, plains.clone()).await;
    for (plain, tls, state) in configs {
        let top = format!("[redis]\nurl = \"{}\"", redis.url());
        let toml = instance_config(Instance {
            top: &top,
            plain,
            tls,
            acme: format!(
                r#"domains = {names:?}, directory = "{}", directory_ca = "{}", state_dir = "{}", fleet_key = "a fleet key for the tests""#,
                pebble.directory(),
                pebble.ca_pem_path().display(),
                state.0.display(),
            ),
            origin: origin.addr,
        });
        gateways.push(gateway(&toml).await);
        tls_addrs.push(SocketAddr::from(([127, 0, 0, 1], tls)));
        states.push(state);
    }
    let mut served = Vec::new();
    let (mut ordered, mut adopted) = (0, 0);
    for gw in &gateways {
        let st = wait_until(
            "every instance to serve the fleet's certificate",
            || async {
                let s = status(gw).await;
                (s["source"] == "acme").then_some(s)
            },
        )
        .await;
        ordered += st["orders_ok"].as_u64().expect("orders");
        adopted += st["adopted"].as_u64().expect("adopted");
        assert_eq!(st["fleet"], true);
    }
    assert_eq!(
        (ordered, adopted),
        (1, 2),
        "exactly one order for the fleet"
    );
    let roots = pebble_root(&pebble).await;
    for addr in &tls_addrs {
        for n in names {
            let answer = https_get(*addr, n, roots.clone(), "/")
                .await
                .expect("verified handshake");
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        served.push(presented(*addr, names[0]).await);
    }
    assert!(
        served.windows(2).all(|w| w[0] == w[1]),
        "one certificate for the fleet"
    );
    // The three validations went to more than one instance: not only the one that ordered.
    let reached = counts
        .iter()
        .filter(|c| c.load(std::sync::atomic::Ordering::SeqCst) > 0)
        .count();
    assert!(reached >= 2, "validations reached {reached} instance(s)");
    // What Redis holds is sealed: no PEM in it.
    let (mut conn, keys) = redis_keys(&redis, "*acme:*").await;
    assert!(keys.iter().any(|k| k.contains("acme:cert:")), "{keys:?}");
    for k in keys
        .iter()
        .filter(|k| k.contains("acme:cert:") || k.contains("acme:account:"))
    {
        let v: String = ::redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .expect("get");
        assert!(
            !v.contains("BEGIN") && !v.contains("\"id\""),
            "{k} is stored in the clear"
        );
    }
}
