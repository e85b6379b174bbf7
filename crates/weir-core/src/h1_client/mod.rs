//! HTTP/1.1 to an upstream, driven by the request's own task: the future that sends a request
//! writes it and reads the response head itself, and the response body reads the connection
//! directly. hyper's client puts a task behind every connection and a channel between it and
//! the request (a hop and a wake-up per request, ~36 KiB per connection); here a connection is
//! its socket and a read buffer, and an idle one waiting in its pool holds no buffer at all.
//!
//! - [`send`] writes the head (and, in the same write, a body frame already at hand), then
//!   streams the rest of the body while watching for the response: an upstream that answers
//!   before it has read the whole body (a 413, an echo) is heard at once, and the body keeps
//!   flowing beside the response if the upstream keeps reading it.
//! - Interim responses (1xx but 101) go to the request's [`InterimSink`] as they come.
//! - The response body ([`Body`]) is framed by RFC 9112 §6.3: none for HEAD, 1xx, 204, 304;
//!   chunked (trailers kept); `Content-Length`; else until the upstream closes. When it has
//!   been read to its end on a connection that may be reused, the connection goes back to its
//!   [`Home`] (the endpoint's pool); dropped early, the connection is closed.
//! - A `101 Switching Protocols` makes the body the way to the upgraded connection
//!   ([`Body::into_upgraded`]).
//!
//! Everything an upstream can send is parsed strictly: a head past 64 KiB or 128 fields,
//! conflicting `Content-Length`s, a malformed chunk line or a bare LF ends the exchange with an
//! error and the connection is closed, never reused.

mod body;
mod decode;
mod encode;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::h1_wire;
use crate::{InterimSink, RequestBody};

pub use body::{Body, Upgraded};
pub use decode::{Chunked, Step};

/// Largest response head (status line and fields), and the largest read into a connection's
/// buffer.
pub const MAX_HEAD: usize = 64 * 1024;
/// The first read of a response: a page, which holds the head and a small body (a larger
/// head grows the buffer; bodies read in larger steps by their length).
const HEAD_READ: usize = 4096;
/// Most fields in a response head.
pub const MAX_FIELDS: usize = 128;

/// How much of a body already at hand goes out with the head in the first write.
const PRIME_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prime {
    First,
    Yielded,
    Done,
}

enum PrimeError {
    Io(io::Error),
    Body(Error),
}

