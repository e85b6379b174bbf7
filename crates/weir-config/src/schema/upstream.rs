//! Upstream pools: endpoints and weights, the balancer, health checks (active and passive),
//! the circuit breaker, concurrency caps, retries and timeouts.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{CircuitBreaker, Discovery, Health, Retry, RetryOn, StatusRange};
use crate::units::Duration;

/// A named pool of endpoints that `proxy` routes send requests to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Unique name, used by routes.
    pub name: String,
    /// Endpoints: `"host:port"` or `{ address = "host:port", weight = 3 }`. Host names are
    /// resolved when connecting. May be empty: requests are then answered 503 (as by an Envoy
    /// cluster with no endpoints).
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// Where more endpoints come from, kept current while Weir runs: `dns`, `etcd` or
    /// `file` (one per upstream). Absent: only `endpoints`.
    #[serde(default)]
    pub discovery: Option<Discovery>,
    /// How an endpoint is chosen for each request.
    #[serde(default)]
    pub balance: Balance,
    /// `consistent_hash` only: the table, `"ring"` (ketama) or `"maglev"`.
    #[serde(default)]
    pub hash: HashTable,
    /// `consistent_hash` only: what to hash — `"client_ip"`, `"path"`, `"header:NAME"`,
    /// `"cookie:NAME"` or `"query:NAME"`.
    #[serde(default)]
    pub hash_key: HashKey,
    /// A recovered or added endpoint's share ramps up linearly over this window; `"0"` (the
    /// default) turns slow start off.
    #[serde(default)]
    pub slow_start: Duration,
    /// Sticky sessions: Weir sets a signed cookie naming the endpoint, and later requests
    /// carrying it go back there while it is healthy.
    #[serde(default)]
    pub sticky: Option<Sticky>,
    /// When fewer than this percentage of endpoints are healthy, traffic is spread over all
    /// of them rather than overload the few (Envoy's panic threshold). `0` disables.
    #[serde(default = "defaults::panic_threshold")]
    pub panic_threshold: u8,
    /// Health checking.
    #[serde(default)]
    pub health: Health,
    /// The circuit breaker; absent means none.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Most requests in flight to this upstream at once; `0` (the default) means no cap.
    #[serde(default)]
    pub max_in_flight: usize,
    /// Where requests wait when `max_in_flight` is reached.
    #[serde(default)]
    pub queue: Queue,
    /// Retries.
    #[serde(default)]
    pub retry: Retry,
    /// Protocol spoken to the endpoints: `"http1"` (the default), `"h2"` (HTTP/2 over TLS,
    /// needs `tls`) or `"h2c"` (HTTP/2 cleartext, prior knowledge).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS to the endpoints; absent means plaintext.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// Send a PROXY protocol header (`"v1"` or `"v2"`) with the client's address on each new
    /// connection. Connections then carry one client's requests only: no pooling.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Replaces the client's `Host` header on requests to this upstream.
    #[serde(default)]
    pub host_header: Option<String>,
    /// Idle keep-alive connections kept per endpoint.
    #[serde(default = "defaults::max_idle_per_endpoint")]
    pub max_idle_per_endpoint: usize,
    /// Per-upstream timeouts.
    #[serde(default)]
    pub timeouts: UpstreamTimeouts,
}

/// Protocol to the endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a pool of keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN `h2`), one multiplexed connection per endpoint.
    H2,
    /// HTTP/2 cleartext by prior knowledge, one multiplexed connection per endpoint.
    H2c,
}

