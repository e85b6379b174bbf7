//! Byte ranges (RFC 9110 §14): `Range` parsing against a representation's length, `If-Range`,
//! and the shape of a partial response — one range as a 206 with `Content-Range`, several as
//! `multipart/byteranges`, none satisfiable as a 416 — for any body source (a file for
//! `static` routes, a stored object for the cache).

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use weir_core::ResponseBody;

/// More ranges than this in one request are answered with the whole representation (RFC 9110
/// §14.2 lets a server ignore a range set it finds abusive).
pub(crate) const MAX_RANGES: usize = 16;

/// A `Range` header, resolved against a length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// Inclusive `(first, last)` byte positions: in the order asked when they are apart,
    /// sorted and merged when any overlap or touch.
    Satisfiable(Vec<(u64, u64)>),
    /// Every range lies past the end: 416.
    Unsatisfiable,
}

/// Parses `bytes=…` (RFC 9110 §14.1.2). `None` means: ignore the header and send the whole
/// representation (another unit, a syntax error, too many ranges, or ranges that add up to
/// more than the representation: a range set can never make Weir send more than the object,
/// the amplification Apache's CVE-2011-3192 was about).
pub(crate) fn parse(header: &str, len: u64) -> Option<Ranges> {
    let (unit, set) = header.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() || specs.len() > MAX_RANGES {
        return None;
    }
    let mut out = Vec::new();
    for spec in specs {
        let (first, last) = spec.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let range = match (first.trim(), last.trim()) {
            (f, "") if digits(f) => {
                let f: u64 = f.parse().ok()?;
                (f < len).then(|| (f, len - 1))
            }
            ("", l) if digits(l) => {
                let n: u64 = l.parse().ok()?;
                (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
            }
            (f, l) if digits(f) && digits(l) => {
                let (f, l): (u64, u64) = (f.parse().ok()?, l.parse().ok()?);
                if l < f {
                    return None;
                }
                (f < len).then(|| (f, l.min(len - 1)))
            }
            _ => return None,
        };
        out.extend(range);
    }
    if out.is_empty() {
        return Some(Ranges::Unsatisfiable);
    }
    let asked: u64 = out.iter().map(|(f, l)| l - f + 1).sum();
    if asked > len {
        return None;
    }
    Some(Ranges::Satisfiable(coalesce(out)))
}

/// Merges overlapping and adjacent ranges (RFC 9110 §14.2 allows it); when none overlap or
/// touch, the ranges keep the order they were asked in.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    let near = sorted
        .windows(2)
        .any(|w| w[1].0 <= w[0].1.saturating_add(1));
    if !near {
        return ranges;
    }
    ranges.clear();
    for (first, last) in sorted {
        match ranges.last_mut() {
            Some((_, end)) if first <= end.saturating_add(1) => *end = (*end).max(last),
            _ => ranges.push((first, last)),
        }
    }
    ranges
}

/// `If-Range` (RFC 9110 §13.1.5): the range applies only if the validator still matches — a
/// strong `ETag`, or the exact `Last-Modified` date; otherwise the whole representation is
/// sent. True when the request has no `If-Range`.
pub(crate) fn if_range_holds(
    request: &HeaderMap,
    etag: Option<&str>,
    modified: Option<std::time::SystemTime>,
) -> bool {
    let Some(v) = request.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') {
        return etag.is_some_and(|e| !e.starts_with("W/") && v == e);
    }
    if v.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(v), modified) {
        (Ok(date), Some(m)) => secs(date) == secs(m),
        _ => false,
    }
}

/// Whole seconds since the epoch (HTTP dates have no finer resolution).
pub(crate) fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A piece of a partial response's body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Framing (multipart boundaries and part headers).
    Bytes(Bytes),
    /// `n` bytes of the representation from `start`.
    Slice(u64, u64),
}

