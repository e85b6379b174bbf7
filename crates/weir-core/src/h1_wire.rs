//! The HTTP/1.1 wire pieces both of Weir's ends use — its upstream client
//! ([`crate::h1_client`]) and its server (`weir-server` `edge/h1/`): buffers queued for
//! vectored writes ([`Outbox`]), a body framed as it streams ([`BodyWriter`]), held to the
//! length it declared, body bytes taken from a read buffer ([`take`]), and the readings of the
//! fields that decide framing and the connection ([`parse_length`], [`ConnectionTokens`]), and
//! what a connection keeps from one head to the next so that reading one allocates nothing
//! ([`HeadReuse`]: the last head's field names, to name the next head's without parsing them,
//! and a cleared header map).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderName, InvalidHeaderName};
use http::HeaderMap;
use http_body::Frame;
use tokio::io::AsyncWrite;

/// The field names of the last head read on a connection, to name the next head's fields
/// without parsing them again: a client or an upstream on a kept-alive connection sends the
/// same names in the same order, and comparing the bytes costs a fraction of
/// `HeaderName::from_bytes` (a case-folding copy and a match over the standard names). Bounded:
/// the first [`NAMES_ROOM`] bytes of names, at most [`NAMES_MAX`] of them.
#[derive(Default)]
pub struct Names {
    /// The names as sent, back to back.
    raw: Vec<u8>,
    /// Each name, and where its bytes start and end in `raw`.
    names: Vec<(HeaderName, u32, u32)>,
    /// Fields named so far in the head being read.
    at: usize,
}

/// Bytes of field names a connection keeps.
pub const NAMES_ROOM: usize = 1024;
/// Field names a connection keeps.
pub const NAMES_MAX: usize = 48;

impl Names {
    /// A new head: its first field is next.
    pub fn start(&mut self) {
        self.at = 0;
    }

    /// The name of the head's next field, sent as `raw`.
    pub fn name(&mut self, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
        let i = self.at;
        self.at += 1;
        if let Some((name, start, end)) = self.names.get(i) {
            let (start, end) = (*start as usize, *end as usize);
            if end - start == raw.len() && self.raw.get(start..end) == Some(raw) {
                return Ok(name.clone());
            }
            // This head differs from here on.
            self.names.truncate(i);
            self.raw.truncate(start);
        }
        let name = HeaderName::from_bytes(raw)?;
        if self.names.len() == i && i < NAMES_MAX && self.raw.len() + raw.len() <= NAMES_ROOM {
            // Both offsets are within NAMES_ROOM.
            let start = self.raw.len() as u32;
            self.raw.extend_from_slice(raw);
            self.names
                .push((name.clone(), start, self.raw.len() as u32));
        }
        Ok(name)
    }
}

/// What a connection keeps from one head to the next so that reading a head allocates
/// nothing: the last head's field names, the list of fields being read, and a header map that
/// is done with (the last response's on the server; the last request's, once encoded, on an
/// upstream connection), cleared.
#[derive(Default)]
pub struct HeadReuse {
    pub names: Names,
    /// A field's name and where its value sits in the head's bytes.
    pub fields: Vec<(HeaderName, usize, usize)>,
    headers: Option<HeaderMap>,
}

/// A header map with room for more fields than this is not kept (a head with many fields
/// does not make an idle connection hold that much).
pub const MAP_KEEP: usize = 64;

impl HeadReuse {
    /// A map for `n` fields with room for `extra` more: the kept one, or a new one.
    fn map(&mut self, n: usize, extra: usize) -> HeaderMap {
        match self.headers.take() {
            Some(mut map) => {
                map.reserve(n + extra);
                map
            }
            None => HeaderMap::with_capacity(n + extra),
        }
    }

    /// The header map of the head whose fields were listed in `fields`, their values sharing
    /// `bytes` (the head as read), with room for `extra` more fields.
    pub fn headers(
        &mut self,
        bytes: &Bytes,
        extra: usize,
    ) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
        let mut headers = self.map(self.fields.len(), extra);
        for (name, at, len) in self.fields.drain(..) {
            let value = http::HeaderValue::from_maybe_shared(bytes.slice(at..at + len))?;
            headers.append(name, value);
        }
        Ok(headers)
    }

    /// Keeps `map`, cleared now (its values may hold a whole read buffer), for the next head;
    /// not one with room for many names, nor one that held many values (repeated fields grow
    /// a list of their own, which `clear` keeps).
    pub fn keep(&mut self, mut map: HeaderMap) {
        if map.capacity() <= MAP_KEEP && map.len() <= MAP_KEEP {
            map.clear();
            self.headers = Some(map);
        }
    }
}