/// PROXY protocol version sent to upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocolVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// TLS to an upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of CAs to verify endpoints against; default the system's roots.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// Server name sent (SNI) and verified; default the endpoint's host.
    #[serde(default)]
    pub sni: Option<String>,
    /// Client certificate chain (PEM) for upstream mTLS.
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    /// Accept any certificate: no verification at all. For tests only; Weir warns at start.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One endpoint and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// `host:port`.
    pub address: String,
    /// Relative share of traffic, 1–1000; default 1.
    pub weight: u32,
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            address: String,
            #[serde(default = "defaults::weight")]
            weight: u32,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"host:port\" or { address = \"host:port\", weight = N }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec {
                    address: v.to_owned(),
                    weight: 1,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointSpec, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointSpec {
                    address: t.address,
                    weight: t.weight,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Load-balancing algorithm of an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn, in proportion to weights (nginx's smooth weighted round robin).
    #[default]
    RoundRobin,
    /// The same algorithm as `round_robin`, named for configs that set weights.
    Weighted,
    /// The endpoint with the fewest requests in flight (relative to weight).
    LeastConn,
    /// Power of two choices: two random endpoints, the one with fewer requests in flight.
    P2c,
    /// Peak-EWMA latency × in-flight requests over two random choices (linkerd's balancer).
    Ewma,
    /// Weighted random.
    Random,
    /// A hash of the client IP.
    IpHash,
    /// A consistent hash of `hash_key` over a `hash` table (ring or Maglev).
    ConsistentHash,
}

impl Balance {
    /// The name the config uses (`round_robin`, `least_conn`, …), for text that users read.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::Weighted => "weighted",
            Balance::LeastConn => "least_conn",
            Balance::P2c => "p2c",
            Balance::Ewma => "ewma",
            Balance::Random => "random",
            Balance::IpHash => "ip_hash",
            Balance::ConsistentHash => "consistent_hash",
        }
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The consistent-hash table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashTable {
    /// A ketama-style ring of virtual nodes (160 per unit of weight).
    #[default]
    Ring,
    /// Google's Maglev lookup table (65,537 entries).
    Maglev,
}

/// What a consistent hash is computed over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashKey {
    /// The client IP (after trusted-proxy resolution).
    #[default]
    ClientIp,
    /// The request path.
    Path,
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's value.
    Query(String),
}

impl std::str::FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let named = |kind: &str, rest: &str| {
            if rest.is_empty() {
                Err(format!("`{kind}:` needs a name, like \"{kind}:x-user\""))
            } else {
                Ok(rest.to_owned())
            }
        };
        match s.split_once(':') {
            None if s == "client_ip" => Ok(Self::ClientIp),
            None if s == "path" => Ok(Self::Path),
            Some(("header", n)) => named("header", n).map(|n| Self::Header(n.to_ascii_lowercase())),
            Some(("cookie", n)) => named("cookie", n).map(Self::Cookie),
            Some(("query", n)) => named("query", n).map(Self::Query),
            _ => Err(format!(
                "invalid hash key `{s}`: expected \"client_ip\", \"path\", \"header:NAME\", \"cookie:NAME\" or \"query:NAME\""
            )),
        }
    }
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::ClientIp => f.write_str("client_ip"),
            HashKey::Path => f.write_str("path"),
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
            HashKey::Query(n) => write!(f, "query:{n}"),
        }
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

impl std::fmt::Display for RetryOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryOn::Connect => f.write_str("connect"),
            RetryOn::Reset => f.write_str("reset"),
            RetryOn::Timeout => f.write_str("timeout"),
            RetryOn::Status(s) => write!(f, "{s}"),
        }
    }
}

crate::units::serialize_as_text!(HashKey, StatusRange, RetryOn);

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<HashKey>::new(
            "a hash key like \"client_ip\" or \"header:x-user\"",
        ))
    }
}

/// Sticky sessions by cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// Cookie name.
    #[serde(default = "defaults::sticky_cookie")]
    pub cookie: String,
    /// HMAC key that signs the cookie, at least 16 bytes. Set the same value on every Weir
    /// instance behind one name; when absent a random key is made at start.
    #[serde(default)]
    pub secret: Option<String>,
    /// Cookie `Max-Age`; `"0"` (the default) makes a session cookie.
    #[serde(default)]
    pub max_age: Duration,
}

/// The wait queue in front of `max_in_flight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// Requests that may wait; more are answered 503 at once.
    #[serde(default)]
    pub size: usize,
    /// Longest wait before 503.
    #[serde(default = "defaults::queue_timeout")]
    pub timeout: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            size: 0,
            timeout: defaults::queue_timeout(),
        }
    }
}

