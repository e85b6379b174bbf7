//! Body types. Bodies stream frame by frame; nothing here buffers a whole body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

use crate::inbound::Inbound;

/// The boxed error type bodies use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body as the client sends it, read by Weir's own servers: an HTTP/1.x
/// connection's ([`Inbound`]) or an HTTP/2 stream's (from the `h2` crate).
#[derive(Debug)]
pub enum ClientBody {
    /// An HTTP/1.x request's body, fed by its connection.
    Http1(Inbound),
    /// An HTTP/2 stream's DATA frames and trailers.
    Http2(H2Body),
}

/// `Body` for an enum of bodies, each variant's frames passed through.
macro_rules! body_of_variants {
    ($ty:ident { $($variant:ident),+ }) => {
        impl Body for $ty {
            type Data = Bytes;
            type Error = BoxError;

            fn poll_frame(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                match self.get_mut() {
                    $(Self::$variant(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),)+
                }
            }

            fn is_end_stream(&self) -> bool {
                match self {
                    $(Self::$variant(b) => b.is_end_stream(),)+
                }
            }

            fn size_hint(&self) -> SizeHint {
                match self {
                    $(Self::$variant(b) => b.size_hint(),)+
                }
            }
        }
    };
}

body_of_variants!(ClientBody { Http1, Http2 });

/// An HTTP/2 request body: the stream's DATA, then its trailers. Each chunk read gives its
/// bytes back to the client's flow-control window at once, as hyper does; what the client may
/// have in flight is bounded by the window Weir announced.
#[derive(Debug)]
pub struct H2Body {
    recv: h2::RecvStream,
    /// The declared `content-length` (h2 checks the DATA against it) minus what was read, or
    /// `UNKNOWN` (kept to 8 bytes: every request future holds the body).
    remaining: u64,
    data_done: bool,
}

impl H2Body {
    const UNKNOWN: u64 = u64::MAX;

    /// The next DATA payload, its bytes given back to the client's window at once; `None` at
    /// the end of the DATA (a CONNECT tunnel reads its bytes this way too).
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, h2::Error>>> {
        let data = ready!(self.recv.poll_data(cx));
        if let Some(Ok(data)) = &data {
            let n = data.len();
            // Errors here mean the stream is already gone; the next read says so.
            let _ = self.recv.flow_control().release_capacity(n);
            if self.remaining != Self::UNKNOWN {
                self.remaining = self.remaining.saturating_sub(n as u64);
            }
        }
        Poll::Ready(data)
    }

    /// The body of a request whose head declared `content_length`.
    pub fn new(recv: h2::RecvStream, content_length: Option<u64>) -> Self {
        Self {
            data_done: recv.is_end_stream(),
            recv,
            remaining: content_length.unwrap_or(Self::UNKNOWN),
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.poll_data(cx)) {
                Some(Ok(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Self::UNKNOWN => SizeHint::default(),
            n => SizeHint::with_exact(n),
        }
    }
}

/// Every response body Weir sends. An enum rather than a box so the common cases (an upstream
/// stream, a small fixed body) cost no allocation and no dynamic dispatch.
#[derive(Debug, Default)]
pub enum ResponseBody {
    /// No body.
    #[default]
    Empty,
    /// A body known in full (error pages, `respond` routes).
    Full(Option<Bytes>),
    /// The upstream's response body, streamed through.
    Upstream(UpstreamBody),
    /// Anything else that streams (files).
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl ResponseBody {
    /// A body of exactly these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::Empty
        } else {
            Self::Full(Some(bytes))
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(inc) => Pin::new(inc).poll_frame(cx).map_err(Into::into),
            ResponseBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty => true,
            ResponseBody::Full(b) => b.is_none(),
            ResponseBody::Upstream(inc) => inc.is_end_stream(),
            ResponseBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty => SizeHint::with_exact(0),
            ResponseBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ResponseBody::Upstream(inc) => inc.size_hint(),
            ResponseBody::Stream(s) => s.size_hint(),
        }
    }
}

/// An upstream's response body: an HTTP/1.1 connection's, or an HTTP/2 stream's (both read by
/// Weir's own clients).
#[derive(Debug)]
pub enum UpstreamBody {
    Http1(crate::h1_client::Body),
    Http2(H2Body),
}

body_of_variants!(UpstreamBody { Http1, Http2 });

/// The body length a message's `Content-Length` declares: one field of digits only (RFC 9110
/// §8.6); anything else (absent, repeated, signed, not a number) declares nothing. The one
/// parse of the field for every phase that sizes a body.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let one = values.next()?;
    if values.next().is_some() {
        return None;
    }
    length_value(one.as_bytes())
}

