//! Background refresh (`stale-while-revalidate`): the stale response is served at once and the
//! request is sent again on its own task to fill the store.

use std::sync::Arc;

use http::{HeaderValue, Method};
use weir_core::{request_id, RequestBody, RequestCtx};

use crate::action::proxy;
use crate::edge::state::ConnInfo;
use crate::runtime::Runtime;

/// A `stale-while-revalidate` refresh: the request to send and what it needs from the one
/// that triggered it.
pub(crate) struct RefreshJob<'a> {
    pub(crate) plan: Box<super::Plan>,
    pub(crate) parts: http::request::Parts,
    pub(crate) ctx: &'a RequestCtx,
    pub(crate) rt: Arc<Runtime>,
    pub(crate) conn: Arc<ConnInfo>,
    pub(crate) upstream: Arc<weir_upstream::Upstream>,
    pub(crate) host: Option<HeaderValue>,
    pub(crate) rewrite: Option<&'a weir_route::Rewrite>,
    pub(crate) compress: Option<crate::compress::Plan>,
    pub(crate) compression: Arc<crate::compress::CompressionStats>,
}

/// Sends a refresh on its own task, through the same forward path as any request (pool,
/// retries, breakers, timeouts), and reads its body to the end so the store is filled; the
/// plan's fill guard wakes requests waiting for the key when it is done.
pub(crate) fn refresh_in_background(job: RefreshJob<'_>) {
    let RefreshJob {
        plan,
        mut parts,
        ctx,
        rt,
        conn,
        upstream,
        host,
        rewrite,
        compress,
        compression,
    } = job;
    let mut bg = RequestCtx::new(
        request_id::generate(),
        ctx.peer,
        ctx.listener.clone(),
        Method::GET,
        parts.uri.clone(),
        parts.version,
    );
    bg.client_ip = ctx.client_ip;
    bg.host = ctx.host.clone();
    bg.tls = ctx.tls;
    bg.route = ctx.route.clone();
    if let Some(uri) = rewrite.and_then(|rw| rw.uri(&parts.uri)) {
        parts.uri = uri;
    }
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        plan.count_refresh();
        let body = RequestBody::buffered(bytes::Bytes::new(), bg.body.clone());
        let job = proxy::Forward {
            parts,
            body,
            rt: &rt,
            conn: &conn,
            upstream: &upstream,
            host,
            retry_non_idempotent: false,
            mirror: None,
        };
        let result = proxy::forward(job, &mut bg).await;
        if let Ok(out) = plan.finish(result, &mut bg, compress, &compression) {
            // Reading the body to its end is what stores it; the upstream slot goes after.
            let _ = out.response.into_body().collect().await;
            drop(out.conn);
        }
    });
}
