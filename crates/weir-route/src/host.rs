//! The host a request is routed by: the live router and `weir explain` both call this, so they
//! cannot disagree.

/// Lowercase host without its port (IPv6 literals keep their brackets); `None` when the value
/// is not a plausible host.
pub fn normalize_host(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    let host = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        &value[..end + 2]
    } else {
        value.rsplit_once(':').map_or(value, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                value
            }
        })
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !ok {
        return None;
    }
    // Most hosts arrive in lower case already: no copy then.
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn ports_case_and_junk() {
        assert_eq!(
            normalize_host("API.Example:8080").as_deref(),
            Some("api.example")
        );
        assert_eq!(normalize_host("[::1]:443").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("a.test").as_deref(), Some("a.test"));
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host("evil/host"), None);
        assert_eq!(normalize_host(""), None);
        assert_eq!(normalize_host("[::1"), None);
    }
}
