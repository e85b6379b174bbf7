//! The key a rate or concurrency limit counts by, as bytes: each part length-prefixed so a
//! composite of two parts can never equal another pair's concatenation.

use std::net::IpAddr;

use http::HeaderMap;
use weir_config::RateKey;
use weir_core::RequestCtx;

/// Writes the key of `parts` for this request into `out` (cleared first).
pub(crate) fn build(
    parts: &[RateKey],
    ipv6_prefix: u8,
    ctx: &RequestCtx,
    headers: &HeaderMap,
    out: &mut Vec<u8>,
) {
    out.clear();
    let single = parts.len() == 1;
    for part in parts {
        let mut push = |bytes: &[u8]| {
            if !single {
                out.extend_from_slice(
                    &u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes(),
                );
            }
            out.extend_from_slice(bytes);
        };
        match part {
            RateKey::ClientIp => match ctx.client_ip {
                IpAddr::V4(v4) => push(&v4.octets()),
                IpAddr::V6(v6) => {
                    let bits = u128::from(v6);
                    let prefix = u32::from(ipv6_prefix.min(128));
                    let masked = if prefix == 0 {
                        0
                    } else {
                        bits & (u128::MAX << (128 - prefix))
                    };
                    push(&masked.to_be_bytes());
                }
            },
            RateKey::Route => push(ctx.route.as_deref().unwrap_or("").as_bytes()),
            RateKey::Consumer => push(ctx.consumer.as_deref().unwrap_or("").as_bytes()),
            RateKey::Header(name) => push(headers.get(name).map_or(&b""[..], |v| v.as_bytes())),
            RateKey::Claim(name) => push(ctx.claim_text(name).unwrap_or_default().as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ctx(ip: &str) -> RequestCtx {
        let peer = std::net::SocketAddr::new(ip.parse().expect("ip"), 1);
        RequestCtx::new(
            http::HeaderValue::from_static("id"),
            peer,
            Arc::from("main"),
            http::Method::GET,
            http::Uri::from_static("/"),
            http::Version::HTTP_11,
        )
    }

    #[test]
    fn ipv6_clients_share_their_prefix() {
        let h = HeaderMap::new();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        build(
            &[RateKey::ClientIp],
            64,
            &ctx("2001:db8:1:2::1"),
            &h,
            &mut a,
        );
        build(
            &[RateKey::ClientIp],
            64,
            &ctx("2001:db8:1:2:ffff::9"),
            &h,
            &mut b,
        );
        build(
            &[RateKey::ClientIp],
            64,
            &ctx("2001:db8:1:3::1"),
            &h,
            &mut c,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn composite_parts_cannot_run_together() {
        let mut h = HeaderMap::new();
        let c = ctx("10.0.0.1");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        h.insert("x-a", http::HeaderValue::from_static("ab"));
        h.insert("x-b", http::HeaderValue::from_static("c"));
        let parts = [RateKey::Header("x-a".into()), RateKey::Header("x-b".into())];
        build(&parts, 64, &c, &h, &mut a);
        h.insert("x-a", http::HeaderValue::from_static("a"));
        h.insert("x-b", http::HeaderValue::from_static("bc"));
        build(&parts, 64, &c, &h, &mut b);
        assert_ne!(a, b);
    }
}
