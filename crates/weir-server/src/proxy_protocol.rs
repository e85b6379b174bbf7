//! The PROXY protocol (HAProxy's, versions 1 and 2): read on listeners that enable it, so the
//! client's real address reaches the access log, `X-Forwarded-For` and every policy; and the
//! header format upstreams that want one are sent (see `weir-upstream`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// The v2 signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (spec §2.1).
const V1_MAX: usize = 107;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// The connection did not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// The header is malformed.
    #[error("malformed PROXY protocol header")]
    Malformed,
    /// It did not arrive in time.
    #[error("PROXY protocol header not received in time")]
    Timeout,
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `stream` (and nothing after it). Returns the client
/// address it names, or `None` for a LOCAL / unknown-family header (use the peer's).
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 232];
    // Peek until the header is complete, then consume exactly its length.
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Missing);
        }
        let seen = &buf[..n];
        match parse(seen)? {
            Some((len, addr)) => {
                let mut sink = vec![0u8; len];
                stream.read_exact(&mut sink).await?;
                return Ok(addr);
            }
            None => {
                // Incomplete: wait for more bytes (bounded by the caller's timeout).
                stream.readable().await?;
                tokio::task::yield_now().await;
            }
        }
    }
}

/// `Ok(Some((header length, address)))` for a complete header, `Ok(None)` when more bytes are
/// needed.
#[allow(clippy::type_complexity)]
pub(crate) fn parse(b: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    let sig_len = b.len().min(12);
    if b[..sig_len] == V2_SIG[..sig_len] {
        if b.len() < 16 {
            return Ok(None);
        }
        return parse_v2(b);
    }
    let prefix = b.len().min(6);
    if b[..prefix] != b"PROXY "[..prefix] {
        return Err(ProxyHeaderError::Missing);
    }
    let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
        return if b.len() >= V1_MAX {
            Err(ProxyHeaderError::Malformed)
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(ProxyHeaderError::Malformed);
    }
    let line = std::str::from_utf8(&b[6..end]).map_err(|_| ProxyHeaderError::Malformed)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let addr = match parts.as_slice() {
        ["UNKNOWN", ..] => None,
        [proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            if (*proto == "TCP4") != ip.is_ipv4() {
                return Err(ProxyHeaderError::Malformed);
            }
            let port: u16 = sport.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyHeaderError::Malformed),
    };
    Ok(Some((end + 2, addr)))
}

#[allow(clippy::type_complexity)]
fn parse_v2(b: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    let ver_cmd = b[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed);
    }
    let family = b[13];
    let len = usize::from(u16::from_be_bytes([b[14], b[15]]));
    if b.len() < 16 + len {
        return Ok(None);
    }
    let body = &b[16..16 + len];
    let addr = match (ver_cmd & 0x0f, family) {
        // LOCAL: a health check from the balancer itself.
        (0, _) => None,
        (1, 0x11) if body.len() >= 12 => {
            let ip = IpAddr::from([body[0], body[1], body[2], body[3]]);
            Some(SocketAddr::new(ip, u16::from_be_bytes([body[8], body[9]])))
        }
        (1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            Some(SocketAddr::new(
                IpAddr::from(octets),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        (1, 0x11 | 0x21) => return Err(ProxyHeaderError::Malformed),
        (1, _) => None,
        _ => return Err(ProxyHeaderError::Malformed),
    };
    Ok(Some((16 + len, addr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET /";
        let (len, addr) = parse(v1).expect("ok").expect("complete");
        assert_eq!(len, 43);
        assert_eq!(addr, Some("203.0.113.7:51234".parse().expect("addr")));
        assert!(parse(b"PROXY TCP4 203.0.113.7").expect("ok").is_none());
        assert!(parse(b"PROXY TCP4 nonsense 1 2 3\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").expect("ok"), Some((15, None)));

        let mut v2 = V2_SIG.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb,
        ]);
        let (len, addr) = parse(&v2).expect("ok").expect("complete");
        assert_eq!(len, 28);
        assert_eq!(addr, Some("198.51.100.9:8080".parse().expect("addr")));
        assert!(parse(&v2[..20]).expect("ok").is_none());
    }
}
