//! Identity policies: [`jwt`] (with [`jwks`] key sets), [`api_key`], [`basic`] and
//! [`external`] (forward auth). Each sets the request's consumer (`RequestCtx::consumer`)
//! when it recognises one, answers 401 with `WWW-Authenticate` for missing or bad
//! credentials and 403 for a valid identity without permission.

pub mod api_key;
pub mod basic;
pub mod external;
pub mod jwks;
pub mod jwt;

use http::request::Parts;
use http::{HeaderName, HeaderValue};
use weir_config::TokenSource;
use weir_core::{ErrorKind, ProxyError};

/// The first credential found in `sources`: a header (for `authorization`, the token after
/// `Bearer `, case-insensitively), a cookie, or a query parameter (percent-decoded).
pub(crate) fn credential(parts: &Parts, sources: &[TokenSource], bearer: bool) -> Option<String> {
    for source in sources {
        let found = match source {
            TokenSource::Header(name) => parts.headers.get(name.as_str()).and_then(|v| {
                let v = v.to_str().ok()?.trim();
                if name == "authorization" && bearer {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then(|| token.trim().to_owned())
                } else {
                    Some(v.to_owned())
                }
            }),
            TokenSource::Cookie(name) => parts
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (k, v) = c.trim().split_once('=')?;
                    (k == name).then(|| v.trim_matches('"').to_owned())
                }),
            TokenSource::Query(name) => parts.uri.query().and_then(|q| {
                q.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k != name {
                        return None;
                    }
                    let plus = v.replace('+', " ");
                    percent_decode(&plus)
                })
            }),
        };
        if let Some(f) = found.filter(|f| !f.is_empty()) {
            return Some(f);
        }
    }
    None
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Removes a credential from the request (so it does not travel upstream).
pub(crate) fn remove_credential(parts: &mut Parts, source: &TokenSource) {
    match source {
        TokenSource::Header(name) => {
            parts.headers.remove(name.as_str());
        }
        TokenSource::Query(name) => {
            let Some(q) = parts.uri.query() else { return };
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| p.split_once('=').map_or(*p, |(k, _)| k) != name)
                .collect();
            let path = parts.uri.path();
            let pq = if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let mut b = http::uri::Parts::from(parts.uri.clone());
            if let Ok(pq) = pq.parse() {
                b.path_and_query = Some(pq);
                if let Ok(u) = http::Uri::from_parts(b) {
                    parts.uri = u;
                }
            }
        }
        TokenSource::Cookie(_) => {}
    }
}

/// 401 with `WWW-Authenticate: {challenge}`.
pub(crate) fn unauthorized(challenge: String) -> ProxyError {
    let e = ProxyError::new(ErrorKind::Unauthorized);
    match HeaderValue::from_str(&challenge) {
        Ok(v) => e.with_header(http::header::WWW_AUTHENTICATE, v),
        Err(_) => e,
    }
}

/// 403 with `WWW-Authenticate: {challenge}` (RFC 6750 `insufficient_scope`).
pub(crate) fn forbidden(challenge: Option<String>) -> ProxyError {
    let e = ProxyError::new(ErrorKind::Forbidden);
    match challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        Some(v) => e.with_header(http::header::WWW_AUTHENTICATE, v),
        None => e,
    }
}

/// Sets the identity header upstream (after removing whatever the client sent).
pub(crate) fn set_identity_header(parts: &mut Parts, header: Option<&HeaderName>, consumer: &str) {
    if let Some(h) = header {
        parts.headers.remove(h);
        if let Ok(v) = HeaderValue::from_str(consumer) {
            parts.headers.insert(h.clone(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn credentials_from_each_place() {
        let src = |s: &str| s.parse::<TokenSource>().expect("source");
        let p = parts(
            "/x?a=1&token=t%2Bq&b",
            &[
                ("authorization", "Bearer  abc "),
                ("cookie", "x=1; session=\"s1\""),
            ],
        );
        assert_eq!(
            credential(&p, &[src("header:authorization")], true).as_deref(),
            Some("abc")
        );
        assert_eq!(
            credential(&p, &[src("cookie:session")], true).as_deref(),
            Some("s1")
        );
        assert_eq!(
            credential(&p, &[src("query:token")], true).as_deref(),
            Some("t+q")
        );
        assert_eq!(
            credential(&p, &[src("query:none"), src("cookie:x")], true).as_deref(),
            Some("1")
        );
        let basic = parts("/", &[("authorization", "Basic abc")]);
        assert_eq!(
            credential(&basic, &[src("header:authorization")], true),
            None
        );
    }

    #[test]
    fn a_query_credential_is_removed() {
        let mut p = parts("/x?a=1&api_key=k&b=2", &[]);
        remove_credential(&mut p, &"query:api_key".parse().expect("source"));
        assert_eq!(p.uri.to_string(), "/x?a=1&b=2");
    }
}
