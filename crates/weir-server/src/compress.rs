//! On-the-fly response compression (a route's `compress`): the coding is negotiated from the
//! request's `Accept-Encoding` (RFC 9110 §12.5.3: q-values, `*`, `identity`, ties broken by the
//! route's order of preference), and applied in the response phase only where it is safe and
//! worth it: no `Content-Encoding` yet, a listed media type, not an event stream or gRPC, not
//! `no-transform`, not a 206/204/304, not smaller than `min_size`. The body is compressed as it
//! streams (async-compression over the body's frames), `Content-Length` dropped, a strong
//! `ETag` weakened, and `Vary: Accept-Encoding` added to every response of a type that could
//! be compressed, so a cache keeps the variants apart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
};
use http::{HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio_util::io::{ReaderStream, StreamReader};
use weir_config::CompressLevel;
use weir_core::ResponseBody;

/// A content coding Weir produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    fn index(self) -> usize {
        match self {
            Coding::Zstd => 0,
            Coding::Br => 1,
            Coding::Gzip => 2,
        }
    }
}

/// Responses compressed and bytes in and out, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct CompressionStats {
    responses: [AtomicU64; 3],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl CompressionStats {
    /// `weir_compression_responses_total{encoding}` and `weir_compression_bytes_total`.
    pub(crate) fn render(&self, e: &mut weir_core::prometheus::Exposition) {
        use weir_core::prometheus::Kind;
        let (by_coding, bytes_in, bytes_out) = self.snapshot();
        let coding_labels: Vec<([(&str, &str); 1], u64)> = by_coding
            .iter()
            .map(|(c, n)| ([("encoding", *c)], *n))
            .collect();
        e.family(
            "weir_compression_responses_total",
            Kind::Counter,
            "Responses compressed on the fly, by content coding.",
            coding_labels.iter().map(|(l, n)| (&l[..], *n as f64)),
        );
        e.family(
            "weir_compression_bytes_total",
            Kind::Counter,
            "Bytes into and out of on-the-fly compression.",
            [
                (&[("direction", "in")][..], bytes_in as f64),
                (&[("direction", "out")][..], bytes_out as f64),
            ],
        );
    }

    /// `(encoding, responses)` for each coding, then bytes in and out.
    pub(crate) fn snapshot(&self) -> ([(&'static str, u64); 3], u64, u64) {
        let n = |c: Coding| (c.token(), self.responses[c.index()].load(Ordering::Relaxed));
        (
            [n(Coding::Zstd), n(Coding::Br), n(Coding::Gzip)],
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug)]
enum TypeRule {
    Exact(String),
    /// `text/*`: the type before the slash, with the slash.
    Whole(String),
}

/// A route's compression settings, compiled.
#[derive(Debug)]
pub(crate) struct Compressor {
    codings: Vec<Coding>,
    min_size: u64,
    types: Vec<TypeRule>,
    level: CompressLevel,
}

/// What the request phase decided, applied to the response.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) compressor: Arc<Compressor>,
    pub(crate) coding: Option<Coding>,
    pub(crate) head: bool,
}

impl Compressor {
    pub(crate) fn compile(cfg: &weir_config::Compress) -> Self {
        Self {
            codings: cfg
                .algorithms
                .iter()
                .filter_map(|a| match a.as_str() {
                    "zstd" => Some(Coding::Zstd),
                    "br" => Some(Coding::Br),
                    "gzip" => Some(Coding::Gzip),
                    _ => None,
                })
                .collect(),
            min_size: cfg.min_size.bytes(),
            types: cfg
                .content_types
                .iter()
                .map(|t| {
                    let t = t.to_ascii_lowercase();
                    match t.strip_suffix('*') {
                        Some(whole) => TypeRule::Whole(whole.to_owned()),
                        None => TypeRule::Exact(t),
                    }
                })
                .collect(),
            level: cfg.level,
        }
    }

    /// The coding to use for a request with this `Accept-Encoding` (none: send as is).
    pub(crate) fn negotiate<'a>(
        &self,
        accept: impl Iterator<Item = &'a HeaderValue>,
    ) -> Option<Coding> {
        ranked(accept, &self.codings).into_iter().next()
    }

    fn type_matches(&self, content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "text/event-stream" || essence.starts_with("application/grpc") {
            return false;
        }
        self.types.iter().any(|r| match r {
            TypeRule::Exact(t) => *t == essence,
            TypeRule::Whole(prefix) => essence.starts_with(prefix.as_str()),
        })
    }

    fn level(&self, coding: Coding) -> Level {
        let n = match (self.level, coding) {
            (CompressLevel::Fastest, _) => 1,
            (CompressLevel::Default, Coding::Gzip) => 6,
            (CompressLevel::Default, Coding::Br) => 4,
            (CompressLevel::Default, Coding::Zstd) => 3,
            (CompressLevel::Best, Coding::Gzip) => 9,
            (CompressLevel::Best, Coding::Br) => 11,
            (CompressLevel::Best, Coding::Zstd) => 19,
        };
        Level::Precise(n)
    }
}

/// The codings of `order` the client accepts, best first: by q-value, then by `order`.
pub(crate) fn ranked<'a>(
    accept: impl Iterator<Item = &'a HeaderValue>,
    order: &[Coding],
) -> Vec<Coding> {
    let mut explicit: [Option<f32>; 3] = [None; 3];
    let mut star: Option<f32> = None;
    for value in accept {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = Some(1.0);
            for p in parts {
                if let Some(v) = p
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                {
                    q = parse_q(v);
                }
            }
            // A malformed q-value makes the whole item void.
            let Some(q) = q else { continue };
            match token.as_str() {
                "*" => star = Some(q),
                "zstd" => explicit[0] = Some(q),
                "br" => explicit[1] = Some(q),
                "gzip" | "x-gzip" => explicit[2] = Some(q),
                _ => {}
            }
        }
    }
    let mut out: Vec<(Coding, f32)> = order
        .iter()
        .map(|&c| (c, explicit[c.index()].or(star).unwrap_or(0.0)))
        .filter(|(_, q)| *q > 0.0)
        .collect();
    // Stable: equal q-values keep `order`.
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out.into_iter().map(|(c, _)| c).collect()
}

