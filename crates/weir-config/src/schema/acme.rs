//! `tls.acme` on a listener: certificates from an ACME CA (RFC 8555), issued and renewed by
//! Weir itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a listener's certificates come from when no files name them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The names the certificate is for (the first names it in the state directory).
    pub domains: Vec<String>,
    /// The CA's ACME directory URL.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// Contact URLs for the account (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// How the CA checks Weir answers for the domains.
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Where the account key and the certificates are kept (created 0700, files 0600).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// A PEM bundle of CAs to trust for the directory's own HTTPS (a private CA's ACME
    /// endpoint, such as step-ca or a test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_ca: Option<PathBuf>,
    /// External account binding, for CAs that require one (ZeroSSL, most private CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eab: Option<Eab>,
    /// With `[redis]`: the fleet is one ACME client, and what it shares in Redis (the account,
    /// the certificates, challenge certificates) is encrypted under a key derived from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_key: Option<crate::Secret>,
}

/// The ACME challenge Weir answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeChallenge {
    /// `http://DOMAIN/.well-known/acme-challenge/TOKEN` on a plain listener (port 80).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` on this listener (port 443), RFC 8737.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The name ACME gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// External account binding credentials (RFC 8555 §7.3.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eab {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The MAC key the CA gave, base64url.
    pub hmac: crate::Secret,
}

fn default_directory() -> String {
    "https://acme-v02.api.letsencrypt.org/directory".to_owned()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/weir/acme")
}
