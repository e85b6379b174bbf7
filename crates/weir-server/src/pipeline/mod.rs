//! The request pipeline (docs/architecture.md §1): context → route → action → response, with
//! every failure turned into a response in one place (`ProxyError::to_response`) and the log
//! phase riding on the response body.

use std::sync::Arc;

mod log_phase;
pub(crate) mod outcome;
mod proxy_phase;
pub(crate) mod request;
mod route;

use http::{Request, Response, Version};
use weir_core::ClientBody;
use weir_core::{request_id, ErrorKind, ProxyError, RequestBody, RequestCtx, Side};
use weir_route::Action;

use crate::action::{forward, respond, static_files};
use crate::edge::state::ConnInfo;
use crate::headers::{self, X_REQUEST_ID};
use crate::runtime::Runtime;
use crate::shared::Shared;
use log_phase::LogPhase;
pub(crate) use log_phase::LoggedBody;
use outcome::Outcome;
use request::redirect_to_https;

/// Serves one request: `stream` is its HTTP/2 stream (`None` on HTTP/1.x).
#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
pub(crate) fn handle(
    req: Request<ClientBody>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
    stream: Option<crate::edge::h2::StreamOf>,
) -> impl std::future::Future<Output = Result<Response<LoggedBody>, h2::Error>> {
    async move {
        // Charged before anything else is held for it; past the budget an HTTP/2 stream is refused
        // (REFUSED_STREAM: never processed, safe for the client to retry) and an HTTP/1.1 request
        // is answered 503 and its connection closed.
        let charge = shared.budget.charge(req.headers());
        if charge.is_none() && req.version() == Version::HTTP_2 {
            return Err(h2::Error::from(h2::Reason::REFUSED_STREAM));
        }
        // Pin this request to the snapshot current now; a reload never changes it mid-flight.
        let runtime = shared.runtime.load_full();
        conn.state.request_started(req.version() == Version::HTTP_2);
        let stream_id = stream.as_ref().map(|s| s.id);
        let compression = shared.compression.clone();
        // The context built in the log phase's box (no local: a local would keep a dead copy
        // of it in this future) and filled in there (`describe`).
        let fields = headers::ContextFields::of(req.headers());
        let mut log = weir_core::boxed::new(|| {
            LogPhase::new(
                RequestCtx::new(
                    request_id::from_incoming(fields.request_id),
                    conn.peer,
                    conn.listener.clone(),
                    req.method().clone(),
                    req.uri().clone(),
                    req.version(),
                ),
                shared,
                runtime.clone(),
                conn.state.clone(),
            )
        });
        describe(&mut log.ctx, &fields, &req, &conn, &runtime, stream);
        let overloaded = charge.is_none();
        log.charge = charge;
        log.stream = stream_id;
        let mut hooks = weir_policy::Hooks::default();
        let processed = if overloaded {
            Err(ProxyError::new(ErrorKind::Overloaded))
        } else {
            process(req, &mut log.ctx, &runtime, &conn, &mut hooks, &compression).await
        };
        let Outcome {
            response: mut resp,
            deadline,
            conn: guard,
            compress,
        } = match processed {
            Ok(outcome) => outcome,
            Err(e) => {
                // The access-log record (`error`, `upstream`, `endpoint`, `status`) and the
                // per-endpoint failure counters say it; a WARN line per failed request would let one
                // dead backend flood the process log. The full error text is kept at debug.
                if e.side != Side::Client {
                    tracing::debug!(request_id = ?log.ctx.request_id, error = %e, "request failed");
                }
                log.ctx.error = Some(e.kind);
                if log.ctx.grpc {
                    Outcome::from(e.to_grpc_response(&log.ctx.request_id))
                } else {
                    Outcome::from(e.to_response(&log.ctx.request_id))
                }
            }
        };
        resp.headers_mut().insert(
            &X_REQUEST_ID,
            headers::request_id_value(&log.ctx.request_id),
        );
        weir_policy::ratelimit::add_fields(resp.headers_mut(), &hooks.rate_limit);
        log.held = hooks.respond(&log.ctx, &mut resp);
        if let Some(plan) = compress {
            log.ctx.compressed = plan.apply(&mut resp, &log.shared().compression);
        }
        if let Some(hsts) = &conn.opts.hsts {
            resp.headers_mut()
                .entry(http::header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
        if overloaded {
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        log.ctx.status = resp.status().as_u16();
        // The response's headers as they leave, every phase's edits included.
        if let Some(capture) = &runtime.log_headers {
            capture.response(resp.headers(), &mut log.ctx.logged_headers);
        }
        let expected = weir_core::body::declared_length(resp.headers());
        let grpc = log.ctx.grpc;
        Ok(resp.map(|body| LoggedBody::new(body, log, deadline, expected, guard, grpc)))
    }
}

/// The rest of the request's context: its client, trace, and what the log records of it,
/// filled in where the context already is (the boxed log phase). Built whole elsewhere and
/// moved in, its 616 bytes were copied three times a request; with only `RequestCtx::new`
/// moved in, twice (gdb on `memcpy`).
fn describe(
    ctx: &mut RequestCtx,
    fields: &headers::ContextFields<'_>,
    req: &Request<ClientBody>,
    conn: &ConnInfo,
    runtime: &Runtime,
    stream: Option<crate::edge::h2::StreamOf>,
) {
    ctx.client_ip = headers::client_ip(req.headers(), conn.peer.ip(), &runtime.trusted_proxies);
    // The context's copy of the target is what gets recorded (log, span, errors): credentials
    // in the query never reach them. The request itself keeps its target.
    if let Some(redacted) = runtime.redact.apply(&ctx.uri) {
        ctx.uri = redacted;
    }
    ctx.tls = conn.opts.tls;
    let incoming = fields
        .traceparent
        .and_then(|v| weir_core::Traceparent::parse(v.as_bytes()));
    ctx.trace = match &runtime.tracer {
        Some(tracer) => Some(tracer.begin(
            incoming,
            headers::is_trusted(conn.peer.ip(), &runtime.trusted_proxies),
        )),
        None => incoming.map(weir_core::TraceContext::observed),
    };
    ctx.grpc = fields
        .content_type
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    ctx.user_agent = fields.user_agent.cloned();
    ctx.referer = fields.referer.cloned();
    ctx.tls_session = conn.tls_session.clone();
    if let Some(capture) = &runtime.log_headers {
        ctx.logged_headers = capture.request(req.headers());
    }
    ctx.interim = match stream {
        Some(s) => Some(weir_core::InterimSink::new(s.interim)),
        // HTTP/1.0 clients get no 1xx (RFC 9110 §15.2).
        None if req.version() == Version::HTTP_11 => {
            Some(weir_core::InterimSink::new(conn.state.clone()))
        }
        None => None,
    };
}

/// The phases of one request, in order: admission (field count, the listener's address
/// rules), the forward-proxy listener's own path, the head checks (framing, Host, the https
/// redirect), routing with the body limit, the route's policies, then its action. Each
/// phase answers early with an error or a response; `handle` turns either into the reply.
#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
fn process<'a>(
    req: Request<ClientBody>,
    ctx: &'a mut RequestCtx,
    rt: &'a Arc<Runtime>,
    conn: &'a Arc<ConnInfo>,
    hooks: &'a mut weir_policy::Hooks,
    compression: &'a Arc<crate::compress::CompressionStats>,
) -> impl std::future::Future<Output = Result<Outcome, ProxyError>> + 'a {
    async move {
        request::admit(&req, ctx, rt)?;
        // ACME HTTP-01 validation, before routing: only tokens Weir has outstanding.
        if !conn.opts.tls && req.uri().path().starts_with("/.well-known/acme-challenge/") {
            let fleet = rt
                .acme_fleet
                .then(|| rt.policy_shared.redis.as_deref())
                .flatten();
            // Boxed: a rare path, kept out of every request's future.
            if let Some(answer) =
                Box::pin(crate::acme::http01_answer(req.uri().path(), fleet)).await
            {
                return Ok(Outcome::from(answer));
            }
        }
        if let Some(policy) = &conn.opts.forward {
            return forward_listener(req, ctx, rt, conn, policy).await;
        }
        let host_header = request::vet(&req, ctx, &conn.host)?;
        if let Some(port) = conn.opts.redirect_https {
            return redirect_to_https(&req, ctx, port).map(Outcome::from);
        }
        let matched = route::find(&req, ctx, rt)?;
        let compress = matched.compress_plan(&req);
        let (mut parts, body) = req.into_parts();
        let mut body = RequestBody::new(body, matched.max_body, ctx.body.clone());
        if let Some(early) =
            request_policies(matched.entry, ctx, &mut parts, &mut body, hooks).await
        {
            return early;
        }
        let outcome = match &matched.route.action {
            Action::Proxy {
                upstream,
                retry_non_idempotent,
            } => {
                let upstream = rt
                    .upstreams
                    .get(*upstream)
                    .ok_or_else(|| ProxyError::new(ErrorKind::Internal))?
                    .clone();
                let call = proxy_phase::Call {
                    rt,
                    conn,
                    upstream,
                    host: host_header,
                    retry_non_idempotent: *retry_non_idempotent,
                    entry: matched.entry,
                    compression,
                };
                // The cache phase owns compression of what it serves and stores. A split route's
                // phase is boxed: every other route's future stays as small as it was.
                return match matched.entry.and_then(|e| e.split.clone()) {
                    Some(split) => {
                        Box::pin(proxy_phase::split_run(
                            split, call, parts, body, ctx, compress,
                        ))
                        .await
                    }
                    None => proxy_phase::run(call, parts, body, ctx, compress).await,
                };
            }
            Action::Respond(spec) => respond::respond(spec).into(),
            Action::Redirect(spec) => respond::redirect(spec, &parts, ctx).map(Outcome::from)?,
            Action::Static(spec) => {
                let req = Request::from_parts(parts, ());
                static_files::serve(spec, &req).await.map(Outcome::from)?
            }
        };
        Ok(outcome.compressed(compress))
    }
}

/// A forward-proxy listener's request: its own action, counted per decision.
async fn forward_listener(
    req: Request<ClientBody>,
    ctx: &mut RequestCtx,
    rt: &Runtime,
    conn: &ConnInfo,
    policy: &Arc<forward::ForwardPolicy>,
) -> Result<Outcome, ProxyError> {
    let result = forward::handle(req, ctx, policy, rt.limits.max_body).await;
    let counter = match ctx.forward {
        Some(weir_core::ForwardDecision::Allowed) => &conn.counters.forward_allowed,
        Some(weir_core::ForwardDecision::Denied) => &conn.counters.forward_denied,
        None => return result,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    result
}

/// The route's policies in order; the first that answers ends the request (named in
/// `ctx.denied_by` when it refused, `ctx.answered_by` when it answered: a preflight, a replay).
async fn request_policies(
    entry: Option<&crate::runtime::RouteEntry>,
    ctx: &mut RequestCtx,
    parts: &mut http::request::Parts,
    body: &mut RequestBody,
    hooks: &mut weir_policy::Hooks,
) -> Option<Result<Outcome, ProxyError>> {
    for policy in entry.map(|e| e.policies.as_slice()).unwrap_or_default() {
        if let Err(early) = policy.request(ctx, parts, body, hooks).await {
            return Some(match early {
                weir_policy::Early::Error(e) => {
                    ctx.denied_by = Some(policy.name.clone());
                    Err(e)
                }
                // A preflight or a replay is an answer, not a refusal; an auth service's
                // 401/403 is a refusal.
                weir_policy::Early::Response(resp) => {
                    if resp.status().as_u16() >= 400 {
                        ctx.denied_by = Some(policy.name.clone());
                    } else {
                        ctx.answered_by = Some(policy.name.clone());
                    }
                    Ok(Outcome::from(*resp))
                }
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request's future is allocated and moved whole, so its size is a cost on every
    /// request: the rare, large parts (connecting, policy fetches) are boxed where they are
    /// awaited. This fails when something large lands on the common path again.
    #[test]
    fn a_request_future_stays_small() {
        fn future_size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(
                Request<ClientBody>,
                Arc<ConnInfo>,
                Arc<Shared>,
                Option<crate::edge::h2::StreamOf>,
            ) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        // 15.8 KiB before connecting and policy fetches were boxed; 8.3 KiB after; 10,272
        // bytes with the access log's TLS, referer and upstream-status fields; 10,512 with
        // the interim-response sink in the upstream call's options; 11,176 with Weir's own
        // HTTP/1.1 upstream client (its response body owns the connection: 120 bytes where
        // hyper's was 40, in each response the future holds; the exchange itself is boxed);
        // 8,536 with the request's functions written as `async move` blocks (an `async fn`
        // holds each argument twice: 1.8 KB of copies of the head, body and context); 7,912
        // with the context built in an expression (a local kept a dead copy of its 616 bytes);
        // 6,984 with the upstream exchange a plain function returning its timeout (its
        // outgoing request had been held three times over); 7,288 with the forwarding fields
        // kept beside the request's header map (`AddedFields`, 296 bytes held across the
        // upstream call; the six map inserts they replace cost more than moving them: −639
        // instructions a request, measured); 5,912 with the exchange's rare resend paths in
        // boxed functions of their own (they made its future, which every request moves
        // twice, 1.4 KB larger).
        let size = future_size(handle);
        assert!(size <= 6 * 1024, "the request future is {size} bytes");
    }
}
