//! Cache keys: the primary key (scheme, host, path, query — with the query normalised as the
//! route says — plus chosen request headers and cookies) and the secondary key of a stored
//! variant (the request's values of the fields its response's `Vary` names, normalised so
//! that equivalent requests share a variant, RFC 9111 §4.1).

use http::{HeaderMap, HeaderName};

/// How the query string takes part in the key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueryRule {
    /// All parameters, as sent (the default).
    #[default]
    All,
    /// None at all.
    Ignore,
    /// Only these parameters.
    Keep(Vec<String>),
    /// All but these (tracking parameters such as `utm_source`).
    Drop(Vec<String>),
}

/// How a route builds its cache keys.
#[derive(Debug, Clone, Default)]
pub struct KeyRules {
    /// Which query parameters count.
    pub query: QueryRule,
    /// Sort the parameters, so `?a=1&b=2` and `?b=2&a=1` share an entry.
    pub sort_query: bool,
    /// Request headers added to the key.
    pub headers: Vec<HeaderName>,
    /// Cookies added to the key.
    pub cookies: Vec<String>,
}

impl KeyRules {
    /// The primary key of a request.
    pub fn primary(
        &self,
        scheme: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        key.extend_from_slice(scheme.as_bytes());
        key.extend_from_slice(b"://");
        key.extend_from_slice(host.to_ascii_lowercase().as_bytes());
        key.extend_from_slice(path.as_bytes());
        if let Some(q) = query.and_then(|q| self.query_part(q)) {
            key.push(b'?');
            key.extend_from_slice(q.as_bytes());
        }
        for h in &self.headers {
            key.push(0);
            key.extend_from_slice(h.as_str().as_bytes());
            for v in headers.get_all(h) {
                key.push(1);
                key.extend_from_slice(v.as_bytes());
            }
        }
        for c in &self.cookies {
            key.push(0);
            key.extend_from_slice(b"cookie:");
            key.extend_from_slice(c.as_bytes());
            if let Some(v) = cookie(headers, c) {
                key.push(1);
                key.extend_from_slice(v.as_bytes());
            }
        }
        key
    }

    fn query_part(&self, query: &str) -> Option<String> {
        if self.query == QueryRule::Ignore {
            return None;
        }
        let mut pairs: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split_once('=').map_or(*p, |(k, _)| k);
                match &self.query {
                    QueryRule::Keep(list) => list.iter().any(|k| k == name),
                    QueryRule::Drop(list) => !list.iter().any(|k| k == name),
                    _ => true,
                }
            })
            .collect();
        if self.sort_query {
            pairs.sort_unstable();
        }
        (!pairs.is_empty()).then(|| pairs.join("&"))
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The fields a response's `Vary` names (lowercase); `None` for `Vary: *` (never reusable).
pub fn vary_fields(response: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in response.get_all(http::header::VARY) {
        let Ok(text) = v.to_str() else { return None };
        for t in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Some(out)
}

/// A request's normalised values of `fields`: the secondary key of the variant it selects.
pub fn secondary(fields: &[HeaderName], request: &HeaderMap) -> Vec<(HeaderName, String)> {
    fields
        .iter()
        .map(|f| {
            let values: Vec<&str> = request
                .get_all(f)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (f.clone(), normalise(f, &values.join(",")))
        })
        .collect()
}

/// Normalises a field value for variant matching: list members trimmed and rejoined; for
/// `Accept-Encoding`, lowercase codings sorted, `q=0` ones dropped and `identity` ignored
/// (so `gzip, br` and `br,gzip` select the same variant).
pub fn normalise(field: &HeaderName, value: &str) -> String {
    if field == http::header::ACCEPT_ENCODING {
        let mut codings: Vec<String> = value
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let coding = parts.next()?.trim().to_ascii_lowercase();
                let refused = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                (!coding.is_empty() && !refused && coding != "identity").then_some(coding)
            })
            .collect();
        codings.sort_unstable();
        codings.dedup();
        return codings.join(",");
    }
    value
        .split(',')
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_keys_follow_the_query_rules() {
        let none = HeaderMap::new();
        let all = KeyRules::default();
        assert_eq!(
            all.primary("https", "Example.COM", "/a", Some("b=2&a=1"), &none),
            b"https://example.com/a?b=2&a=1"
        );
        let sorted = KeyRules {
            sort_query: true,
            ..Default::default()
        };
        assert_eq!(
            sorted.primary("https", "h", "/a", Some("b=2&a=1"), &none),
            sorted.primary("https", "h", "/a", Some("a=1&b=2"), &none)
        );
        let ignore = KeyRules {
            query: QueryRule::Ignore,
            ..Default::default()
        };
        assert_eq!(
            ignore.primary("http", "h", "/a", Some("x=1"), &none),
            b"http://h/a"
        );
        let keep = KeyRules {
            query: QueryRule::Keep(vec!["id".into()]),
            ..Default::default()
        };
        assert_eq!(
            keep.primary("http", "h", "/a", Some("utm=1&id=7"), &none),
            b"http://h/a?id=7"
        );
        let drop = KeyRules {
            query: QueryRule::Drop(vec!["utm".into()]),
            ..Default::default()
        };
        assert_eq!(
            drop.primary("http", "h", "/a", Some("utm=1&id=7"), &none),
            b"http://h/a?id=7"
        );
        assert_eq!(
            drop.primary("http", "h", "/a", Some("utm=1"), &none),
            b"http://h/a"
        );
        let by_lang = KeyRules {
            headers: vec![HeaderName::from_static("x-lang")],
            cookies: vec!["tier".into()],
            ..Default::default()
        };
        let en = by_lang.primary(
            "http",
            "h",
            "/",
            None,
            &crate::headers_of(&[("x-lang", "en"), ("cookie", "a=1; tier=gold")]),
        );
        let fr = by_lang.primary(
            "http",
            "h",
            "/",
            None,
            &crate::headers_of(&[("x-lang", "fr"), ("cookie", "tier=gold")]),
        );
        assert_ne!(en, fr);
    }

    #[test]
    fn vary_and_normalised_secondary_keys() {
        assert_eq!(
            vary_fields(&crate::headers_of(&[
                ("vary", "Accept-Encoding, accept-language"),
                ("vary", "accept-encoding")
            ]))
            .map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            vary_fields(&crate::headers_of(&[("vary", "accept, *")])),
            None
        );
        let fields =
            vary_fields(&crate::headers_of(&[("vary", "accept-encoding")])).expect("fields");
        let a = secondary(
            &fields,
            &crate::headers_of(&[("accept-encoding", "gzip, br")]),
        );
        let b = secondary(
            &fields,
            &crate::headers_of(&[("accept-encoding", "BR,gzip;q=0.8, identity")]),
        );
        let c = secondary(
            &fields,
            &crate::headers_of(&[("accept-encoding", "br, gzip;q=0")]),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        let langs = [HeaderName::from_static("accept-language")];
        assert_eq!(
            secondary(
                &langs,
                &crate::headers_of(&[("accept-language", "en,  fr")])
            ),
            secondary(
                &langs,
                &crate::headers_of(&[("accept-language", "en"), ("accept-language", "fr")])
            )
        );
    }
}
