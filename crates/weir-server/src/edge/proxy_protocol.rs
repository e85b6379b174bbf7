//! The PROXY protocol (HAProxy's, versions 1 and 2): read on listeners that enable it, so the
//! client's real address reaches the access log, `X-Forwarded-For` and every policy; and the
//! header format upstreams that want one are sent (see `weir-upstream`).
//!
//! The header is parsed by the `ppp` crate. It is read, not peeked: each read waits for new
//! bytes (a partial header costs no CPU while the rest is on its way), the buffer grows to the
//! length the v2 header declares (up to 16 + 65,535 bytes, so a load balancer's long TLVs fit),
//! and whatever arrived after the header is handed on to TLS or HTTP ([`Prefixed`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Longest v1 line, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// Longest v2 header: 16 fixed bytes and a 16-bit length.
const V2_MAX: usize = 16 + 65_535;
/// First read: room for a v1 line or a v2 header with a few TLVs and the request after it.
const FIRST_READ: usize = 536;

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

/// A read PROXY header: the client address it names (`None` for LOCAL, UNKNOWN or another
/// family: use the peer's), and the bytes that came after it.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) client: Option<SocketAddr>,
    pub(crate) rest: Vec<u8>,
    /// Reads it took (each waited for new bytes).
    pub(crate) reads: usize,
}

/// Reads the PROXY header at the start of `stream`, within `timeout`.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Received, ProxyHeaderError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Received, ProxyHeaderError> {
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_READ);
    let mut reads = 0;
    loop {
        // Room for what the header still needs (a v2 header says its length), at least a
        // little more each time.
        let want = needed(&buf).max(buf.len() + 1).min(V2_MAX);
        if want <= buf.len() {
            return Err(ProxyHeaderError::Malformed);
        }
        buf.reserve(want.saturating_sub(buf.len()).max(FIRST_READ));
        let n = stream.read_buf(&mut buf).await?;
        reads += 1;
        if n == 0 {
            return Err(if buf.is_empty() {
                ProxyHeaderError::Missing
            } else {
                ProxyHeaderError::Malformed
            });
        }
        if let Some((len, client)) = parse(&buf)? {
            let rest = buf.split_off(len);
            return Ok(Received {
                client,
                rest,
                reads,
            });
        }
    }
}

/// How many bytes the header in `buf` needs in all, as far as can be told yet.
fn needed(buf: &[u8]) -> usize {
    if buf.len() >= 16 && buf.starts_with(b"\r\n\r\n\0\r\nQUIT\n") {
        16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
    } else {
        0
    }
}

/// `Ok(Some((header length, address)))` for a complete header, `Ok(None)` when more bytes are
/// needed.
#[allow(clippy::type_complexity)]
pub(crate) fn parse(b: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    let prefix = b.len().min(6);
    let v1_start = b[..prefix] == b"PROXY "[..prefix];
    let v2_start = {
        let sig = b"\r\n\r\n\0\r\nQUIT\n";
        let n = b.len().min(sig.len());
        b[..n] == sig[..n]
    };
    if !v1_start && !v2_start {
        return Err(ProxyHeaderError::Missing);
    }
    if v1_start && !b.contains(&b'\n') && b.len() >= V1_MAX {
        return Err(ProxyHeaderError::Malformed);
    }
    let result = HeaderResult::parse(b);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            };
            Ok(Some((h.header.len(), client)))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                // LOCAL: a health check from the balancer itself.
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Ok(Some((h.len(), client)))
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(ProxyHeaderError::Malformed),
    }
}

pin_project_lite::pin_project! {
    /// A stream with bytes already read from it put back in front: what arrived after the
    /// PROXY header is the start of the TLS handshake or the first request; what a client sent
    /// after an upgrade request is the start of its tunnel (`h1::Upgraded`).
    pub(crate) struct Prefixed<S> {
        prefix: Vec<u8>,
        at: usize,
        #[pin]
        inner: S,
    }
}

impl<S> Prefixed<S> {
    pub(crate) fn new(inner: S, prefix: Vec<u8>) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if *this.at < this.prefix.len() {
            let n = (this.prefix.len() - *this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[*this.at..*this.at + n]);
            *this.at += n;
            if *this.at == this.prefix.len() {
                *this.prefix = Vec::new();
                *this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        this.inner.poll_read(cx, buf)
    }
}

// Writes go straight through.
super::io::write_through!(Prefixed);

#[cfg(test)]
mod tests {
    use super::*;

    const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

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
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert!(parse(&long.as_bytes()[..110]).is_err());

        let mut v2 = V2_SIG.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb,
        ]);
        let (len, addr) = parse(&v2).expect("ok").expect("complete");
        assert_eq!(len, 28);
        assert_eq!(addr, Some("198.51.100.9:8080".parse().expect("addr")));
        assert!(parse(&v2[..20]).expect("ok").is_none());
        assert!(parse(&v2[..5]).expect("ok").is_none());
    }

    #[test]
    fn long_tlvs_parse() {
        let h = weir_testkit::proxy_v2_header([203, 0, 113, 9], 4000, 1024);
        let (len, addr) = parse(&h).expect("ok").expect("complete");
        assert_eq!(len, h.len());
        assert_eq!(addr, Some("203.0.113.9:4000".parse().expect("addr")));
    }

    /// A header split across many small writes on a real socket is read in about as many
    /// reads as there were writes (each read waits for bytes: no spinning on a partial
    /// header), and what followed it is handed on.
    #[tokio::test]
    async fn a_split_header_is_read_without_spinning() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut header = weir_testkit::proxy_v2_header([198, 51, 100, 1], 5555, 1024);
        header.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let chunks: Vec<Vec<u8>> = header.chunks(26).map(<[u8]>::to_vec).collect();
        let writes = chunks.len();
        let writer = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            for c in chunks {
                s.write_all(&c).await.expect("write");
                // Spread the writes so the reader sees partial headers (pacing, not
                // synchronisation: any timing gives the same result).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s
        });
        let (mut server, _) = listener.accept().await.expect("accept");
        let got = read_header(&mut server, Duration::from_secs(20))
            .await
            .expect("header");
        assert_eq!(got.client, Some("198.51.100.1:5555".parse().expect("addr")));
        assert!(
            got.reads <= writes + 1,
            "{} reads for {writes} writes",
            got.reads
        );
        // What followed the header is kept for HTTP (possibly only its start so far).
        assert!(b"GET / HTTP/1.1\r\n".starts_with(&got.rest) || got.rest.starts_with(b"GET"));
        drop(writer.await);
    }
}
