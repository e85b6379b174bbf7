//! Upstream pools: endpoints and weights, the balancer, health checks (active and passive),
//! the circuit breaker, concurrency caps, retries and timeouts.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Duration};

/// A named pool of endpoints that `proxy` routes send requests to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Unique name, used by routes.
    pub name: String,
    /// Endpoints: `"host:port"` or `{ address = "host:port", weight = 3 }`. Host names are
    /// resolved when connecting. May be empty: requests are then answered 503 (as by an Envoy
    /// cluster with no endpoints).
    pub endpoints: Vec<EndpointSpec>,
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

/// Active and passive health checking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Periodic probes; absent means endpoints are not probed.
    #[serde(default)]
    pub active: Option<ActiveHealth>,
    /// Outlier detection from live traffic.
    #[serde(default)]
    pub passive: PassiveHealth,
}

/// Periodic health probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealth {
    /// `"http"` (the default) or `"tcp"` (connect only).
    #[serde(default, rename = "type")]
    pub kind: CheckKind,
    /// HTTP method of the probe.
    #[serde(default = "defaults::check_method")]
    pub method: String,
    /// Path (and query) probed.
    #[serde(default = "defaults::check_path")]
    pub path: String,
    /// `Host` header of the probe; default the endpoint's address.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that count as healthy: numbers or ranges like `"200-399"`.
    #[serde(default = "defaults::expect_status")]
    pub expect_status: Vec<StatusRange>,
    /// When set, the response body (its first 64 KiB) must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Time between probes of one endpoint.
    #[serde(default = "defaults::check_interval")]
    pub interval: Duration,
    /// Each wait is lengthened by a random amount up to this, so probes do not align.
    #[serde(default = "defaults::check_jitter")]
    pub jitter: Duration,
    /// A probe that takes longer fails.
    #[serde(default = "defaults::check_timeout")]
    pub timeout: Duration,
    /// Consecutive passing probes that bring an unhealthy endpoint back.
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failing probes that take an endpoint out.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

/// Kind of active probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// An HTTP/1.1 request.
    #[default]
    Http,
    /// A TCP connect.
    Tcp,
}

/// An inclusive range of status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status.
    pub from: u16,
    /// Highest status.
    pub to: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.from..=self.to).contains(&status)
    }
}

impl std::str::FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid status range `{s}`: expected 200 or \"200-399\"");
        let status = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(bad)
        };
        let (from, to) = match s.split_once('-') {
            Some((a, b)) => (status(a)?, status(b)?),
            None => (status(s)?, status(s)?),
        };
        if from > to {
            return Err(bad());
        }
        Ok(Self { from, to })
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(crate::units::FromStrVisitor::<StatusRange>::new(
            "a status like 200 or a range like \"200-399\"",
        ))
    }
}

/// Outlier detection: endpoints failing live traffic are ejected for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    /// Consecutive 5xx responses that eject an endpoint; `0` disables.
    #[serde(default)]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures, timeouts or resets that eject an endpoint; `0` disables.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection's length; each further ejection of the same endpoint is one base longer.
    #[serde(default = "defaults::base_ejection_time")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(default = "defaults::max_ejection_time")]
    pub max_ejection_time: Duration,
    /// At most this percentage of endpoints are ejected at once (at least one may always be).
    #[serde(default = "defaults::max_ejection_percent")]
    pub max_ejection_percent: u8,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            consecutive_5xx: 0,
            consecutive_failures: defaults::consecutive_failures(),
            base_ejection_time: defaults::base_ejection_time(),
            max_ejection_time: defaults::max_ejection_time(),
            max_ejection_percent: defaults::max_ejection_percent(),
        }
    }
}

/// Circuit breaker over an upstream's failure rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Percentage of failed requests in `window` that opens the breaker.
    #[serde(default = "defaults::failure_rate")]
    pub failure_rate: u8,
    /// The rolling window the rate is measured over.
    #[serde(default = "defaults::breaker_window")]
    pub window: Duration,
    /// Fewer requests than this in the window never open the breaker.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u32,
    /// How long the breaker stays open before letting probes through.
    #[serde(default = "defaults::open_for")]
    pub open_for: Duration,
    /// Probe requests let through when half-open; all must succeed to close.
    #[serde(default = "defaults::half_open_requests")]
    pub half_open_requests: u32,
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

