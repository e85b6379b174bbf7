//! What the cache benches store: one small fresh object.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use weir_cache::directives::ResponseDirectives;
use weir_cache::freshness::Freshness;
use weir_cache::store::Variant;

/// A 16-byte object received at `now`, fresh for an hour.
pub fn object(now: SystemTime) -> Variant {
    Variant {
        secondary: Vec::new(),
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"0123456789abcdef"),
        freshness: Freshness {
            lifetime: Duration::from_secs(3600),
            heuristic: false,
            initial_age: Duration::ZERO,
            response_time: now,
        },
        directives: ResponseDirectives::default(),
        body_len: 16,
        file: None,
    }
}
