//! Named policies (`[[policies]]`) that routes apply in order (`routes[].policies`), the
//! consumers identity policies recognise (`[[consumers]]`), and the Redis store shared by
//! the policies that ask for it (`[redis]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Cidr;
use crate::secret::Secret;
use crate::units::{ByteSize, Duration};

/// One named policy; exactly one of its kinds is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique name, used by routes, logs and metrics.
    pub name: String,
    /// Allow and deny lists of client addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpRules>,
    /// A rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// A limit on requests in flight at once per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyLimit>,
    /// JSON Web Tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// API keys of `[[consumers]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
    /// HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Ask an external service (forward auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuth>,
    /// `Idempotency-Key` enforcement and replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<Idempotency>,
    /// Cross-origin resource sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Request and response header operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderOps>,
}

impl Policy {
    /// The names of the kinds this policy sets (validation wants exactly one).
    /// The query parameters this policy reads a credential from (`query:NAME` sources).
    pub fn query_credentials(&self) -> impl Iterator<Item = &str> {
        let jwt = self.jwt.iter().flat_map(|j| j.token_from.iter());
        let keys = self.api_key.iter().flat_map(|k| k.key_from.iter());
        jwt.chain(keys).filter_map(|s| match s {
            TokenSource::Query(name) => Some(name.as_str()),
            _ => None,
        })
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let set = [
            ("ip", self.ip.is_some()),
            ("rate_limit", self.rate_limit.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("jwt", self.jwt.is_some()),
            ("api_key", self.api_key.is_some()),
            ("basic_auth", self.basic_auth.is_some()),
            ("ext_auth", self.ext_auth.is_some()),
            ("idempotency", self.idempotency.is_some()),
            ("cors", self.cors.is_some()),
            ("headers", self.headers.is_some()),
        ];
        for (name, on) in set {
            if on {
                out.push(name);
            }
        }
        out
    }
}

/// Client-address rules. A request from a denied address, or — when `allow` is not empty —
/// from an address it does not contain, is answered 403.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    /// Addresses allowed (all when empty).
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Addresses refused; wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

/// Where a policy keeps its shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process (the default).
    #[default]
    Memory,
    /// In the `[redis]` server, shared by every Weir instance that uses it.
    Redis,
}

/// What a Redis-backed policy does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Let the request through (the default: a limiter outage is no site outage).
    #[default]
    Allow,
    /// Answer 503 `policy_store_unavailable`.
    Deny,
    /// Decide with this instance's in-memory state (rate and concurrency limits).
    Local,
}

/// A rate limit: `limit` requests per `period` for each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `token_bucket`, `fixed_window`, `sliding_window` or `gcra`.
    #[serde(default)]
    pub algorithm: RateAlgorithm,
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: Duration,
    /// Bucket size for `token_bucket` and `gcra` (default: `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// What is limited: one of `client_ip` (default), `route`, `consumer`, `header:NAME`,
    /// `claim:NAME`, or a list of them (a composite key).
    #[serde(default)]
    pub key: RateKeys,
    /// IPv6 clients are keyed by this prefix of their address (one /64 is usually one
    /// household or host).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Distinct keys tracked at most in memory (idle ones are forgotten first).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Add `RateLimit-Policy` and `RateLimit` fields to admitted responses too (429s always
    /// carry them).
    #[serde(default = "default_true")]
    pub headers: bool,
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// With `store = "redis"`: what to do when Redis fails.
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

fn default_max_keys() -> usize {
    1_000_000
}

fn default_ipv6_prefix() -> u8 {
    64
}

fn default_true() -> bool {
    true
}

/// A rate-limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateAlgorithm {
    /// Continuous refill up to the burst.
    TokenBucket,
    /// Counts per clock-aligned window.
    FixedWindow,
    /// Weighted previous + current window.
    SlidingWindow,
    /// Generic cell rate algorithm (the default).
    #[default]
    Gcra,
}

/// What a rate limit (or concurrency limit) counts by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateKey {
    /// The client address (after trusted proxies; IPv6 by prefix).
    #[default]
    ClientIp,
    /// One counter for the whole route.
    Route,
    /// The consumer an identity policy earlier in the chain recognised.
    Consumer,
    /// A request header's value (requests without it share one counter).
    Header(String),
    /// A claim of the JWT an earlier `jwt` policy verified.
    Claim(String),
}

impl std::str::FromStr for RateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client_ip" => Ok(Self::ClientIp),
            "route" => Ok(Self::Route),
            "consumer" => Ok(Self::Consumer),
            _ => {
                if let Some(h) = s.strip_prefix("header:") {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_ok() {
                        return Ok(Self::Header(h.to_ascii_lowercase()));
                    }
                }
                if let Some(c) = s.strip_prefix("claim:") {
                    if !c.is_empty() {
                        return Ok(Self::Claim(c.to_owned()));
                    }
                }
                Err(format!(
                    "`{s}` is not a key: use client_ip, route, consumer, header:NAME or claim:NAME"
                ))
            }
        }
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientIp => f.write_str("client_ip"),
            Self::Route => f.write_str("route"),
            Self::Consumer => f.write_str("consumer"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Claim(c) => write!(f, "claim:{c}"),
        }
    }
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<RateKey>::new(
            "client_ip, route, consumer, header:NAME or claim:NAME",
        ))
    }
}

crate::units::serialize_as_text!(RateKey);

/// One key or a composite of several (`["consumer", "header:x-tenant"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateKeys(pub Vec<RateKey>);

