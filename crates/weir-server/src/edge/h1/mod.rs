//! Serving an HTTP/1.1 connection: Weir's own server, in place of hyper's. The connection's
//! task reads and parses each request head once (`head.rs`, strict RFC 9112 framing), runs the
//! request's pipeline future, feeds the request body to it as it asks (`weir_core::inbound`),
//! and writes the response (`respond.rs`) with vectored writes: no dispatcher, no channel per
//! request, no second parse of the bytes to check their framing.
//!
//! Also here: interim responses (103) written ahead of the final one, `Expect: 100-continue`
//! answered when the body is first asked for, pipelined requests answered in order, bodies the
//! pipeline left unread drained (up to [`DRAIN_MAX`]) so the connection can go on, tunnels
//! handed their socket after a 101 or a CONNECT's 2xx (`upgrade.rs`), and a graceful close
//! between requests when the listener stops. Timeouts are the connection watchdog's
//! (`conn.rs`), fed by the activity recorded in [`ConnState`].

mod head;
mod respond;
mod upgrade;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{Method, Request, StatusCode};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use weir_core::h1_client::{Chunked, Step};
use weir_core::h1_wire;
use weir_core::inbound::{Feed, Inbound};
use weir_core::{ClientBody, ErrorKind};

pub(crate) use head::Limits;
pub(crate) use upgrade::{ClientUpgrade, Upgraded};

use super::state::{ConnInfo, ConnState};
use crate::pipeline;
use crate::shared::Shared;

/// Bytes asked of the socket per read while a head is incomplete.
const READ_SIZE: usize = 4 * 1024;
/// Request body bytes the connection discards after a response to keep the connection; past
/// this it closes instead.
const DRAIN_MAX: u64 = 64 * 1024;
/// Response bytes queued before the connection writes them out.
const WRITE_HIGH: usize = 64 * 1024;

/// Asks a connection to close once it is between requests.
#[derive(Default)]
pub(super) struct Closing {
    asked: AtomicBool,
    waker: AtomicWaker,
}

impl Closing {
    pub(super) fn ask(&self) {
        self.asked.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn is_asked(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    fn poll_asked(&self, cx: &Context<'_>) -> bool {
        if self.is_asked() {
            return true;
        }
        self.waker.register(cx.waker());
        self.is_asked()
    }
}

pin_project_lite::pin_project! {
    /// A served HTTP/1.1 connection that can be asked to finish gracefully.
    pub(super) struct Served<F> {
        #[pin]
        fut: F,
        closing: Arc<Closing>,
    }
}

impl<F: Future> Future for Served<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

impl<F: Future> super::conn::Graceful for Served<F> {
    fn shutdown(self: Pin<&mut Self>) {
        self.closing.ask();
    }
}

/// The connection future for `io`, whose first bytes (`first`) were already read.
pub(super) fn server<S>(
    io: S,
    first: Vec<u8>,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    limits: Limits,
) -> Served<impl Future<Output = io::Result<()>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let closing = Arc::new(Closing::default());
    let conn = Conn {
        state: info.state.clone(),
        io,
        readable: super::io::WakeFlag::new(),
        buf: BytesMut::from(&first[..]),
        out: h1_wire::Outbox::default(),
        scratch: BytesMut::new(),
        read_closed: false,
        limits,
        reuse: h1_wire::HeadReuse::default(),
    };
    if !first.is_empty() {
        conn.state.read_http(first.len());
        conn.state.bytes_read();
    }
    Served {
        fut: serve(conn, info, shared, closing.clone()),
        closing,
    }
}

/// One client connection's bytes.
struct Conn<S> {
    io: S,
    /// The socket is read with this flag's waker, which sets it: a read that found nothing
    /// is tried again only once the socket has woken it, not on every wake-up of the task (the
    /// read ahead while a request is answered, and the wait for the next head, found nothing
    /// on two of a request's four reads).
    readable: super::io::WakeFlag,
    state: Arc<ConnState>,
    /// Read and not yet consumed.
    buf: BytesMut,
    out: h1_wire::Outbox,
    /// Where heads and chunk lines are encoded before they are queued.
    scratch: BytesMut,
    read_closed: bool,
    limits: Limits,
    /// What parsing the next head reuses (the last response's header map among it).
    reuse: h1_wire::HeadReuse,
}

/// Where the request body is.
enum Inflow {
    /// No body, or all of it read.
    Done,
    Length {
        feed: Feed,
        left: u64,
    },
    Chunked {
        feed: Feed,
        state: Chunked,
    },
    /// Its framing broke or the client stopped sending it: the connection cannot go on.
    Broken,
}

impl Inflow {
    /// Whether the connection can read past what is left of the body to the next request: a
    /// broken body never, one nobody reads when what it declared is left is at most
    /// [`DRAIN_MAX`] (a chunked one is drained up to that, then closed).
    fn drainable(&self) -> bool {
        match self {
            Inflow::Done | Inflow::Chunked { .. } => true,
            Inflow::Broken => false,
            Inflow::Length { feed, left } => !feed.is_dropped() || *left <= DRAIN_MAX,
        }
    }

