//! Property tests: the parsers never panic on any bytes, and what they accept round-trips.

use proptest::prelude::*;
use weir_cache::directives::{parse_delta, parse_list, Delta, ResponseDirectives, DELTA_MAX};

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
}
