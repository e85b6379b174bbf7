//! Named policies (`[[policies]]`) that routes apply in order (`routes[].policies`), the
//! consumers identity policies recognise (`[[consumers]]`), and the Redis store shared by
//! the policies that ask for it (`[redis]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;
use crate::secret::Secret;
use crate::units::{ByteSize, Duration};

/// The table of policy kinds, one line each: the `[[policies]]` key, its schema type, and
/// its doc. It is the only list of kinds: it generates [`Policy`]'s fields,
/// [`Policy::kinds`] and [`POLICY_KINDS`] here, the validator's dispatch to each kind's
/// checks, and `weir-policy`'s compiled-kind enum (which invokes this macro with its own
/// callback). Adding a kind is a line here, its schema type, its checks and its
/// `weir-policy` module.
#[macro_export]
macro_rules! policy_kinds {
    ($then:ident) => {
        $then! {
            ip: IpRules => "Allow and deny lists of client addresses.",
            rate_limit: RateLimit => "A rate limit.",
            concurrency: ConcurrencyLimit => "A limit on requests in flight at once per key.",
            jwt: Jwt => "JSON Web Tokens.",
            api_key: ApiKey => "API keys of `[[consumers]]`.",
            basic_auth: BasicAuth => "HTTP basic authentication.",
            ext_auth: ExtAuth => "Ask an external service (forward auth).",
            idempotency: Idempotency => "`Idempotency-Key` enforcement and replay.",
            cors: Cors => "Cross-origin resource sharing.",
            headers: HeaderOps => "Request and response header operations.",
        }
    };
}

macro_rules! policy_struct {
    ($($key:ident: $ty:ident => $doc:literal,)*) => {
        /// One named policy; exactly one of its kinds is set.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Policy {
            /// Unique name, used by routes, logs and metrics.
            pub name: String,
            $(
                #[doc = $doc]
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $key: Option<$ty>,
            )*
        }

        /// Every policy kind's key, in table order.
        pub const POLICY_KINDS: &[&str] = &[$(stringify!($key)),*];

        impl Policy {
            /// The names of the kinds this policy sets (validation wants exactly one).
            pub fn kinds(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(
                    if self.$key.is_some() {
                        out.push(stringify!($key));
                    }
                )*
                out
            }
        }
    };
}

policy_kinds!(policy_struct);

impl Policy {
    /// Where this policy reads credentials from: its JWT and API-key token sources.
    fn credential_sources(&self) -> impl Iterator<Item = &TokenSource> {
        let jwt = self.jwt.iter().flat_map(|j| j.token_from.iter());
        let keys = self.api_key.iter().flat_map(|k| k.key_from.iter());
        jwt.chain(keys)
    }

    /// Headers this policy reads a credential from (`header:NAME` token sources), lowercase.
    pub fn header_credentials(&self) -> impl Iterator<Item = &str> {
        self.credential_sources().filter_map(|s| match s {
            TokenSource::Header(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The query parameters this policy reads a credential from (`query:NAME` sources).
    pub fn query_credentials(&self) -> impl Iterator<Item = &str> {
        self.credential_sources().filter_map(|s| match s {
            TokenSource::Query(name) => Some(name.as_str()),
            _ => None,
        })
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
