//! Invalidation by unsafe requests (RFC 9111 §4.4): a non-error response (2xx, 3xx) to a
//! method that is not safe invalidates the target URI and the same-origin `Location` and
//! `Content-Location` URIs. Cross-origin URIs are never invalidated (they could be used to
//! purge another site's content).

use http::{HeaderMap, Method, StatusCode};

/// A URI to invalidate: host (lowercase, without port) and path with query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host.
    pub host: String,
    /// Path and query.
    pub path_and_query: String,
}

/// What to invalidate after `status` to `method` on `host` + `path_and_query`.
pub fn targets(
    method: &Method,
    status: StatusCode,
    scheme: &str,
    host: &str,
    path_and_query: &str,
    response: &HeaderMap,
) -> Vec<Target> {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let host = host.to_ascii_lowercase();
    let mut out = vec![Target {
        host: host.clone(),
        path_and_query: path_and_query.to_owned(),
    }];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        if let Some(t) = same_origin(response.get(&name), scheme, &host) {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// A `Location`/`Content-Location` value as a URI of the request's origin (`scheme`, `host`
/// lowercase), or `None` when it is another origin's or does not parse.
pub fn same_origin(value: Option<&http::HeaderValue>, scheme: &str, host: &str) -> Option<Target> {
    let uri = value?.to_str().ok()?.trim().parse::<http::Uri>().ok()?;
    let same = match (uri.scheme_str(), uri.host()) {
        (None, None) => true,
        (Some(s), Some(h)) => s.eq_ignore_ascii_case(scheme) && h.eq_ignore_ascii_case(host),
        _ => false,
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    (same && pq.starts_with('/')).then(|| Target {
        host: host.to_owned(),
        path_and_query: pq.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_successes_invalidate_same_origin_uris() {
        let mut h = HeaderMap::new();
        h.insert(http::header::LOCATION, "/orders/7".parse().expect("value"));
        h.insert(
            http::header::CONTENT_LOCATION,
            "https://evil.test/x".parse().expect("value"),
        );
        let t = targets(
            &Method::POST,
            StatusCode::CREATED,
            "https",
            "Shop.Test",
            "/orders",
            &h,
        );
        let paths: Vec<&str> = t.iter().map(|t| t.path_and_query.as_str()).collect();
        assert_eq!(paths, vec!["/orders", "/orders/7"]);
        assert_eq!(t[0].host, "shop.test");
        assert!(targets(&Method::GET, StatusCode::OK, "https", "h", "/", &h).is_empty());
        assert!(targets(
            &Method::DELETE,
            StatusCode::INTERNAL_SERVER_ERROR,
            "https",
            "h",
            "/",
            &h
        )
        .is_empty());
        let mut same = HeaderMap::new();
        same.insert(
            http::header::CONTENT_LOCATION,
            "https://shop.test/a?b=1".parse().expect("value"),
        );
        let t = targets(
            &Method::PUT,
            StatusCode::OK,
            "https",
            "shop.test",
            "/a",
            &same,
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].path_and_query, "/a?b=1");
    }
}
