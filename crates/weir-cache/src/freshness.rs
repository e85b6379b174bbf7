//! Freshness lifetime and age (RFC 9111 §4.2) for a shared cache.
//!
//! Lifetime: `s-maxage`, else `max-age`, else `Expires − Date` (an invalid `Expires`, such as
//! `0`, means already expired; `Expires` is ignored under a targeted field), else — only for
//! heuristically cacheable statuses or `public` responses with a `Last-Modified` — a tenth of
//! the time since that modification, capped (§4.2.2). Age: the corrected initial age
//! (`max(apparent age, Age + response delay)`) plus the time resident in the cache (§4.2.3);
//! an invalid `Age` is ignored (§5.1).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use crate::directives::{parse_delta, Delta, ResponseDirectives};

/// Largest heuristic lifetime (a day, as common practice).
pub const HEURISTIC_CAP: Duration = Duration::from_secs(86_400);

/// Statuses cacheable by default (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// A stored response's freshness facts, fixed when it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// How long it is fresh from its origin's point of view.
    pub lifetime: Duration,
    /// The lifetime is a heuristic (no explicit freshness): `Age` over a day needs a warning
    /// no longer sent, and some operators prefer not to trust it.
    pub heuristic: bool,
    /// Age when it was received (corrected initial age).
    pub initial_age: Duration,
    /// When it was received.
    pub response_time: SystemTime,
}

fn date(headers: &HeaderMap, name: http::HeaderName) -> Option<Result<SystemTime, ()>> {
    let v = headers.get(name)?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
            .ok_or(()),
    )
}

fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

impl Freshness {
    /// The facts of a response received at `response_time` for a request sent at
    /// `request_time`.
    pub fn of(
        status: StatusCode,
        headers: &HeaderMap,
        d: &ResponseDirectives,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Self {
        // A missing or invalid Date is taken as the time of receipt.
        let date_value = match date(headers, http::header::DATE) {
            Some(Ok(t)) => t,
            _ => response_time,
        };
        let (lifetime, heuristic) = lifetime(status, headers, d, date_value);
        let age_value = headers
            .get(http::header::AGE)
            // A list-valued Age: the first member counts, whatever bytes the others hold
            // (obs-text after the comma must not void a valid first member).
            .and_then(|v| v.as_bytes().split(|&b| b == b',').next())
            .and_then(|first| std::str::from_utf8(first.trim_ascii()).ok())
            .and_then(|s| match parse_delta(s) {
                Delta::Secs(n) => Some(Duration::from_secs(n)),
                Delta::Invalid => None,
            })
            .unwrap_or(Duration::ZERO);
        let apparent_age = since(response_time, date_value);
        let response_delay = since(response_time, request_time);
        let corrected_age_value = age_value + response_delay;
        Self {
            lifetime,
            heuristic,
            initial_age: apparent_age.max(corrected_age_value),
            response_time,
        }
    }

    /// The response's age at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + since(now, self.response_time)
    }

    /// Fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }

    /// Time left fresh (zero when stale).
    pub fn ttl(&self, now: SystemTime) -> Duration {
        self.lifetime.saturating_sub(self.age(now))
    }

    /// How long it has been stale (zero when fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }
}

fn lifetime(
    status: StatusCode,
    headers: &HeaderMap,
    d: &ResponseDirectives,
    date_value: SystemTime,
) -> (Duration, bool) {
    if let Some(s) = d.s_maxage {
        return (Duration::from_secs(s.secs_or_zero()), false);
    }
    if let Some(m) = d.max_age {
        return (Duration::from_secs(m.secs_or_zero()), false);
    }
    if !d.targeted {
        match date(headers, http::header::EXPIRES) {
            Some(Ok(expires)) => return (since(expires, date_value), false),
            // An invalid Expires (e.g. "0") means already expired.
            Some(Err(())) => return (Duration::ZERO, false),
            None => {}
        }
    }
    if heuristically_cacheable(status) || d.public {
        if let Some(Ok(modified)) = date(headers, http::header::LAST_MODIFIED) {
            let tenth = since(date_value, modified) / 10;
            return (tenth.min(HEURISTIC_CAP), true);
        }
    }
    (Duration::ZERO, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::ResponseDirectives;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn fresh(status: u16, pairs: &[(&str, String)], sent: u64, got: u64) -> Freshness {
        let h = crate::headers_of(pairs);
        let d = ResponseDirectives::parse(&h, None);
        Freshness::of(
            StatusCode::from_u16(status).expect("status"),
            &h,
            &d,
            at(sent),
            at(got),
        )
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    #[test]
    fn precedence_s_maxage_max_age_expires() {
        let f = fresh(
            200,
            &[
                ("cache-control", "max-age=60, s-maxage=300".into()),
                ("expires", http_date(9999)),
            ],
            0,
            0,
        );
        assert_eq!(f.lifetime, Duration::from_secs(300));
        let f = fresh(
            200,
            &[
                ("cache-control", "max-age=60".into()),
                ("expires", http_date(9999)),
            ],
            0,
            0,
        );
        assert_eq!(f.lifetime, Duration::from_secs(60));
        let f = fresh(
            200,
            &[("date", http_date(100)), ("expires", http_date(160))],
            100,
            100,
        );
        assert_eq!(f.lifetime, Duration::from_secs(60));
        // Invalid Expires: already expired, even with Last-Modified.
        let f = fresh(
            200,
            &[("expires", "0".into()), ("last-modified", http_date(0))],
            0,
            0,
        );
        assert_eq!(f.lifetime, Duration::ZERO);
        assert!(!f.heuristic);
    }

    #[test]
    fn heuristics_only_where_allowed() {
        let lm = [("date", http_date(1000)), ("last-modified", http_date(0))];
        let f = fresh(200, &lm, 1000, 1000);
        assert_eq!((f.lifetime, f.heuristic), (Duration::from_secs(100), true));
        assert_eq!(fresh(302, &lm, 1000, 1000).lifetime, Duration::ZERO);
        let mut public = lm.to_vec();
        public.push(("cache-control", "public".into()));
        assert_eq!(
            fresh(302, &public, 1000, 1000).lifetime,
            Duration::from_secs(100)
        );
        let old = [
            ("date", http_date(10_000_000)),
            ("last-modified", http_date(0)),
        ];
        assert_eq!(
            fresh(200, &old, 10_000_000, 10_000_000).lifetime,
            HEURISTIC_CAP
        );
    }

    #[test]
    fn age_is_corrected_and_grows() {
        // Sent at 0, answered at 2, Date says 1, Age says 10: initial age 12 (Age + delay).
        let f = fresh(
            200,
            &[
                ("date", http_date(1)),
                ("age", "10".into()),
                ("cache-control", "max-age=20".into()),
            ],
            0,
            2,
        );
        assert_eq!(f.initial_age, Duration::from_secs(12));
        assert_eq!(f.age(at(5)), Duration::from_secs(15));
        assert!(f.is_fresh(at(9)));
        assert!(!f.is_fresh(at(10)));
        assert_eq!(f.staleness(at(12)), Duration::from_secs(2));
        // A Date in the past beyond Age: apparent age wins.
        let f = fresh(200, &[("date", http_date(0)), ("age", "1".into())], 50, 50);
        assert_eq!(f.initial_age, Duration::from_secs(50));
        // Invalid Age is ignored; a list uses its first member.
        assert_eq!(
            fresh(200, &[("age", "x".into())], 0, 0).initial_age,
            Duration::ZERO
        );
        assert_eq!(
            fresh(200, &[("age", "7, 9".into())], 0, 0).initial_age,
            Duration::from_secs(7)
        );
    }
}
