//! A proxy route's action with its cache phase around it: the cache answers from the store,
//! or answers stale and refreshes in the background, or lets the request go forward and
//! stores what comes back; without a cache the request just goes forward. The route's path
//! rewrite applies to what goes forward.

use std::sync::Arc;

use http::request::Parts;
use http::HeaderValue;
use weir_core::{ProxyError, RequestBody, RequestCtx};
use weir_upstream::Upstream;

use super::outcome::Outcome;
use crate::action::proxy;
use crate::cache::{self, refresh};
use crate::edge::state::ConnInfo;
use crate::runtime::{RouteEntry, Runtime};

/// What the proxy phase needs besides the request.
pub(super) struct Call<'a> {
    pub(super) rt: &'a Arc<Runtime>,
    pub(super) conn: &'a Arc<ConnInfo>,
    pub(super) upstream: Arc<Upstream>,
    pub(super) host: Option<HeaderValue>,
    pub(super) retry_non_idempotent: bool,
    pub(super) entry: Option<&'a RouteEntry>,
    pub(super) compression: &'a Arc<crate::compress::CompressionStats>,
}

/// A split route's proxy action: the version is chosen (an override, the sticky key's point,
/// or a random one), the request goes through [`run`] to it, and what the version answered is
/// recorded for its metrics and its canary plan. Boxed by the caller, so routes without a
/// split do not carry its state in their future.
#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
pub(super) fn split_run<'a>(
    split: std::sync::Arc<crate::deploy::split::Split>,
    mut call: Call<'a>,
    parts: Parts,
    body: RequestBody,
    ctx: &'a mut RequestCtx,
    compress: Option<crate::compress::Plan>,
) -> impl std::future::Future<Output = Result<Outcome, ProxyError>> + 'a {
    async move {
        let choice = split.choose(&parts, ctx.client_ip);
        if let Some(target) = split.targets.get(choice.index) {
            call.upstream = target.upstream.clone();
        }
        ctx.split = Some(choice.by.as_str());
        let mut result = run(call, parts, body, ctx, compress).await;
        // What the version answered (a response from the cache is not its answer).
        if ctx.upstream.is_some() {
            let status = match &result {
                Ok(o) => o.response.status().as_u16(),
                Err(e) => e.status().as_u16(),
            };
            split.record(choice.index, status, weir_core::clock::elapsed(ctx.start));
        }
        if let (Some(cookie), Ok(outcome)) = (choice.set_cookie, &mut result) {
            outcome
                .response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
        result
    }
}

/// Runs the proxy action (through the route's cache, when it has one).
#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
pub(super) fn run<'a>(
    call: Call<'a>,
    mut parts: Parts,
    body: RequestBody,
    ctx: &'a mut RequestCtx,
    compress: Option<crate::compress::Plan>,
) -> impl std::future::Future<Output = Result<Outcome, ProxyError>> + 'a {
    async move {
        let rewrite = call.entry.and_then(|e| e.rewrite.as_ref());
        let plan = match call.entry.and_then(|e| e.cache.as_ref()) {
            None => None,
            Some(cache) => match cache.begin(ctx, &mut parts).await {
                cache::Begin::Serve(resp) => return Ok(Outcome::from(resp).compressed(compress)),
                cache::Begin::Forward(plan) => Some(plan),
                cache::Begin::Refresh {
                    response,
                    plan,
                    request,
                } => {
                    refresh::refresh_in_background(refresh::RefreshJob {
                        plan,
                        parts: *request,
                        ctx,
                        rt: call.rt.clone(),
                        conn: call.conn.clone(),
                        upstream: call.upstream,
                        host: call.host,
                        rewrite,
                        compress: compress.clone(),
                        compression: call.compression.clone(),
                    });
                    return Ok(Outcome::from(response).compressed(compress));
                }
            },
        };
        if let Some(uri) = rewrite.and_then(|rw| rw.uri(&parts.uri)) {
            parts.uri = uri;
        }
        let result = proxy::forward(
            proxy::Forward {
                parts,
                body,
                rt: call.rt,
                conn: call.conn,
                upstream: &call.upstream,
                host: call.host,
                retry_non_idempotent: call.retry_non_idempotent,
                mirror: call.entry.and_then(|e| e.mirror.as_ref()),
            },
            ctx,
        )
        .await;
        match plan {
            // The cache compresses before storing (compressed variants are stored as variants)
            // and hands back the plan for responses it served from the store.
            Some(plan) => plan.finish(result, ctx, compress, call.compression),
            None => Ok(result?.compressed(compress)),
        }
    }
}