/// Turns `resp` (a 200 for a representation of `len` bytes, its headers set) into the
/// partial response for `ranges`: status, `Content-Range` or the multipart type, and
/// `Content-Length`; returns what its body is made of, in order (nothing for a 416).
pub(crate) fn partial(resp: &mut Response<ResponseBody>, ranges: &Ranges, len: u64) -> Vec<Part> {
    match ranges {
        Ranges::Unsatisfiable => {
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                h.insert(CONTENT_RANGE, v);
            }
            h.insert(CONTENT_LENGTH, HeaderValue::from(0));
            h.remove(CONTENT_ENCODING);
            Vec::new()
        }
        Ranges::Satisfiable(list) if list.len() == 1 => {
            let (start, end) = list[0];
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                h.insert(CONTENT_RANGE, v);
            }
            h.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            vec![Part::Slice(start, end - start + 1)]
        }
        Ranges::Satisfiable(list) => {
            let boundary = boundary(len);
            let ctype = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            let mut parts = Vec::new();
            let mut total = 0u64;
            for (i, (start, end)) in list.iter().enumerate() {
                let head = format!(
                    "{}--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {start}-{end}/{len}\r\n\r\n",
                    if i == 0 { "" } else { "\r\n" },
                );
                total += head.len() as u64 + (end - start + 1);
                parts.push(Part::Bytes(Bytes::from(head)));
                parts.push(Part::Slice(*start, end - start + 1));
            }
            let tail = format!("\r\n--{boundary}--\r\n");
            total += tail.len() as u64;
            parts.push(Part::Bytes(Bytes::from(tail)));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            if let Ok(v) =
                HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
            {
                h.insert(CONTENT_TYPE, v);
            }
            h.insert(CONTENT_LENGTH, HeaderValue::from(total));
            parts
        }
    }
}

/// A multipart boundary: unlikely in any body, different per response.
fn boundary(len: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("weir-{nanos:x}-{len:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        use Ranges::*;
        let r = parse;
        assert_eq!(r("bytes=0-499", 1000), Some(Satisfiable(vec![(0, 499)])));
        assert_eq!(r("bytes=500-", 1000), Some(Satisfiable(vec![(500, 999)])));
        assert_eq!(r("bytes=-200", 1000), Some(Satisfiable(vec![(800, 999)])));
        assert_eq!(r("bytes=-2000", 1000), Some(Satisfiable(vec![(0, 999)])));
        assert_eq!(
            r("bytes=900-5000", 1000),
            Some(Satisfiable(vec![(900, 999)]))
        );
        assert_eq!(
            r("bytes=0-0, -1", 1000),
            Some(Satisfiable(vec![(0, 0), (999, 999)]))
        );
        assert_eq!(r("bytes=1000-", 1000), Some(Unsatisfiable));
        assert_eq!(r("bytes=-0", 1000), Some(Unsatisfiable));
        assert_eq!(r("bytes=0-", 0), Some(Unsatisfiable));
        for ignored in [
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=",
            "bytes=1-2-3",
            "bytes=--1",
        ] {
            assert_eq!(r(ignored, 1000), None, "{ignored}");
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert_eq!(r(&many, 1000), None);
    }

    #[test]
    fn overlapping_ranges_are_merged_and_amplification_refused() {
        use Ranges::*;
        let r = parse;
        // Overlapping and adjacent: one range.
        assert_eq!(
            r("bytes=0-99,50-149,150-199", 1000),
            Some(Satisfiable(vec![(0, 199)]))
        );
        // Out of order and overlapping: sorted, merged.
        assert_eq!(
            r("bytes=500-599,0-9,550-649", 1000),
            Some(Satisfiable(vec![(0, 9), (500, 649)]))
        );
        // A gap keeps them apart.
        assert_eq!(
            r("bytes=0-9,11-19", 1000),
            Some(Satisfiable(vec![(0, 9), (11, 19)]))
        );
        // Apart: kept as asked, in the order asked.
        assert_eq!(
            r("bytes=900-909,0-9", 1000),
            Some(Satisfiable(vec![(900, 909), (0, 9)]))
        );
        // 16 copies of the whole object: more than the object, so the whole object once.
        let whole = format!("bytes={}", vec!["0-"; MAX_RANGES].join(","));
        assert_eq!(r(&whole, 1000), None);
        assert_eq!(r("bytes=0-599,400-999", 1000), None);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(IF_RANGE, HeaderValue::from_str(v).expect("value"));
            m
        };
        assert!(if_range_holds(&HeaderMap::new(), None, None));
        assert!(if_range_holds(&h("\"a\""), Some("\"a\""), None));
        assert!(!if_range_holds(&h("\"a\""), Some("\"b\""), None));
        assert!(!if_range_holds(&h("W/\"a\""), Some("W/\"a\""), None));
        assert!(!if_range_holds(&h("\"a\""), Some("W/\"a\""), None));
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert!(if_range_holds(
            &h(&httpdate::fmt_http_date(t)),
            None,
            Some(t)
        ));
        assert!(!if_range_holds(&h("garbage"), None, Some(t)));
    }
}
