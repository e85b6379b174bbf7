//! `Cache-Control` (RFC 9111 §5.2) and targeted fields such as `CDN-Cache-Control`
//! (RFC 9213), parsed into typed directives. The field is a comma-separated list over any
//! number of field lines; a directive is `name` or `name=value` where the value is a token or a
//! quoted string (commas inside quotes do not split); names are case-insensitive; unknown
//! directives are ignored.
//!
//! Targeted fields are RFC 9651 structured dictionaries (RFC 9213 §2.1) and are parsed as
//! such (the `sfv` crate): a member whose value has the wrong type (a string or token where an
//! integer is required, a negative number, an inner list) is ignored, and a field that does
//! not parse as a dictionary is ignored whole — the next targeted field or `Cache-Control`
//! applies, never half of it.
//!
//! Malformed `Cache-Control` values follow the RFC's advice to fail safe: a `max-age` (or `s-maxage`) that is
//! not a non-negative integer, or that appears twice with different values, makes the response
//! stale (RFC 9111 §4.2.1, §1.2.2); values too large to represent are 2^31 seconds.

use http::{HeaderMap, HeaderName};

/// Largest delta-seconds a cache must represent (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 2_147_483_648;

/// A delta-seconds argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Seconds (capped at [`DELTA_MAX`]).
    Secs(u64),
    /// Not a valid delta-seconds, or given twice with different values: treat as stale.
    Invalid,
}

impl Delta {
    /// The seconds, with an invalid value as 0 (stale).
    pub fn secs_or_zero(self) -> u64 {
        match self {
            Delta::Secs(n) => n,
            Delta::Invalid => 0,
        }
    }
}

/// Parses delta-seconds: one or more digits; larger than representable is [`DELTA_MAX`].
pub fn parse_delta(v: &str) -> Delta {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Delta::Invalid;
    }
    Delta::Secs(v.parse::<u64>().map_or(DELTA_MAX, |n| n.min(DELTA_MAX)))
}

/// One directive: a lowercase name and its value (quotes removed, escapes resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercase name.
    pub name: String,
    /// The argument, if any.
    pub value: Option<String>,
}

/// Splits field lines into directives, honouring quoted strings.
pub fn parse_list<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<Directive> {
    let mut out = Vec::new();
    for line in lines {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let mut chars = text.chars().peekable();
        loop {
            // Skip separators and whitespace.
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '=' || c.is_whitespace() {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = None;
            if chars.peek() == Some(&'=') {
                chars.next();
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                let mut v = String::new();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some(e) = chars.next() {
                                    v.push(e);
                                }
                            }
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                } else {
                    while let Some(&c) = chars.peek() {
                        if c == ',' || c.is_whitespace() {
                            break;
                        }
                        v.push(c);
                        chars.next();
                    }
                }
                value = Some(v);
            }
            // Anything up to the next comma that is not part of the directive is junk.
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                chars.next();
            }
            if !name.is_empty() {
                out.push(Directive { name, value });
            }
        }
    }
    out
}

/// A directive that may come bare or with a list of field names (`no-cache`, `private`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Qualified {
    /// Bare: applies to the whole response.
    All,
    /// Only these (lowercase) fields.
    Fields(Vec<String>),
}

fn qualified(value: Option<&str>) -> Qualified {
    match value {
        None => Qualified::All,
        Some(v) => {
            let fields: Vec<String> = v
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect();
            if fields.is_empty() {
                Qualified::All
            } else {
                Qualified::Fields(fields)
            }
        }
    }
}

/// Merges a repeated delta directive: equal values are one; different values are invalid.
fn merge(slot: &mut Option<Delta>, value: Option<&str>) {
    let new = value.map_or(Delta::Invalid, parse_delta);
    *slot = match *slot {
        None => Some(new),
        Some(old) if old == new => Some(old),
        Some(_) => Some(Delta::Invalid),
    };
}

/// A response's caching directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `max-age`.
    pub max_age: Option<Delta>,
    /// `s-maxage` (shared caches only; implies revalidation when stale).
    pub s_maxage: Option<Delta>,
    /// `no-cache`: validate before every reuse (or, qualified, do not reuse those fields).
    pub no_cache: Option<Qualified>,
    /// `no-store`.
    pub no_store: bool,
    /// `private`: never stored by a shared cache.
    pub private: Option<Qualified>,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: as `must-revalidate`, for shared caches.
    pub proxy_revalidate: bool,
    /// `must-understand` (RFC 9111 §5.2.2.3).
    pub must_understand: bool,
    /// `no-transform`: no compression or other change of the content.
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<Delta>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<Delta>,
    /// The directives came from a targeted field (RFC 9213): `Expires` is then ignored.
    pub targeted: bool,
}

