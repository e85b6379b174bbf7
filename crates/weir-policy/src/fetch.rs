//! Weir's own client for the services policies talk to (a JWKS endpoint, an auth service):
//! the URL becomes an internal [`weir_upstream::Upstream`], so these calls get the same
//! pooled keep-alive connections, TLS (system roots, or the policy's CA bundle, SNI and
//! client certificate), timeouts and passive health as any proxied request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use weir_core::{BodyStats, ErrorKind, ProxyError, RequestBody};
use weir_upstream::{CallInfo, CallOpts, Upstream};

/// A response read whole (bounded).
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A client for one base URL.
#[derive(Debug)]
pub(crate) struct Fetcher {
    upstream: Arc<Upstream>,
    host: HeaderValue,
    /// The URL's path without a trailing `/` (`""` for the root).
    base_path: String,
    base_query: Option<String>,
    timeout: Duration,
}

/// Largest body read from a policy service.
const MAX_BODY: usize = 1 << 20;

impl Fetcher {
    /// A client for `url`; `tls` (for `https://`) names a CA bundle, SNI or a client
    /// certificate, like an upstream's `tls` (default: the system's roots).
    pub(crate) fn new(
        name: &str,
        url: &str,
        timeout: Duration,
        tls: Option<&weir_config::UpstreamTls>,
    ) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("invalid URL `{url}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{url}` is not an http:// or https:// URL")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let endpoint = if host.starts_with('[') {
            format!("{host}:{port}")
        } else if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls_line = if https { "tls = {}\n" } else { "" };
        let timeout_ms = timeout.as_millis().max(1);
        let toml = format!(
            "name = {name:?}\nendpoints = [{endpoint:?}]\n{tls_line}timeouts = {{ connect = \"{timeout_ms}ms\", response_header = \"{timeout_ms}ms\" }}\nretry = {{ attempts = 0 }}\n"
        );
        let mut cfg: weir_config::Upstream =
            toml::from_str(&toml).map_err(|e| format!("internal upstream for `{url}`: {e}"))?;
        if let (true, Some(t)) = (https, tls) {
            cfg.tls = Some(t.clone());
        }
        let upstream = Upstream::new(&cfg).map_err(|e| e.to_string())?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            upstream: Arc::new(upstream),
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            base_path,
            base_query: uri.query().map(str::to_owned),
            timeout,
        })
    }

    /// The base URL's path and query, or the base path with `suffix` (a path and query)
    /// appended.
    pub(crate) fn target(&self, suffix: Option<&str>) -> String {
        match suffix {
            Some(s) => format!("{}{s}", self.base_path),
            None => {
                let path = if self.base_path.is_empty() {
                    "/"
                } else {
                    &self.base_path
                };
                match &self.base_query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.to_owned(),
                }
            }
        }
    }

    /// Sends one request and reads the whole response (at most 1 MiB), all within the
    /// timeout.
    pub(crate) async fn send(
        &self,
        method: Method,
        target: &str,
        mut headers: HeaderMap,
    ) -> Result<Fetched, ProxyError> {
        self.upstream.start();
        let uri: http::Uri = target
            .parse()
            .map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .map_err(|e| ProxyError::new(ErrorKind::Internal).with_source(e))?;
        headers.insert(http::header::HOST, self.host.clone());
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        *req.headers_mut() = headers;
        let (parts, ()) = req.into_parts();
        let stats = Arc::new(BodyStats::default());
        let opts = CallOpts {
            client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            retry_non_idempotent: false,
            body_stats: stats.clone(),
            addrs: None,
            interim: None,
            added: &weir_core::added::NO_FIELDS,
        };
        let work = async {
            let mut info = CallInfo::default();
            // Boxed, so that the futures of policies that may fetch (JWT, ext-auth) stay small
            // in every request's future.
            let (resp, _guard) = Box::pin(self.upstream.call(
                parts,
                RequestBody::buffered(Bytes::new(), stats),
                opts,
                &mut info,
            ))
            .await?;
            let (head, body) = resp.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_BODY);
            let body = limited
                .collect()
                .await
                .map_err(|e| ProxyError::new(ErrorKind::UpstreamProtocol).with_source(e))?
                .to_bytes();
            Ok::<_, ProxyError>(Fetched {
                status: head.status,
                headers: head.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| Err(ProxyError::new(ErrorKind::UpstreamTimeout)))
    }
}