/// Buffers waiting to be written, in order.
#[derive(Default)]
pub struct Outbox {
    queue: VecDeque<Bytes>,
    queued: usize,
    written: usize,
}

impl Outbox {
    /// Room for `n` buffers before the queue grows.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            queue: VecDeque::with_capacity(n),
            ..Self::default()
        }
    }

    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.queue.push_back(bytes);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Writes everything queued (eight buffers per vectored write), then flushes (TLS keeps
    /// records until flushed).
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let n = {
                let mut slices = [io::IoSlice::new(&[]); 8];
                let mut k = 0;
                for (slice, bytes) in slices.iter_mut().zip(self.queue.iter()) {
                    *slice = io::IoSlice::new(bytes);
                    k += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.queued -= n;
            advance(&mut self.queue, n);
        }
        Pin::new(io).poll_flush(cx)
    }
}

/// Drops what `n` bytes of a queue of buffers covered.
fn advance(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() > n {
            front.advance(n);
            return;
        }
        n -= front.len();
        queue.pop_front();
    }
}

/// Read buffers that connections gave back, kept for the next read on the same thread. A
/// connection waiting for bytes holds no buffer ([`poll_read`] gives an empty one back when
/// the read would wait), and a buffer of more than 1 KiB is the allocator's slow path (about
/// 200 instructions with its free) — once per keep-alive request without this. Bounded:
/// [`SPARE_MAX`] buffers a thread, none larger than twice the size asked.
const SPARE_MAX: usize = 32;

thread_local! {
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty read buffer with room for `size` bytes: a spare one when this thread has one.
pub fn read_buffer(size: usize) -> BytesMut {
    // `try_with`: a thread being torn down has no spares, and never panics here.
    SPARE
        .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .filter(|b| b.capacity() >= size)
        .unwrap_or_else(|| BytesMut::with_capacity(size))
}

/// Reads from `io` into `buf` (which the caller gave room; an empty one is taken with
/// [`read_buffer`]). When the read would wait and `buf` holds nothing, `buf` is given back
/// ([`give_back`]) and left without an allocation: a connection waiting for its client's next
/// request, or for its upstream's response, holds no read buffer while it waits — at 256
/// connections, 1.9 MB less (docs/benchmarks.md, "Memory: buffers only for reading").
pub fn poll_read<R: tokio::io::AsyncRead + Unpin>(
    io: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    size: usize,
) -> Poll<io::Result<usize>> {
    let polled = tokio_util::io::poll_read_buf(io, cx, buf);
    if polled.is_pending() && buf.is_empty() && buf.capacity() <= 2 * size {
        give_back(std::mem::take(buf), size);
    }
    polled
}

/// Gives a buffer of about `size` bytes back for another read on this thread (see
/// [`read_buffer`]); one still shared by bytes handed out, or grown beyond twice `size`, is
/// let go.
pub fn give_back(mut buf: BytesMut, size: usize) {
    buf.clear();
    if buf.try_reclaim(size) && buf.capacity() <= 2 * size {
        let _ = SPARE.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_MAX {
                    spare.push(buf);
                }
            }
        });
    }
}

/// The first `n` bytes of `buf`: copied when small (a stalled reader then does not pin the
/// read buffer), shared when large.
pub fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= 4096 {
        let out = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        out
    } else {
        buf.split_to(n).freeze()
    }
}

/// A `Content-Length` value: 1–19 digits and nothing else.
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The `close` and `keep-alive` tokens of `Connection` fields, noted field by field.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
}

impl ConnectionTokens {
    /// Notes the tokens of one `Connection` field value.
    pub fn note(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }

    /// The value is only `keep-alive` or `close` (one token): it names no other field.
    pub fn is_plain(value: &[u8]) -> bool {
        let token = value.trim_ascii();
        token.eq_ignore_ascii_case(b"keep-alive") || token.eq_ignore_ascii_case(b"close")
    }
}