/// When and how failed requests are tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try; `0` disables.
    #[serde(default = "defaults::retry_attempts")]
    pub attempts: u32,
    /// What is retried: `"connect"` (connect failure or timeout), `"reset"` (connection lost
    /// before a response), `"timeout"` (per-try timeout) and response statuses (`503`).
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<RetryOn>,
    /// Time limit of each try, up to the response head; `"0"` (the default) uses
    /// `timeouts.response_header`.
    #[serde(default)]
    pub per_try_timeout: Duration,
    /// Backoff between tries: full jitter over an exponentially growing window.
    #[serde(default)]
    pub backoff: Backoff,
    /// Retries are bounded by a budget so they cannot multiply an outage.
    #[serde(default)]
    pub budget: RetryBudget,
    /// Request bodies up to this size are buffered so they can be replayed; larger bodies
    /// stream and are retried only on connect failures (never sent).
    #[serde(default = "defaults::retry_max_body")]
    pub max_body: ByteSize,
    /// A 503's `Retry-After` up to this long is waited before the retry; longer ones end the
    /// retries and the 503 is passed on.
    #[serde(default = "defaults::max_retry_after")]
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: defaults::retry_attempts(),
            on: defaults::retry_on(),
            per_try_timeout: Duration::default(),
            backoff: Backoff::default(),
            budget: RetryBudget::default(),
            max_body: defaults::retry_max_body(),
            max_retry_after: defaults::max_retry_after(),
        }
    }
}

/// A retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// Connect failed or timed out (nothing was sent: always safe).
    Connect,
    /// The connection closed or reset before the response head.
    Reset,
    /// The per-try timeout passed before the response head.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

impl std::str::FromStr for RetryOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "connect" => Ok(Self::Connect),
            "reset" => Ok(Self::Reset),
            "timeout" => Ok(Self::Timeout),
            _ => match s.parse::<u16>() {
                Ok(n) if (400..=599).contains(&n) => Ok(Self::Status(n)),
                _ => Err(format!(
                    "invalid retry condition `{s}`: expected \"connect\", \"reset\", \"timeout\" or a status 400-599"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(crate::units::FromStrVisitor::<RetryOn>::new(
            "\"connect\", \"reset\", \"timeout\" or a status like 503",
        ))
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Window of the first retry's wait; it doubles with each retry.
    #[serde(default = "defaults::backoff_base")]
    pub base: Duration,
    /// Largest window.
    #[serde(default = "defaults::backoff_max")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: defaults::backoff_base(),
            max: defaults::backoff_max(),
        }
    }
}

/// Retries allowed: `percent` of the requests in `window`, plus `min_per_second`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries as a percentage of requests.
    #[serde(default = "defaults::budget_percent")]
    pub percent: u32,
    /// Retries always allowed per second, so a quiet upstream can still retry.
    #[serde(default = "defaults::budget_min_per_second")]
    pub min_per_second: u32,
    /// The rolling window requests and retries are counted over.
    #[serde(default = "defaults::budget_window")]
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            percent: defaults::budget_percent(),
            min_per_second: defaults::budget_min_per_second(),
            window: defaults::budget_window(),
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

mod defaults {
    use super::{RetryOn, StatusRange};
    use crate::units::{ByteSize, Duration};

    pub fn weight() -> u32 {
        1
    }
    pub fn panic_threshold() -> u8 {
        50
    }
    pub fn sticky_cookie() -> String {
        "weir_sticky".to_owned()
    }
    pub fn check_method() -> String {
        "GET".to_owned()
    }
    pub fn check_path() -> String {
        "/".to_owned()
    }
    pub fn expect_status() -> Vec<StatusRange> {
        vec![StatusRange { from: 200, to: 399 }]
    }
    pub fn check_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn check_jitter() -> Duration {
        Duration::from_millis(500)
    }
    pub fn check_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn healthy_threshold() -> u32 {
        2
    }
    pub fn unhealthy_threshold() -> u32 {
        3
    }
    pub fn consecutive_failures() -> u32 {
        5
    }
    pub fn base_ejection_time() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_ejection_time() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_ejection_percent() -> u8 {
        50
    }
    pub fn failure_rate() -> u8 {
        50
    }
    pub fn breaker_window() -> Duration {
        Duration::from_secs(10)
    }
    pub fn min_requests() -> u32 {
        20
    }
    pub fn open_for() -> Duration {
        Duration::from_secs(30)
    }
    pub fn half_open_requests() -> u32 {
        5
    }
    pub fn queue_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn retry_attempts() -> u32 {
        2
    }
    pub fn retry_on() -> Vec<RetryOn> {
        vec![RetryOn::Connect, RetryOn::Reset]
    }
    pub fn retry_max_body() -> ByteSize {
        ByteSize::kib(64)
    }
    pub fn max_retry_after() -> Duration {
        Duration::from_secs(1)
    }
    pub fn backoff_base() -> Duration {
        Duration::from_millis(25)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_millis(250)
    }
    pub fn budget_percent() -> u32 {
        20
    }
    pub fn budget_min_per_second() -> u32 {
        10
    }
    pub fn budget_window() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_idle_per_endpoint() -> usize {
        256
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn response_header_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn upstream_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub fn tunnel_idle_timeout() -> Duration {
        Duration::from_secs(3600)
    }
}
