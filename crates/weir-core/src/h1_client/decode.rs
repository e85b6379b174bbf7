//! Reading a response: its head (parsed into the header map once, field values sharing the
//! bytes read), how its body is framed (RFC 9112 §6.3), and chunked bodies.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

use super::{Error, MAX_FIELDS};
use crate::h1_wire::{parse_length, take, ConnectionTokens, HeadReuse};

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
    /// `101`: the connection now speaks another protocol.
    Upgrade,
}

/// A final response head.
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Head {
    /// The response's parts, its framing, and whether the connection may carry another
    /// request once the body is read.
    pub(crate) fn into_parts(self) -> (http::response::Parts, Framing, bool) {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        parts.version = self.version;
        parts.headers = self.headers;
        (parts, self.framing, self.keep_alive)
    }
}

pub(crate) enum Parsed {
    /// A 1xx other than 101.
    Interim(StatusCode, HeaderMap),
    Final(Head),
}

/// Parses a response head from the front of `buf`, consuming it; `None`: not all of it is
/// here yet. `head_only`: the request was HEAD (no body, whatever the fields say). A
/// `Connection` field that is only `keep-alive` or `close` decides the connection's reuse and
/// is left out of the response's header map (one naming other fields, or `upgrade`, stays).
/// `reuse`: what the connection keeps from one head to the next.
pub(crate) fn head(
    buf: &mut BytesMut,
    head_only: bool,
    reuse: &mut HeadReuse,
) -> Result<Option<Parsed>, Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Left uninitialised (zeroing 128 fields was a 4 KiB memset per response).
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut special = Special::default();
    // Each field's name, and where its value sits in `buf`, so the values can share its bytes.
    let (len, code, minor) = {
        let mut resp = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Invalid("more than 128 fields in the response head"))
            }
            Err(_) => return Err(Error::Invalid("malformed response head")),
        };
        let base = buf.as_ptr() as usize;
        let named = &mut reuse.fields;
        named.clear();
        reuse.names.start();
        for field in resp.headers.iter() {
            let name = reuse
                .names
                .name(field.name.as_bytes())
                .map_err(|_| Error::Invalid("response field name"))?;
            special.note(&name, field.value);
            // `Connection: keep-alive` / `close` is the connection's business, read above; the
            // proxy would strip it from the map again (a hash and a probe per response).
            if name == CONNECTION && ConnectionTokens::is_plain(field.value) {
                continue;
            }
            let at = field.value.as_ptr() as usize - base;
            named.push((name, at, field.value.len()));
        }
        (len, resp.code.unwrap_or(0), resp.version.unwrap_or(1))
    };
    // Copied out (when small), so that the read buffer, not pinned by the fields, serves the
    // next read once the body is taken.
    let bytes = take(buf, len);
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Invalid("response status out of range"))?;
    // Room for what the proxy adds on the way back (`via`, the request id, policy fields)
    // without growing the map.
    let mut headers = reuse
        .headers(&bytes, 6)
        .map_err(|_| Error::Invalid("response field value"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some(Parsed::Interim(status, headers)));
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut keep_alive = if version == Version::HTTP_10 {
        special.connection.keep_alive
    } else {
        !special.connection.close
    };
    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
        Framing::Upgrade
    } else if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        Framing::Empty
    } else if special.codings {
        // Transfer-Encoding wins over Content-Length, which is dropped so nothing after Weir
        // sees both (RFC 9112 §6.3); such a connection is not reused.
        if special.lengths {
            headers.remove(CONTENT_LENGTH);
            keep_alive = false;
        }
        if special.chunked {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        }
    } else if special.lengths {
        Framing::Length(
            special
                .length
                .ok_or(Error::Invalid("invalid Content-Length"))?,
        )
    } else {
        keep_alive = false;
        Framing::Close
    };
    Ok(Some(Parsed::Final(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    })))
}

/// The fields that decide framing and the connection, noted as the head is read (one pass,
/// no lookups in the map afterwards).
#[derive(Default)]
struct Special {
    lengths: bool,
    /// One length, however many times it is repeated (`5`, `5, 5` and two fields of `5`
    /// agree); `None` once anything else was seen.
    length: Option<u64>,
    length_invalid: bool,
    codings: bool,
    /// The last coding of the last `Transfer-Encoding` field is `chunked`.
    chunked: bool,
    connection: ConnectionTokens,
}

impl Special {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if *name == CONTENT_LENGTH {
            self.lengths = true;
            for part in value.split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii());
                match (n, self.length) {
                    (Some(n), None) if !self.length_invalid => self.length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => {
                        self.length = None;
                        self.length_invalid = true;
                    }
                }
            }
        } else if *name == TRANSFER_ENCODING {
            self.codings = true;
            self.chunked = value
                .split(|&b| b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if *name == CONNECTION {
            self.connection.note(value);
        }
    }
}

