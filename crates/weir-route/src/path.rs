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
