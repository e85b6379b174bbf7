//! The semantics of an RFC 9111 *shared* cache, as pure functions of request and response
//! heads and the clock: what the `Cache-Control` family of fields says ([`directives`]),
//! whether a response may be stored ([`storable`]), how long it stays fresh and how old it is
//! ([`freshness`]), whether a stored response may answer a request or must be revalidated,
//! served stale or refreshed in the background ([`reuse`]), conditional requests answered
//! from a stored response ([`conditional`]), 304 freshening ([`update`]), invalidation by
//! unsafe methods ([`invalidate`]), cache keys and `Vary` variants ([`key`]), and the
//! `Cache-Status` field ([`status`]). Those rule modules do no I/O, so every rule is tested on
//! its own, with property tests for the parsers. The crate also holds the stores that build on
//! them: what they hold ([`variant`]), the memory tier ([`store`]), the disk tier ([`disk`],
//! which reads and writes files; its callers run it on blocking threads) and both as one
//! store with promotion and reload carry-over ([`tiers`]).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use weir_cache::{directives::ResponseDirectives, freshness::Freshness};
//!
//! let mut h = http::HeaderMap::new();
//! h.insert("cache-control", "public, max-age=60, s-maxage=300".parse().expect("value"));
//! let d = ResponseDirectives::parse(&h, None);
//! let now = SystemTime::now();
//! let f = Freshness::of(http::StatusCode::OK, &h, &d, now, now);
//! assert_eq!(f.lifetime, Duration::from_secs(300)); // s-maxage wins in a shared cache
//! ```

pub mod conditional;
pub mod directives;
pub mod disk;
pub mod freshness;
pub mod invalidate;
pub mod key;
pub mod reuse;
pub mod status;
pub mod storable;
pub mod store;
pub mod tiers;
pub mod update;
pub mod variant;

/// Test support: a header map from name/value pairs.
#[cfg(test)]
pub(crate) fn headers_of<V: AsRef<str>>(pairs: &[(&str, V)]) -> http::HeaderMap {
    let mut m = http::HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.as_ref().parse().expect("value"),
        );
    }
    m
}

/// Test support: a fresh 200 variant with `body`, fresh for `lifetime` seconds.
#[cfg(test)]
pub(crate) fn test_variant(
    secondary: Vec<(http::HeaderName, String)>,
    headers: http::HeaderMap,
    body: &'static str,
    lifetime: u64,
) -> store::Variant {
    store::Variant {
        secondary,
        status: http::StatusCode::OK,
        headers,
        body: bytes::Bytes::from_static(body.as_bytes()),
        freshness: freshness::Freshness {
            lifetime: std::time::Duration::from_secs(lifetime),
            heuristic: false,
            initial_age: std::time::Duration::ZERO,
            response_time: std::time::SystemTime::now(),
        },
        directives: directives::ResponseDirectives::default(),
        body_len: body.len() as u64,
        file: None,
    }
}
