//! Reading a request head: parsed once with `httparse` into the header map (field values share
//! the bytes read), and its framing decided strictly (RFC 9112 §6), so that no other parser on
//! the path can frame the same bytes differently (request smuggling). Anything ambiguous is
//! refused: bare LF or CR, obs-fold, whitespace before a colon (httparse), more than one
//! `Content-Length` or one that is not plain digits, `Transfer-Encoding` with
//! `Content-Length`, in HTTP/1.0, or with any coding but `chunked`.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, Method, Uri, Version};
use weir_core::h1_wire::{parse_length, take, ConnectionTokens, HeadReuse};
use weir_core::ErrorKind;

/// How a request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head and what the connection needs from it.
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) framing: Framing,
    /// The client lets the connection carry another request after this one.
    pub(super) keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before it sends the body.
    pub(super) expect_continue: bool,
    /// CONNECT, or an `Upgrade` request: the connection may become a tunnel.
    pub(super) tunnel_asked: bool,
}

/// Limits on a request head.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_head: usize,
    pub(crate) max_fields: usize,
}

/// The fields that decide framing and the connection, noted as the head is read.
#[derive(Default)]
struct Special {
    lengths: u32,
    length: Option<u64>,
    codings: u32,
    chunked: bool,
    connection: ConnectionTokens,
    expect_continue: bool,
    upgrade: bool,
}

