//! TLS termination with rustls (aws-lc-rs provider): certificates chosen by SNI — exact names,
//! then wildcards, then the first certificate as the default — ALPN `h2` / `http/1.1`, TLS 1.2
//! and 1.3 (or 1.3 only), optional client certificates (mTLS), and certificate files reloaded
//! when they change without touching open connections. A bad new file is refused and logged;
//! the certificate already loaded keeps serving.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use weir_config::{ClientAuth, ListenerTls, TlsVersion};

use crate::edge::counters::ListenerCounters;

/// Why a listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file is unreadable or invalid.
    #[error("{0}")]
    Files(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA bundle could not be used.
    #[error("client_ca: {0}")]
    ClientCa(String),
}

/// One loaded certificate with the names it serves.
#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// Lowercase DNS names from the certificate (SANs, else the CN); `*.x` for wildcards.
    names: Vec<String>,
}

/// Chooses a certificate by SNI: the files' certificates first, then the ACME-managed one for
/// its names; a TLS-ALPN-01 validation handshake gets its challenge certificate.
#[derive(Debug)]
struct SniResolver {
    entries: ArcSwap<Vec<Entry>>,
    acme: Option<Arc<crate::acme::ManagedCert>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello
            .alpn()
            .is_some_and(|mut p| p.any(|p| p == crate::acme::ACME_TLS_ALPN));
        if validation {
            // Only for a name with an order outstanding; anything else fails the handshake.
            let sni = hello.server_name()?.to_ascii_lowercase();
            return crate::acme::challenges().tls_alpn01(&sni);
        }
        let entries = self.entries.load();
        if let Some(sni) = hello.server_name() {
            let sni = sni.to_ascii_lowercase();
            if let Some(e) = entries.iter().find(|e| e.names.contains(&sni)) {
                return Some(e.key.clone());
            }
            // A wildcard covers exactly one label (RFC 6125 §6.4.3).
            if let Some((_, parent)) = sni.split_once('.') {
                let wildcard = format!("*.{parent}");
                if let Some(e) = entries.iter().find(|e| e.names.contains(&wildcard)) {
                    return Some(e.key.clone());
                }
            }
            if let Some(m) = self.acme.as_ref().filter(|m| m.domains().contains(&sni)) {
                return Some(m.current());
            }
        }
        entries
            .first()
            .map(|e| e.key.clone())
            .or_else(|| self.acme.as_ref().map(|m| m.current()))
    }
}

/// A TLS listener's acceptor and what keeps its certificates fresh.
pub(crate) struct TlsListener {
    pub(crate) acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    files: Vec<(PathBuf, PathBuf)>,
    pub(crate) provider: Arc<CryptoProvider>,
    /// The listener's counters (handshake and reload errors).
    pub(crate) counters: Arc<ListenerCounters>,
}

impl TlsListener {
    pub(crate) fn new(
        cfg: &ListenerTls,
        redis: Option<&weir_config::Redis>,
        counters: Arc<ListenerCounters>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let files: Vec<(PathBuf, PathBuf)> = cfg
            .certificates
            .iter()
            .map(|c| (c.cert.clone(), c.key.clone()))
            .collect();
        let entries = load_all(&files, &provider).map_err(TlsError::Files)?;
        let acme = cfg
            .acme
            .as_ref()
            .map(|a| crate::acme::ManagedCert::load(a, redis, &provider).map(Arc::new))
            .transpose()
            .map_err(TlsError::Files)?;
        let resolver = Arc::new(SniResolver {
            entries: ArcSwap::from_pointee(entries),
            acme,
        });
        let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = match &cfg.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in weir_config::pem::load_certs(ca).map_err(TlsError::ClientCa)? {
                    roots
                        .add(cert)
                        .map_err(|e| TlsError::ClientCa(e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = match cfg.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::ClientCa(e.to_string()))?,
                )
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = if cfg.http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        // Offered last: only a validation client asks for it (and only for it).
        if cfg
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == weir_config::AcmeChallenge::TlsAlpn01)
        {
            config
                .alpn_protocols
                .push(crate::acme::ACME_TLS_ALPN.to_vec());
        }
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
            provider,
            counters,
        })
    }

    /// The ACME-managed certificate, when the listener has one.
    pub(crate) fn acme(&self) -> Option<&Arc<crate::acme::ManagedCert>> {
        self.resolver.acme.as_ref()
    }

    /// Watches the certificate and key files every `interval` and swaps in new certificates
    /// when they change and load cleanly.
    pub(crate) async fn watch(
        self: Arc<Self>,
        name: Arc<str>,
        interval: std::time::Duration,
        stop: CancellationToken,
    ) {
        let mut seen = self.mtimes();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let now = self.mtimes();
            if now == seen {
                continue;
            }
            seen = now;
            match load_all(&self.files, &self.provider) {
                Ok(entries) => {
                    self.resolver.entries.store(Arc::new(entries));
                    tracing::info!(listener = %name, "TLS certificates reloaded");
                }
                Err(e) => {
                    self.counters
                        .tls_reload_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(listener = %name, error = %e, "new TLS certificate refused; the previous one keeps serving");
                }
            }
        }
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        self.files
            .iter()
            .flat_map(|(c, k)| [c, k])
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

fn load_all(files: &[(PathBuf, PathBuf)], provider: &CryptoProvider) -> Result<Vec<Entry>, String> {
    files
        .iter()
        .map(|(cert, key)| {
            let (key, names) = super::certs::load_certified(cert, key, provider)?;
            Ok(Entry { key, names })
        })
        .collect()
}

/// The subject of a verified client certificate, as an RFC 4514 string: the RDNs last to
/// first, `+` between the attributes of one RDN, and every special character escaped, so a CN
/// of `alice, O=Admins` reads as one CN upstream and never as another attribute.
/// What a finished handshake negotiated, for the access log.
pub(crate) fn session(conn: &rustls::ServerConnection) -> weir_core::TlsSession {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown");
    weir_core::TlsSession {
        version,
        cipher,
        sni: conn.server_name().map(Arc::from),
    }
}

pub(crate) fn client_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(rfc4514(cert.subject()))
}

fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::asn1_rs::ToDer;
    let rdns: Vec<&x509_parser::x509::RelativeDistinguishedName<'_>> = name.iter().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            out.push_str(attribute_name(&oid).unwrap_or(&oid));
            out.push('=');
            match attr.as_str() {
                Ok(value) => escape_rfc4514(value, &mut out),
                // Not a string type: `#` and the hex of its BER encoding (§2.4).
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().to_der_vec().unwrap_or_default() {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    out
}

/// The short names RFC 4514 §3 lists; other attributes are written as dotted OIDs.
fn attribute_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 §2.4: `"`, `+`, `,`, `;`, `<`, `>` and `\` escaped everywhere, a leading `#` or
/// space and a trailing space escaped, NUL and other control characters as `\XX`.
fn escape_rfc4514(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_rfc4514;

    #[test]
    fn rfc4514_escapes_specials_and_edge_spaces() {
        let e = |v: &str| {
            let mut out = String::new();
            escape_rfc4514(v, &mut out);
            out
        };
        assert_eq!(e("alice"), "alice");
        assert_eq!(e("a,b+c;d<e>f\"g\\h"), "a\\,b\\+c\\;d\\<e\\>f\\\"g\\\\h");
        assert_eq!(e("#x#"), "\\#x#");
        assert_eq!(e(" a b "), "\\ a b\\ ");
        assert_eq!(e("nul\0"), "nul\\00");
        assert_eq!(e("Zoë"), "Zoë");
    }
}
