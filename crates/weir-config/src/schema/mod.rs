//! The typed config schema: what a Weir TOML file may contain, with defaults.
//!
//! Every struct refuses unknown keys. `docs/config.md` documents each field here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod acme;
mod auth;
mod cache;
mod deploy;
mod discovery;
mod health;
mod limits;
mod listener;
mod policy;
mod retry;
mod route;
mod upstream;

pub use acme::*;
pub use auth::*;
pub use cache::*;
pub use deploy::*;
pub use discovery::*;
pub use health::*;
pub use limits::*;
pub use listener::*;
pub use policy::*;
pub use retry::*;
pub use route::*;
pub use upstream::*;

use crate::units::{ByteSize, Duration};

/// A whole Weir config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Worker threads serving traffic; default: the number of CPU cores.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Reload automatically when the config file changes (checked every second; a rename over
    /// the file counts, as editors do). Off by default: reload with SIGHUP or `POST /reload`.
    #[serde(default)]
    pub watch: bool,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(default = "defaults::shutdown_timeout")]
    pub shutdown_timeout: Duration,
    /// Peers (CIDRs) whose `X-Forwarded-*` and `Forwarded` headers are believed and kept.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Connection and request limits applied to every listener.
    #[serde(default)]
    pub server: ServerLimits,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Weir's own log (start, reloads, warnings) on stderr.
    #[serde(default)]
    pub log: ProcessLog,
    /// Request metrics by route (the `/metrics` exposition on the admin listener).
    #[serde(default)]
    pub metrics: Metrics,
    /// OpenTelemetry traces: a span per request, exported over OTLP/gRPC; absent means Weir
    /// records no spans (incoming `traceparent` headers still pass through untouched).
    #[serde(default)]
    pub tracing: Option<Tracing>,
    /// The admin listener (`/metrics`, `/upstreams`); absent means none.
    #[serde(default)]
    pub admin: Option<Admin>,
    /// Sockets Weir accepts connections on.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Named pools of upstream endpoints.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    /// Routes: what to do with a request, chosen by host, path, method, headers and query.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Named policies routes apply in order (`routes[].policies`).
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Consumers of the API: names, metadata and credentials (API keys) that identity
    /// policies recognise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<Consumer>,
    /// The Redis server shared by policies with `store = "redis"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
    /// HTTP caches routes use (`routes[].cache`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<Cache>,
}

/// The admin listener: operators' endpoints, kept off the traffic listeners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address and port, e.g. `"127.0.0.1:9901"`.
    pub bind: Addr,
    /// Bearer token every admin request must carry (`Authorization: Bearer …`); required when
    /// `bind` is not a loopback address. A secret: `"${ENV}"` or `{ file = "…" }`.
    #[serde(default)]
    pub token: Option<crate::Secret>,
    /// Concurrent admin connections; more wait in the kernel backlog. The admin API is
    /// reachable when traffic saturates, so it has its own small budget.
    #[serde(default = "defaults::admin_max_connections")]
    pub max_connections: usize,
}

