//! Forward-proxy mode (egress control): a listener with `mode = "forward"` accepts CONNECT
//! tunnels and absolute-form HTTP requests, only to destinations its allow-list matches (deny
//! by default). Each decision is in the access log (`forward`: `allowed` / `denied`, with the
//! destination as `endpoint`).

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weir_config::{DestinationPattern, ForwardProxy};
use weir_core::{ErrorKind, ProxyError, RequestBody, RequestCtx, ResponseBody};

use crate::headers;
use crate::pipeline::Outcome;
use crate::tunnel;

/// A forward listener's compiled policy.
#[derive(Debug)]
pub(crate) struct ForwardPolicy {
    allow: Vec<DestinationPattern>,
    connect_timeout: Duration,
    tunnel_idle: Duration,
}

impl ForwardPolicy {
    pub(crate) fn new(cfg: &ForwardProxy) -> Self {
        Self {
            // Validated by `weir check`; a pattern that does not parse allows nothing.
            allow: cfg
                .allow
                .iter()
                .filter_map(|p| weir_config::parse_destination_pattern(p).ok())
                .collect(),
            connect_timeout: cfg.connect_timeout.get(),
            tunnel_idle: cfg.tunnel_idle.get(),
        }
    }

    fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|p| p.matches(host, port))
    }
}

/// Serves one request on a forward listener.
pub(crate) async fn handle(
    req: Request<Incoming>,
    ctx: &mut RequestCtx,
    policy: &Arc<ForwardPolicy>,
    max_body: u64,
) -> Result<Outcome, ProxyError> {
    let connect = req.method() == Method::CONNECT;
    let (host, port) = destination(req.uri(), connect)?;
    ctx.upstream = Some(Arc::from("forward"));
    ctx.endpoint = Some(Arc::from(format!("{host}:{port}")));
    if !policy.allows(&host, port) {
        ctx.forward = Some("denied");
        return Err(ProxyError::new(ErrorKind::ForwardDenied));
    }
    ctx.forward = Some("allowed");
    let tcp = tokio::time::timeout(
        policy.connect_timeout,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout))?
    .map_err(|e| ProxyError::new(ErrorKind::UpstreamConnect).with_source(e))?;
    let _ = tcp.set_nodelay(true);

    if connect {
        // The tunnel opens once hyper has sent our 200 and handed the connection over.
        let upgrade = hyper::upgrade::on(req);
        let idle = policy.tunnel_idle;
        tokio::spawn(async move {
            match upgrade.await {
                Ok(client) => tunnel::pump(TokioIo::new(client), tcp, idle).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        let mut resp = Response::new(ResponseBody::Empty);
        *resp.status_mut() = StatusCode::OK;
        return Ok(Outcome::from(resp));
    }

    // Absolute-form request: one connection, origin-form target, hop-by-hop headers removed.
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let authority = if port == 80 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&authority) {
        parts.headers.insert(HOST, v);
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = http::Version::HTTP_11;
    let body = RequestBody::new(body, max_body, ctx.body.clone());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| ProxyError::new(ErrorKind::UpstreamConnect).with_source(e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| ProxyError::new(ErrorKind::UpstreamProtocol).with_source(e))?;
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version);
    Ok(Outcome::from(Response::from_parts(
        parts,
        ResponseBody::Upstream(body),
    )))
}

/// Host (lowercase, IPv6 without brackets) and port of a CONNECT or absolute-form target.
fn destination(uri: &Uri, connect: bool) -> Result<(String, u16), ProxyError> {
    let bad = || ProxyError::new(ErrorKind::BadRequest);
    let authority = uri.authority().ok_or_else(bad)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = match (authority.port_u16(), connect) {
        (Some(p), _) => p,
        // CONNECT needs an explicit port (RFC 9110 §9.3.6).
        (None, true) => return Err(bad()),
        (None, false) if uri.scheme_str() == Some("http") => 80,
        // https in absolute form: clients use CONNECT for that.
        (None, false) => return Err(bad()),
    };
    if !connect && uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    Ok((host, port))
}