/// What a chunked body gives next (a request's, to Weir's HTTP/1.1 server, too).
pub enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes of data left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, or the final CRLF.
    Trailers,
    /// Everything read.
    Done,
}

impl Chunked {
    /// Decodes from the front of `buf`; `Ok(None)`: more bytes are needed. Small data is
    /// copied out (so a stalled client holding it does not pin the read buffer); large data
    /// shares the buffer's bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Step>, Error> {
        loop {
            match *self {
                Chunked::Done => return Ok(Some(Step::End)),
                Chunked::Size => {
                    let Some(line) = line_len(buf, MAX_CHUNK_LINE)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&buf[..line])?;
                    buf.advance(line + 2);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = (left.min(buf.len() as u64)) as usize;
                    *self = if n as u64 == left {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n as u64)
                    };
                    return Ok(Some(Step::Data(take(buf, n))));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Invalid("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Some(Step::End));
                    }
                    let Some(end) = find(buf, b"\r\n\r\n", MAX_TRAILERS)? else {
                        return Ok(None);
                    };
                    let mut fields = [httparse::EMPTY_HEADER; 64];
                    let trailers = match httparse::parse_headers(&buf[..end + 4], &mut fields) {
                        Ok(httparse::Status::Complete((_, fields))) => {
                            let mut map = HeaderMap::with_capacity(fields.len());
                            for f in fields {
                                let name = HeaderName::from_bytes(f.name.as_bytes())
                                    .map_err(|_| Error::Invalid("trailer field name"))?;
                                let value = HeaderValue::from_bytes(f.value)
                                    .map_err(|_| Error::Invalid("trailer field value"))?;
                                map.append(name, value);
                            }
                            map
                        }
                        _ => return Err(Error::Invalid("malformed trailers")),
                    };
                    buf.advance(end + 4);
                    *self = Chunked::Done;
                    return Ok(Some(Step::Trailers(trailers)));
                }
            }
        }
    }

    /// Moves past chunk boundaries already in `buf` without taking data, so the end of the
    /// body is known as soon as its bytes are here: `true` when the body is done.
    pub fn settle(&mut self, buf: &mut BytesMut) -> bool {
        while matches!(self, Chunked::DataEnd | Chunked::Size | Chunked::Trailers) {
            let before = *self;
            match *self {
                Chunked::Trailers if buf.starts_with(b"\r\n") => {
                    buf.advance(2);
                    *self = Chunked::Done;
                }
                Chunked::Trailers => return false,
                _ => {
                    let mut probe = *self;
                    // Only the framing states are stepped; an error is left for `decode`.
                    match probe.decode_framing(buf) {
                        Some(next) => probe = next,
                        None => return false,
                    }
                    *self = probe;
                }
            }
            if *self == before {
                return false;
            }
        }
        *self == Chunked::Done
    }

    /// One step of DataEnd or Size, if its bytes are here and valid.
    fn decode_framing(self, buf: &mut BytesMut) -> Option<Chunked> {
        match self {
            Chunked::DataEnd => {
                if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                    buf.advance(2);
                    return Some(Chunked::Size);
                }
                None
            }
            Chunked::Size => {
                let line = line_len(buf, MAX_CHUNK_LINE).ok()??;
                let size = chunk_size(&buf[..line]).ok()?;
                if size != 0 {
                    return None;
                }
                buf.advance(line + 2);
                Some(Chunked::Trailers)
            }
            other => Some(other),
        }
    }
}

/// Length of the line at the front of `buf` (without its CRLF); a bare LF is an error.
fn line_len(buf: &[u8], max: usize) -> Result<Option<usize>, Error> {
    match buf.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(0) => Err(Error::Invalid("bare LF in chunked body")),
        Some(i) if buf[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err(Error::Invalid("bare LF in chunked body")),
        None if buf.len() >= max + 2 => Err(Error::Invalid("chunk-size line too long")),
        None => Ok(None),
    }
}

fn find(buf: &[u8], needle: &[u8], max: usize) -> Result<Option<usize>, Error> {
    match buf.windows(needle.len()).position(|w| w == needle) {
        Some(i) => Ok(Some(i)),
        None if buf.len() > max => Err(Error::Invalid("trailers too large")),
        None => Ok(None),
    }
}

