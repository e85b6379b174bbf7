//! Writing PROXY protocol headers (v1 text, v2 binary) for upstreams that want to know the
//! client's address at the TCP level.

use std::net::{IpAddr, SocketAddr};

use weir_config::ProxyProtocolVersion;

/// The header announcing a connection from `client` to `local`.
pub(crate) fn header(
    version: ProxyProtocolVersion,
    client: SocketAddr,
    local: SocketAddr,
) -> Vec<u8> {
    // Both addresses must be of one family; mixed ones are sent as IPv6.
    let (src, dst) = match (client.ip(), local.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        (a, b) => (IpAddr::V6(to_v6(a)), IpAddr::V6(to_v6(b))),
    };
    match version {
        ProxyProtocolVersion::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {src} {dst} {} {}\r\n",
                client.port(),
                local.port()
            )
            .into_bytes()
        }
        ProxyProtocolVersion::V2 => {
            let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            out.push(0x21); // version 2, PROXY
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&to_v6(s).octets());
                    out.extend_from_slice(&to_v6(d).octets());
                }
            }
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&local.port().to_be_bytes());
            out
        }
    }
}

/// The header of a connection Weir makes for itself (a health check): v1 `UNKNOWN`, v2
/// `LOCAL` — the spec's form for a proxy's own connections, which carry no client.
pub(crate) fn local_header(version: ProxyProtocolVersion) -> Vec<u8> {
    match version {
        ProxyProtocolVersion::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocolVersion::V2 => {
            let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
            out
        }
    }
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers() {
        let c: SocketAddr = "203.0.113.7:51234".parse().expect("addr");
        let l: SocketAddr = "10.0.0.1:443".parse().expect("addr");
        assert_eq!(
            header(ProxyProtocolVersion::V1, c, l),
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"
        );
        let v2 = header(ProxyProtocolVersion::V2, c, l);
        assert_eq!(v2.len(), 28);
        assert_eq!(&v2[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&v2[16..20], &[203, 0, 113, 7]);
    }
}
