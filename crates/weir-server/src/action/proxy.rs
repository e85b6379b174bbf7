//! The `proxy` action: pick an endpoint, rewrite headers for the hop, stream the request up and
//! the response back.

use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use weir_core::added::AddedFields;
use weir_core::{ErrorKind, ProxyError, RequestBody, RequestCtx, ResponseBody, UpstreamBody};

use http::header::{CONNECTION, SET_COOKIE, UPGRADE};
use http::StatusCode;
use weir_upstream::{CallInfo, CallOpts, Upstream};

use super::tunnel;
use crate::deploy::mirror::Mirror;
use crate::edge::h1::ClientUpgrade;
use crate::edge::state::ConnInfo;
use crate::headers;
use crate::pipeline::outcome::Outcome;
use crate::runtime::Runtime;

/// One request to forward, and where.
pub(crate) struct Forward<'a> {
    pub(crate) parts: http::request::Parts,
    pub(crate) body: RequestBody,
    pub(crate) rt: &'a Runtime,
    pub(crate) conn: &'a ConnInfo,
    pub(crate) upstream: &'a Arc<Upstream>,
    /// The Host the client sent.
    pub(crate) host: Option<HeaderValue>,
    pub(crate) retry_non_idempotent: bool,
    /// The route's mirror, which may copy the request as it goes.
    pub(crate) mirror: Option<&'a Arc<Mirror>>,
}

/// Forwards `f`. The request's head and body are used in place as fields of `f` (moved out
/// where they go), so the future does not hold them twice.
#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
pub(crate) fn forward<'a>(
    mut f: Forward<'a>,
    ctx: &'a mut RequestCtx,
) -> impl std::future::Future<Output = Result<Outcome, ProxyError>> + 'a {
    async move {
        let (rt, conn, upstream, retry_non_idempotent, mirror) =
            (f.rt, f.conn, f.upstream, f.retry_non_idempotent, f.mirror);
        ctx.upstream = Some(upstream.name.clone());
        // The upstream's total timeout, shortened by a gRPC client's own deadline.
        let grpc_timeout = ctx
            .grpc
            .then(|| f.parts.headers.get("grpc-timeout"))
            .flatten()
            .and_then(|v| parse_grpc_timeout(v.as_bytes()));
        let limit = match (upstream.total_timeout, grpc_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = limit.map(|t| tokio::time::Instant::from_std(ctx.start) + t);

        // An HTTP/1.1 Upgrade (WebSocket): its headers go up with the request; the tunnel opens
        // only if the upstream answers 101.
        let upgrade = headers::upgrade_token(&f.parts.headers, f.parts.version);
        let client_upgrade = f.parts.extensions.remove::<ClientUpgrade>();
        // Room for what is added below, made before the first insert: HTTP/1.1 heads are parsed
        // with it (nothing to do); an HTTP/2 request's map is sized by the `h2` crate to the
        // client's few fields, and growing it now rehashes fewer than growing it at the seventh.
        f.parts.headers.reserve(headers::ADDED_BY_PROXY);
        headers::strip_hop_by_hop(&mut f.parts.headers);
        if let Some(token) = &upgrade {
            f.parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            f.parts.headers.insert(UPGRADE, token.clone());
        }
        let authority = f.parts.uri.authority().cloned();
        headers::set_host(
            &mut f.parts.headers,
            authority.as_ref().map(|a| a.as_str()),
            upstream.host_header.as_ref(),
        );
        let present = headers::ProxyFieldsPresent::of(&f.parts.headers);
        let mut added = AddedFields::new();
        headers::add_forwarding(
            &mut f.parts.headers,
            present,
            &mut added,
            ctx.peer.ip(),
            &rt.trusted_proxies,
            f.host.as_ref(),
            ctx.version,
            conn.opts.tls,
            &conn.forwarding,
        );
        // The client-certificate subject header only ever comes from Weir.
        if let Some(name) = &conn.opts.client_subject_header {
            f.parts.headers.remove(name);
            if let Some(subject) = &conn.client_subject {
                f.parts.headers.insert(name.clone(), subject.clone());
            }
        }
        headers::add_request_id(&mut f.parts.headers, present, &mut added, &ctx.request_id);
        // Weir traces: the upstream continues the trace with Weir's upstream span as its parent.
        // A `tracestate` belongs to the caller's trace; without a valid caller it is dropped.
        if let Some(tp) = ctx.trace.and_then(|t| t.upstream_traceparent()) {
            f.parts.headers.insert(&headers::TRACEPARENT, tp);
            if ctx.trace.is_some_and(|t| t.parent_id.is_none()) {
                f.parts.headers.remove(&headers::TRACESTATE);
            }
        }
        // The copy is of the request as it goes upstream, with the Host the client sent (or the
        // mirror upstream's own `host_header`).
        if let Some(m) = mirror {
            let client_host = f
                .parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            m.copy(
                &f.parts,
                &added,
                &mut f.body,
                f.host.clone().or(client_host),
                ctx.client_ip,
            );
        }
        // A body that fails at once (cut short, refused framing, over the limit) fails here,
        // before the request head reaches any upstream.
        if let Err(e) = f.body.prefetch().await {
            let kind = if ctx.body.too_large() {
                ErrorKind::BodyTooLarge
            } else {
                ErrorKind::ClientBody
            };
            return Err(ProxyError::new(kind).with_source(e));
        }
        let opts = CallOpts {
            client_ip: ctx.client_ip,
            retry_non_idempotent,
            body_stats: ctx.body.clone(),
            addrs: Some((conn.peer, conn.local)),
            interim: ctx.interim.clone(),
            added: &added,
        };
        let mut info = CallInfo::default();
        ctx.upstream_start = Some(weir_core::clock::now().into_std());
        let call = upstream.call(f.parts, f.body, opts, &mut info);
        let result = match deadline {
            Some(d) => tokio::time::timeout_at(d, call)
                .await
                .unwrap_or_else(|_| Err(ProxyError::new(ErrorKind::UpstreamTimeout))),
            None => call.await,
        };
        ctx.endpoint = info.endpoint;
        ctx.tries = info.tries;
        ctx.upstream_connect = info.connect;
        ctx.upstream_first_byte = info.first_byte;
        let (resp, guard) = result?;
        ctx.upstream_status = resp.status().as_u16();
        ctx.upstream_version = Some(resp.version());
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let (mut parts, body) = resp.into_parts();
        let (tunnel, body) = match (switching, upgrade.is_some(), client_upgrade) {
            (true, true, Some(client)) => {
                // The upstream's connection is the tunnel's now (only HTTP/1.1 upgrades).
                let upstream_side = match body {
                    UpstreamBody::Http1(b) => b.into_upgraded(),
                    UpstreamBody::Http2(_) => None,
                }
                .ok_or_else(|| ProxyError::new(ErrorKind::UpstreamProtocol))?;
                (Some((client, upstream_side)), ResponseBody::Empty)
            }
            // A 101 nobody asked for cannot be relayed.
            (true, _, _) => return Err(ProxyError::new(ErrorKind::UpstreamProtocol)),
            _ => (None, ResponseBody::Upstream(body)),
        };
        let upgraded_to = tunnel
            .is_some()
            .then(|| parts.headers.get(UPGRADE).cloned())
            .flatten();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::add_via(&mut parts.headers, parts.version);
        if let Some((client, upstream_side)) = tunnel {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(to) = upgraded_to.or(upgrade) {
                parts.headers.insert(UPGRADE, to);
            }
            tokio::spawn(tunnel::splice(client, upstream_side, upstream.tunnel_idle));
        }
        if let Some(cookie) = info.set_cookie {
            parts.headers.append(SET_COOKIE, cookie);
        }
        // The body's own length when its framing gave one (no lookup in the map), else the field.
        let length = http_body::Body::size_hint(&body)
            .exact()
            .or_else(|| weir_core::body::declared_length(&parts.headers));
        if !switching && length.is_some_and(|n| n <= READ_AHEAD_MAX) {
            // A small body is read whole now and the upstream connection goes back to its pool at
            // once: a client that does not read (an HTTP/2 window held at zero) pins the few bytes
            // of its own answer, never an upstream connection.
            let read = read_whole(body);
            let body = match deadline {
                Some(d) => tokio::time::timeout_at(d, read)
                    .await
                    .map_err(|_| ProxyError::new(ErrorKind::UpstreamTimeout))?,
                None => read.await,
            }
            .map_err(|e| ProxyError::new(ErrorKind::UpstreamProtocol).with_source(e))?;
            drop(guard);
            return Ok(Outcome {
                response: Response::from_parts(parts, body),
                deadline,
                conn: None,
                compress: None,
            });
        }
        Ok(Outcome {
            response: Response::from_parts(parts, body),
            deadline,
            conn: Some(guard),
            compress: None,
        })
    }
}

