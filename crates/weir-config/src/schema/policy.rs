//! Named policies (`[[policies]]`) that routes apply in order (`routes[].policies`), the
//! consumers identity policies recognise (`[[consumers]]`), and the Redis store shared by
//! the policies that ask for it (`[redis]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;
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