/// Limits that protect Weir from slow, huge or too many clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerLimits {
    /// Largest request head (request line and headers); larger is answered 431.
    #[serde(default = "defaults::max_request_header_size")]
    pub max_request_header_size: ByteSize,
    /// Most header fields in one request (HTTP/1.1 and HTTP/2, every cookie crumb counted);
    /// more is answered 431. With HTTP/2 each field also counts 32 octets against
    /// `max_request_header_size` (RFC 9113 §6.5.2), so one-byte HPACK references cannot
    /// pack thousands of fields into a small header block.
    #[serde(default = "defaults::max_request_headers")]
    pub max_request_headers: usize,
    /// Largest request body; larger is answered 413. `0` means no limit.
    #[serde(default = "defaults::max_request_body_size")]
    pub max_request_body_size: ByteSize,
    /// Time a client has to send a complete request head (slowloris guard).
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    #[serde(default = "defaults::keepalive_timeout")]
    pub keepalive_timeout: Duration,
    /// A connection with response data waiting that the client takes none of for this long
    /// (it stopped reading, or keeps an HTTP/2 flow-control window at zero) is closed, and
    /// what its responses held is freed (nginx's `send_timeout`).
    #[serde(default = "defaults::send_stall_timeout")]
    pub send_stall_timeout: Duration,
    /// Concurrent connections per listener; further clients wait in the kernel backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Memory all requests in flight may hold together (each charged a fixed 8 KiB plus twice
    /// its header bytes, from its head until its response is sent or abandoned). Past it new
    /// HTTP/2 streams are refused with REFUSED_STREAM, HTTP/1.1 requests get a 503, and no
    /// connection is accepted until memory is given back. `0` means no budget.
    #[serde(default = "defaults::request_memory_budget")]
    pub request_memory_budget: ByteSize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_request_header_size: defaults::max_request_header_size(),
            max_request_headers: defaults::max_request_headers(),
            max_request_body_size: defaults::max_request_body_size(),
            header_read_timeout: defaults::header_read_timeout(),
            keepalive_timeout: defaults::keepalive_timeout(),
            send_stall_timeout: defaults::send_stall_timeout(),
            max_connections: defaults::max_connections(),
            request_memory_budget: defaults::request_memory_budget(),
        }
    }
}

/// Weir's own log: its format and its filter. Read when the process starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessLog {
    /// `text` (one human line per event) or `json` (one object per line).
    #[serde(default)]
    pub format: ProcessLogFormat,
    /// Level and per-module filters in `tracing`'s `EnvFilter` syntax, e.g.
    /// `"info,weir_upstream=debug"`; `WEIR_LOG`, when set, wins. Default `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

/// How Weir's own log is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLogFormat {
    /// `2026-12-04T03:24:28.691Z  INFO weir: listener http on http://127.0.0.1:8080`.
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","target":"weir","message":"…", …fields}`.
    Json,
}

/// Access-log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// One line per request.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Append to this file instead of stdout; reopened on SIGUSR1 (log rotation).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `"json"` (the default: one JSON object per line, every field) or a template of named
    /// fields, e.g. `"$client_ip $method $path $status $duration_ms $trace_id"`; `${name}`
    /// separates a field from text that follows it, `$$` is a literal `$`. An absent value
    /// is written `-`.
    #[serde(default = "defaults::access_log_format")]
    pub format: String,
    /// Request and response headers each line carries (`request_headers` and
    /// `response_headers`): `{ request = ["x-tenant"], response = ["content-type"] }`.
    #[serde(default, skip_serializing_if = "LoggedHeaders::is_empty")]
    pub headers: LoggedHeaders,
    /// The JSON keys: Weir's flat names (`client_ip`, `status`) or OpenTelemetry's semantic
    /// conventions (`client.address`, `http.response.status_code`), as traces use.
    #[serde(default)]
    pub names: AccessLogNames,
}

/// The access log's JSON key names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogNames {
    /// `client_ip`, `method`, `status` …
    #[default]
    Flat,
    /// `client.address`, `http.request.method`, `http.response.status_code` … (`weir.*` where
    /// OpenTelemetry has no name).
    Otel,
}

/// Header names the access log records, lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedHeaders {
    /// From the request as the client sent it.
    #[serde(default)]
    pub request: Vec<String>,
    /// From the response as Weir sent it.
    #[serde(default)]
    pub response: Vec<String>,
}

impl LoggedHeaders {
    /// No header is logged.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            format: defaults::access_log_format(),
            headers: LoggedHeaders::default(),
            names: AccessLogNames::default(),
        }
    }
}