/// A `Content-Length` value: digits only, at most `u64::MAX`. Folded in one pass (no UTF-8
/// check and `str::parse` on every message).
pub fn length_value(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .flatten()
    })
}

/// What happened to a request body as it streamed: bytes seen, and why it stopped early.
#[derive(Debug, Default)]
pub struct BodyStats {
    bytes: AtomicU64,
    too_large: AtomicBool,
    client_error: AtomicBool,
}

impl BodyStats {
    /// Bytes of body received from the client so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The body went over `max_request_body_size`.
    pub fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Relaxed)
    }

    /// The client's connection failed while it sent the body.
    pub fn client_error(&self) -> bool {
        self.client_error.load(Ordering::Relaxed)
    }
}

/// The request body as forwarded upstream: streamed, counted, and cut off with an error when
/// it exceeds the configured limit (so a chunked upload cannot bypass `max_request_body_size`).
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<ClientBody>,
    /// A frame to send before reading `inner`: a buffered body replayed whole (retries of
    /// small bodies), or the first frame, read early by [`RequestBody::prefetch`].
    buffered: Option<Frame<Bytes>>,
    limit: u64,
    seen: u64,
    stats: Arc<BodyStats>,
    /// A copy being taken as the body streams (a mirrored request's).
    copy: Option<Box<BodyCopy>>,
}

/// A copy of a request body taken as it streams, up to a limit: handed to its owner whole when
/// the body has been read to its end, or as `None` when it grew past the limit, failed, or
/// was dropped before its end.
struct BodyCopy {
    buf: bytes::BytesMut,
    limit: usize,
    done: Option<CopyDone>,
}

/// How a [`RequestBody::copy_to`] copy ended.
#[derive(Debug)]
pub enum Copied {
    /// The whole body.
    Whole(Bytes),
    /// The body grew past the copy's limit.
    TooLarge,
    /// The body failed or was dropped before its end.
    Incomplete,
}

/// What a body copy hands its owner.
pub type CopyDone = Box<dyn FnOnce(Copied) + Send>;

impl std::fmt::Debug for BodyCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyCopy")
            .field("len", &self.buf.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl BodyCopy {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done(Copied::Whole(self.buf.split().freeze()));
        }
    }

    fn too_large(&mut self) {
        if let Some(done) = self.done.take() {
            done(Copied::TooLarge);
        }
    }
}

impl Drop for BodyCopy {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Copied::Incomplete);
        }
    }
}

/// The error a [`RequestBody`] ends with when the limit is exceeded.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the {0}-byte limit")]
pub struct BodyTooLarge(pub u64);

impl RequestBody {
    /// Wraps a client body; `limit` 0 means unlimited.
    pub fn new(inner: impl Into<ClientBody>, limit: u64, stats: Arc<BodyStats>) -> Self {
        Self {
            inner: Some(inner.into()),
            buffered: None,
            limit,
            seen: 0,
            stats,
            copy: None,
        }
    }

    /// A body that sends `bytes` (already counted and checked against the limit) once.
    pub fn buffered(bytes: Bytes, stats: Arc<BodyStats>) -> Self {
        Self {
            inner: None,
            buffered: (!bytes.is_empty()).then(|| Frame::data(bytes)),
            limit: 0,
            seen: 0,
            stats,
            copy: None,
        }
    }

    /// Copies the body as it streams, up to `limit` bytes; `done` gets the whole body once it
    /// has been read to its end, or why not (past the limit, failed, dropped early). Call it
    /// before anything reads the body.
    pub fn copy_to(&mut self, limit: usize, done: CopyDone) {
        let copy = Box::new(BodyCopy {
            buf: bytes::BytesMut::new(),
            limit,
            done: Some(done),
        });
        if self.is_end_stream() {
            let mut copy = copy;
            copy.finish();
        } else {
            self.copy = Some(copy);
        }
    }

