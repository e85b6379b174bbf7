//! The admin API's responses: JSON bodies and the dashboard's embedded files.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

/// The page allows nothing but its own origin: no external scripts, styles, fonts or fetches.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One of the dashboard's embedded files.
pub(super) fn asset_response(
    content_type: &'static str,
    body: &'static str,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

/// Every admin error in one shape: `{"status": 404, "error": "not_found", "message": "…"}` — a
/// stable code to match on and a sentence for people, as the data plane's errors have.
pub(super) fn error_response(
    status: StatusCode,
    code: &str,
    message: impl std::fmt::Display,
) -> Response<Full<Bytes>> {
    json_response(
        status,
        serde_json::json!({"status": status.as_u16(), "error": code, "message": message.to_string()}),
    )
}

pub(super) fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
