//! `RequestCtx`: everything one request carries from accept to the log phase. A phase never
//! reaches back into an earlier one; what a later phase needs travels here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};

use crate::body::BodyStats;
use crate::error::ErrorKind;

/// The per-request context.
#[derive(Debug)]
pub struct RequestCtx {
    /// `X-Request-Id`, incoming or generated.
    pub request_id: HeaderValue,
    /// When the request head was received.
    pub start: Instant,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client's address: the peer, or the first untrusted hop from `X-Forwarded-For`;
    /// an IPv4-mapped IPv6 address is stored as IPv4.
    pub client_ip: IpAddr,
    /// The listener that accepted the connection.
    pub listener: Arc<str>,
    /// Request method.
    pub method: Method,
    /// Request URI as received.
    pub uri: Uri,
    /// Host the request was for (Host header or `:authority`), lowercased, without port.
    pub host: Option<Arc<str>>,
    /// Protocol version.
    pub version: Version,
    /// Name of the matched route.
    pub route: Option<Arc<str>>,
    /// Name of the upstream the request was sent to.
    pub upstream: Option<Arc<str>>,
    /// How a split route chose `upstream`: `override`, `sticky` or `weight`.
    pub split: Option<&'static str>,
    /// Address of the endpoint the request was sent to (the last one, after retries).
    pub endpoint: Option<Arc<str>>,
    /// Time the last upstream try spent getting a connection.
    pub upstream_connect: Option<std::time::Duration>,
    /// Time from sending to the upstream's response head (last try).
    pub upstream_first_byte: Option<std::time::Duration>,
    /// Upstream tries made (0 when the request was not proxied; more than 1 after retries).
    pub tries: u32,
    /// Request body accounting.
    pub body: Arc<BodyStats>,
    /// Why the request failed, if it did.
    pub error: Option<ErrorKind>,
    /// Status sent (0 until a response exists).
    pub status: u16,
    /// A forward proxy's decision.
    pub forward: Option<crate::ForwardDecision>,
    /// The request arrived over TLS.
    pub tls: bool,
    /// The policy that answered the request itself (403, 429 …), if one did.
    pub denied_by: Option<Arc<str>>,
    /// The trace this request belongs to, when one came in or Weir traces.
    pub trace: Option<crate::TraceContext>,
    /// When the upstream call began (the upstream span's start).
    pub upstream_start: Option<Instant>,
    /// The request is gRPC (`content-type: application/grpc…`): errors are answered the gRPC
    /// way.
    pub grpc: bool,
    /// Who the request is from, once an identity policy (JWT, API key, basic auth) said so.
    pub consumer: Option<Arc<str>>,
    /// The claims of the JWT a `jwt` policy verified (a JSON object).
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// What an idempotency policy did.
    pub idempotency: Option<crate::IdempotencyOutcome>,
    /// The content coding Weir compressed the response with (`gzip`, `br`, `zstd`).
    pub compressed: Option<&'static str>,
    /// What the route's cache did.
    pub cache: Option<crate::CacheOutcome>,
    /// The request's `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// The request's `Referer`.
    pub referer: Option<HeaderValue>,
    /// The TLS session the request arrived on.
    pub tls_session: Option<Arc<TlsSession>>,
    /// The policy that answered a request itself without refusing it (a CORS preflight, an
    /// idempotent replay), if one did.
    pub answered_by: Option<Arc<str>>,
    /// Status of the upstream's response (last try; 0 when none came).
    pub upstream_status: u16,
    /// HTTP version of the upstream leg (last try), when one answered.
    pub upstream_version: Option<Version>,
    /// The headers `[access_log] headers` lists, as they were; `None` when it lists none
    /// (boxed: most configs log none, and the context stays small).
    pub logged_headers: Option<Box<LoggedHeaderValues>>,
    /// Where the upstream's interim (1xx) responses go: the request's HTTP/2 stream or its
    /// HTTP/1.1 connection; none for HTTP/1.0 clients.
    pub interim: Option<crate::InterimSink>,
}

/// Header values the access log carries: `(name, value)` in the configured order, only the
/// headers present (capped and redacted by the capture).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedHeaderValues {
    /// From the request as the client sent it.
    pub request: Vec<(http::HeaderName, String)>,
    /// From the response as Weir sent it.
    pub response: Vec<(http::HeaderName, String)>,
}

/// What a TLS connection negotiated, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSession {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: &'static str,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher: &'static str,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<Arc<str>>,
}

/// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0` (the access log's spelling of a version).
pub fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl RequestCtx {
    /// A claim as text: strings as they are, arrays of strings joined by spaces, anything
    /// else as JSON.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        let value = self.claims.as_ref()?.get(name)?;
        Some(match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        })
    }
}

impl RequestCtx {
    /// Wall-clock time the request arrived; derived on demand (only the log needs it), so the
    /// hot path reads the clock once per request, not twice.
    pub fn start_wall(&self) -> SystemTime {
        SystemTime::now()
            .checked_sub(crate::clock::elapsed(self.start))
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// A context for a request that just arrived.
    #[inline]
    pub fn new(
        request_id: HeaderValue,
        peer: SocketAddr,
        listener: Arc<str>,
        method: Method,
        uri: Uri,
        version: Version,
    ) -> Self {
        Self {
            request_id,
            start: crate::clock::now().into_std(),
            peer,
            client_ip: peer.ip(),
            listener,
            method,
            uri,
            host: None,
            version,
            route: None,
            upstream: None,
            split: None,
            endpoint: None,
            tries: 0,
            upstream_connect: None,
            upstream_first_byte: None,
            body: Arc::default(),
            error: None,
            status: 0,
            grpc: false,
            forward: None,
            tls: false,
            denied_by: None,
            trace: None,
            upstream_start: None,
            consumer: None,
            claims: None,
            idempotency: None,
            compressed: None,
            cache: None,
            user_agent: None,
            referer: None,
            tls_session: None,
            interim: None,
            answered_by: None,
            upstream_status: 0,
            upstream_version: None,
            logged_headers: None,
        }
    }
}
