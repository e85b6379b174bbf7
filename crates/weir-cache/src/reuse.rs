//! Whether a stored response may answer a request (RFC 9111 §4, §4.2.4; RFC 5861): fresh
//! enough for the request's `max-age`/`min-fresh`, or stale but allowed — by the client's
//! `max-stale`, by `stale-while-revalidate` (serve, refresh in the background), or, when the
//! origin fails, by `stale-if-error` or the operator's grace — and never against `no-cache`
//! or `must-revalidate`/`proxy-revalidate`/`s-maxage` once stale.

use std::time::{Duration, SystemTime};

use crate::directives::{Delta, Qualified, RequestDirectives, ResponseDirectives};
use crate::freshness::Freshness;

/// What to do with a stored response for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it: fresh (or stale within the client's `max-stale`).
    Fresh,
    /// Serve it now and refresh it in the background (`stale-while-revalidate`).
    StaleWhileRevalidate,
    /// Ask the origin (conditionally, when it has validators); if that fails, the stored
    /// response may still be served when `stale_if_error` says so.
    Revalidate {
        /// Stale serving is allowed should the origin fail or time out.
        stale_if_error: bool,
    },
}

/// Operator settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StalePolicy {
    /// Serve stale this long past expiry when the origin fails, even without `stale-if-error`
    /// (never against `must-revalidate` or `no-cache`).
    pub grace: Duration,
}

fn secs(d: Option<Delta>) -> Option<Duration> {
    d.map(|d| Duration::from_secs(d.secs_or_zero()))
}

/// Decides for a stored response with `freshness` and directives `resp`, a request with
/// directives `req`, at `now`.
pub fn decide(
    f: &Freshness,
    resp: &ResponseDirectives,
    req: &RequestDirectives,
    policy: StalePolicy,
    now: SystemTime,
) -> Reuse {
    let age = f.age(now);
    let staleness = f.staleness(now);
    let never_stale = resp.revalidate_when_stale();
    let no_cache = matches!(resp.no_cache, Some(Qualified::All)) || req.no_cache;
    let may_serve_on_error =
        |extra: Duration| -> bool { !never_stale && !no_cache && staleness <= extra };
    let sie = secs(req.stale_if_error)
        .or(secs(resp.stale_if_error))
        .unwrap_or(Duration::ZERO);
    let on_error = may_serve_on_error(sie.max(policy.grace));
    if no_cache {
        return Reuse::Revalidate {
            stale_if_error: false,
        };
    }
    // The client's own limits first.
    if let Some(max) = secs(req.max_age) {
        if age > max {
            return Reuse::Revalidate {
                stale_if_error: on_error,
            };
        }
    }
    let min_fresh = secs(req.min_fresh).unwrap_or(Duration::ZERO);
    if f.ttl(now) > min_fresh {
        return Reuse::Fresh;
    }
    if never_stale {
        return Reuse::Revalidate {
            stale_if_error: false,
        };
    }
    if let Some(max_stale) = req.max_stale {
        let allowed = max_stale.is_none_or(|s| staleness <= Duration::from_secs(s));
        if allowed && min_fresh.is_zero() {
            return Reuse::Fresh;
        }
    }
    if let Some(swr) = secs(resp.stale_while_revalidate) {
        if staleness <= swr && min_fresh.is_zero() {
            return Reuse::StaleWhileRevalidate;
        }
    }
    Reuse::Revalidate {
        stale_if_error: on_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::{parse_list, RequestDirectives, ResponseDirectives};

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    /// Stored at 0 with `lifetime` seconds; decided at `now`.
    fn run(resp_cc: &str, req_cc: &str, lifetime: u64, now: u64, grace: u64) -> Reuse {
        let resp = ResponseDirectives::from_list(&parse_list(std::iter::once(resp_cc.as_bytes())));
        let mut h = http::HeaderMap::new();
        if !req_cc.is_empty() {
            h.insert(http::header::CACHE_CONTROL, req_cc.parse().expect("value"));
        }
        let req = RequestDirectives::parse(&h);
        let f = Freshness {
            lifetime: Duration::from_secs(lifetime),
            heuristic: false,
            initial_age: Duration::ZERO,
            response_time: t(0),
        };
        decide(
            &f,
            &resp,
            &req,
            StalePolicy {
                grace: Duration::from_secs(grace),
            },
            t(now),
        )
    }

    #[test]
    fn fresh_and_client_limits() {
        assert_eq!(run("max-age=60", "", 60, 10, 0), Reuse::Fresh);
        // Refused by the client's limits, but not stale: usable should the origin fail.
        assert_eq!(
            run("max-age=60", "max-age=5", 60, 10, 0),
            Reuse::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            run("max-age=60", "min-fresh=55", 60, 10, 0),
            Reuse::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(run("max-age=60", "min-fresh=40", 60, 10, 0), Reuse::Fresh);
        assert_eq!(
            run("max-age=60", "no-cache", 60, 10, 0),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
        assert_eq!(
            run("max-age=60, no-cache", "", 60, 10, 0),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
    }

    #[test]
    fn stale_serving_and_its_limits() {
        // Stale by 10 s.
        assert_eq!(
            run("max-age=60", "", 60, 70, 0),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
        assert_eq!(run("max-age=60", "max-stale", 60, 70, 0), Reuse::Fresh);
        assert_eq!(
            run("max-age=60", "max-stale=5", 60, 70, 0),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
        assert_eq!(
            run("max-age=60, stale-while-revalidate=30", "", 60, 70, 0),
            Reuse::StaleWhileRevalidate
        );
        assert_eq!(
            run("max-age=60, stale-while-revalidate=5", "", 60, 70, 0),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
        assert_eq!(
            run("max-age=60, stale-if-error=30", "", 60, 70, 0),
            Reuse::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            run("max-age=60", "stale-if-error=30", 60, 70, 0),
            Reuse::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            run("max-age=60", "", 60, 70, 60),
            Reuse::Revalidate {
                stale_if_error: true
            },
            "grace"
        );
        // Never against must-revalidate, proxy-revalidate, s-maxage or no-cache.
        for cc in [
            "max-age=60, must-revalidate, stale-while-revalidate=30, stale-if-error=30",
            "max-age=60, proxy-revalidate, stale-if-error=30",
            "s-maxage=60, stale-while-revalidate=30",
        ] {
            assert_eq!(
                run(cc, "max-stale", 60, 70, 60),
                Reuse::Revalidate {
                    stale_if_error: false
                },
                "{cc}"
            );
        }
        assert_eq!(
            run("no-cache, stale-if-error=30", "", 60, 70, 60),
            Reuse::Revalidate {
                stale_if_error: false
            }
        );
    }
}
