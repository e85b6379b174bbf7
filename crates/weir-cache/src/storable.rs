//! Whether a shared cache may store a response (RFC 9111 §3), and why not.

use http::{HeaderMap, Method, StatusCode};

use crate::directives::{RequestDirectives, ResponseDirectives};
use crate::freshness::heuristically_cacheable;

/// Options an operator sets.
#[derive(Debug, Clone)]
pub struct StoreRules {
    /// Request methods whose responses may be stored (GET and HEAD by default).
    pub methods: Vec<Method>,
    /// Store responses carrying `Set-Cookie` (off by default: they are usually personal).
    pub store_set_cookie: bool,
}

impl Default for StoreRules {
    fn default() -> Self {
        Self {
            methods: vec![Method::GET, Method::HEAD],
            store_set_cookie: false,
        }
    }
}

/// Why a response is not stored; the text goes into `Cache-Status: …; detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// The request method is not stored.
    Method,
    /// Not a final, complete status (1xx, 206, 304), or not understood under must-understand.
    Status,
    /// The request said `no-store`.
    RequestNoStore,
    /// The response said `no-store`.
    NoStore,
    /// The response is `private`.
    Private,
    /// The request carried `Authorization` and the response did not allow sharing.
    Authorization,
    /// `Vary: *`.
    VaryStar,
    /// `Set-Cookie`, when not allowed.
    SetCookie,
    /// Nothing says how long it stays fresh, and the status is not cacheable by default.
    NoFreshness,
}

impl NotStorable {
    /// A short token for `Cache-Status` details, logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::RequestNoStore => "request-no-store",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::VaryStar => "vary-star",
            Self::SetCookie => "set-cookie",
            Self::NoFreshness => "no-freshness",
        }
    }
}

/// Statuses whose semantics Weir understands (for `must-understand`).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decides storability for a shared cache. `authorized`: the request carried
/// `Authorization`.
pub fn check(
    rules: &StoreRules,
    method: &Method,
    req: &RequestDirectives,
    authorized: bool,
    status: StatusCode,
    headers: &HeaderMap,
    d: &ResponseDirectives,
) -> Result<(), NotStorable> {
    if !rules.methods.contains(method) {
        return Err(NotStorable::Method);
    }
    // Final, and not partial content or a validation answer (those update, never create).
    if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Err(NotStorable::Status);
    }
    if req.no_store {
        return Err(NotStorable::RequestNoStore);
    }
    if d.must_understand {
        // must-understand overrides no-store for understood statuses, and forbids storing
        // the others (§5.2.2.3).
        if !understood(status) {
            return Err(NotStorable::Status);
        }
    } else if d.no_store {
        return Err(NotStorable::NoStore);
    }
    if d.private.is_some() {
        return Err(NotStorable::Private);
    }
    if authorized && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStorable::Authorization);
    }
    let vary_star = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*");
    if vary_star {
        return Err(NotStorable::VaryStar);
    }
    if !rules.store_set_cookie && headers.contains_key(http::header::SET_COOKIE) {
        return Err(NotStorable::SetCookie);
    }
    let explicit = d.public
        || d.max_age.is_some()
        || d.s_maxage.is_some()
        || (!d.targeted && headers.contains_key(http::header::EXPIRES));
    if !(explicit || heuristically_cacheable(status)) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// Whether a POST response may be stored for later GET and HEAD requests of its target URI