/// Request metrics settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Record requests, durations and bytes by route. Upstream, listener and reload counters
    /// are kept either way (balancing and the admin API use them).
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// OpenTelemetry tracing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The OTLP/gRPC collector, e.g. `"http://127.0.0.1:4317"`, or `https://` for TLS.
    pub otlp_endpoint: String,
    /// TLS to an `https://` collector: `ca`, `sni`, `client_cert` and `client_key` as in an
    /// upstream's `tls` (`insecure_skip_verify` is refused here); default the system's roots.
    #[serde(default)]
    pub otlp_tls: Option<UpstreamTls>,
    /// gRPC metadata sent with every export (the API key of a hosted collector); each value
    /// is a secret.
    #[serde(default)]
    pub otlp_headers: BTreeMap<String, crate::Secret>,
    /// Share of new traces recorded, 0.0–1.0.
    #[serde(default = "defaults::sampling_ratio")]
    pub sampling_ratio: f64,
    /// Follow the caller's sampling decision (the `traceparent` sampled flag) when there is
    /// one; the ratio then applies only to traces Weir starts.
    #[serde(default = "defaults::yes")]
    pub parent_based: bool,
    /// Whose sampling decision `parent_based` follows: `"trusted_proxies"` (the default: only
    /// peers in `trusted_proxies`; anyone else could force every request of theirs to be
    /// traced and crowd the span queue) or `"any"`. An untrusted caller's trace id is still
    /// continued, but whether it is sampled is Weir's own draw at `sampling_ratio`.
    #[serde(default)]
    pub trust_incoming: TrustIncoming,
    /// `service.name` of the exported resource.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// Spans per export request at most.
    #[serde(default = "defaults::trace_batch_size")]
    pub batch_size: usize,
    /// Longest a finished span waits before its batch is sent.
    #[serde(default = "defaults::trace_batch_delay")]
    pub batch_delay: Duration,
    /// Finished spans waiting for export at most; beyond it spans are dropped and counted.
    #[serde(default = "defaults::trace_max_queue")]
    pub max_queue: usize,
    /// Time one export request may take.
    #[serde(default = "defaults::trace_export_timeout")]
    pub export_timeout: Duration,
}

/// Whose incoming `traceparent` sampling decision Weir follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustIncoming {
    /// Peers in `trusted_proxies` only.
    #[default]
    TrustedProxies,
    /// Every peer.
    Any,
}

/// A socket address parsed with a clear error; `.0` is the first (or only) address bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr(pub SocketAddr, pub BindScope);

/// What an address names: itself, or one of the shorthands that stand for several sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BindScope {
    /// `IP:PORT` as written (`[::]:PORT` is dual-stack where the system allows it).
    #[default]
    Exact,
    /// `localhost:PORT`: `127.0.0.1` and `[::1]`.
    Localhost,
    /// `:PORT` or `*:PORT`: every interface, IPv4 (`0.0.0.0`) and IPv6 (`[::]`, IPv6 only).
    AllInterfaces,
}

impl Addr {
    /// An exact address.
    pub fn exact(addr: SocketAddr) -> Self {
        Self(addr, BindScope::Exact)
    }

    /// The second socket a shorthand binds beside `.0`: its IPv6 companion, on `port` (the
    /// port `.0` got, which differs from the configured one with port 0). Optional: a host
    /// without IPv6 binds only the IPv4 address.
    pub fn companions(&self, port: u16) -> Option<SocketAddr> {
        match self.1 {
            BindScope::Exact => None,
            BindScope::Localhost => Some((std::net::Ipv6Addr::LOCALHOST, port).into()),
            BindScope::AllInterfaces => Some((std::net::Ipv6Addr::UNSPECIFIED, port).into()),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            BindScope::Exact => self.0.fmt(f),
            BindScope::Localhost => write!(f, "localhost:{}", self.0.port()),
            BindScope::AllInterfaces => write!(f, ":{}", self.0.port()),
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

crate::units::serialize_as_text!(Addr, Cidr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<Addr>::new(
            "an address like \"127.0.0.1:8080\"",
        ))
    }
}

impl std::str::FromStr for Addr {
    type Err = String;

