//! Path normalization before matching, so `/api/../admin` or `/%61dmin` cannot slip past a
//! route meant for `/admin` (or into one meant for `/api/`).

use std::borrow::Cow;

/// Decodes percent-encoded unreserved characters and removes `.` and `..` segments
/// (RFC 3986 §6.2.2). Other percent-escapes (such as `%2F`) are kept encoded.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    let needs_work = path.contains('%') || path.contains("/.") || !path.starts_with('/');
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                trailing_slash = i == last;
            }
            s => {
                if i == 0 && !s.is_empty() {
                    out.push("");
                }
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut result = out.join("/");
    if result.is_empty() {
        result.push('/');
    }
    if trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    Cow::Owned(result)
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                let c = u8::try_from(h * 16 + l).unwrap_or(0);
                if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                    out.push(char::from(c));
                    i += 3;
                    continue;
                }
            }
        }
        // `http::Uri` only admits ASCII in paths, so bytes are chars here.
        out.push(char::from(bytes[i]));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize_path;

    #[test]
    fn normalizes() {
        for (input, want) in [
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/%61pi/x", "/api/x"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%2e%2e/x", "/x"),
            ("/", "/"),
        ] {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::normalize_path;
    use proptest::prelude::*;

    /// Paths built from segments that include dots, encoded dots and slashes, and plain names.
    fn paths() -> impl Strategy<Value = String> {
        let seg = prop_oneof![
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%2f".to_owned()),
            Just("%61".to_owned()),
            Just("".to_owned()),
            "[a-z0-9_~-]{1,6}",
        ];
        proptest::collection::vec(seg, 0..8).prop_map(|segs| format!("/{}", segs.join("/")))
    }

    proptest! {
        #[test]
        fn output_is_rooted_and_has_no_dot_segments(p in paths()) {
            let n = normalize_path(&p);
            prop_assert!(n.starts_with('/'), "{n}");
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "{p} -> {n}");
            }
        }

        #[test]
        fn normalizing_twice_changes_nothing(p in paths()) {
            let once = normalize_path(&p).into_owned();
            let twice = normalize_path(&once).into_owned();
            prop_assert_eq!(once, twice);
        }

        /// Decoding never turns `%2f` into a separator: normalizing only removes segments.
        #[test]
        fn decoding_never_creates_separators(p in paths()) {
            let n = normalize_path(&p);
            prop_assert!(n.matches('/').count() <= p.matches('/').count(), "{p} -> {n}");
            prop_assert!(!n.contains("%2e") && !n.contains("%2E") && !n.contains("%61"), "{p} -> {n}");
        }
    }
}
