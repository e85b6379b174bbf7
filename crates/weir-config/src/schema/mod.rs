//! The typed config schema: what a Weir TOML file may contain, with defaults.
//!
//! Every struct refuses unknown keys. `docs/config.md` documents each field here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod policy;
mod upstream;

pub use policy::*;
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

/// An RFC 9111 shared cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Unique name, used by routes.
    pub name: String,
    /// Memory the stored responses may take (bodies and headers).
    #[serde(default = "defaults::cache_memory")]
    pub max_memory: ByteSize,
    /// Larger responses are passed through, not stored.
    #[serde(default = "defaults::cache_object")]
    pub max_object_size: ByteSize,
    /// Serve a stale response this long past expiry when the origin fails or times out, even
    /// without `stale-if-error` (never against `must-revalidate` or `no-cache`).
    #[serde(default)]
    pub grace: Duration,
    /// Fields that, when present, replace `Cache-Control` for this cache (RFC 9213), first
    /// present wins.
    #[serde(default = "defaults::cache_targeted")]
    pub targeted_fields: Vec<String>,
    /// Responses that carry `Set-Cookie`: `no-store` (pass them through), `strip` (store
    /// them without the `Set-Cookie` fields; the client that caused the fill still gets its
    /// cookie) or `store` (store and replay the cookie to everyone).
    #[serde(default)]
    pub set_cookie: SetCookie,
    /// Store POST responses that RFC 9110 §9.3.3 allows to be reused (explicit freshness and
    /// a `Content-Location` equal to the target URI), for later GET and HEAD of that URI.
    #[serde(default)]
    pub store_post: bool,
    /// A disk tier: objects survive a restart; objects of `large_object_size` and more are
    /// kept on disk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<CacheDisk>,
    /// Concurrent misses (and revalidations) of one key wait this long for the first to fill
    /// the cache before going to the origin themselves.
    #[serde(default = "defaults::cache_lock_timeout")]
    pub lock_timeout: Duration,
    /// Response headers whose values (separated by spaces or commas) tag the stored object
    /// for purging; removed from the response sent to the client.
    #[serde(default = "defaults::cache_tag_headers")]
    pub tag_headers: Vec<String>,
    /// Accept `PURGE /path` on the cached routes from these client addresses (none: PURGE is
    /// forwarded like any other method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_method: Option<IpRules>,
    /// Query parameters in the key: `all`, `none`, or a table `{ keep = [...] }` /
    /// `{ drop = [...] }`.
    #[serde(default)]
    pub key_query: KeyQuery,
    /// Sort query parameters in the key.
    #[serde(default)]
    pub key_sort_query: bool,
    /// Request headers added to the key.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Cookies added to the key.
    #[serde(default)]
    pub key_cookies: Vec<String>,
}

/// A cache's disk tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDisk {
    /// Directory of the tier (created if missing; Weir owns its `*.obj` files).
    pub path: String,
    /// Bytes the files may take; the least recently used are evicted beyond.
    pub max_size: ByteSize,
    /// Objects at least this large skip the memory tier.
    #[serde(default = "defaults::cache_large_object")]
    pub large_object_size: ByteSize,
}

/// What a cache does with responses that set cookies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetCookie {
    /// Not stored.
    #[default]
    NoStore,
    /// Stored without their `Set-Cookie` fields.
    Strip,
    /// Stored with them.
    Store,
}

/// Which query parameters take part in a cache key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyQuery {
    /// All, as sent.
    #[default]
    All,
    /// None.
    None,
    /// Only these.
    Keep(Vec<String>),
    /// All but these.
    Drop(Vec<String>),
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
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            format: defaults::access_log_format(),
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
    /// names (wildcards included); the first is the default.
    pub certificates: Vec<CertificateFiles>,
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

/// One route: a match and exactly one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name shown in logs; default `route-N` (N its position, from 0).
    #[serde(default)]
    pub name: Option<String>,
    /// Listeners this route serves; default: every listener.
    #[serde(default)]
    pub listeners: Option<Vec<String>>,
    /// Breaks precedence ties: a higher priority is tried first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Policies (by name, from `[[policies]]`) applied in this order before the action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Largest request body on this route (overrides `server.max_request_body_size`; `0` =
    /// no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_size: Option<ByteSize>,
    /// Rewrites the path before a `proxy` action forwards the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Compress responses on the fly (gzip, brotli, zstd) by the client's `Accept-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<Compress>,
    /// The `[[caches]]` entry that stores this route's responses (`proxy` routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// What a request must look like; an empty match takes everything.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Forward to an upstream.
    #[serde(default)]
    pub proxy: Option<ProxyAction>,
    /// Answer with a fixed response.
    #[serde(default)]
    pub respond: Option<RespondAction>,
    /// Answer with a redirect.
    #[serde(default)]
    pub redirect: Option<RedirectAction>,
    /// Serve files from a directory.
    #[serde(default, rename = "static")]
    pub static_files: Option<StaticAction>,
}