/// (RFC 9110 §9.3.3): it has explicit freshness and a `Content-Location` naming the target
/// URI itself. (`check` decides the rest, with POST among the rules' methods.)
pub fn post_reusable(
    scheme: &str,
    host: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    d: &ResponseDirectives,
) -> bool {
    let explicit = d.max_age.is_some()
        || d.s_maxage.is_some()
        || (!d.targeted && headers.contains_key(http::header::EXPIRES));
    let location = crate::invalidate::same_origin(
        headers.get(http::header::CONTENT_LOCATION),
        scheme,
        &host.to_ascii_lowercase(),
    );
    explicit && location.is_some_and(|t| t.path_and_query == path_and_query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(
        method: Method,
        status: u16,
        auth: bool,
        req_cc: &str,
        pairs: &[(&str, &str)],
    ) -> Result<(), NotStorable> {
        let mut rh = HeaderMap::new();
        if !req_cc.is_empty() {
            rh.insert(http::header::CACHE_CONTROL, req_cc.parse().expect("value"));
        }
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let d = ResponseDirectives::parse(&h, None);
        check(
            &StoreRules::default(),
            &method,
            &RequestDirectives::parse(&rh),
            auth,
            StatusCode::from_u16(status).expect("status"),
            &h,
            &d,
        )
    }

    #[test]
    fn the_rules_of_section_3() {
        use NotStorable::{
            Authorization, NoFreshness, NoStore, Private, RequestNoStore, SetCookie, Status,
            VaryStar,
        };
        const GET: Method = Method::GET;
        let ok = [("cache-control", "max-age=60")];
        assert_eq!(decide(GET, 200, false, "", &ok), Ok(()));
        assert_eq!(
            decide(Method::POST, 200, false, "", &ok),
            Err(NotStorable::Method)
        );
        assert_eq!(decide(GET, 206, false, "", &ok), Err(Status));
        assert_eq!(
            decide(GET, 200, false, "no-store", &ok),
            Err(RequestNoStore)
        );
        assert_eq!(
            decide(
                GET,
                200,
                false,
                "",
                &[("cache-control", "no-store, max-age=60")]
            ),
            Err(NoStore)
        );
        assert_eq!(
            decide(
                GET,
                200,
                false,
                "",
                &[("cache-control", "private, max-age=60")]
            ),
            Err(Private)
        );
        assert_eq!(decide(GET, 200, true, "", &ok), Err(Authorization));
        assert_eq!(
            decide(GET, 200, true, "", &[("cache-control", "s-maxage=60")]),
            Ok(())
        );
        assert_eq!(
            decide(GET, 200, true, "", &[("cache-control", "public")]),
            Ok(())
        );
        assert_eq!(
            decide(
                GET,
                200,
                false,
                "",
                &[("cache-control", "max-age=60"), ("vary", "accept, *")]
            ),
            Err(VaryStar)
        );
        assert_eq!(
            decide(
                GET,
                200,
                false,
                "",
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            ),
            Err(SetCookie)
        );
        assert_eq!(decide(GET, 302, false, "", &[]), Err(NoFreshness));
        assert_eq!(decide(GET, 404, false, "", &[]), Ok(()));
        // must-understand: overrides no-store for understood statuses, refuses the others.
        assert_eq!(
            decide(
                GET,
                200,
                false,
                "",
                &[("cache-control", "must-understand, no-store, max-age=60")]
            ),
            Ok(())
        );
        assert_eq!(
            decide(
                GET,
                299,
                false,
                "",
                &[("cache-control", "must-understand, no-store, max-age=60")]
            ),
            Err(Status)
        );
    }

    #[test]
    fn post_responses_need_freshness_and_their_own_content_location() {
        let ok = |pairs: &[(&str, &str)]| {
            let h = crate::headers_of(pairs);
            let d = ResponseDirectives::parse(&h, None);
            post_reusable("https", "Shop.Test", "/search?q=1", &h, &d)
        };
        let cl = ("content-location", "/search?q=1");
        assert!(ok(&[("cache-control", "max-age=60"), cl]));
        assert!(ok(&[
            ("cache-control", "s-maxage=60"),
            ("content-location", "https://shop.test/search?q=1")
        ]));
        assert!(ok(&[("expires", "Thu, 01 Jan 2099 00:00:00 GMT"), cl]));
        assert!(!ok(&[cl]), "no explicit freshness");
        assert!(
            !ok(&[("cache-control", "max-age=60")]),
            "no Content-Location"
        );
        assert!(!ok(&[
            ("cache-control", "max-age=60"),
            ("content-location", "/search?q=2")
        ]));
        assert!(!ok(&[
            ("cache-control", "max-age=60"),
            ("content-location", "https://evil.test/search?q=1")
        ]));
    }
}
