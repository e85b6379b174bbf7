//! The `static` action: files under a root directory, with `ETag`/`Last-Modified` and
//! conditional requests, a content type from the extension, index files, and path traversal
//! refused both lexically (`..` after decoding) and physically (symlinks out of the root).

use std::path::Path;

use futures_util::TryStreamExt;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use weir_core::{ErrorKind, ProxyError, ResponseBody};
use weir_route::StaticSpec;

pub(crate) async fn serve<B>(
    spec: &StaticSpec,
    req: &Request<B>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(ProxyError::new(ErrorKind::MethodNotAllowed));
    }
    let raw = req.uri().path();
    let rel = match &spec.strip_prefix {
        Some(p) => raw.strip_prefix(p.as_str()).unwrap_or(raw),
        None => raw,
    };
    let decoded = percent_encoding::percent_decode_str(rel)
        .decode_utf8()
        .map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
    let mut path = spec.root.clone();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => return Err(ProxyError::new(ErrorKind::BadRequest)),
            s if s.contains('\\') || s.contains('\0') => {
                return Err(ProxyError::new(ErrorKind::BadRequest))
            }
            s => path.push(s),
        }
    }
    let not_found = || ProxyError::new(ErrorKind::NotFound);
    let mut meta = tokio::fs::metadata(&path).await.map_err(|_| not_found())?;
    if meta.is_dir() {
        if !raw.ends_with('/') {
            // A directory without its slash: redirect so relative links in the index resolve.
            let mut location = format!("{raw}/");
            if let Some(q) = req.uri().query() {
                location.push('?');
                location.push_str(q);
            }
            let mut resp = Response::new(ResponseBody::Empty);
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            let value = HeaderValue::from_str(&location)
                .map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
            resp.headers_mut().insert(LOCATION, value);
            return Ok(resp);
        }
        path.push(&spec.index);
        meta = tokio::fs::metadata(&path).await.map_err(|_| not_found())?;
    }
    if !meta.is_file() {
        return Err(not_found());
    }
    let real = tokio::fs::canonicalize(&path)
        .await
        .map_err(|_| not_found())?;
    if !real.starts_with(&spec.root) {
        return Err(not_found());
    }
    let etag = etag(&meta);
    let modified = meta.modified().ok();
    let mut resp = Response::new(ResponseBody::Empty);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    if let Some(m) = modified {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
            h.insert(LAST_MODIFIED, v);
        }
    }
    if not_modified(req, &etag, modified) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    h.insert(CONTENT_TYPE, content_type(&real));
    h.insert(CONTENT_LENGTH, HeaderValue::from(meta.len()));
    if method == Method::HEAD {
        return Ok(resp);
    }
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|_| not_found())?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)
        .map_ok(Frame::data)
        .map_err(|e| -> weir_core::BoxError { e.into() });
    *resp.body_mut() = ResponseBody::Stream(StreamBody::new(stream).boxed_unsync());
    Ok(resp)
}

fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!(
        "\"{:x}-{:x}{:x}\"",
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    )
}

fn not_modified<B>(req: &Request<B>, etag: &str, modified: Option<std::time::SystemTime>) -> bool {
    if let Some(inm) = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    match (
        req.headers()
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        modified,
    ) {
        (Some(since), Some(m)) => httpdate::parse_http_date(since).is_ok_and(|since| {
            m.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                <= since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
        }),
        _ => false,
    }
}

fn content_type(path: &Path) -> HeaderValue {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || mime.subtype() == mime_guess::mime::JAVASCRIPT
        || mime.subtype() == mime_guess::mime::JSON;
    let value = if text && mime.get_param(mime_guess::mime::CHARSET).is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}