impl ResponseDirectives {
    /// Parses `Cache-Control`, unless one of the `targeted` fields (in order, e.g.
    /// `weir-cache-control`, `cdn-cache-control`) is present: the first present wins
    /// (RFC 9213 §2.2).
    pub fn parse(headers: &HeaderMap, targeted: Option<&[HeaderName]>) -> Self {
        for name in targeted.unwrap_or(&[]) {
            if headers.contains_key(name) {
                if let Some(d) =
                    Self::from_targeted(headers.get_all(name).iter().map(|v| v.as_bytes()))
                {
                    return d;
                }
            }
        }
        Self::from_list(&parse_list(
            headers
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        ))
    }

    /// A targeted field's lines as one structured dictionary; `None` when it does not parse.
    pub fn from_targeted<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<Self> {
        // Field lines combine into one value, comma-separated (RFC 9110 §5.3).
        let mut joined = Vec::new();
        for (i, line) in lines.enumerate() {
            if i > 0 {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(line);
        }
        let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse_dictionary().ok()?;
        let mut d = Self {
            targeted: true,
            ..Self::default()
        };
        for (key, entry) in &dict {
            let sfv::ListEntry::Item(item) = entry else {
                continue;
            };
            let bare = &item.bare_item;
            let delta = || {
                let n = i64::from(bare.as_integer()?);
                let n = u64::try_from(n).ok()?;
                Some(Delta::Secs(n.min(DELTA_MAX)))
            };
            let flag = bare.as_boolean() == Some(true);
            // `no-cache` / `private`: true, or a string of field names.
            let qualifier = || match bare {
                sfv::BareItem::Boolean(true) => Some(Qualified::All),
                sfv::BareItem::String(names) => Some(qualified(Some(names.as_str()))),
                _ => None,
            };
            match key.as_str() {
                "max-age" => d.max_age = delta().or(d.max_age),
                "s-maxage" => d.s_maxage = delta().or(d.s_maxage),
                "stale-while-revalidate" => {
                    d.stale_while_revalidate = delta().or(d.stale_while_revalidate);
                }
                "stale-if-error" => d.stale_if_error = delta().or(d.stale_if_error),
                "no-cache" => d.no_cache = qualifier().or(d.no_cache.take()),
                "private" => d.private = qualifier().or(d.private.take()),
                "no-store" => d.no_store |= flag,
                "public" => d.public |= flag,
                "must-revalidate" => d.must_revalidate |= flag,
                "proxy-revalidate" => d.proxy_revalidate |= flag,
                "must-understand" => d.must_understand |= flag,
                "no-transform" => d.no_transform |= flag,
                "immutable" => d.immutable |= flag,
                _ => {}
            }
        }
        Some(d)
    }

    /// Builds from parsed directives.
    pub fn from_list(list: &[Directive]) -> Self {
        let mut d = Self::default();
        for Directive { name, value } in list {
            let v = value.as_deref();
            match name.as_str() {
                "max-age" => merge(&mut d.max_age, v),
                "s-maxage" => merge(&mut d.s_maxage, v),
                "no-cache" => d.no_cache = Some(qualified(v)),
                "no-store" => d.no_store = true,
                "private" => d.private = Some(qualified(v)),
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "no-transform" => d.no_transform = true,
                "immutable" => d.immutable = true,
                "stale-while-revalidate" => merge(&mut d.stale_while_revalidate, v),
                "stale-if-error" => merge(&mut d.stale_if_error, v),
                _ => {}
            }
        }
        d
    }

    /// The response must be validated before every reuse (RFC 9111 §5.2.2.4, and
    /// `must-revalidate`/`proxy-revalidate` once stale).
    pub fn revalidate_when_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// A request's caching directives (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `max-age`: the client accepts no older response.
    pub max_age: Option<Delta>,
    /// `max-stale` (None inside: any staleness).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`.
    pub min_fresh: Option<Delta>,
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`).
    pub no_cache: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `only-if-cached`: answer from the cache or 504.
    pub only_if_cached: bool,
    /// `stale-if-error`.
    pub stale_if_error: Option<Delta>,
}

impl RequestDirectives {
    /// Parses the request's `Cache-Control` (and `Pragma: no-cache` when it has none,
    /// RFC 9111 §5.4).
    pub fn parse(headers: &HeaderMap) -> Self {
        let list = parse_list(
            headers
                .get_all(http::header::CACHE_CONTROL)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let mut d = Self::default();
        for Directive { name, value } in &list {
            let v = value.as_deref();
            match name.as_str() {
                "max-age" => merge(&mut d.max_age, v),
                "max-stale" => {
                    d.max_stale = Some(match v.map(parse_delta) {
                        None => None,
                        Some(Delta::Secs(n)) => Some(n),
                        // An invalid max-stale allows no staleness.
                        Some(Delta::Invalid) => Some(0),
                    })
                }
                "min-fresh" => merge(&mut d.min_fresh, v),
                "no-cache" => d.no_cache = true,
                "no-store" => d.no_store = true,
                "only-if-cached" => d.only_if_cached = true,
                "stale-if-error" => merge(&mut d.stale_if_error, v),
                _ => {}
            }
        }
        if list.is_empty() {
            let pragma_no_cache = headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("no-cache"));
            d.no_cache = pragma_no_cache;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(lines: &[&str]) -> ResponseDirectives {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(http::header::CACHE_CONTROL, l.parse().expect("value"));
        }
        ResponseDirectives::parse(&h, None)
    }

    #[test]
    fn lists_quotes_case_and_lines() {
        let d = resp(&[
            "Public, MAX-AGE=60",
            "no-cache=\"Set-Cookie, X-Foo\", s-maxage=\"120\"",
        ]);
        assert!(d.public);
        assert_eq!(d.max_age, Some(Delta::Secs(60)));
        assert_eq!(d.s_maxage, Some(Delta::Secs(120)));
        assert_eq!(
            d.no_cache,
            Some(Qualified::Fields(vec!["set-cookie".into(), "x-foo".into()]))
        );
        let d = resp(&["private, unknown-ext=\"a,b\", no-store"]);
        assert_eq!(d.private, Some(Qualified::All));
        assert!(d.no_store);
    }

    #[test]
    fn malformed_and_duplicate_ages_are_stale() {
        assert_eq!(resp(&["max-age=abc"]).max_age, Some(Delta::Invalid));
        assert_eq!(resp(&["max-age=-1"]).max_age, Some(Delta::Invalid));
        assert_eq!(resp(&["max-age"]).max_age, Some(Delta::Invalid));
        assert_eq!(resp(&["max-age=1.5"]).max_age, Some(Delta::Invalid));
        assert_eq!(
            resp(&["max-age=60, max-age=60"]).max_age,
            Some(Delta::Secs(60))
        );
        assert_eq!(
            resp(&["max-age=60", "max-age=30"]).max_age,
            Some(Delta::Invalid)
        );
        assert_eq!(
            resp(&["max-age=99999999999999999999"]).max_age,
            Some(Delta::Secs(DELTA_MAX))
        );
    }

    #[test]
    fn a_targeted_field_wins() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            "max-age=10".parse().expect("value"),
        );
        h.insert("cdn-cache-control", "max-age=600".parse().expect("value"));
        let t = [
            HeaderName::from_static("weir-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ];
        let d = ResponseDirectives::parse(&h, Some(&t));
        assert_eq!(d.max_age, Some(Delta::Secs(600)));
        assert!(d.targeted);
        assert_eq!(
            ResponseDirectives::parse(&h, None).max_age,
            Some(Delta::Secs(10))
        );
    }

    #[test]
    fn targeted_fields_are_structured_dictionaries() {
        let t = [HeaderName::from_static("cdn-cache-control")];
        let parse = |cdn: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::CACHE_CONTROL,
                "max-age=10".parse().expect("value"),
            );
            h.insert("cdn-cache-control", cdn.parse().expect("value"));
            ResponseDirectives::parse(&h, Some(&t))
        };
        // Members of the wrong type are ignored, the rest applies.
        let d = parse("max-age=\"600\", s-maxage=30, no-store=?0, must-revalidate");
        assert!(d.targeted);
        assert_eq!(d.max_age, None);
        assert_eq!(d.s_maxage, Some(Delta::Secs(30)));
        assert!(!d.no_store);
        assert!(d.must_revalidate);
        assert_eq!(parse("max-age=abc").max_age, None);
        assert_eq!(parse("max-age=-5").max_age, None);
        assert_eq!(parse("max-age=1.5").max_age, None);
        assert_eq!(parse("max-age=(1 2)").max_age, None);
        assert_eq!(parse("max-age=600").max_age, Some(Delta::Secs(600)));
        assert_eq!(
            parse("private=\"set-cookie\"").private,
            Some(Qualified::Fields(vec!["set-cookie".to_owned()]))
        );
        // Not a dictionary: ignored whole; Cache-Control applies.
        for broken in [
            "max-age=600, ,",
            "max-age=600;;",
            "MAX-AGE=600",
            "max-age=600, \"x\"",
        ] {
            let d = parse(broken);
            assert!(!d.targeted, "{broken}");
            assert_eq!(d.max_age, Some(Delta::Secs(10)), "{broken}");
        }
        // Several lines form one dictionary.
        let mut h = HeaderMap::new();
        h.append("cdn-cache-control", "max-age=60".parse().expect("value"));
        h.append(
            "cdn-cache-control",
            "stale-if-error=5".parse().expect("value"),
        );
        let d = ResponseDirectives::parse(&h, Some(&t));
        assert_eq!(d.max_age, Some(Delta::Secs(60)));
        assert_eq!(d.stale_if_error, Some(Delta::Secs(5)));
    }

    #[test]
    fn request_directives_and_pragma() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            "max-stale, min-fresh=5, only-if-cached"
                .parse()
                .expect("value"),
        );
        let d = RequestDirectives::parse(&h);
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(Delta::Secs(5)));
        assert!(d.only_if_cached);
        let mut h = HeaderMap::new();
        h.insert(http::header::PRAGMA, "no-cache".parse().expect("value"));
        assert!(RequestDirectives::parse(&h).no_cache);
    }
}