/// A chunk-size line: 1–16 hex digits, then nothing, or extensions after `;` (optionally
/// after spaces or tabs).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Invalid("chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(Error::Invalid("chunk size"));
    }
    // Extensions are visible characters, spaces and tabs (RFC 9112 §7.1.1): nothing a
    // lenient parser elsewhere could read as a line end.
    if !rest
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Err(Error::Invalid("chunk extension"));
    }
    let mut n: u64 = 0;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
        n = n << 4 | d;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head_only: bool) -> Result<Option<Parsed>, Error> {
        head(
            &mut BytesMut::from(raw),
            head_only,
            &mut HeadReuse::default(),
        )
    }

    fn framing(raw: &[u8]) -> (Framing, bool) {
        match parse(raw, false) {
            Ok(Some(Parsed::Final(h))) => (h.framing, h.keep_alive),
            _ => panic!("not a final head"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (Framing::Length(5), true)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n"),
            (Framing::Length(5), true)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        // Both: chunked wins, Content-Length is dropped, the connection is not reused.
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"),
            (Framing::Chunked, false)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
            (Framing::Close, false)
        );
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n"), (Framing::Close, false));
        assert_eq!(
            framing(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"),
            (Framing::Length(1), false)
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
            (Framing::Length(1), false)
        );
        assert_eq!(
            framing(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n"),
            (Framing::Length(1), true)
        );
        assert_eq!(
            framing(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"),
            (Framing::Upgrade, false)
        );
        // The connection's own tokens are read, not kept; anything else in the field stays.
        match parse(
            b"HTTP/1.1 200 OK\r\nConnection:  Keep-Alive \r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
            false,
        ) {
            Ok(Some(Parsed::Final(h))) => {
                assert!(!h.keep_alive);
                assert!(h.headers.get(CONNECTION).is_none(), "{:?}", h.headers);
                assert_eq!(h.headers.len(), 1);
            }
            _ => panic!("not a final head"),
        }
        match parse(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
            false,
        ) {
            Ok(Some(Parsed::Final(h))) => assert_eq!(h.headers[CONNECTION], "upgrade"),
            _ => panic!("not a final head"),
        }
        match parse(
            b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\ncontent-length: 1\r\n\r\n",
            false,
        ) {
            Ok(Some(Parsed::Final(h))) => {
                assert_eq!(h.headers[CONNECTION], "keep-alive, x-hop");
            }
            _ => panic!("not a final head"),
        }
        match parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true) {
            Ok(Some(Parsed::Final(h))) => assert_eq!(h.framing, Framing::Empty),
            _ => panic!("HEAD"),
        }
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad field\r\n\r\n",
        ] {
            assert!(
                parse(bad, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-le", false),
            Ok(None)
        ));
        assert!(matches!(
            parse(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", false),
            Ok(Some(Parsed::Interim(s, _))) if s == 103
        ));
    }

    fn decode_all(raw: &[u8], split: usize) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match state.decode(&mut buf)? {
                Some(Step::Data(d)) => data.extend_from_slice(&d),
                Some(Step::Trailers(t)) => trailers = Some(t),
                Some(Step::End) => return Ok((data, trailers)),
                None => {
                    if fed == raw.len() {
                        return Err(Error::Closed);
                    }
                    let n = split.min(raw.len() - fed);
                    buf.extend_from_slice(&raw[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_however_they_arrive() {
        let raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 1\r\n\r\n";
        for split in [1, 2, 3, 7, 64] {
            let (data, trailers) = decode_all(raw, split).expect("decodes");
            assert_eq!(data, b"hello world");
            assert_eq!(trailers.expect("trailers")["x-sum"], "1");
        }
        let (data, trailers) = decode_all(b"3\r\nabc\r\n0\r\n\r\n", 1).expect("decodes");
        assert_eq!((data.as_slice(), trailers.is_none()), (&b"abc"[..], true));
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"zz\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n",
        ] {
            assert!(
                decode_all(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn settle_finds_the_end_without_taking_data() {
        let mut state = Chunked::DataEnd;
        let mut buf = BytesMut::from(&b"\r\n0\r\n\r\n"[..]);
        assert!(state.settle(&mut buf));
        assert!(buf.is_empty());
        let mut state = Chunked::DataEnd;
        let mut buf = BytesMut::from(&b"\r\n5\r\nhello"[..]);
        assert!(!state.settle(&mut buf));
        assert_eq!(state, Chunked::Size);
        assert_eq!(&buf[..], b"5\r\nhello");
        let mut state = Chunked::DataEnd;
        let mut buf = BytesMut::from(&b"\r\n0\r\nx: 1\r\n\r\n"[..]);
        assert!(!state.settle(&mut buf));
        assert_eq!(state, Chunked::Trailers);
    }
}
