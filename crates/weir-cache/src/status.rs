//! The `Cache-Status` response field (RFC 9211): one member for Weir, with `hit` or
//! `fwd=<reason>`, `fwd-status`, `ttl` (negative when stale), `stored`, `collapsed` and a
//! `detail` token.

use std::fmt::Write;

/// Why the request went forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cache was not used (a method or route that bypasses it).
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for the URI.
    UriMiss,
    /// Stored, but no variant matches the request's `Vary`d fields.
    VaryMiss,
    /// The request asked to go forward (`no-cache`, `max-age` …).
    Request,
    /// Stored but stale: revalidated or refetched.
    Stale,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Forward::Bypass => "bypass",
            Forward::Method => "method",
            Forward::UriMiss => "uri-miss",
            Forward::VaryMiss => "vary-miss",
            Forward::Request => "request",
            Forward::Stale => "stale",
        }
    }
}

/// One `Cache-Status` member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    /// Served from the cache without contacting the origin.
    pub hit: bool,
    /// Why it went forward, if it did.
    pub fwd: Option<Forward>,
    /// The origin's status when forwarded.
    pub fwd_status: Option<u16>,
    /// Seconds of freshness left (negative: stale by that much).
    pub ttl: Option<i64>,
    /// The response was stored.
    pub stored: bool,
    /// The request waited for another's forward (coalescing).
    pub collapsed: bool,
    /// A short token: why not stored (`no-store`, `private` …) or what was served (`stale`).
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    /// The field value for cache `name` (a token, e.g. `weir`).
    pub fn render(&self, name: &str) -> String {
        let mut out = String::from(name);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            let _ = write!(out, "; fwd={}", f.token());
        }
        if let Some(s) = self.fwd_status {
            let _ = write!(out, "; fwd-status={s}");
        }
        if let Some(t) = self.ttl {
            let _ = write!(out, "; ttl={t}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            let _ = write!(out, "; detail={d}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_as_structured_fields() {
        let hit = CacheStatus {
            hit: true,
            ttl: Some(120),
            ..Default::default()
        };
        assert_eq!(hit.render("weir"), "weir; hit; ttl=120");
        let miss = CacheStatus {
            fwd: Some(Forward::UriMiss),
            fwd_status: Some(200),
            stored: true,
            ..Default::default()
        };
        assert_eq!(
            miss.render("weir"),
            "weir; fwd=uri-miss; fwd-status=200; stored"
        );
        let stale = CacheStatus {
            hit: true,
            ttl: Some(-5),
            detail: Some("stale-if-error"),
            ..Default::default()
        };
        assert_eq!(
            stale.render("weir"),
            "weir; hit; ttl=-5; detail=stale-if-error"
        );
    }
}