/// `q=` per RFC 9110: `0`, `0.xyz`, `1`, `1.000`.
fn parse_q(v: &str) -> Option<f32> {
    let v = v.trim();
    let ok = match v.split_once('.') {
        None => v == "0" || v == "1",
        Some((int, frac)) => {
            frac.len() <= 3
                && frac.bytes().all(|b| b.is_ascii_digit())
                && (int == "0" || (int == "1" && frac.bytes().all(|b| b == b'0')))
        }
    };
    if ok {
        v.parse().ok()
    } else {
        None
    }
}

impl Plan {
    /// Compresses `resp` when the predicate allows; returns the coding used.
    pub(crate) fn apply(
        self,
        resp: &mut Response<ResponseBody>,
        stats: &Arc<CompressionStats>,
    ) -> Option<&'static str> {
        let c = &self.compressor;
        let status = resp.status();
        let h = resp.headers();
        let eligible_type = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| c.type_matches(t));
        if !eligible_type
            || status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            )
            || h.contains_key(CONTENT_ENCODING)
            || h.get_all(CACHE_CONTROL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.to_ascii_lowercase().contains("no-transform"))
        {
            return None;
        }
        // The answer depends on Accept-Encoding from here on, compressed or not.
        weir_policy::headers::vary(resp.headers_mut(), "accept-encoding");
        let declared = weir_core::body::declared_length(resp.headers())
            .or_else(|| http_body::Body::size_hint(resp.body()).exact());
        if declared.is_some_and(|n| n < c.min_size) {
            return None;
        }
        let coding = self.coding?;
        let h = resp.headers_mut();
        h.remove(CONTENT_LENGTH);
        h.remove(ACCEPT_RANGES);
        h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
        if let Some(etag) = h.get(ETAG) {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(etag.as_bytes());
                if let Ok(v) = HeaderValue::from_bytes(&weak) {
                    h.insert(ETAG, v);
                }
            }
        }
        stats.responses[coding.index()].fetch_add(1, Ordering::Relaxed);
        if self.head {
            // Same headers as the GET would have, no body to encode.
            return Some(coding.token());
        }
        let body = std::mem::take(resp.body_mut());
        let counted_in = stats.clone();
        let input = body
            .into_data_stream()
            .map_ok(move |b: Bytes| {
                counted_in
                    .bytes_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                b
            })
            .map_err(std::io::Error::other);
        let reader = StreamReader::new(input);
        let level = c.level(coding);
        let counted_out = stats.clone();
        let count = move |b: Bytes| {
            counted_out
                .bytes_out
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            Frame::data(b)
        };
        let boxed: ResponseBody = match coding {
            Coding::Gzip => stream(
                ReaderStream::new(GzipEncoder::with_quality(reader, level)),
                count,
            ),
            Coding::Br => stream(
                ReaderStream::new(BrotliEncoder::with_quality(reader, level)),
                count,
            ),
            Coding::Zstd => stream(
                ReaderStream::new(ZstdEncoder::with_quality(reader, level)),
                count,
            ),
        };
        *resp.body_mut() = boxed;
        Some(coding.token())
    }
}