impl Special {
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), ErrorKind> {
        if *name == CONTENT_LENGTH {
            self.lengths += 1;
            self.length = Some(parse_length(value).ok_or(ErrorKind::BadRequest)?);
        } else if *name == TRANSFER_ENCODING {
            self.codings += 1;
            self.chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if *name == CONNECTION {
            self.connection.note(value);
        } else if *name == EXPECT {
            self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if *name == UPGRADE {
            self.upgrade = true;
        }
        Ok(())
    }

    /// The body's framing, or 400 when it is ambiguous.
    fn framing(&self, version: Version) -> Result<Framing, ErrorKind> {
        // Even two identical `Content-Length`s are refused: a parser that takes the first, one
        // that takes the last and one that refuses must never disagree.
        if self.lengths > 1 || self.codings > 1 || (self.lengths > 0 && self.codings > 0) {
            return Err(ErrorKind::BadRequest);
        }
        if self.codings == 1 {
            return if self.chunked && version == Version::HTTP_11 {
                Ok(Framing::Chunked)
            } else {
                Err(ErrorKind::BadRequest)
            };
        }
        // A length that did not parse was refused as it was read.
        Ok(match self.length {
            None | Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
        })
    }
}

/// Parses a head from the front of `buf`, consuming it; `None`: not all of it is here yet
/// (and `buf` is still under the limit). The error is the answer: 400, or 431 for a head over
/// the limits.
pub(super) fn parse(
    buf: &mut BytesMut,
    limits: Limits,
    reuse: &mut HeadReuse,
) -> Result<Option<Head>, ErrorKind> {
    // Empty lines before a request line are allowed (RFC 9112 §2.2), CRLF only.
    let mut blank = 0;
    while buf[blank..].starts_with(b"\r\n") {
        blank += 2;
    }
    if blank > 0 {
        bytes::Buf::advance(buf, blank);
    }
    match buf.first() {
        None => return Ok(None),
        Some(b'\n') => return Err(ErrorKind::BadRequest),
        Some(b'\r') if buf.len() > 1 => return Err(ErrorKind::BadRequest),
        Some(b'\r') => return Ok(None),
        Some(_) => {}
    }
    let fields = &mut reuse.fields;
    fields.clear();
    let mut special = Special::default();
    let mut uninit =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS_ON_STACK];
    let mut heap;
    let slots: &mut [std::mem::MaybeUninit<httparse::Header<'_>>] =
        if limits.max_fields <= MAX_FIELDS_ON_STACK {
            &mut uninit[..limits.max_fields]
        } else {
            heap = Vec::with_capacity(limits.max_fields);
            heap.resize_with(limits.max_fields, std::mem::MaybeUninit::uninit);
            &mut heap[..]
        };
    let (len, method, target, minor) = {
        let mut req = httparse::Request::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_request_with_uninit_headers(&mut req, buf, slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= limits.max_head {
                    Err(ErrorKind::HeaderTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(ErrorKind::HeaderTooLarge),
            Err(_) => return Err(ErrorKind::BadRequest),
        };
        if len > limits.max_head {
            return Err(ErrorKind::HeaderTooLarge);
        }
        let base = buf.as_ptr() as usize;
        reuse.names.start();
        for field in req.headers.iter() {
            let name = reuse
                .names
                .name(field.name.as_bytes())
                .map_err(|_| ErrorKind::BadRequest)?;
            special.note(&name, field.value)?;
            let at = field.value.as_ptr() as usize - base;
            fields.push((name, at, field.value.len()));
        }
        let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
            .map_err(|_| ErrorKind::BadRequest)?;
        let path = req.path.unwrap_or("");
        let target = (path.as_ptr() as usize - base, path.len());
        (len, method, target, req.version.unwrap_or(1))
    };
    // httparse takes a bare LF as a line end: RFC 9112 §2.2 lets a recipient do so, but a
    // proxy that does frames requests differently from servers that do not.
    if !crlf_only(&buf[..len]) {
        return Err(ErrorKind::BadRequest);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let framing = special.framing(version)?;
    // Copied out (when small): the fields and target share these bytes for the request's
    // life, and sharing the read buffer instead would pin it as long.
    let bytes = take(buf, len);
    let uri = Uri::from_maybe_shared(bytes.slice(target.0..target.0 + target.1))
        .map_err(|_| ErrorKind::BadRequest)?;
    let headers = reuse
        .headers(&bytes, crate::headers::ADDED_BY_PROXY)
        .map_err(|_| ErrorKind::BadRequest)?;
    let keep_alive = if version == Version::HTTP_10 {
        special.connection.keep_alive
    } else {
        !special.connection.close
    };
    Ok(Some(Head {
        tunnel_asked: method == Method::CONNECT || special.upgrade,
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: version == Version::HTTP_11 && special.expect_continue,
    }))
}

/// Fields parsed into a stack array; a larger `max_request_headers` uses the heap.
const MAX_FIELDS_ON_STACK: usize = 128;

/// Every LF is preceded by CR and every CR followed by LF.
fn crlf_only(head: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', &head[at..]) {
        let i = at + i;
        if head[i] == b'\n' || head.get(i + 1) != Some(&b'\n') {
            return false;
        }
        at = i + 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head: 8192,
        max_fields: 100,
    };

    fn parse_all(raw: &[u8]) -> Result<Option<Head>, ErrorKind> {
        parse(&mut BytesMut::from(raw), LIMITS, &mut HeadReuse::default())
    }

    #[test]
    fn heads_on_one_connection_are_named_as_sent() {
        let mut reuse = HeadReuse::default();
        let mut next = |raw: &[u8]| {
            let head = parse(&mut BytesMut::from(raw), LIMITS, &mut reuse)
                .expect("valid")
                .expect("whole");
            let names: Vec<String> = head.headers.keys().map(|n| n.to_string()).collect();
            reuse.keep(head.headers);
            names
        };
        let a = b"GET / HTTP/1.1\r\nHost: a\r\nX-One: 1\r\n\r\n";
        assert_eq!(next(a), ["host", "x-one"]);
        assert_eq!(next(a), ["host", "x-one"]);
        let b = b"GET / HTTP/1.1\r\nHost: a\r\nX-Two: 2\r\nX-One: 1\r\n\r\n";
        assert_eq!(next(b), ["host", "x-two", "x-one"]);
        assert!(parse(
            &mut BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX Two: 2\r\n\r\n"[..]),
            LIMITS,
            &mut reuse
        )
        .is_err());
    }

    #[test]
    fn framing_and_connection_follow_rfc_9112() {
        let h = parse_all(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .expect("ok")
            .expect("complete");
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive && !h.expect_continue && !h.tunnel_asked);
        assert_eq!(h.uri, "/a?b");
        let h = parse_all(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive && h.expect_continue);
        let h = parse_all(b"\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(h.keep_alive && h.version == Version::HTTP_10 && h.framing == Framing::None);
        let h = parse_all(b"CONNECT a:443 HTTP/1.1\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(h.tunnel_asked);
    }

    #[test]
    fn a_partial_head_waits_until_the_limit() {
        assert!(matches!(parse_all(b"GET / HTTP/1.1\r\nHost"), Ok(None)));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(9000, b'a');
        assert_eq!(parse_all(&big).err(), Some(ErrorKind::HeaderTooLarge));
    }

    #[test]
    fn ambiguous_heads_are_refused() {
        for raw in [
            &b"GET / HTTP/1.1\nHost: a\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            b"\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ] {
            assert_eq!(
                parse_all(raw).err(),
                Some(ErrorKind::BadRequest),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
