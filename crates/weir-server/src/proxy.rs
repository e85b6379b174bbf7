//! The `proxy` action: pick an endpoint, rewrite headers for the hop, stream the request up and
//! the response back.

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use weir_core::{ErrorKind, ProxyError, RequestBody, RequestCtx, ResponseBody};
use weir_upstream::Upstream;

use crate::headers::{self, X_REQUEST_ID};
use crate::pipeline::Outcome;
use crate::runtime::Runtime;

pub(crate) async fn forward(
    req: Request<Incoming>,
    ctx: &mut RequestCtx,
    rt: &Runtime,
    upstream: &Upstream,
    host: Option<HeaderValue>,
) -> Result<Outcome, ProxyError> {
    ctx.upstream = Some(upstream.name.clone());
    let (index, endpoint) = upstream.select()?;
    ctx.endpoint = Some(endpoint.address.clone());
    let deadline = upstream
        .total_timeout
        .map(|t| tokio::time::Instant::from_std(ctx.start) + t);

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let authority = parts.uri.authority().cloned();
    headers::set_host(
        &mut parts.headers,
        authority.as_ref().map(|a| a.as_str()),
        upstream.host_header.as_ref(),
    );
    headers::add_forwarding(
        &mut parts.headers,
        ctx.peer.ip(),
        &rt.trusted_proxies,
        host.as_ref(),
        ctx.version,
    );
    parts.headers.insert(&X_REQUEST_ID, ctx.request_id.clone());
    let req = Request::from_parts(
        parts,
        RequestBody::new(body, rt.limits.max_body, ctx.body.clone()),
    );

    let send = upstream.send(index, req, &ctx.body);
    let (resp, conn) = match deadline {
        Some(d) => tokio::time::timeout_at(d, send)
            .await
            .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout))??,
        None => send.await?,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version);
    Ok(Outcome {
        response: Response::from_parts(parts, ResponseBody::Upstream(body)),
        deadline,
        conn: Some(conn),
    })
}