/// How a body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes.
    Empty,
    /// `Content-Length`: this many bytes still to send.
    Length(u64),
    /// Chunks, and trailers if the body has them.
    Chunked,
    /// Until the connection closes (a response only).
    Close,
}

/// The body did not match its framing: the connection cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("body longer than its declared length")]
    Longer,
    #[error("body shorter than its declared length")]
    Shorter,
}

/// Frames body data as it comes. More bytes than the declared length are refused: written,
/// they would be read by the peer as the start of another message.
pub struct BodyWriter {
    framing: Framing,
    done: bool,
}

impl BodyWriter {
    pub fn new(framing: Framing) -> Self {
        Self {
            done: matches!(framing, Framing::Empty | Framing::Length(0)),
            framing,
        }
    }

    /// Everything the framing needs has been queued.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Queues one frame of the body; trailers go out only in a chunked body.
    pub fn queue(&mut self, frame: Frame<Bytes>, out: &mut Outbox) -> Result<(), Mismatch> {
        if self.done {
            return Ok(());
        }
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Framing::Chunked, Ok(trailers)) = (self.framing, frame.into_trailers()) {
                    let mut buf = BytesMut::with_capacity(64);
                    buf.put_slice(b"0\r\n");
                    for (name, value) in &trailers {
                        buf.put_slice(name.as_str().as_bytes());
                        buf.put_slice(b": ");
                        buf.put_slice(value.as_bytes());
                        buf.put_slice(b"\r\n");
                    }
                    buf.put_slice(b"\r\n");
                    out.push(buf.freeze());
                    self.done = true;
                }
                return Ok(());
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Framing::Empty => {}
            Framing::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(Mismatch::Longer);
                }
                *left -= n;
                self.done = *left == 0;
                out.push(data);
            }
            Framing::Chunked => {
                out.push(Bytes::from(format!("{:x}\r\n", data.len())));
                out.push(data);
                out.push(Bytes::from_static(b"\r\n"));
            }
            Framing::Close => out.push(data),
        }
        Ok(())
    }

    /// The body ended.
    pub fn finish(&mut self, out: &mut Outbox) -> Result<(), Mismatch> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        match self.framing {
            Framing::Chunked => {
                out.push(Bytes::from_static(b"0\r\n\r\n"));
                Ok(())
            }
            Framing::Length(left) if left > 0 => Err(Mismatch::Shorter),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &mut Names, head: &[&str]) -> Vec<String> {
        names.start();
        head.iter()
            .map(|raw| {
                names
                    .name(raw.as_bytes())
                    .map_or_else(|_| "!".into(), |n| n.to_string())
            })
            .collect()
    }

    #[test]
    fn names_are_the_parsed_names_whatever_the_last_head_was() {
        let mut names = Names::default();
        let first = ["Host", "X-Custom", "Content-Length"];
        assert_eq!(
            named(&mut names, &first),
            ["host", "x-custom", "content-length"]
        );
        // The same head again: every name from the kept ones.
        assert_eq!(
            named(&mut names, &first),
            ["host", "x-custom", "content-length"]
        );
        // Differs in the middle and in case: parsed from there on, never the stale name.
        assert_eq!(
            named(
                &mut names,
                &["Host", "x-other", "content-length", "Bad Name"]
            ),
            ["host", "x-other", "content-length", "!"]
        );
        assert_eq!(named(&mut names, &["HOST"]), ["host"]);
        assert_eq!(named(&mut names, &["Host", "x-other"]), ["host", "x-other"]);
    }

    #[test]
    fn spare_read_buffers_are_unshared_bounded_and_empty() {
        // A buffer whose bytes are still shared is not kept; an unshared one comes back empty.
        let mut shared = read_buffer(4096);
        shared.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = shared.split_to(18).freeze();
        give_back(shared, 4096);
        let fresh = read_buffer(4096);
        assert!(fresh.is_empty() && fresh.capacity() >= 4096);
        assert_ne!(fresh.as_ptr(), head.as_ptr().wrapping_add(18));
        drop(head);
        let mut used = fresh;
        used.extend_from_slice(b"abc");
        let at = used.as_ptr();
        give_back(used, 4096);
        let again = read_buffer(4096);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        // A grown buffer is let go; at most SPARE_MAX are kept.
        give_back(BytesMut::with_capacity(64 * 1024), 4096);
        assert!(read_buffer(4096).capacity() < 64 * 1024);
        for _ in 0..SPARE_MAX + 8 {
            give_back(BytesMut::with_capacity(4096), 4096);
        }
        assert_eq!(SPARE.with_borrow(Vec::len), SPARE_MAX);
    }

    #[tokio::test]
    async fn a_read_that_waits_holds_no_buffer_and_bytes_read_stay() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut buf = read_buffer(4096);
        let at = buf.as_ptr();
        std::future::poll_fn(|cx| {
            assert!(poll_read(Pin::new(&mut server), cx, &mut buf, 4096).is_pending());
            Poll::Ready(())
        })
        .await;
        // Nothing came: the buffer went back to the spares, and the next read takes it.
        assert_eq!(buf.capacity(), 0);
        let mut again = read_buffer(4096);
        assert_eq!(again.as_ptr(), at);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET")
            .await
            .expect("the duplex takes three bytes");
        let n = std::future::poll_fn(|cx| poll_read(Pin::new(&mut server), cx, &mut again, 4096))
            .await
            .expect("three bytes are there to read");
        assert_eq!((n, &again[..]), (3, &b"GET"[..]));
        // A buffer holding bytes is kept while the next read waits.
        std::future::poll_fn(|cx| {
            assert!(poll_read(Pin::new(&mut server), cx, &mut again, 4096).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(&again[..], b"GET");
    }

    #[test]
    fn a_kept_map_comes_back_empty_and_a_large_one_is_let_go() {
        let mut reuse = HeadReuse::default();
        let mut map = HeaderMap::with_capacity(8);
        map.insert("x-a", http::HeaderValue::from_static("1"));
        reuse.keep(map);
        let again = reuse.map(2, 6);
        assert!(again.is_empty() && again.capacity() >= 8);
        let mut big = HeaderMap::with_capacity(MAP_KEEP * 2);
        big.insert("x-a", http::HeaderValue::from_static("1"));
        reuse.keep(big);
        assert!(reuse.headers.is_none());
        // Nor a small one that held many values of one name.
        let mut repeated = HeaderMap::with_capacity(8);
        for _ in 0..=MAP_KEEP {
            repeated.append("set-cookie", http::HeaderValue::from_static("a=b"));
        }
        reuse.keep(repeated);
        assert!(reuse.headers.is_none());
    }

    #[test]
    fn names_kept_are_bounded() {
        let mut names = Names::default();
        let long = "x".repeat(600);
        let head: Vec<&str> = vec![long.as_str(), long.as_str(), "a"];
        assert_eq!(named(&mut names, &head).len(), 3);
        assert!(names.raw.len() <= NAMES_ROOM && names.names.len() == 1);
        let many: Vec<String> = (0..100).map(|i| format!("f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let got = named(&mut names, &many);
        assert_eq!(got[99], "f99");
        assert_eq!(named(&mut names, &many), got);
        assert!(names.names.len() <= NAMES_MAX);
    }

    #[test]
    fn a_body_is_held_to_its_length_and_chunks_are_framed() {
        let mut out = Outbox::default();
        let mut w = BodyWriter::new(Framing::Length(3));
        let long = w.queue(Frame::data(Bytes::from_static(b"abcd")), &mut out);
        assert_eq!(long, Err(Mismatch::Longer));
        let mut w = BodyWriter::new(Framing::Length(3));
        w.queue(Frame::data(Bytes::from_static(b"ab")), &mut out)
            .expect("fits");
        assert_eq!(w.finish(&mut out), Err(Mismatch::Shorter));
        let mut out = Outbox::default();
        let mut w = BodyWriter::new(Framing::Chunked);
        w.queue(Frame::data(Bytes::from(vec![b'x'; 26])), &mut out)
            .expect("chunk");
        w.finish(&mut out).expect("end");
        let all: Vec<u8> = out.queue.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(all, b"1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n");
        assert_eq!(out.queued(), all.len());
    }
}
