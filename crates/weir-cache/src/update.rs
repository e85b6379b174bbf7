//! Freshening a stored response with a 304 (RFC 9111 §4.3.4, §3.2): which stored response a
//! 304 selects, and which of its header fields replace the stored ones.

use http::{HeaderMap, HeaderName};

use crate::directives::{Qualified, ResponseDirectives};

/// Fields never taken from a 304: they describe the stored content or the connection.
const KEEP: [&str; 14] = [
    "content-length",
    "content-encoding",
    "content-type",
    "content-range",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "set-cookie",
];

/// Whether a 304 with `not_modified` headers selects a stored response with `stored` headers:
/// the same strong `ETag`, or — when neither has one — the same `Last-Modified`.
pub fn selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    let tag = |h: &HeaderMap| {
        h.get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match (tag(stored), tag(not_modified)) {
        // The same validator (strong, or weak for the one stored variant that carries it).
        (Some(a), Some(b)) => a == b,
        // The same Last-Modified, or none in the 304: the cache asked about this one stored
        // response only (its validator was the condition), so it is the single candidate.
        (None, None) => {
            let lm = |h: &HeaderMap| h.get(http::header::LAST_MODIFIED).cloned();
            lm(not_modified).is_none() || lm(stored) == lm(not_modified)
        }
        // A 304 without a validator for a response with one selects it (single candidate).
        (Some(_), None) => true,
        (None, Some(_)) => false,
    }
}

/// Replaces the stored header fields with the 304's, except those that describe the stored
/// content or the connection, those the `Connection` field names, and those a qualified
/// `no-cache`/`private` excludes from storage.
pub fn freshen(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let d = ResponseDirectives::parse(not_modified, None);
    let mut excluded: Vec<String> = Vec::new();
    for q in [&d.no_cache, &d.private].into_iter().flatten() {
        if let Qualified::Fields(f) = q {
            excluded.extend(f.iter().cloned());
        }
    }
    for v in not_modified.get_all(http::header::CONNECTION) {
        if let Ok(t) = v.to_str() {
            excluded.extend(t.split(',').map(|x| x.trim().to_ascii_lowercase()));
        }
    }
    let names: Vec<HeaderName> = not_modified.keys().cloned().collect();
    for name in names {
        let n = name.as_str();
        if KEEP.contains(&n) || excluded.iter().any(|e| e == n) {
            continue;
        }
        stored.remove(&name);
        for v in not_modified.get_all(&name) {
            stored.append(name.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_304_updates_headers_but_not_the_content() {
        let mut stored = crate::headers_of(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=10"),
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("x-old", "1"),
        ]);
        let nm = crate::headers_of(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
            ("content-type", "text/html"),
            ("x-new", "2"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
        ]);
        assert!(selects(&stored, &nm));
        freshen(&mut stored, &nm);
        assert_eq!(stored["cache-control"], "max-age=600");
        assert_eq!(stored["content-length"], "5");
        assert_eq!(stored["content-type"], "text/plain");
        assert_eq!(stored["x-new"], "2");
        assert_eq!(stored["x-old"], "1");
        assert!(stored.get("x-hop").is_none());
        assert!(!selects(
            &crate::headers_of(&[("etag", "\"v1\"")]),
            &crate::headers_of(&[("etag", "\"v2\"")])
        ));
        assert!(selects(
            &crate::headers_of(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &crate::headers_of(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")])
        ));
        assert!(selects(
            &crate::headers_of(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &crate::headers_of(&[("cache-control", "max-age=60")])
        ));
        assert!(!selects(
            &crate::headers_of(&[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            &crate::headers_of(&[("last-modified", "Mon, 07 Nov 1994 08:49:37 GMT")])
        ));
    }
}