    /// Reads the first frame now (it is sent first later), so a body that fails at once —
    /// cut short, refused framing, over the limit — fails before anything is sent upstream.
    pub async fn prefetch(&mut self) -> Result<(), BoxError> {
        if self.buffered.is_some() || self.is_end_stream() {
            return Ok(());
        }
        let first = std::future::poll_fn(|cx| Pin::new(&mut *self).poll_frame(cx)).await;
        match first {
            Some(Ok(frame)) => {
                self.buffered = Some(frame);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    /// The frame already read (a replayed body, or the first frame read ahead), taken to go
    /// out with the request head.
    pub(crate) fn take_buffered(&mut self) -> Option<Frame<Bytes>> {
        self.buffered.take()
    }

    /// Gives back a frame from [`take_buffered`](Self::take_buffered) that was never sent.
    pub(crate) fn put_back_buffered(&mut self, frame: Option<Frame<Bytes>>) {
        if frame.is_some() {
            self.buffered = frame;
        }
    }

    /// The statistics this body reports into.
    pub fn stats(&self) -> &Arc<BodyStats> {
        &self.stats
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.buffered.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.seen += n;
                    this.stats.bytes.fetch_add(n, Ordering::Relaxed);
                    if this.limit > 0 && this.seen > this.limit {
                        this.stats.too_large.store(true, Ordering::Relaxed);
                        this.inner = None;
                        this.copy = None;
                        return Poll::Ready(Some(Err(BodyTooLarge(this.limit).into())));
                    }
                    if let Some(copy) = this.copy.as_mut() {
                        if copy.buf.len() + data.len() > copy.limit {
                            if let Some(mut copy) = this.copy.take() {
                                copy.too_large();
                            }
                        } else {
                            copy.buf.extend_from_slice(data);
                        }
                    }
                }
                // hyper stops reading a body with a declared length once it is complete, so
                // the copy is handed over when the end is known, not only when it is read.
                if this.copy.is_some() && this.inner.as_ref().is_none_or(|b| b.is_end_stream()) {
                    if let Some(mut copy) = this.copy.take() {
                        copy.finish();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.stats.client_error.store(true, Ordering::Relaxed);
                this.inner = None;
                this.copy = None;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.inner = None;
                if let Some(mut copy) = this.copy.take() {
                    copy.finish();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let first = self
            .buffered
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        let rest = self
            .inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint());
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// What a [`Tee`] hands its owner: the whole body, or nothing when it was not seen whole
/// (over the limit, failed, or abandoned).
pub type TeeDone = Box<dyn FnOnce(Option<Bytes>) + Send>;

/// A response body on its way to the client, copied up to `limit` bytes for a store (the
/// cache, idempotency records). The copy is handed over when the body has been seen whole:
/// at its end, or once its declared length has gone by (hyper stops polling there).
pub struct Tee {
    inner: ResponseBody,
    buf: bytes::BytesMut,
    limit: usize,
    expected: Option<usize>,
    done: Option<TeeDone>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("copied", &self.buf.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Tee {
    /// Wraps `inner`; `expected` is its declared length, if any (else the body's own exact
    /// size, when it knows one).
    pub fn new(inner: ResponseBody, limit: usize, expected: Option<usize>, done: TeeDone) -> Self {
        let expected = expected.or_else(|| {
            inner
                .size_hint()
                .exact()
                .and_then(|n| usize::try_from(n).ok())
        });
        let mut tee = Self {
            inner,
            buf: bytes::BytesMut::new(),
            limit,
            expected,
            done: Some(done),
        };
        if tee.expected == Some(0) {
            tee.finish(true);
        }
        tee
    }

    fn finish(&mut self, whole: bool) {
        if let Some(done) = self.done.take() {
            let body = std::mem::take(&mut self.buf).freeze();
            done(whole.then_some(body));
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), true) = (frame.data_ref(), this.done.is_some()) {
                    if this.buf.len() + data.len() > this.limit {
                        this.finish(false);
                    } else {
                        this.buf.extend_from_slice(data);
                        if this.expected == Some(this.buf.len()) {
                            this.finish(true);
                        }
                    }
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod declared_length_tests {
    use super::declared_length;

    fn of(values: &[&str]) -> Option<u64> {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::CONTENT_LENGTH, v.parse().expect("value"));
        }
        declared_length(&h)
    }

    #[test]
    fn only_one_field_of_digits_declares_a_length() {
        assert_eq!(of(&["42"]), Some(42));
        assert_eq!(of(&["0"]), Some(0));
        assert_eq!(of(&[]), None);
        assert_eq!(of(&["+5"]), None, "u64::from_str would take it");
        assert_eq!(of(&["-1"]), None);
        assert_eq!(of(&[" 5"]), None);
        assert_eq!(of(&["5", "5"]), None, "repeated");
        assert_eq!(of(&["99999999999999999999999"]), None, "overflows");
        assert_eq!(of(&["18446744073709551615"]), Some(u64::MAX));
        assert_eq!(of(&["18446744073709551616"]), None, "one past u64::MAX");
        assert_eq!(of(&["5a"]), None);
    }
}