fn stream<S>(s: S, count: impl Fn(Bytes) -> Frame<Bytes> + Send + 'static) -> ResponseBody
where
    S: futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let frames = s.map_ok(count).map_err(weir_core::BoxError::from);
    ResponseBody::Stream(http_body_util::combinators::UnsyncBoxBody::new(
        StreamBody::new(frames),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressor(order: &[&str]) -> Compressor {
        Compressor::compile(&weir_config::Compress {
            algorithms: order.iter().map(|s| (*s).to_owned()).collect(),
            min_size: weir_config::ByteSize(0),
            content_types: vec!["text/*".into(), "application/json".into()],
            level: CompressLevel::Default,
        })
    }

    fn pick(c: &Compressor, accept: &str) -> Option<&'static str> {
        let v = HeaderValue::from_str(accept).expect("value");
        c.negotiate(std::iter::once(&v)).map(Coding::token)
    }

    #[test]
    fn accept_encoding_q_values_and_preference() {
        let c = compressor(&["zstd", "br", "gzip"]);
        assert_eq!(pick(&c, "gzip, deflate, br, zstd"), Some("zstd"));
        assert_eq!(pick(&c, "gzip, deflate, br"), Some("br"));
        assert_eq!(pick(&c, "gzip;q=0.5, br;q=0.9"), Some("br"));
        assert_eq!(pick(&c, "gzip;q=1.0, br;q=0.9"), Some("gzip"));
        assert_eq!(pick(&c, "br;q=0, *"), Some("zstd"));
        assert_eq!(pick(&c, "*;q=0"), None);
        assert_eq!(pick(&c, "identity"), None);
        assert_eq!(pick(&c, ""), None);
        assert_eq!(pick(&c, "x-gzip"), Some("gzip"));
        assert_eq!(pick(&c, "GZIP;Q=0.3"), Some("gzip"));
        // Malformed q-values void their item.
        assert_eq!(pick(&c, "br;q=2, gzip;q=0.1234, zstd;q=abc"), None);
        let gzip_first = compressor(&["gzip", "br"]);
        assert_eq!(pick(&gzip_first, "br, gzip"), Some("gzip"));
        assert_eq!(pick(&gzip_first, "zstd"), None);
    }

    #[test]
    fn media_types() {
        let c = compressor(&["gzip"]);
        assert!(c.type_matches("text/html; charset=utf-8"));
        assert!(c.type_matches("Application/JSON"));
        assert!(!c.type_matches("text/event-stream"));
        assert!(!c.type_matches("application/grpc+proto"));
        assert!(!c.type_matches("image/png"));
        assert!(!c.type_matches("application/jsonx"));
    }
}
