//! Property tests: the parsers never panic on any bytes, and what they accept round-trips.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;
use weir_cache::directives::{parse_delta, parse_list, Delta, ResponseDirectives, DELTA_MAX};
use weir_cache::freshness::Freshness;

/// The freshness of a 200 with `pairs`, received at `now` for a request sent at `now`.
fn freshness(pairs: &[(&str, HeaderValue)], now: SystemTime) -> Freshness {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.clone(),
        );
    }
    let d = ResponseDirectives::parse(&h, None);
    Freshness::of(StatusCode::OK, &h, &d, now, now)
}

fn now() -> SystemTime {
    // Whole seconds, as HTTP dates have.
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

proptest! {
    #[test]
    fn cache_control_parsing_never_panics(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4)) {
        let list = parse_list(lines.iter().map(|l| &l[..]));
        let _ = ResponseDirectives::from_list(&list);
    }

    #[test]
    fn delta_seconds_are_digits_or_invalid(s in "\\PC{0,24}") {
        match parse_delta(&s) {
            Delta::Secs(n) => {
                prop_assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(n <= DELTA_MAX);
            }
            Delta::Invalid => prop_assert!(s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit())),
        }
    }

    #[test]
    fn written_directives_read_back(max_age in 0u64..10_000_000, smax in 0u64..10_000_000, public in any::<bool>(), quoted in any::<bool>()) {
        let v = if quoted { format!("\"{smax}\"") } else { smax.to_string() };
        let text = format!("{}max-age={max_age} , s-maxage={v}, no-cache=\"a, b\"", if public { "public, " } else { "" });
        let d = ResponseDirectives::from_list(&parse_list(std::iter::once(text.as_bytes())));
        prop_assert_eq!(d.max_age, Some(Delta::Secs(max_age)));
        prop_assert_eq!(d.s_maxage, Some(Delta::Secs(smax)));
        prop_assert_eq!(d.public, public);
    }

    /// RFC 9111 §5.1: Age is delta-seconds; an invalid value is ignored (age from Date, here
    /// zero), a valid one counts, capped; a list's first member counts.
    #[test]
    fn age_is_delta_seconds_or_ignored(s in "[0-9]{1,14}|\\PC{0,14}") {
        let Ok(v) = HeaderValue::from_str(&s) else { return Ok(()) };
        let f = freshness(&[("cache-control", HeaderValue::from_static("max-age=10")), ("age", v)], now());
        let first = s.split(',').next().unwrap_or("").trim();
        match parse_delta(first) {
            Delta::Secs(n) => prop_assert_eq!(f.initial_age, Duration::from_secs(n)),
            Delta::Invalid => prop_assert_eq!(f.initial_age, Duration::ZERO),
        }
    }

    /// RFC 9111 §5.3: an Expires that is not a valid HTTP date means already expired — even
    /// when heuristics (Last-Modified) would allow freshness.
    #[test]
    fn an_invalid_expires_means_already_expired(s in "\\PC{0,40}") {
        prop_assume!(httpdate::parse_http_date(&s).is_err());
        let Ok(v) = HeaderValue::from_str(&s) else { return Ok(()) };
        let lm = HeaderValue::from_str(&httpdate::fmt_http_date(now() - Duration::from_secs(86_400 * 30))).expect("date");
        let f = freshness(&[("expires", v), ("last-modified", lm)], now());
        prop_assert_eq!(f.lifetime, Duration::ZERO);
        prop_assert!(!f.is_fresh(now()));
    }

    /// A valid Expires: lifetime is Expires − Date, never negative.
    #[test]
    fn a_valid_expires_counts_from_date(offset in -1_000_000i64..1_000_000) {
        let date = now();
        let expires = if offset >= 0 {
            date + Duration::from_secs(offset.unsigned_abs())
        } else {
            date - Duration::from_secs(offset.unsigned_abs())
        };
        let h = |t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("date");
        let f = freshness(&[("date", h(date)), ("expires", h(expires))], now());
        prop_assert_eq!(f.lifetime, Duration::from_secs(offset.max(0).unsigned_abs()));
    }

    /// RFC 9111 §4.2.1: a directive given twice with different values makes the response
    /// stale (the fail-safe choice), the same value twice counts once; across field lines too.
    #[test]
    fn duplicate_directives_are_fail_safe(a in 1u64..100_000, b in 1u64..100_000, split in any::<bool>()) {
        let pairs: Vec<(&str, HeaderValue)> = if split {
            vec![
                ("cache-control", HeaderValue::from_str(&format!("max-age={a}")).expect("v")),
                ("cache-control", HeaderValue::from_str(&format!("max-age=\"{b}\"")).expect("v")),
            ]
        } else {
            vec![("cache-control", HeaderValue::from_str(&format!("max-age={a}, max-age={b}")).expect("v"))]
        };
        let f = freshness(&pairs, now());
        if a == b {
            prop_assert_eq!(f.lifetime, Duration::from_secs(a));
        } else {
            prop_assert_eq!(f.lifetime, Duration::ZERO);
        }
    }
}