    fn feed(&self) -> Option<&Feed> {
        match self {
            Inflow::Length { feed, .. } | Inflow::Chunked { feed, .. } => Some(feed),
            Inflow::Done | Inflow::Broken => None,
        }
    }
}

#[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
fn serve<S>(
    mut conn: Conn<S>,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    closing: Arc<Closing>,
) -> impl Future<Output = io::Result<()>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        loop {
            // Between requests: an idle connection holds no read buffer of its own (the next
            // read takes a spare one).
            if conn.buf.is_empty() && conn.buf.capacity() > 0 {
                h1_wire::give_back(std::mem::take(&mut conn.buf), READ_SIZE);
            }
            let head = match poll_fn(|cx| conn.poll_head(cx, &closing)).await {
                Ok(Some(head)) => head,
                Ok(None) => return conn.close(false).await,
                Err(kind) => {
                    tracing::debug!(peer = %info.peer, ?kind, "request head refused");
                    conn.out.push(Bytes::from_static(refusal(kind)));
                    return conn.close(true).await;
                }
            };
            let head::Head {
                method,
                uri,
                version,
                headers,
                framing,
                mut keep_alive,
                expect_continue,
                tunnel_asked,
            } = head;
            let (body, mut inflow) = match framing {
                head::Framing::None => {
                    conn.state.request_end(conn.buf.len());
                    (Inbound::default(), Inflow::Done)
                }
                head::Framing::Length(n) => {
                    let (body, feed) = Inbound::channel(Some(n));
                    (body, Inflow::Length { feed, left: n })
                }
                head::Framing::Chunked => {
                    let (body, feed) = Inbound::channel(None);
                    (
                        body,
                        Inflow::Chunked {
                            feed,
                            state: Chunked::Size,
                        },
                    )
                }
            };
            let mut continue_due = expect_continue && !matches!(inflow, Inflow::Done);
            let mut req = Request::new(ClientBody::Http1(body));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            *req.headers_mut() = headers;
            let handover = tunnel_asked.then(|| {
                let (tx, rx) = upgrade::pair();
                req.extensions_mut().insert(rx);
                tx
            });

            // The request's future, built in its own heap slot and freed once it has answered.
            let mut handling = weir_core::boxed::pinned(|| {
                pipeline::handle(req, info.clone(), shared.clone(), None)
            });
            let answer = poll_fn(|cx| {
                conn.poll_inflow(&mut inflow, &mut continue_due, cx)?;
                conn.take_interim(cx);
                if conn.poll_flush_out(cx)?.is_ready() {
                    conn.poll_read_ahead(&inflow, cx)?;
                }
                handling.as_mut().poll(cx).map(Ok::<_, io::Error>)
            })
            .await?;
            drop(handling);
            // Interim responses after the final one are dropped: they are advisory. (Checked
            // first: the lock is taken only when there are some.)
            if conn.state.interim_pending() {
                conn.state.with_interim(Vec::clear);
            }
            let Ok(resp) = answer else {
                // Only HTTP/2 streams are refused without a response.
                return conn.close(false).await;
            };
            let (mut parts, body) = resp.into_parts();
            let tunnel = handover.is_some()
                && if method == Method::CONNECT {
                    parts.status.is_success()
                } else {
                    parts.status == StatusCode::SWITCHING_PROTOCOLS
                };
            // A body the client has not started sending (it waits for a 100 that will not come)
            // leaves the connection unusable.
            if continue_due || !inflow.drainable() || conn.read_closed || closing.is_asked() {
                keep_alive = false;
            }
            let mut ex = respond::Exchange {
                method,
                version,
                keep_alive,
                tunnel,
            };
            let (head_bytes, framing) = respond::head(
                &mut conn.scratch,
                parts.status,
                &parts.headers,
                &body.size_hint(),
                &mut ex,
            );
            // The response's header map holds the next request's fields (`keep` empties it now:
            // its values may share an upstream's read buffer).
            conn.reuse.keep(std::mem::take(&mut parts.headers));
            drop(parts);
            conn.out.push(head_bytes);
            let mut writer = h1_wire::BodyWriter::new(framing);
            let mut body = Some(body);
            // Written after the other connections ready in this pass have read their requests
            // and answers: responses go out back to back (weir_core::pass).
            weir_core::pass::end().await;
            let sent = poll_fn(|cx| {
                conn.poll_inflow(&mut inflow, &mut continue_due, cx)?;
                conn.poll_response(&mut body, &mut writer, cx)
            })
            .await;
            drop(body);
            if let Err(e) = sent {
                tracing::debug!(peer = %info.peer, error = %e, "response not sent whole; closing");
                return Ok(());
            }
            if tunnel {
                if let Some(handover) = handover {
                    let Conn { io, buf, .. } = conn;
                    let _ = handover.send(Upgraded::new(Box::new(io), buf.to_vec()));
                }
                return Ok(());
            }
            drop(handover);
            if !ex.keep_alive {
                let unread = !matches!(inflow, Inflow::Done);
                return conn.close(unread).await;
            }
            // The rest of a body the pipeline left unread, before the next request can be read.
            if !matches!(inflow, Inflow::Done) {
                let mut budget = DRAIN_MAX;
                let drained =
                    poll_fn(|cx| conn.poll_drain(&mut inflow, &mut budget, &closing, cx)).await;
                if !drained {
                    return conn.close(true).await;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads until a whole request head is buffered; `None` when the client closed, or
    /// closing was asked between requests.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        closing: &Closing,
    ) -> Poll<Result<Option<head::Head>, ErrorKind>> {
        loop {
            if let Some(head) = head::parse(&mut self.buf, self.limits, &mut self.reuse)? {
                return Poll::Ready(Ok(Some(head)));
            }
            if (self.buf.is_empty() && closing.poll_asked(cx)) || self.read_closed {
                return Poll::Ready(Ok(None));
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) | Err(_) => {
                    self.read_closed = true;
                    return Poll::Ready(Ok(None));
                }
                Ok(_) => {}
            }
        }
    }

    /// Reads more bytes into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if !self.readable.take(cx) {
            return Poll::Pending;
        }
        if self.buf.capacity() == 0 {
            self.buf = h1_wire::read_buffer(READ_SIZE);
        } else if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_SIZE.max(self.buf.len()));
        }
        let n = ready!(h1_wire::poll_read(
            Pin::new(&mut self.io),
            &mut Context::from_waker(self.readable.waker()),
            &mut self.buf,
            READ_SIZE
        ));
        // Bytes (or the end, or an error) came: the next read goes to the socket again.
        self.readable.set();
        let n = n?;
        if n > 0 {
            self.state.read_http(n);
            self.state.bytes_read();
        }
        Poll::Ready(Ok(n))
    }

    /// Feeds the request body from the buffer and the socket, as far as the body has room.
    /// `Err` only when the socket failed.
    fn poll_inflow(
        &mut self,
        inflow: &mut Inflow,
        continue_due: &mut bool,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        loop {
            let Some(feed) = inflow.feed() else {
                return Ok(());
            };
            if feed.is_dropped() {
                // Left for the drain after the response.
                return Ok(());
            }
            if *continue_due {
                if !feed.is_wanted(cx) {
                    return Ok(());
                }
                *continue_due = false;
                if self.buf.is_empty() {
                    self.out
                        .push(Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"));
                    let _ = self.poll_flush_out(cx)?;
                }
            }
            if !feed.has_room(cx) {
                return Ok(());
            }
            match self.decode_body(inflow) {
                Decoded::Progress => continue,
                Decoded::NeedMore => {}
                Decoded::Broken => return Ok(()),
            }
            match self.poll_fill(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    self.read_closed = true;
                    if let Some(feed) = inflow.feed() {
                        feed.fail("the client closed the connection before the body was complete");
                    }
                    *inflow = Inflow::Broken;
                    return Ok(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    if let Some(feed) = inflow.feed() {
                        feed.fail(format!("reading the request body: {e}"));
                    }
                    *inflow = Inflow::Broken;
                    return Err(e);
                }
            }
        }
    }

    /// Takes what the buffer holds of the body into its feed (or discards it when the feed
    /// was dropped).
    fn decode_body(&mut self, inflow: &mut Inflow) -> Decoded {
        let unread = |buf: &BytesMut| buf.len();
        match inflow {
            Inflow::Done | Inflow::Broken => Decoded::Broken,
            Inflow::Length { feed, left } => {
                if self.buf.is_empty() {
                    return Decoded::NeedMore;
                }
                let n = (*left).min(self.buf.len() as u64) as usize;
                feed.push(h1_wire::take(&mut self.buf, n));
                *left -= n as u64;
                if *left == 0 {
                    feed.end(None);
                    self.state.request_end(unread(&self.buf));
                    *inflow = Inflow::Done;
                }
                Decoded::Progress
            }
            Inflow::Chunked { feed, state } => match state.decode(&mut self.buf) {
                Ok(Some(Step::Data(data))) => {
                    feed.push(data);
                    if state.settle(&mut self.buf) {
                        feed.end(None);
                        self.state.request_end(unread(&self.buf));
                        *inflow = Inflow::Done;
                    }
                    Decoded::Progress
                }
                Ok(Some(Step::Trailers(trailers))) => {
                    feed.end(Some(trailers));
                    self.state.request_end(unread(&self.buf));
                    *inflow = Inflow::Done;
                    Decoded::Progress
                }
                Ok(Some(Step::End)) => {
                    feed.end(None);
                    self.state.request_end(unread(&self.buf));
                    *inflow = Inflow::Done;
                    Decoded::Progress
                }
                Ok(None) => Decoded::NeedMore,
                Err(e) => {
                    tracing::debug!(error = %e, "malformed chunked request body");
                    feed.fail("malformed chunked request body");
                    *inflow = Inflow::Broken;
                    Decoded::Broken
                }
            },
        }
    }

    /// Discards what is left of a body nobody reads, up to `budget` bytes; `true` once it is
    /// all gone.
    fn poll_drain(
        &mut self,
        inflow: &mut Inflow,
        budget: &mut u64,
        closing: &Closing,
        cx: &mut Context<'_>,
    ) -> Poll<bool> {
        loop {
            if closing.poll_asked(cx) {
                return Poll::Ready(false);
            }
            match inflow {
                Inflow::Done => return Poll::Ready(true),
                Inflow::Broken => return Poll::Ready(false),
                Inflow::Length { feed, .. } | Inflow::Chunked { feed, .. } => {
                    if !feed.is_dropped() {
                        // Still read by someone (a mirror, an upload beside the response):
                        // fed as it asks.
                        let mut no_continue = false;
                        if self.poll_inflow(inflow, &mut no_continue, cx).is_err() {
                            return Poll::Ready(false);
                        }
                        if matches!(inflow, Inflow::Length { .. } | Inflow::Chunked { .. }) {
                            return Poll::Pending;
                        }
                        continue;
                    }
                }
            }
            let before = self.buf.len();
            match self.decode_body(inflow) {
                Decoded::Progress => {
                    let used = (before - self.buf.len()) as u64;
                    if used > *budget {
                        return Poll::Ready(false);
                    }
                    *budget -= used;
                    continue;
                }
                Decoded::Broken => return Poll::Ready(false),
                Decoded::NeedMore => {}
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) | Err(_) => return Poll::Ready(false),
                Ok(_) => {}
            }
        }
    }

    /// While a request is answered and its body all read: bytes the client sends are read
    /// ahead (a pipelined request, up to the head limit), and a failed connection is noticed.
    fn poll_read_ahead(&mut self, inflow: &Inflow, cx: &mut Context<'_>) -> io::Result<()> {
        if !matches!(inflow, Inflow::Done) || self.read_closed {
            return Ok(());
        }
        while self.buf.len() < self.limits.max_head {
            match self.poll_fill(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    // A half-close: the request is still answered.
                    self.read_closed = true;
                    return Ok(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Interim responses from the request's upstream, queued ahead of the final one.
    fn take_interim(&mut self, cx: &Context<'_>) {
        self.state.watch_interim(cx);
        if self.state.interim_pending() {
            let out = &mut self.out;
            self.state.with_interim(|pending| {
                out.push(Bytes::copy_from_slice(pending));
                pending.clear();
            });
        }
    }

    /// Writes everything queued, then flushes.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> io::Result<Poll<()>> {
        if self.out.is_empty() {
            return Ok(Poll::Ready(()));
        }
        let before = self.out.written();
        let res = self.out.poll_write(&mut self.io, cx);
        self.state.wrote(self.out.written() - before);
        match res {
            Poll::Pending => Ok(Poll::Pending),
            Poll::Ready(r) => {
                r?;
                self.state.flushed();
                Ok(Poll::Ready(()))
            }
        }
    }

    /// Sends the response body: frames are queued as they come, written out when the body has
    /// nothing ready or the queue is full; done when all is written and flushed. The body is
    /// dropped before the last flush, so that its access-log record is written with the bytes
    /// that flush sends (`ConnState::flushed`).
    fn poll_response<B>(
        &mut self,
        body: &mut Option<B>,
        writer: &mut h1_wire::BodyWriter,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        loop {
            if let Some(b) = body.as_mut() {
                let mut ended = writer.is_done();
                while !ended && self.out.queued() < WRITE_HIGH {
                    match Pin::new(&mut *b).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            writer
                                .queue(frame, &mut self.out)
                                .map_err(|m| io::Error::other(format!("response {m}")))?;
                            ended = writer.is_done();
                        }
                        Poll::Ready(Some(Err(e))) => {
                            return Poll::Ready(Err(io::Error::other(format!(
                                "response body: {e}"
                            ))));
                        }
                        Poll::Ready(None) => {
                            writer
                                .finish(&mut self.out)
                                .map_err(|m| io::Error::other(format!("response {m}")))?;
                            ended = true;
                        }
                        Poll::Pending => break,
                    }
                }
                if ended {
                    *body = None;
                }
            }
            let idle = self.out.is_empty();
            ready!(self.poll_flush_out(cx)?);
            if body.is_none() {
                return Poll::Ready(Ok(()));
            }
            if idle {
                // Nothing was queued: the body is pending.
                return Poll::Pending;
            }
        }
    }

    /// Writes what is queued, closes the write side, and (`linger`: the client may still be
    /// sending) reads and discards what the client still sends, so that the kernel does not
    /// answer it with a reset that destroys the response before the client has read it
    /// (nginx's lingering close). A client that stops sending for [`LINGER_IDLE`], or keeps
    /// sending past [`LINGER_TOTAL`] or [`LINGER_MAX`] bytes, is let go.
    fn close(self, linger: bool) -> Pin<Box<impl Future<Output = io::Result<()>>>> {
        // Boxed, so the connection's future does not carry the closing state while it serves.
        weir_core::boxed::pinned(|| self.lingering_close(linger))
    }

    async fn lingering_close(mut self, linger: bool) -> io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        poll_fn(|cx| {
            self.poll_flush_out(cx)
                .map_or_else(|e| Poll::Ready(Err(e)), |p| p.map(Ok))
        })
        .await?;
        if self.read_closed || !linger {
            return self.io.shutdown().await;
        }
        self.io.shutdown().await?;
        let linger = async {
            // On the heap: on the stack it would sit in every connection's future.
            let mut sink = vec![0u8; 16 * 1024];
            let mut total = 0usize;
            while total < LINGER_MAX {
                match tokio::time::timeout(LINGER_IDLE, self.io.read(&mut sink)).await {
                    Ok(Ok(0) | Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TOTAL, linger).await;
        Ok(())
    }
}

/// How long a closing connection waits for more of what the client is still sending, how
/// long it reads and discards at most, and how much (lingering close). The byte bound is
/// large: an upload refused from its head (a 413, a 401) is typically sent whole before the
/// client reads the answer, and reading it costs no memory (one 16 KiB sink).
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_TOTAL: std::time::Duration = std::time::Duration::from_secs(10);
const LINGER_MAX: usize = 64 << 20;

enum Decoded {
    Progress,
    NeedMore,
    Broken,
}

/// The answer to a request head that cannot be served, as bytes: the one error mapping's
/// response (the request id is empty: no request was parsed), serialized once per kind, with
/// `connection: close`.
fn refusal(kind: ErrorKind) -> &'static [u8] {
    static BAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    static LARGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let (cell, kind) = match kind {
        ErrorKind::HeaderTooLarge => (&LARGE, ErrorKind::HeaderTooLarge),
        _ => (&BAD, ErrorKind::BadRequest),
    };
    cell.get_or_init(|| {
        let mut resp =
            weir_core::ProxyError::new(kind).to_response(&http::HeaderValue::from_static(""));
        let body = match resp.body() {
            weir_core::ResponseBody::Full(Some(b)) => b.clone(),
            _ => Bytes::new(),
        };
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, body.len().into());
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        let mut out = Vec::new();
        super::io::http1_head(&mut out, resp.status(), resp.headers());
        out.extend_from_slice(&body);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncWriteExt;

    /// A stream that counts the reads polled on it.
    struct Counting {
        inner: tokio::io::DuplexStream,
        reads: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A read that found nothing is not tried again when the task wakes for something else
    /// (the upstream's answer): only once the socket has woken its own waker.
    #[tokio::test]
    async fn a_read_that_found_nothing_waits_for_the_socket() {
        let (mut client, server) = tokio::io::duplex(1024);
        let reads = Arc::new(AtomicUsize::new(0));
        let mut conn = Conn {
            io: Counting {
                inner: server,
                reads: reads.clone(),
            },
            readable: super::super::io::WakeFlag::new(),
            state: Arc::new(ConnState::new(Default::default(), false)),
            buf: BytesMut::new(),
            out: h1_wire::Outbox::default(),
            scratch: BytesMut::new(),
            read_closed: false,
            limits: Limits {
                max_head: 8192,
                max_fields: 100,
            },
            reuse: h1_wire::HeadReuse::default(),
        };
        for _ in 0..3 {
            let pending = poll_fn(|cx| Poll::Ready(conn.poll_fill(cx).is_pending())).await;
            assert!(pending);
        }
        assert_eq!(
            reads.load(Ordering::Relaxed),
            1,
            "read again without the socket waking"
        );
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let n = poll_fn(|cx| conn.poll_fill(cx)).await.expect("read");
        assert_eq!((n, reads.load(Ordering::Relaxed)), (16, 2));
        assert_eq!(&conn.buf[..], b"GET / HTTP/1.1\r\n");
        // After bytes, the next poll reads again (it may find more) and then waits.
        let more = poll_fn(|cx| Poll::Ready(conn.poll_fill(cx).is_pending())).await;
        assert!(more);
        assert_eq!(reads.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_refusal_is_the_error_mappings_answer() {
        let expected = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: 83\r\n\r\n{\"status\":400,\"error\":\"bad_request\",\"message\":\"malformed request\",\"request_id\":\"\"}\n";
        assert_eq!(
            String::from_utf8_lossy(super::refusal(weir_core::ErrorKind::BadRequest)),
            expected
        );
        let large = String::from_utf8_lossy(super::refusal(weir_core::ErrorKind::HeaderTooLarge));
        assert!(large.starts_with("HTTP/1.1 431 "), "{large}");
    }
}