impl Default for RateKeys {
    fn default() -> Self {
        Self(vec![RateKey::ClientIp])
    }
}

impl std::fmt::Display for RateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            k.fmt(f)?;
        }
        Ok(())
    }
}

impl Serialize for RateKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let [one] = self.0.as_slice() {
            one.serialize(s)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for RateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RateKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a key (client_ip, route, consumer, header:NAME, claim:NAME) or a list of keys",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RateKeys, E> {
                v.parse().map(|k| RateKeys(vec![k])).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RateKeys, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = a.next_element::<RateKey>()? {
                    out.push(k);
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom(
                        "a composite key needs at least one part",
                    ));
                }
                Ok(RateKeys(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// At most `limit` requests of one key in flight at once; more are answered 429 at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    /// Requests in flight at once per key.
    pub limit: u64,
    /// What is limited (as for `rate_limit.key`; default `client_ip`).
    #[serde(default)]
    pub key: RateKeys,
    /// As for `rate_limit.ipv6_prefix`.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// `memory` (default: per instance) or `redis` (one count shared by every instance).
    #[serde(default)]
    pub store: StoreKind,
    /// With `store = "redis"`: how long a slot stays taken without word from its instance; a
    /// request in flight renews its slot every third of this, so only a crashed instance's
    /// slots wait this long to come free.
    #[serde(default = "default_lease")]
    pub lease: Duration,
    /// With `store = "redis"`: what to do when Redis fails (`local`: count in this instance).
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

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

/// `Idempotency-Key` handling (draft-ietf-httpapi-idempotency-key-header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idempotency {
    /// Methods it applies to.
    #[serde(default = "default_idempotency_methods")]
    pub methods: Vec<String>,
    /// Requests without a key are answered 400.
    #[serde(default)]
    pub required: bool,
    /// The header carrying the key.
    #[serde(default = "default_idempotency_header")]
    pub header: String,
    /// How long a stored response is replayed.
    #[serde(default = "default_idempotency_ttl")]
    pub ttl: Duration,
    /// How long a key stays locked by a request in flight (its lock expires if the instance
    /// handling it dies).
    #[serde(default = "default_idempotency_lock")]
    pub lock_ttl: Duration,
    /// Request headers that are part of the fingerprint (with method, path and body digest).
    #[serde(default)]
    pub fingerprint_headers: Vec<String>,
    /// Largest request body fingerprinted (larger gets 413) and largest response body
    /// stored (larger is passed through and the key released).
    #[serde(default = "default_idempotency_max_body")]
    pub max_body: ByteSize,
    /// Response statuses stored: classes (`"2xx"`) or codes (`"409"`).
    #[serde(default = "default_idempotency_statuses")]
    pub statuses: Vec<String>,
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// With `store = "redis"`: `allow` (forward without idempotency) or `deny` (503).
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// Keys of different consumers never collide (the consumer is part of the key).
    #[serde(default = "default_true")]
    pub per_consumer: bool,
}

fn default_idempotency_methods() -> Vec<String> {
    vec!["POST".to_owned(), "PATCH".to_owned()]
}
fn default_idempotency_header() -> String {
    "idempotency-key".to_owned()
}
fn default_idempotency_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_idempotency_lock() -> Duration {
    Duration::from_secs(60)
}
fn default_idempotency_max_body() -> ByteSize {
    ByteSize::mib(1)
}
fn default_idempotency_statuses() -> Vec<String> {
    vec!["2xx".to_owned(), "4xx".to_owned()]
}

/// CORS per the Fetch standard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Origins allowed: exact (`https://app.example.com`), a pattern with one `*` label
    /// (`https://*.example.com`), or `*` (any; not with credentials).
    pub allow_origins: Vec<String>,
    /// Methods a preflight allows.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight allows (`*` allows any, without credentials).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers scripts may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow credentials (cookies, HTTP auth).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight.
    #[serde(default)]
    pub max_age: Option<Duration>,
}

fn default_cors_methods() -> Vec<String> {
    ["GET", "HEAD", "POST"].map(str::to_owned).to_vec()
}

/// Header operations on the request (before it goes upstream) and the response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// On the request.
    #[serde(default)]
    pub request: HeaderEdit,
    /// On the response.
    #[serde(default)]
    pub response: HeaderEdit,
}

/// `remove`, then `set`, then `add`. Values may use `$client_ip`, `$request_id`, `$route`,
/// `$consumer`, `$host`, `$method`, `$path`, `${claim.NAME}`; `$$` is a literal `$`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdit {
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Headers replaced (or added).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers appended (kept beside existing ones).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// A consumer of the API: a name, metadata, and its credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Unique name: the request's identity in logs, keys and headers.
    pub name: String,
    /// Free-form metadata, forwarded nowhere by default; `$consumer` names the consumer.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// API keys: `sha256:HEX` digests (preferred: the key itself is never in the file), or
    /// the key itself (e.g. from `"${ENV}"`), hashed when loaded.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// A file of more keys, one per line in the same forms; `#` starts a comment.
    #[serde(default)]
    pub api_keys_file: Option<std::path::PathBuf>,
}

/// The Redis server policies with `store = "redis"` share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// `redis://[:password@]host:port[/db]`.
    pub url: Secret,
    /// Time one operation (a connect included) may take before `on_store_error` applies.
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
    /// Prefix of every key Weir writes.
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_prefix() -> String {
    "weir:".to_owned()
}
