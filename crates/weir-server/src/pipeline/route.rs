//! The routing phase: the listener's router picks the route (after path normalisation), and
//! the route's (or the server's) body limit refuses a declared body that is too large before
//! anything reads it.

use http::{Method, Request};
use weir_core::ClientBody;
use weir_core::{ErrorKind, ProxyError, RequestCtx};
use weir_route::{CompiledRoute, RequestView};

use crate::runtime::{RouteEntry, Runtime};

/// The route a request matched, and what the runtime compiled for it.
pub(super) struct Matched<'a> {
    pub(super) route: &'a CompiledRoute,
    pub(super) entry: Option<&'a RouteEntry>,
    /// The body limit that applies (0 = unlimited).
    pub(super) max_body: u64,
}

/// Routes `req`; names the route in `ctx`.
pub(super) fn find<'a>(
    req: &Request<ClientBody>,
    ctx: &mut RequestCtx,
    rt: &'a Runtime,
) -> Result<Matched<'a>, ProxyError> {
    let router = rt
        .router(&ctx.listener)
        .ok_or_else(|| ProxyError::new(ErrorKind::Internal))?;
    let path = weir_route::normalize_path(req.uri().path());
    let view = RequestView {
        method: req.method(),
        host: ctx.host.as_deref(),
        path: &path,
        query: req.uri().query(),
        headers: req.headers(),
    };
    let route = router.find(&view);
    let entry = route.and_then(|r| rt.routes.get(r.index));
    // The route's own body limit, else the server's (0 = unlimited); checked before a
    // request without a route is refused, as before any route existed.
    let max_body = entry.and_then(|e| e.max_body).unwrap_or(rt.limits.max_body);
    if max_body > 0 {
        let declared = weir_core::body::declared_length(req.headers());
        if declared.is_some_and(|n| n > max_body) {
            return Err(ProxyError::new(ErrorKind::BodyTooLarge));
        }
    }
    let route = route.ok_or_else(|| ProxyError::new(ErrorKind::NoRoute))?;
    ctx.route = Some(route.name.clone());
    Ok(Matched {
        route,
        entry,
        max_body,
    })
}

impl Matched<'_> {
    /// The route's compression, negotiated from the request's `Accept-Encoding` now and
    /// applied in the response phase.
    pub(super) fn compress_plan(&self, req: &Request<ClientBody>) -> Option<crate::compress::Plan> {
        let c = self.entry.and_then(|e| e.compress.as_ref())?;
        Some(crate::compress::Plan {
            coding: c.negotiate(req.headers().get_all(http::header::ACCEPT_ENCODING).iter()),
            compressor: c.clone(),
            head: req.method() == Method::HEAD,
        })
    }
}