    /// `IP:PORT`, or the shorthands Caddy and Traefik users write: `:PORT` and `*:PORT` (every
    /// interface: `0.0.0.0` and `[::]`) and `localhost:PORT` (`127.0.0.1` and `[::1]`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shorthand = |host: &str, ip: std::net::Ipv4Addr, scope: BindScope| {
            s.strip_prefix(host)
                .and_then(|port| port.parse::<u16>().ok())
                .map(|port| Addr(SocketAddr::from((ip, port)), scope))
        };
        let all = BindScope::AllInterfaces;
        s.parse()
            .map(Addr::exact)
            .ok()
            .or_else(|| shorthand(":", std::net::Ipv4Addr::UNSPECIFIED, all))
            .or_else(|| shorthand("*:", std::net::Ipv4Addr::UNSPECIFIED, all))
            .or_else(|| {
                shorthand(
                    "localhost:",
                    std::net::Ipv4Addr::LOCALHOST,
                    BindScope::Localhost,
                )
            })
            .ok_or_else(|| {
                format!(
                    "invalid address `{s}`: expected IP:PORT like \"0.0.0.0:8080\", \"[::]:8080\", \":8080\" or \"localhost:8080\""
                )
            })
    }
}

/// An IP network in CIDR notation (`10.0.0.0/8`); a bare address means just that address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<Cidr>::new(
            "a CIDR like \"10.0.0.0/8\"",
        ))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| Cidr(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("invalid CIDR `{s}`: expected e.g. \"10.0.0.0/8\" or \"::1\""))
    }
}

mod defaults {
    use crate::units::{ByteSize, Duration};

    pub fn yes() -> bool {
        true
    }
    pub fn access_log_format() -> String {
        "json".to_owned()
    }
    pub fn sampling_ratio() -> f64 {
        0.01
    }
    pub fn service_name() -> String {
        "weir".to_owned()
    }
    pub fn trace_batch_size() -> usize {
        512
    }
    pub fn trace_batch_delay() -> Duration {
        Duration::from_secs(1)
    }
    pub fn trace_max_queue() -> usize {
        4096
    }
    pub fn trace_export_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_request_header_size() -> ByteSize {
        ByteSize::kib(32)
    }
    pub fn max_request_headers() -> usize {
        100
    }
    pub fn max_request_body_size() -> ByteSize {
        ByteSize::mib(10)
    }
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn request_memory_budget() -> ByteSize {
        ByteSize::mib(256)
    }
    pub fn send_stall_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn respond_status() -> u16 {
        200
    }
    pub fn redirect_status() -> u16 {
        302
    }
    pub fn admin_max_connections() -> usize {
        64
    }
    pub fn forward_connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn forward_tunnel_idle() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn tls_reload_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn https_port() -> u16 {
        443
    }
    pub fn index() -> String {
        "index.html".to_owned()
    }
    pub fn cache_memory() -> ByteSize {
        ByteSize::mib(256)
    }
    pub fn cache_object() -> ByteSize {
        ByteSize::mib(8)
    }
    pub fn cache_large_object() -> ByteSize {
        ByteSize::mib(1)
    }
    pub fn cache_tag_headers() -> Vec<String> {
        vec!["surrogate-key".to_owned(), "cache-tag".to_owned()]
    }
    pub fn cache_lock_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn cache_targeted() -> Vec<String> {
        vec![
            "weir-cache-control".to_owned(),
            "cdn-cache-control".to_owned(),
        ]
    }
    pub fn compress_algorithms() -> Vec<String> {
        ["zstd", "br", "gzip"].map(str::to_owned).to_vec()
    }
    pub fn compress_min_size() -> ByteSize {
        ByteSize(256)
    }
    pub fn compress_types() -> Vec<String> {
        [
            "text/*",
            "application/json",
            "application/javascript",
            "application/xml",
            "application/xhtml+xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/manifest+json",
            "application/ld+json",
            "application/problem+json",
            "application/wasm",
            "image/svg+xml",
            "font/ttf",
            "font/otf",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}