/// A byte stream to an upstream other than plain TCP (TLS).
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// The connection's transport: plain TCP without indirection, anything else boxed.
pub enum Io {
    Tcp(TcpStream),
    Other(Box<dyn Stream>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => crate::tcp::poll_send_vectored(s, cx, bufs),
            Io::Other(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Tcp(_) => true,
            Io::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// An HTTP/1.1 connection to an upstream: its transport and what has been read from it but
/// not yet consumed. One allocation per connection, so a response body that owns it stays
/// small.
pub struct Conn(Box<ConnState>);

#[doc(hidden)]
pub struct ConnState {
    io: Io,
    read: BytesMut,
    /// What reading the next response head reuses: the last one's field names, and the
    /// header map of the request last sent (given back once its head was encoded).
    reuse: h1_wire::HeadReuse,
    /// Where the connection goes after the response in progress (set per exchange).
    home: Option<Arc<dyn Home>>,
}

impl std::ops::Deref for Conn {
    type Target = ConnState;
    fn deref(&self) -> &ConnState {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut ConnState {
        &mut self.0
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &self.read.len())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Takes a header map that is done with — the request's, once its head is encoded — to
    /// read the response's fields into (one map less to allocate and free per exchange).
    pub fn recycle_headers(&mut self, map: http::HeaderMap) {
        self.reuse.keep(map);
    }

    pub fn new(io: Io) -> Self {
        Self(Box::new(ConnState {
            io,
            read: BytesMut::new(),
            reuse: h1_wire::HeadReuse::default(),
            home: None,
        }))
    }

    /// Whether an idle connection can carry a request: the upstream has neither closed it nor
    /// sent bytes nobody asked for. Looks without waiting (a socket with nothing to read
    /// answers at once, usually without a system call).
    pub fn is_open(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }
}

impl ConnState {
    /// Reads more into the buffer, about `want` bytes (at least [`HEAD_READ`], at most
    /// [`MAX_HEAD`]). `Ready(Ok(0))`: the upstream closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let want = want.clamp(HEAD_READ, MAX_HEAD);
        if self.read.capacity() == 0 {
            self.read = h1_wire::read_buffer(HEAD_READ);
        }
        if self.read.capacity() - self.read.len() < want / 2 {
            self.read.reserve(want);
        }
        h1_wire::poll_read(Pin::new(&mut self.io), cx, &mut self.read, HEAD_READ)
    }
}

/// Where a connection goes when its response has been read whole and it may carry another.
pub trait Home: Send + Sync {
    fn take_back(&self, conn: Conn);
}

/// What went wrong talking to the upstream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the connection failed.
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before the response was complete.
    #[error("upstream closed the connection before the response was complete")]
    Closed,
    /// The upstream sent something that is not a valid HTTP/1.1 response.
    #[error("invalid response from upstream: {0}")]
    Invalid(&'static str),
    /// The request body failed (the client's, or over its limit).
    #[error("request body: {0}")]
    RequestBody(crate::BoxError),
}

impl From<h1_wire::Mismatch> for Error {
    fn from(m: h1_wire::Mismatch) -> Self {
        Error::RequestBody(format!("request {m}").into())
    }
}

/// A failed [`send`]; `unsent` is the body back when none of the request was written (the
/// connection had closed), so it can go out on another one.
#[derive(Debug)]
pub struct SendError {
    pub error: Error,
    pub unsent: Option<RequestBody>,
}

/// A request head encoded for the wire once, and sent as it is on every try.
#[derive(Clone, Debug)]
pub struct Head {
    bytes: Bytes,
    framing: h1_wire::Framing,
    head_only: bool,
    upgrade: bool,
}

impl Head {
    /// The head of a request with these parts (the target in origin form, `Host` set) and the
    /// fields the proxy adds after them, and a body shaped like `body` (its length, or none,
    /// decides the framing).
    pub fn new(
        parts: &http::request::Parts,
        added: &crate::added::AddedFields,
        body: &RequestBody,
    ) -> Self {
        let framing = encode::framing_of(body);
        let (bytes, upgrade) = encode::head(parts, added, framing);
        Self {
            bytes,
            framing,
            head_only: parts.method == http::Method::HEAD,
            upgrade,
        }
    }
}

/// Sends a request on `conn` and reads the response head; the body reads on from the same
/// connection. `home` takes the connection back when the response has been read whole
/// (`None`: it is closed).
pub async fn send(
    conn: Conn,
    req: Request<RequestBody>,
    interim: Option<&InterimSink>,
    home: Option<Arc<dyn Home>>,
) -> Result<Response<Body>, SendError> {
    let (parts, body) = req.into_parts();
    let head = Head::new(&parts, &crate::added::NO_FIELDS, &body);
    drop(parts);
    send_head(conn, &head, body, interim, home).await
}

/// [`send`] with a head already encoded (a request that may be tried more than once).
pub async fn send_head(
    mut conn: Conn,
    head: &Head,
    mut body: RequestBody,
    interim: Option<&InterimSink>,
    home: Option<Arc<dyn Home>>,
) -> Result<Response<Body>, SendError> {
    conn.home = home;
    let head_only = head.head_only;
    let upgrade = head.upgrade;
    // The head, a body's first frame and its framing: one allocation, no growth.
    let mut out = h1_wire::Outbox::with_capacity(4);
    out.push(head.bytes.clone());
    let mut writer = h1_wire::BodyWriter::new(head.framing);
    // A body frame already read (a replayed body, the first frame read ahead) goes out in the
    // same write as the head; a copy is kept to give the body back whole if nothing is
    // written.
    let first = body.take_buffered();
    let first_is_some = first.is_some();
    let first_copy = first.as_ref().and_then(|f| f.data_ref().cloned());
    if let Some(frame) = first {
        if let Err(error) = writer.queue(frame, &mut out) {
            return Err(SendError {
                error: error.into(),
                unsent: None,
            });
        }
    }

    // Whatever of the body is already here goes in the first write too, and a body that
    // fails at once (the client's framing refused midway) fails before anything is written.
    // A body whose next bytes are not decoded yet gets one turn of the scheduler first: the
    // client connection's task decodes what it has already received (an HTTP/1.1 server
    // decodes a body as it is read), so a refused chunk right behind the first is seen here.
    // A frame that cannot be given back (trailers) counts as taken from the body.
    let mut pulled = first_copy.is_none() && first_is_some;
    let mut prime = Prime::First;
    let written = std::future::poll_fn(|cx| {
        if prime != Prime::Done {
            while !writer.is_done() && out.queued() < PRIME_MAX {
                let frame = match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Pending if prime == Prime::First => {
                        prime = Prime::Yielded;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(frame))) => frame,
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(PrimeError::Body(Error::RequestBody(e))))
                    }
                    Poll::Ready(None) => {
                        if let Err(e) = writer.finish(&mut out) {
                            return Poll::Ready(Err(PrimeError::Body(e.into())));
                        }
                        break;
                    }
                };
                pulled = true;
                if let Err(e) = writer.queue(frame, &mut out) {
                    return Poll::Ready(Err(PrimeError::Body(e.into())));
                }
            }
            prime = Prime::Done;
        }
        out.poll_write(&mut conn.io, cx).map_err(PrimeError::Io)
    })
    .await;
    // Until the first byte is written, a failed write gives the request back untouched.
    let written = match written {
        Err(PrimeError::Body(error)) => {
            return Err(SendError {
                error,
                unsent: None,
            })
        }
        Err(PrimeError::Io(e)) => Err(e),
        Ok(()) => Ok(()),
    };
    match written {
        Err(e) if out.written() == 0 && !pulled => {
            body.put_back_buffered(first_copy.map(http_body::Frame::data));
            return Err(SendError {
                error: Error::Io(e),
                unsent: Some(body),
            });
        }
        Err(e) => {
            return Err(SendError {
                error: Error::Io(e),
                unsent: None,
            })
        }
        Ok(()) => {}
    }
    // The request's head is done with; a body still to send is boxed (most requests have
    // none left by now, and the future stays small).
    let mut sending = (!(writer.is_done() && out.is_empty())).then(|| {
        Box::new(Sending {
            body,
            writer,
            out,
            failed: None,
        })
    });

    let head = std::future::poll_fn(|cx| loop {
        if let Some(s) = sending.as_mut() {
            match s.poll_progress(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => sending = None,
                Poll::Ready(Err(e @ Error::RequestBody(_))) => return Poll::Ready(Err(e)),
                // The upstream stopped reading; it may still answer (a 413): read on.
                Poll::Ready(Err(_)) | Poll::Pending => {}
            }
        }
        let state = &mut *conn.0;
        match decode::head(&mut state.read, head_only, &mut state.reuse) {
            Err(e) => return Poll::Ready(Err(e)),
            Ok(Some(decode::Parsed::Interim(status, fields))) => {
                if let Some(sink) = interim {
                    sink.send(status, &fields);
                }
                continue;
            }
            Ok(Some(decode::Parsed::Final(head))) => return Poll::Ready(Ok(head)),
            Ok(None) => {}
        }
        if conn.read.len() >= MAX_HEAD {
            return Poll::Ready(Err(Error::Invalid("response head too large")));
        }
        match conn.poll_fill(cx, HEAD_READ) {
            Poll::Ready(Ok(0)) => {
                let failed = sending.as_mut().and_then(|s| s.failed.take());
                return Poll::Ready(Err(failed.map_or(Error::Closed, Error::Io)));
            }
            Poll::Ready(Ok(_)) => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
    .map_err(|error| SendError {
        error,
        unsent: None,
    })?;

    if head.status == http::StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(SendError {
            error: Error::Invalid("101 without an upgrade asked for"),
            unsent: None,
        });
    }
    let (parts, framing, keep_alive) = head.into_parts();
    let body = Body::new(conn, framing, keep_alive, sending);
    Ok(Response::from_parts(parts, body))
}

/// A request body still going up: what is queued to write, and the body to read on from.
pub(crate) struct Sending {
    body: RequestBody,
    writer: h1_wire::BodyWriter,
    out: h1_wire::Outbox,
    /// The write error, once writing failed; the response may still come.
    failed: Option<io::Error>,
}

impl Sending {
    /// Writes what it can. `Ready(Ok)`: all of the body is written; `Ready(Err)`: it never
    /// will be (the error is kept in `failed` for an I/O error); `Pending`: more to come.
    pub(crate) fn poll_progress(
        &mut self,
        io: &mut Io,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        if self.failed.is_some() {
            return Poll::Ready(Err(Error::Closed));
        }
        loop {
            if !self.out.is_empty() {
                match self.out.poll_write(io, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        self.failed = Some(e);
                        return Poll::Ready(Err(Error::Closed));
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.writer.is_done() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Err(e) = self.writer.queue(frame, &mut self.out) {
                        return Poll::Ready(Err(e.into()));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::RequestBody(e))),
                Poll::Ready(None) => {
                    if let Err(e) = self.writer.finish(&mut self.out) {
                        return Poll::Ready(Err(e.into()));
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
