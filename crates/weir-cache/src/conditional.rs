//! Conditional requests against a stored response (RFC 9110 §13.2.2 order): `If-Match`, then
//! `If-Unmodified-Since` (only without `If-Match`), then `If-None-Match`, then
//! `If-Modified-Since` (only without `If-None-Match`, and only for GET/HEAD).

use http::{HeaderMap, Method, StatusCode};

/// The answer a cache gives itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Serve the stored response.
    Serve,
    /// 304 Not Modified (GET/HEAD with a matching validator).
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
}

fn list(h: &HeaderMap, name: http::HeaderName) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut any = false;
    for v in h.get_all(name) {
        any = true;
        let Ok(text) = v.to_str() else { continue };
        out.extend(
            text.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        );
    }
    any.then_some(out)
}

fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn strong_eq(a: &str, b: &str) -> bool {
    !a.starts_with("W/") && !b.starts_with("W/") && a == b
}

fn date(h: &HeaderMap, name: http::HeaderName) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(h.get(name)?.to_str().ok()?.trim()).ok()
}

/// Evaluates the request's preconditions against a stored response's headers.
pub fn evaluate(method: &Method, request: &HeaderMap, stored: &HeaderMap) -> Outcome {
    let etag = stored.get(http::header::ETAG).and_then(|v| v.to_str().ok());
    let modified = date(stored, http::header::LAST_MODIFIED);
    if let Some(tags) = list(request, http::header::IF_MATCH) {
        let ok = tags
            .iter()
            .any(|t| t == "*" || etag.is_some_and(|e| strong_eq(t, e)));
        if !ok {
            return Outcome::PreconditionFailed;
        }
    } else if let Some(since) = date(request, http::header::IF_UNMODIFIED_SINCE) {
        if modified.is_none_or(|m| m > since) {
            return Outcome::PreconditionFailed;
        }
    }
    let safe = *method == Method::GET || *method == Method::HEAD;
    if let Some(tags) = list(request, http::header::IF_NONE_MATCH) {
        let matched = tags
            .iter()
            .any(|t| t == "*" || etag.is_some_and(|e| weak_eq(t, e)));
        if matched {
            return if safe {
                Outcome::NotModified
            } else {
                Outcome::PreconditionFailed
            };
        }
        return Outcome::Serve;
    }
    if safe {
        if let (Some(since), Some(m)) = (date(request, http::header::IF_MODIFIED_SINCE), modified) {
            if m <= since {
                return Outcome::NotModified;
            }
        }
    }
    Outcome::Serve
}

/// The status for an outcome.
pub fn status(o: Outcome) -> StatusCode {
    match o {
        Outcome::Serve => StatusCode::OK,
        Outcome::NotModified => StatusCode::NOT_MODIFIED,
        Outcome::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_comparisons() {
        let stored = crate::headers_of(&[
            ("etag", "\"v2\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let get = Method::GET;
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-none-match", "\"v1\", \"v2\"")]),
                &stored
            ),
            Outcome::NotModified
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-none-match", "W/\"v2\"")]),
                &stored
            ),
            Outcome::NotModified,
            "weak comparison"
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-none-match", "\"v1\"")]),
                &stored
            ),
            Outcome::Serve
        );
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[
                    ("if-none-match", "\"v1\""),
                    ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
                ]),
                &stored
            ),
            Outcome::Serve
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")]),
                &stored
            ),
            Outcome::NotModified
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
                &stored
            ),
            Outcome::Serve
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-modified-since", "garbage")]),
                &stored
            ),
            Outcome::Serve
        );
        assert_eq!(
            evaluate(&get, &crate::headers_of(&[("if-match", "\"v1\"")]), &stored),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-match", "W/\"v2\"")]),
                &stored
            ),
            Outcome::PreconditionFailed,
            "strong comparison"
        );
        assert_eq!(
            evaluate(&get, &crate::headers_of(&[("if-match", "\"v2\"")]), &stored),
            Outcome::Serve
        );
        assert_eq!(
            evaluate(
                &get,
                &crate::headers_of(&[("if-unmodified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
                &stored
            ),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            evaluate(
                &Method::POST,
                &crate::headers_of(&[("if-none-match", "*")]),
                &stored
            ),
            Outcome::PreconditionFailed
        );
    }
}