/// Response bodies of at most this many bytes, declared by `Content-Length`, are read ahead
/// whole (nginx's `proxy_buffering` does the same for every body, into its buffers).
const READ_AHEAD_MAX: u64 = 16 * 1024;

/// Reads a small body whole. Without `Collect`'s chunk list: a body that came in one frame (the
/// usual case) stays that frame's bytes; more frames are joined; trailers (HTTP/2) are kept.
async fn read_whole(mut body: ResponseBody) -> Result<ResponseBody, weir_core::BoxError> {
    let mut data = bytes::Bytes::new();
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        match frame?.into_data() {
            Ok(chunk) if data.is_empty() => data = chunk,
            Ok(chunk) => joined
                .get_or_insert_with(|| bytes::BytesMut::from(&data[..]))
                .extend_from_slice(&chunk),
            Err(frame) => {
                let Ok(trailers) = frame.into_trailers() else {
                    continue;
                };
                let data = joined.map_or(data, bytes::BytesMut::freeze);
                let mut frames: Vec<Result<_, weir_core::BoxError>> = Vec::with_capacity(2);
                if !data.is_empty() {
                    frames.push(Ok(http_body::Frame::data(data)));
                }
                frames.push(Ok(http_body::Frame::trailers(trailers)));
                return Ok(ResponseBody::Stream(
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
                        .boxed_unsync(),
                ));
            }
        }
    }
    Ok(ResponseBody::full(
        joined.map_or(data, bytes::BytesMut::freeze),
    ))
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_grpc_timeout(v: &[u8]) -> Option<std::time::Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_grpc_timeout;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(
            parse_grpc_timeout(b"200m"),
            Some(Duration::from_millis(200))
        );
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"5n"), Some(Duration::from_nanos(5)));
        for bad in [&b""[..], b"m", b"123456789S", b"12x", b"-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None);
        }
    }
}
