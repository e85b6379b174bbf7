//! Reading a request's hash key: client IP, path, a header, a cookie or a query parameter.

use std::net::IpAddr;

use http::request::Parts;
use http::HeaderMap;
use weir_config::HashKey;
use weir_core::added::AddedFields;

use crate::hash::{hash_bytes, hash_ip};

/// The hash of `key` for this request as it is sent (a header the proxy adds, in `added`, is
/// read there); `None` when the request does not carry it.
pub fn hash_of(
    key: &HashKey,
    parts: &Parts,
    added: &AddedFields,
    client_ip: IpAddr,
) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(hash_ip(client_ip)),
        HashKey::Path => Some(hash_bytes(parts.uri.path().as_bytes())),
        HashKey::Header(name) => added
            .get(name)
            .or_else(|| parts.headers.get(name.as_str()))
            .map(|v| hash_bytes(v.as_bytes())),
        HashKey::Cookie(name) => cookie(&parts.headers, name).map(|v| hash_bytes(v.as_bytes())),
        HashKey::Query(name) => query_param(parts.uri.query()?, name).map(hash_bytes),
    }
}

/// The value of cookie `name` (the first one, across every `Cookie` header).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The raw value of query parameter `name`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a [u8]> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_kind() {
        let (parts, ()) = http::Request::builder()
            .uri("/p?a=1&user=bob")
            .header("x-user", "alice")
            .header("cookie", "sid=xyz; theme=dark")
            .body(())
            .expect("request")
            .into_parts();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let h = |k: HashKey| hash_of(&k, &parts, &weir_core::added::NO_FIELDS, ip);
        assert_eq!(
            h(HashKey::Header("x-user".into())),
            Some(hash_bytes(b"alice"))
        );
        assert_eq!(
            h(HashKey::Cookie("theme".into())),
            Some(hash_bytes(b"dark"))
        );
        assert_eq!(h(HashKey::Query("user".into())), Some(hash_bytes(b"bob")));
        assert_eq!(h(HashKey::Path), Some(hash_bytes(b"/p")));
        assert_eq!(h(HashKey::Query("nope".into())), None);
        assert_eq!(h(HashKey::Cookie("nope".into())), None);
    }
}