/// On-the-fly response compression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compress {
    /// Codings offered, in Weir's order of preference when the client likes several equally:
    /// `zstd`, `br`, `gzip`.
    #[serde(default = "defaults::compress_algorithms")]
    pub algorithms: Vec<String>,
    /// Responses declaring a smaller `Content-Length` are sent as they are.
    #[serde(default = "defaults::compress_min_size")]
    pub min_size: ByteSize,
    /// Media types compressed: exact (`application/json`) or a whole type (`text/*`).
    #[serde(default = "defaults::compress_types")]
    pub content_types: Vec<String>,
    /// `fastest`, `default` or `best`.
    #[serde(default)]
    pub level: CompressLevel,
}

/// How hard to compress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressLevel {
    /// Least CPU.
    Fastest,
    /// Fast enough for on-the-fly use: gzip 6, brotli 4, zstd 3.
    #[default]
    Default,
    /// Smallest output, most CPU.
    Best,
}

/// A path rewrite: `strip_prefix`, then `regex` → `replace`, then `add_prefix`. The query
/// string is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Removed from the start of the path (a path equal to it becomes `/`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Put before the path.
    #[serde(default)]
    pub add_prefix: Option<String>,
    /// A regular expression; the first match is replaced by `replace` (`$1`, `${name}`
    /// refer to groups).
    #[serde(default)]
    pub regex: Option<String>,
    /// The replacement of `regex`.
    #[serde(default)]
    pub replace: Option<String>,
}

/// Conditions a request must meet, all of them, for the route to match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Host names, exact (`example.com`) or wildcard (`*.example.com`); any one may match.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Exact path.
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Path regular expression (Rust `regex` syntax, unanchored unless you anchor it).
    #[serde(default)]
    pub path_regex: Option<String>,
    /// Methods; any one may match.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions; all must hold.
    #[serde(default)]
    pub headers: Vec<Predicate>,
    /// Query-parameter conditions; all must hold.
    #[serde(default)]
    pub query: Vec<Predicate>,
}

/// A condition on a named header or query parameter: equal to `value`, matching `regex`,
/// or (with neither) simply present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// Header or parameter name (header names are case-insensitive).
    pub name: String,
    /// Exact value.
    #[serde(default)]
    pub value: Option<String>,
    /// Regular expression the value must match.
    #[serde(default)]
    pub regex: Option<String>,
}

/// `proxy` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAction {
    /// Name of the upstream.
    pub upstream: String,
    /// Allow retries of non-idempotent requests (POST, PATCH …) on this route, when the body
    /// is small enough to replay (`retry.max_body`). Off by default: a retried POST may act
    /// twice.
    #[serde(default)]
    pub retry_non_idempotent: bool,
}

/// `respond` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondAction {
    /// Status code.
    #[serde(default = "defaults::respond_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

/// `redirect` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectAction {
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "defaults::redirect_status")]
    pub status: u16,
    /// Target; `{host}`, `{path}` and `{request_uri}` are replaced from the request.
    pub location: String,
}

/// `static` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAction {
    /// Directory served; relative paths are relative to the working directory.
    pub root: PathBuf,
    /// File served for a directory.
    #[serde(default = "defaults::index")]
    pub index: String,
    /// Removed from the request path before it is looked up under `root`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// Served (200) for paths that match no file: a single-page app's `index.html`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Serve `FILE.br`, `FILE.zst` or `FILE.gz` beside `FILE` when the client accepts the coding.
    #[serde(default = "defaults::yes")]
    pub precompressed: bool,
    /// Symbolic links: `inside_root` (the default: followed while they stay under `root`),
    /// `never` (a path through any link is 404) or `always` (followed anywhere).
    #[serde(default)]
    pub symlinks: Symlinks,
}

/// How a `static` route treats symbolic links.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symlinks {
    /// Followed while the target stays under the root.
    #[default]
    InsideRoot,
    /// Never followed.
    Never,
    /// Followed anywhere (the operator vouches for every link).
    Always,
}

/// A socket address parsed with a clear error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr(pub SocketAddr);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
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

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Addr).map_err(|_| {
            format!(
                "invalid address `{s}`: expected IP:PORT like \"0.0.0.0:8080\" or \"[::]:8080\""
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