/// Timeouts for talking to an upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    /// Establishing the TCP connection (504 when exceeded).
    #[serde(default = "defaults::connect_timeout")]
    pub connect: Duration,
    /// From the request being sent to the response head arriving (504 when exceeded).
    #[serde(default = "defaults::response_header_timeout")]
    pub response_header: Duration,
    /// An idle pooled connection is closed after this long.
    #[serde(default = "defaults::upstream_idle_timeout")]
    pub idle: Duration,
    /// Whole exchange including the response body; `"0"` (default) means no limit.
    #[serde(default)]
    pub total: Duration,
    /// An upgraded connection (WebSocket) with no bytes either way for this long is closed.
    #[serde(default = "defaults::tunnel_idle_timeout")]
    pub tunnel_idle: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self {
            connect: defaults::connect_timeout(),
            response_header: defaults::response_header_timeout(),
            idle: defaults::upstream_idle_timeout(),
            total: Duration::default(),
            tunnel_idle: defaults::tunnel_idle_timeout(),
        }
    }
}

pub(super) mod defaults {
    use crate::schema::{RetryOn, StatusRange};
    use crate::units::{ByteSize, Duration};

    pub(in crate::schema) fn weight() -> u32 {
        1
    }
    pub(in crate::schema) fn panic_threshold() -> u8 {
        50
    }
    pub(in crate::schema) fn sticky_cookie() -> String {
        "weir_sticky".to_owned()
    }
    pub(in crate::schema) fn check_method() -> String {
        "GET".to_owned()
    }
    pub(in crate::schema) fn check_path() -> String {
        "/".to_owned()
    }
    pub(in crate::schema) fn expect_status() -> Vec<StatusRange> {
        vec![StatusRange { from: 200, to: 399 }]
    }
    pub(in crate::schema) fn check_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub(in crate::schema) fn check_jitter() -> Duration {
        Duration::from_millis(500)
    }
    pub(in crate::schema) fn check_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(in crate::schema) fn healthy_threshold() -> u32 {
        2
    }
    pub(in crate::schema) fn unhealthy_threshold() -> u32 {
        3
    }
    pub(in crate::schema) fn consecutive_failures() -> u32 {
        5
    }
    pub(in crate::schema) fn base_ejection_time() -> Duration {
        Duration::from_secs(10)
    }
    pub(in crate::schema) fn max_ejection_time() -> Duration {
        Duration::from_secs(300)
    }
    pub(in crate::schema) fn max_ejection_percent() -> u8 {
        50
    }
    pub(in crate::schema) fn failure_rate() -> u8 {
        50
    }
    pub(in crate::schema) fn breaker_window() -> Duration {
        Duration::from_secs(10)
    }
    pub(in crate::schema) fn min_requests() -> u32 {
        20
    }
    pub(in crate::schema) fn open_for() -> Duration {
        Duration::from_secs(30)
    }
    pub(in crate::schema) fn half_open_requests() -> u32 {
        5
    }
    pub(in crate::schema) fn queue_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(in crate::schema) fn retry_attempts() -> u32 {
        2
    }
    pub(in crate::schema) fn retry_on() -> Vec<RetryOn> {
        vec![RetryOn::Connect, RetryOn::Reset]
    }
    pub(in crate::schema) fn retry_max_body() -> ByteSize {
        ByteSize::kib(64)
    }
    pub(in crate::schema) fn max_retry_after() -> Duration {
        Duration::from_secs(1)
    }
    pub(in crate::schema) fn backoff_base() -> Duration {
        Duration::from_millis(25)
    }
    pub(in crate::schema) fn backoff_max() -> Duration {
        Duration::from_millis(250)
    }
    pub(in crate::schema) fn budget_percent() -> u32 {
        20
    }
    pub(in crate::schema) fn budget_min_per_second() -> u32 {
        10
    }
    pub(in crate::schema) fn budget_window() -> Duration {
        Duration::from_secs(10)
    }
    pub(in crate::schema) fn max_idle_per_endpoint() -> usize {
        256
    }
    pub(in crate::schema) fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(in crate::schema) fn response_header_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(in crate::schema) fn upstream_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub(in crate::schema) fn tunnel_idle_timeout() -> Duration {
        Duration::from_secs(3600)
    }
}
