//! Identity policies: JWT, API keys, basic auth, external authorization, and where credentials
//! are read from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::units::Duration;

use super::limits::default_true;

/// Where a credential is read from: `header:NAME`, `cookie:NAME` or `query:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer …` when the header is `authorization`, else the header's value.
    Header(String),
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

impl std::str::FromStr for TokenSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("`{s}` is not a token source: use header:NAME, cookie:NAME or query:NAME");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "header" if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Ok(Self::Header(name.to_ascii_lowercase()))
            }
            "cookie" => Ok(Self::Cookie(name.to_owned())),
            "query" => Ok(Self::Query(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Cookie(c) => write!(f, "cookie:{c}"),
            Self::Query(q) => write!(f, "query:{q}"),
        }
    }
}

impl<'de> Deserialize<'de> for TokenSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<TokenSource>::new(
            "header:NAME, cookie:NAME or query:NAME",
        ))
    }
}

crate::units::serialize_as_text!(TokenSource);

fn default_token_from() -> Vec<TokenSource> {
    vec![TokenSource::Header("authorization".to_owned())]
}

/// JWT verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// Algorithms accepted (`none` never is; HMAC and public-key algorithms cannot share a
    /// key).
    pub algorithms: Vec<String>,
    /// Inline keys.
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// A JWKS document's URL (`http://` or `https://`), fetched through Weir's upstream
    /// client, cached per its `Cache-Control`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// TLS to an `https://` JWKS URL: a CA bundle, SNI, a client certificate (the same keys
    /// as an upstream's `tls`); default the system's roots.
    #[serde(default)]
    pub jwks_tls: Option<crate::schema::UpstreamTls>,
    /// How long a JWKS document is kept when it says nothing of its own.
    #[serde(default = "defaults_jwt::jwks_cache")]
    pub jwks_cache: Duration,
    /// An unknown `kid` triggers a refresh at most this often.
    #[serde(default = "defaults_jwt::jwks_min_refresh")]
    pub jwks_min_refresh: Duration,
    /// Fetching the JWKS document.
    #[serde(default = "defaults_jwt::jwks_timeout")]
    pub jwks_timeout: Duration,
    /// Accepted `iss` values (any when empty).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values; the token must name one (any when empty).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "defaults_jwt::leeway")]
    pub leeway: Duration,
    /// Claims that must be present (`exp` always is).
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Claim rules: a token that fails one is answered 403.
    #[serde(default)]
    pub rules: Vec<ClaimRule>,
    /// Where the token is read, in order.
    #[serde(default = "default_token_from")]
    pub token_from: Vec<TokenSource>,
    /// Claims forwarded to the upstream as headers: `{ sub = "x-user-id" }`. Those headers
    /// are always removed from the client's request first.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// The claim that names the consumer (the request's identity).
    #[serde(default = "defaults_jwt::consumer_claim")]
    pub consumer_claim: String,
}

/// A JWT verification key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Matched against the token's `kid` (a key without one serves tokens without one).
    #[serde(default)]
    pub kid: Option<String>,
    /// An HMAC secret (HS256/384/512).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A PEM public key (RSA, EC or Ed25519).
    #[serde(default)]
    pub pem: Option<Secret>,
}

/// A condition on a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    /// The claim.
    pub claim: String,
    /// The claim equals this string.
    #[serde(default)]
    pub equals: Option<String>,
    /// The claim (an array, or a space-separated string like OAuth's `scope`) contains this.
    #[serde(default)]
    pub contains: Option<String>,
}

mod defaults_jwt {
    use crate::units::Duration;
    pub fn jwks_cache() -> Duration {
        Duration::from_secs(600)
    }
    pub fn jwks_min_refresh() -> Duration {
        Duration::from_secs(30)
    }
    pub fn jwks_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn leeway() -> Duration {
        Duration::from_secs(30)
    }
    pub fn consumer_claim() -> String {
        "sub".to_owned()
    }
}

/// API keys of `[[consumers]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Where the key is read, in order (default `header:x-api-key`).
    #[serde(default = "default_api_key_from")]
    pub key_from: Vec<TokenSource>,
    /// The header that carries the consumer's name upstream (always removed from the
    /// client's request first).
    #[serde(default)]
    pub consumer_header: Option<String>,
    /// Remove the key from the request before it goes upstream.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
}

fn default_api_key_from() -> Vec<TokenSource> {
    vec![TokenSource::Header("x-api-key".to_owned())]
}

/// HTTP basic authentication against `users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// User name → argon2 (`$argon2id$…`) or bcrypt (`$2b$…`) hash. The user name becomes
    /// the consumer.
    pub users: BTreeMap<String, Secret>,
    /// The header that carries the user name upstream (always removed from the client's
    /// request first).
    #[serde(default)]
    pub consumer_header: Option<String>,
}

fn default_realm() -> String {
    "weir".to_owned()
}

/// What ext-auth does when the auth service cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Answer 503 (the default: fail closed).
    #[default]
    Deny,
    /// Let the request through.
    Allow,
}

/// External authorization (forward auth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtAuth {
    /// The auth service: an `http://` or `https://` URL, asked with `GET` at that URL; the
    /// original method and path travel in `X-Forwarded-Method` and `X-Forwarded-Uri`.
    pub url: String,
    /// Request headers sent to the auth service (besides `X-Forwarded-Method`,
    /// `X-Forwarded-Uri`, `X-Forwarded-For`, `X-Forwarded-Host`, `X-Request-Id`).
    #[serde(default = "default_ext_auth_headers")]
    pub request_headers: Vec<String>,
    /// Headers of an admitting (2xx) answer copied onto the upstream request (replacing
    /// any the client sent).
    #[serde(default)]
    pub upstream_headers: Vec<String>,
    /// Time the auth service has to answer.
    #[serde(default = "default_ext_auth_timeout")]
    pub timeout: Duration,
    /// When it does not answer in time or fails: `deny` (503) or `allow`.
    #[serde(default)]
    pub on_error: FailureMode,
    /// TLS to an `https://` auth service: a CA bundle, SNI, a client certificate (the same
    /// keys as an upstream's `tls`); default the system's roots.
    #[serde(default)]
    pub tls: Option<crate::schema::UpstreamTls>,
}

fn default_ext_auth_headers() -> Vec<String> {
    vec!["authorization".to_owned(), "cookie".to_owned()]
}

fn default_ext_auth_timeout() -> Duration {
    Duration::from_secs(2)
}
