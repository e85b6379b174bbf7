//! The `static` action: files under a root directory, with `ETag`/`Last-Modified` and
//! conditional requests, byte ranges (single, and several as `multipart/byteranges`, with
//! `If-Range`), precompressed siblings (`.br`, `.zst`, `.gz`) chosen by `Accept-Encoding`, a
//! content type from the extension, index files, a single-page-app fallback, and path
//! traversal refused both lexically (`..` after decoding) and physically (symbolic links, per
//! the route's `symlinks`).

use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION, RANGE, VARY,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use weir_config::Symlinks;
use weir_core::{BoxError, ErrorKind, ProxyError, ResponseBody};
use weir_route::StaticSpec;

use crate::action::ranges::{self, secs, Part};
use crate::compress::{ranked, Coding};

/// Precompressed siblings, by coding.
const SIBLINGS: [(Coding, &str); 3] = [
    (Coding::Br, "br"),
    (Coding::Zstd, "zst"),
    (Coding::Gzip, "gz"),
];

pub(crate) async fn serve<B>(
    spec: &StaticSpec,
    req: &Request<B>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let method = req.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(ProxyError::new(ErrorKind::MethodNotAllowed).with_header(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        ));
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
    let found = match locate(spec, &path).await {
        Ok(Found::File(real, meta)) => (real, meta),
        Ok(Found::Dir) => {
            if !raw.ends_with('/') {
                return Ok(slash_redirect(req));
            }
            path.push(&spec.index);
            match locate(spec, &path).await {
                Ok(Found::File(real, meta)) => (real, meta),
                _ => fallback(spec).await?,
            }
        }
        Err(()) => fallback(spec).await?,
    };
    let (real, meta) = found;
    // A precompressed sibling the client accepts, best first.
    let mut chosen = (real.clone(), meta, None);
    if spec.precompressed {
        let order: Vec<Coding> = SIBLINGS.iter().map(|(c, _)| *c).collect();
        for coding in ranked(req.headers().get_all(ACCEPT_ENCODING).iter(), &order) {
            let ext = SIBLINGS
                .iter()
                .find(|(c, _)| *c == coding)
                .map_or("", |(_, e)| e);
            let mut sibling = real.clone().into_os_string();
            sibling.push(".");
            sibling.push(ext);
            if let Ok(Found::File(p, m)) = locate(spec, Path::new(&sibling)).await {
                chosen = (p, m, Some(coding));
                break;
            }
        }
    }
    let (file, meta, coding) = chosen;
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
    if spec.precompressed {
        h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    if not_modified(req, &etag, modified) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    // The type of the file asked for, whichever representation is sent.
    h.insert(CONTENT_TYPE, content_type(&real));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(c) = coding {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(c.token()));
    }
    let len = meta.len();
    let ranges =
        if method == Method::GET && ranges::if_range_holds(req.headers(), Some(&etag), modified) {
            req.headers()
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| ranges::parse(r, len))
        } else {
            None
        };
    if let Some(ranges) = ranges {
        let parts = ranges::partial(&mut resp, &ranges, len);
        if !parts.is_empty() {
            let stream = futures_util::stream::iter(parts)
                .map(move |part| -> Chunks {
                    match part {
                        Part::Bytes(b) => {
                            Box::pin(futures_util::stream::once(async move { Ok(b) }))
                        }
                        Part::Slice(start, n) => segment(file.clone(), start, n),
                    }
                })
                .flatten();
            *resp.body_mut() = body(Box::pin(stream));
        }
        return Ok(resp);
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    if method != Method::HEAD {
        *resp.body_mut() = body(segment(file, 0, len));
    }
    Ok(resp)
}

enum Found {
    File(PathBuf, std::fs::Metadata),
    Dir,
}

/// What `path` is, with symbolic links treated per the route.
async fn locate(spec: &StaticSpec, path: &Path) -> Result<Found, ()> {
    let meta = tokio::fs::metadata(path).await.map_err(|_| ())?;
    let real = tokio::fs::canonicalize(path).await.map_err(|_| ())?;
    let allowed = match spec.symlinks {
        Symlinks::Always => true,
        Symlinks::InsideRoot => real.starts_with(&spec.root),
        // The root is canonical: a path that canonicalizes to itself went through no link.
        Symlinks::Never => real == path,
    };
    if !allowed {
        return Err(());
    }
    if meta.is_dir() {
        return Ok(Found::Dir);
    }
    if meta.is_file() {
        Ok(Found::File(real, meta))
    } else {
        Err(())
    }
}

async fn fallback(spec: &StaticSpec) -> Result<(PathBuf, std::fs::Metadata), ProxyError> {
    let not_found = || ProxyError::new(ErrorKind::NotFound);
    let name = spec.fallback.as_ref().ok_or_else(not_found)?;
    let path = spec.root.join(name.trim_start_matches('/'));
    match locate(spec, &path).await {
        Ok(Found::File(real, meta)) => Ok((real, meta)),
        _ => Err(not_found()),
    }
}

fn slash_redirect<B>(req: &Request<B>) -> Response<ResponseBody> {
    // A directory without its slash: redirect so relative links in the index resolve.
    let mut location = format!("{}/", req.uri().path());
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = Response::new(ResponseBody::Empty);
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, value);
    }
    resp
}

type Chunks = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// `n` bytes of `file` from `start`, read in 64 KiB chunks as the client takes them.
fn segment(file: PathBuf, start: u64, n: u64) -> Chunks {
    let opened = async move {
        let mut f = tokio::fs::File::open(&file).await?;
        if start > 0 {
            f.seek(std::io::SeekFrom::Start(start)).await?;
        }
        Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
            f.take(n),
            64 * 1024,
        ))
    };
    Box::pin(futures_util::stream::once(opened).try_flatten())
}

fn body(chunks: Chunks) -> ResponseBody {
    let frames = chunks
        .map_ok(Frame::data)
        .map_err(|e| -> BoxError { e.into() });
    ResponseBody::Stream(StreamBody::new(frames).boxed_unsync())
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
        (Some(since), Some(m)) => {
            httpdate::parse_http_date(since).is_ok_and(|since| secs(m) <= secs(since))
        }
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
