//! Checks on the request head before routing: admission (field count, the listener's address
//! rules), framing HTTP/2 and the upgrade guard leave to the pipeline, the one Host a request
//! has, and the listener's redirect to https.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HOST, LOCATION, UPGRADE};
use http::{HeaderValue, Request, Response, Version};
use weir_core::ClientBody;
use weir_core::{ErrorKind, ProxyError, RequestCtx, ResponseBody};

use crate::edge::h1::ClientUpgrade;

/// Admission: HTTP/2 field count (Weir's HTTP/1.1 parser caps HTTP/1.1's itself; cookie
/// crumbs each count), then the listener's address rules, whatever the listener's mode (an
/// egress proxy restricted by `ip` is no open proxy).
pub(super) fn admit(
    req: &Request<ClientBody>,
    ctx: &mut RequestCtx,
    rt: &crate::runtime::Runtime,
) -> Result<(), ProxyError> {
    if req.headers().len() > rt.limits.max_headers {
        return Err(ProxyError::new(ErrorKind::HeaderTooLarge));
    }
    if let Some((_, rules)) = rt.listener_ip.iter().find(|(l, _)| **l == *ctx.listener) {
        if !rules.admits(ctx.client_ip) {
            ctx.denied_by = Some(std::sync::Arc::from("listener"));
            return Err(ProxyError::new(ErrorKind::IpDenied));
        }
    }
    Ok(())
}

/// The head checks of a reverse listener's request: no CONNECT (tunnels belong to
/// forward-proxy listeners), unambiguous framing, one valid Host (normalised into
/// `ctx.host`). Returns the Host field as sent, for the upstream request.
pub(super) fn vet(
    req: &Request<ClientBody>,
    ctx: &mut RequestCtx,
    memo: &HostMemo,
) -> Result<Option<HeaderValue>, ProxyError> {
    if req.method() == http::Method::CONNECT {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    check_framing(req)?;
    let host_header = request_host(req)?;
    ctx.host = host_header.as_ref().and_then(|h| memo.normalized(h));
    if host_header.is_some() && ctx.host.is_none() {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    Ok(host_header)
}

/// A connection's last Host field and its normalised form. A keep-alive connection's requests
/// mostly name one Host, so they share one `Arc<str>` instead of checking, lower-casing and
/// allocating it again (two allocations and ~500 instructions a request). Never waits: a
/// connection whose memo is in use (HTTP/2 streams at the same instant) normalises afresh.
#[derive(Default)]
pub(crate) struct HostMemo(std::sync::Mutex<Option<(HeaderValue, Arc<str>)>>);

impl HostMemo {
    /// `raw` normalised (`None`: not a valid host).
    fn normalized(&self, raw: &HeaderValue) -> Option<Arc<str>> {
        if let Ok(memo) = self.0.try_lock() {
            if let Some((last, host)) = memo.as_ref() {
                if last.as_bytes() == raw.as_bytes() {
                    return Some(host.clone());
                }
            }
        }
        let host: Arc<str> = Arc::from(&*weir_route::normalize_host(raw.to_str().ok()?)?);
        if let Ok(mut memo) = self.0.try_lock() {
            // A copy: the request's value would keep the client's read buffer alive as long as
            // the connection.
            if let Ok(copy) = HeaderValue::from_bytes(raw.as_bytes()) {
                *memo = Some((copy, host.clone()));
            }
        }
        Some(host)
    }
}

/// Refuses what the HTTP/1.1 server's head parser (`edge/h1/head.rs`) does not: more than one
/// `Content-Length` on an HTTP/2 request, and `Upgrade: h2c` (a proxy that forwards it hands
/// the client a raw HTTP/2 connection to the upstream, past every route and policy).
/// `Content-Length` with `Transfer-Encoding` never gets here: the parser refuses it on
/// HTTP/1.1, and HTTP/2 forbids `Transfer-Encoding`.
///
/// An HTTP/1.x request was parsed by Weir's server: it has at most one `Content-Length`, and an
/// `Upgrade` field only when the server handed it a `ClientUpgrade` (so most requests cost no
/// lookup here).
fn check_framing(req: &Request<ClientBody>) -> Result<(), ProxyError> {
    let h = req.headers();
    let h1 = req.version() != Version::HTTP_2;
    if !h1 && h.get_all(CONTENT_LENGTH).iter().nth(1).is_some() {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    if h1 && req.extensions().get::<ClientUpgrade>().is_none() {
        return Ok(());
    }
    let h2c = h
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("h2c"));
    if h2c {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    Ok(())
}

/// The request's Host: the `Host` header, or the `:authority` of an h2 / absolute-form request.
/// HTTP/1.1 requires exactly one Host header (RFC 9112 §3.2).
fn request_host(req: &Request<ClientBody>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    if let Some(h) = first {
        return Ok(Some(h.clone()));
    }
    if let Some(a) = req.uri().authority() {
        return Ok(HeaderValue::from_str(a.as_str()).ok());
    }
    if req.version() == Version::HTTP_11 {
        return Err(ProxyError::new(ErrorKind::BadRequest));
    }
    Ok(None)
}

/// 308 to the same URL over https (308 keeps the method and body, unlike 301).
pub(super) fn redirect_to_https(
    req: &Request<ClientBody>,
    ctx: &RequestCtx,
    port: u16,
) -> Result<Response<ResponseBody>, ProxyError> {
    let host = ctx
        .host
        .as_deref()
        .ok_or_else(|| ProxyError::new(ErrorKind::BadRequest))?;
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let value =
        HeaderValue::from_str(&location).map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
    let mut resp = Response::new(ResponseBody::Empty);
    *resp.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, value);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_memo_serves_only_the_host_it_holds() {
        let memo = HostMemo::default();
        let host = |raw: &'static str| memo.normalized(&HeaderValue::from_static(raw));
        let a = host("Shop.Test:8080").expect("valid");
        assert_eq!(&*a, "shop.test");
        let again = host("Shop.Test:8080").expect("valid");
        assert!(
            Arc::ptr_eq(&a, &again),
            "the same field is served from the memo"
        );
        assert_eq!(host("other.test").as_deref(), Some("other.test"));
        assert_eq!(host("shop.test:8080").as_deref(), Some("shop.test"));
        // A bad host is refused every time, memo or not.
        assert_eq!(host("bad host"), None);
        assert_eq!(host("bad host"), None);
        assert_eq!(host("Shop.Test:8080").as_deref(), Some("shop.test"));
    }
}
