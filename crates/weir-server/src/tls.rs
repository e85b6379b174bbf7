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

use crate::listener::ListenerCounters;

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

/// Chooses a certificate by SNI.
#[derive(Debug)]
struct SniResolver {
    entries: ArcSwap<Vec<Entry>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
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
        }
        entries.first().map(|e| e.key.clone())
    }
}

/// A TLS listener's acceptor and what keeps its certificates fresh.
pub(crate) struct TlsListener {
    pub(crate) acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    files: Vec<(PathBuf, PathBuf)>,
    provider: Arc<CryptoProvider>,
    /// The listener's counters (handshake and reload errors).
    pub(crate) counters: Arc<ListenerCounters>,
}

impl TlsListener {
    pub(crate) fn new(
        cfg: &ListenerTls,
        counters: Arc<ListenerCounters>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let files: Vec<(PathBuf, PathBuf)> = cfg
            .certificates
            .iter()
            .map(|c| (c.cert.clone(), c.key.clone()))
            .collect();
        let entries = load_all(&files, &provider).map_err(TlsError::Files)?;
        let resolver = Arc::new(SniResolver {
            entries: ArcSwap::from_pointee(entries),
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
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            files,
            provider,
            counters,
        })
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
            let chain = weir_config::pem::load_certs(cert)?;
            let key_der = weir_config::pem::load_key(key)?;
            let signing = provider
                .key_provider
                .load_private_key(key_der)
                .map_err(|e| format!("`{}`: {e}", key.display()))?;
            let names = chain
                .first()
                .map(|leaf| dns_names(leaf))
                .unwrap_or_default();
            let certified = CertifiedKey::new(chain, signing);
            certified.keys_match().map_err(|e| {
                format!(
                    "`{}` does not match `{}`: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
            Ok(Entry {
                key: Arc::new(certified),
                names,
            })
        })
        .collect()
}

/// The DNS names a certificate is for: its subjectAltName DNS entries, else its common name.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}

/// The subject of a verified client certificate, as an RFC 4514 string.
pub(crate) fn client_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}
