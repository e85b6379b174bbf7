//! Responses a route makes itself: fixed responses (`respond`) and redirects (`redirect`).

use http::header::{CONTENT_LENGTH, LOCATION};
use http::{HeaderValue, Method, Response};
use weir_core::{ErrorKind, ProxyError, RequestCtx, ResponseBody};
use weir_route::{RedirectSpec, RespondSpec};

pub(crate) fn respond(spec: &RespondSpec) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(spec.body.clone()));
    *resp.status_mut() = spec.status;
    *resp.headers_mut() = spec.headers.clone();
    resp
}

pub(crate) fn redirect(
    spec: &RedirectSpec,
    req: &http::request::Parts,
    ctx: &RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let uri = &req.uri;
    let request_uri = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = spec
        .location
        .replace("{host}", ctx.host.as_deref().unwrap_or(""))
        .replace("{path}", uri.path())
        .replace("{request_uri}", request_uri);
    // A template that begins with a request part makes a path on this site: a request for
    // `//evil.example` (or `/\evil.example`, which browsers read the same way) must not
    // become a protocol-relative redirect off-site.
    let location =
        if spec.location.starts_with("{path}") || spec.location.starts_with("{request_uri}") {
            format!("/{}", location.trim_start_matches(['/', '\\']))
        } else {
            location
        };
    let value =
        HeaderValue::from_str(&location).map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
    let mut resp = Response::new(ResponseBody::Empty);
    *resp.status_mut() = spec.status;
    resp.headers_mut().insert(LOCATION, value);
    if req.method != Method::HEAD {
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    Ok(resp)
}
