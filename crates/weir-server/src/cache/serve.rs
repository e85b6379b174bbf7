//! Responses from the store: the client's conditionals (304/412), `Age`, HEAD, byte ranges,
//! and bodies read from a disk tier's file as the client takes them.

use std::time::SystemTime;

use http::header::{AGE, CONTENT_LENGTH, RANGE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use weir_cache::conditional::{self, Outcome as Cond};
use weir_cache::disk::FileBody;
use weir_cache::status::CacheStatus;
use weir_cache::store::Variant;
use weir_core::ResponseBody;

use super::set_status;
use crate::action::ranges::{self, Part};

/// Fields a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 7] = [
    http::header::CACHE_CONTROL,
    http::header::CONTENT_LOCATION,
    http::header::DATE,
    http::header::ETAG,
    http::header::EXPIRES,
    http::header::LAST_MODIFIED,
    http::header::VARY,
];

/// A response from a stored variant, with the client's conditionals applied.
pub(super) fn serve(
    v: &Variant,
    method: &Method,
    request: &HeaderMap,
    now: SystemTime,
    status: &CacheStatus,
    name: &str,
) -> Response<ResponseBody> {
    let age = HeaderValue::from(v.freshness.age(now).as_secs());
    let mut resp = match conditional::evaluate(method, request, &v.headers) {
        Cond::NotModified => {
            let mut r = Response::new(ResponseBody::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for name in &NOT_MODIFIED_FIELDS {
                for value in v.headers.get_all(name) {
                    r.headers_mut().append(name.clone(), value.clone());
                }
            }
            r
        }
        Cond::PreconditionFailed => {
            let mut r = Response::new(ResponseBody::Empty);
            *r.status_mut() = StatusCode::PRECONDITION_FAILED;
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        }
        Cond::Serve => {
            let body = match &v.file {
                _ if *method == Method::HEAD => ResponseBody::Empty,
                Some(f) => file_body(vec![Part::Slice(0, f.len)], f.clone()),
                None => ResponseBody::full(v.body.clone()),
            };
            let mut r = Response::new(body);
            *r.status_mut() = v.status;
            *r.headers_mut() = v.headers.clone();
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(v.body_len));
            if *method == Method::GET && v.status == StatusCode::OK {
                serve_ranges(&mut r, v, request);
            }
            r
        }
    };
    resp.headers_mut().insert(AGE, age);
    set_status(resp.headers_mut(), status, name);
    resp
}

/// A stored 200 answers a `Range` request (RFC 9110 §14.2) with a 206 of the stored bytes (or
/// `multipart/byteranges`, or a 416), when `If-Range` (if any) still matches.
fn serve_ranges(r: &mut Response<ResponseBody>, v: &Variant, request: &HeaderMap) {
    let Some(header) = request.get(RANGE).and_then(|h| h.to_str().ok()) else {
        return;
    };
    let etag = v
        .headers
        .get(http::header::ETAG)
        .and_then(|e| e.to_str().ok());
    let modified = v
        .headers
        .get(http::header::LAST_MODIFIED)
        .and_then(|m| m.to_str().ok())
        .and_then(|m| httpdate::parse_http_date(m).ok());
    if !ranges::if_range_holds(request, etag, modified) {
        return;
    }
    let len = v.body_len;
    let Some(set) = ranges::parse(header, len) else {
        return;
    };
    if let Some(f) = &v.file {
        let parts = ranges::partial(r, &set, len);
        *r.body_mut() = file_body(parts, f.clone());
        return;
    }
    let mut body = bytes::BytesMut::new();
    let mut single = None;
    let parts = ranges::partial(r, &set, len);
    let only = parts.len() == 1;
    for part in parts {
        match part {
            Part::Bytes(b) => body.extend_from_slice(&b),
            Part::Slice(start, n) => {
                let (a, b) = (
                    usize::try_from(start).unwrap_or(usize::MAX),
                    usize::try_from(start + n).unwrap_or(usize::MAX),
                );
                let slice = v.body.slice(a.min(v.body.len())..b.min(v.body.len()));
                if only {
                    single = Some(slice);
                } else {
                    body.extend_from_slice(&slice);
                }
            }
        }
    }
    *r.body_mut() = ResponseBody::full(single.unwrap_or_else(|| body.freeze()));
}

/// A body made of framing bytes and slices of a stored object's file, read 64 KiB at a time
/// on blocking threads as the client takes them.
fn file_body(parts: Vec<Part>, file: FileBody) -> ResponseBody {
    use futures_util::StreamExt;
    const CHUNK: u64 = 64 * 1024;
    let pieces = parts.into_iter().flat_map(|p| -> Vec<Part> {
        match p {
            Part::Bytes(b) => vec![Part::Bytes(b)],
            Part::Slice(start, n) => (0..n.div_ceil(CHUNK))
                .map(|i| Part::Slice(start + i * CHUNK, CHUNK.min(n - i * CHUNK)))
                .collect(),
        }
    });
    let stream = futures_util::stream::iter(pieces).then(move |p| {
        let file = file.clone();
        async move {
            match p {
                Part::Bytes(b) => Ok(b),
                Part::Slice(start, n) => tokio::task::spawn_blocking(move || file.read(start, n))
                    .await
                    .map_err(std::io::Error::other)?,
            }
        }
    });
    let frames = stream.map(|r| {
        r.map(http_body::Frame::data)
            .map_err(|e| -> weir_core::BoxError { e.into() })
    });
    ResponseBody::Stream(http_body_util::BodyExt::boxed_unsync(
        http_body_util::StreamBody::new(frames),
    ))
}
