//! `[[listeners]]`: sockets, TLS and client certificates, the https redirect and HSTS, and
//! forward (egress) proxy listeners.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{defaults, Addr, Cidr, IpRules};
use crate::units::Duration;

/// A socket Weir listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used by routes and in logs.
    pub name: String,
    /// Address and port, e.g. `"0.0.0.0:8080"` or `"[::1]:8080"`.
    pub bind: Addr,
    /// Overrides `server.max_connections` for this listener.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// `"reverse"` (the default: routes decide) or `"forward"`: an egress proxy for CONNECT
    /// tunnels and absolute-form requests, to destinations in `forward.allow` only.
    #[serde(default)]
    pub mode: ListenerMode,
    /// Forward-proxy settings (`mode = "forward"`).
    #[serde(default)]
    pub forward: Option<ForwardProxy>,
    /// Expect a PROXY protocol header (v1 or v2) at the start of every connection and take the
    /// client address from it. Connections without one are closed. Enable only behind a load
    /// balancer that always sends it.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Answer every request with a 308 redirect to the same URL over https (a plaintext
    /// listener in front of a TLS one).
    #[serde(default)]
    pub redirect_https: Option<RedirectHttps>,
    /// `Strict-Transport-Security` value added to every response of a TLS listener, e.g.
    /// `"max-age=31536000; includeSubDomains"`.
    #[serde(default)]
    pub hsts: Option<String>,
    /// Client-address rules for every request on this listener (403 `ip_denied`), checked
    /// before routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpRules>,
}

/// What a listener is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerMode {
    /// A reverse proxy: routes decide.
    #[default]
    Reverse,
    /// A forward (egress) proxy.
    Forward,
}

/// A forward proxy's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardProxy {
    /// Destinations allowed, as `HOST:PORT` patterns: `"api.example.com:443"`,
    /// `"*.example.com:443"` (any subdomain), `"*:80"`, `"10.0.0.5:*"`. Everything else is
    /// denied.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Internal addresses a destination may resolve to (CIDRs). Loopback, link-local,
    /// private (RFC 1918, CGNAT), ULA, multicast, reserved and unspecified addresses are
    /// refused after resolution unless one of these contains them, whatever `allow` says.
    #[serde(default)]
    pub allow_private: Vec<Cidr>,
    /// Connecting to a destination.
    #[serde(default = "defaults::forward_connect_timeout")]
    pub connect_timeout: Duration,
    /// A tunnel with no bytes either way for this long is closed.
    #[serde(default = "defaults::forward_tunnel_idle")]
    pub tunnel_idle: Duration,
}

/// A forward-proxy destination pattern, parsed: host (`None` = any), whether it is a
/// `*.` suffix, and port (`None` = any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationPattern {
    /// Lowercase host, or the suffix after `*.`; `None` for `*`.
    pub host: Option<String>,
    /// The host was `*.suffix`.
    pub subdomains: bool,
    /// The port, `None` for `*`.
    pub port: Option<u16>,
}

/// Parses `HOST:PORT` with `*` wildcards (see [`ForwardProxy::allow`]).
pub fn parse_destination_pattern(p: &str) -> Result<DestinationPattern, String> {
    let bad = |why: &str| {
        format!("invalid destination `{p}`: {why}; expected HOST:PORT like \"*.example.com:443\"")
    };
    let (host, port) = p.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
    let port = match port {
        "*" => None,
        n => Some(
            n.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("bad port"))?,
        ),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let (host, subdomains) = match host.as_str() {
        "*" => (None, false),
        h => match h.strip_prefix("*.") {
            Some(suffix) => (Some(suffix.to_owned()), true),
            None => (Some(h.to_owned()), false),
        },
    };
    if let Some(h) = &host {
        let ok = !h.is_empty()
            && !h.contains('*')
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
        if !ok {
            return Err(bad("bad host"));
        }
    }
    Ok(DestinationPattern {
        host,
        subdomains,
        port,
    })
}

impl DestinationPattern {
    /// Whether `host:port` (host lowercase, IPv6 without brackets) matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.host {
            None => true,
            Some(h) if self.subdomains => host
                .strip_suffix(h.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            Some(h) => h == host,
        }
    }
}

/// TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates; the one for a connection is chosen by SNI against each certificate's
    /// names (wildcards included); the first is the default. Optional with `acme`.
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// A certificate from an ACME CA for the names no file covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<super::Acme>,
    /// Oldest TLS version accepted: `"1.2"` (the default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`); when false only `http/1.1`.
    #[serde(default = "defaults::yes")]
    pub http2: bool,
    /// PEM bundle of CAs that client certificates must chain to (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: `"required"` (the default) or `"optional"`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// With `client_ca`: the header that carries the verified client certificate's subject to
    /// the upstream. Always removed from client requests.
    #[serde(default)]
    pub client_subject_header: Option<String>,
    /// How often certificate and key files are checked for changes.
    #[serde(default = "defaults::tls_reload_interval")]
    pub reload_interval: Duration,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFiles {
    /// PEM file: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Whether a client certificate is required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Connections without a valid client certificate are refused.
    #[default]
    Required,
    /// A client certificate is verified when presented; connections without one are served.
    Optional,
}

/// Redirect plaintext requests to https.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    /// Port of the https URL (443 is left out of the URL).
    #[serde(default = "defaults::https_port")]
    pub port: u16,
}
