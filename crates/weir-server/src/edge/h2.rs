//! Serving an HTTP/2 connection on the `h2` crate directly (as Pingora does), not through
//! hyper's HTTP/2 server: Weir then knows each request's stream, so a request's bytes on the
//! wire are its stream's frames, and owns what a stream holds while it waits. One task per
//! stream runs the pipeline and sends the response within the client's flow-control window;
//! the connection's own future accepts streams, answers pings, and keeps the peer alive.
//!
//! What hyper's server did is kept: connection-specific response fields are dropped (RFC 9113
//! §8.2.2, with the proxy's own hop-by-hop rule), `content-length` is set from a body of known size, `date` is added when missing, a
//! stream the client resets cancels its request, a refused request resets its stream with the
//! pipeline's reason (REFUSED_STREAM past the memory budget), and keep-alive PINGs find dead
//! peers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::{Builder, Connection, Handshake, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::header::{CONTENT_LENGTH, DATE};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use weir_core::body::H2Body;
use weir_core::ClientBody;

use super::state::ConnInfo;
use crate::pipeline::{self, LoggedBody};
use crate::shared::Shared;

/// An HTTP/2 request's stream, handed to the pipeline with the request: its id (bytes on the
/// wire are counted per stream) and where its interim responses go.
pub(crate) struct StreamOf {
    pub(crate) id: u32,
    pub(crate) interim: Arc<StreamInterim>,
}

/// Interim responses (103 Early Hints…) for one stream, waiting for its task to send them.
#[derive(Default)]
pub(crate) struct StreamInterim {
    waiting: std::sync::Mutex<Vec<Response<()>>>,
    /// Set once something waits: the stream's task looks at the list only then (almost no
    /// response has an interim one, and the task is polled two or three times a request).
    pending: std::sync::atomic::AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

/// Interim responses held for one stream at most; more are dropped (they are advisory).
const MAX_INTERIM: usize = 8;

impl weir_core::InterimTarget for StreamInterim {
    fn interim(&self, status: http::StatusCode, fields: &HeaderMap) {
        let mut head = Response::new(());
        *head.status_mut() = status;
        *head.headers_mut() = fields.clone();
        crate::headers::strip_hop_by_hop(head.headers_mut());
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.len() >= MAX_INTERIM {
                return;
            }
            waiting.push(head);
        }
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl StreamInterim {
    /// Sends what waits, and asks to be woken for more.
    fn send(&self, respond: &mut SendResponse<Bytes>, cx: &Context<'_>) {
        self.waker.register(cx.waker());
        // A response added after this look sets the flag again and wakes the task.
        if !self.pending.swap(false, Ordering::Acquire) {
            return;
        }
        let waiting = std::mem::take(&mut *self.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        for head in waiting {
            if let Err(e) = respond.send_informational(head) {
                tracing::debug!(error = %e, "interim response not sent");
            }
        }
    }
}

/// Concurrent HTTP/2 streams per connection (nginx: 128; Envoy and HAProxy: 100). Each open
/// stream can pin its request state while the client holds its window shut.
const MAX_STREAMS: u32 = 128;

/// How often an idle-looking peer is asked for a PING answer, and how long it has to give one.
/// A client whose new streams start with a window under this many bytes cannot take even a
/// small response without granting more: the HTTP/2 "bomb" opens streams with a zero window
/// so that every answer stays in Weir. Such a connection is served `SHUT_WINDOW_STREAMS`
/// streams at a time; more are refused with REFUSED_STREAM (never processed, safe to retry),
/// so what it can make Weir hold does not grow with the streams it opens.
const SHUT_WINDOW: u32 = 1024;
const SHUT_WINDOW_STREAMS: usize = 8;
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The two ways a connection is set up: for clients whose streams start with a usable window,
/// and for those that announced a shut one in their first SETTINGS (they are told 8
/// concurrent streams, so the `h2` crate refuses the rest as it decodes them, before their
/// fields pile up unaccepted).
#[derive(Clone)]
pub(crate) struct Builders {
    open: Builder,
    shut: Builder,
}

impl Builders {
    pub(crate) fn new(max_header_list: usize) -> Self {
        let mut shut = builder(max_header_list);
        shut.max_concurrent_streams(SHUT_WINDOW_STREAMS as u32);
        Self {
            open: builder(max_header_list),
            shut,
        }
    }

    fn for_window(&self, window: u32) -> &Builder {
        if window < SHUT_WINDOW {
            &self.shut
        } else {
            &self.open
        }
    }
}

/// Reads on from what `first` already holds until the client's preface and first frame (its
/// SETTINGS, RFC 9113 §3.4) are there, and returns the stream window it announces. Bounded by
/// `timeout`; `None` when the client sent nothing usable in time. A first frame that is not a
/// SETTINGS, or a large one, leaves the default (the connection's frame tap reads every later
/// SETTINGS).
pub(super) async fn client_window<S: AsyncRead + Unpin>(
    stream: &mut S,
    first: &mut Vec<u8>,
    timeout: Duration,
) -> Option<u32> {
    use tokio::io::AsyncReadExt;
    const PREFACE: usize = 24;
    const MAX_FIRST_FRAME: usize = 1024;
    let needed = |buf: &[u8]| -> Option<usize> {
        let head = buf.get(PREFACE..PREFACE + 9)?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        Some(PREFACE + 9 + len.min(MAX_FIRST_FRAME))
    };
    let read = async {
        while needed(first).is_none_or(|n| first.len() < n) {
            if first.capacity() == first.len() {
                first.reserve(1024);
            }
            if stream.read_buf(first).await? == 0 {
                return Ok::<_, std::io::Error>(false);
            }
        }
        Ok(true)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(true)) => {
            let mut tap = super::frames::FrameTap::from_client();
            tap.feed(first, |_| {});
            Some(tap.client_window())
        }
        _ => None,
    }
}

/// The HTTP/2 limits, every one set on purpose.
fn builder(max_header_list: usize) -> Builder {
    let mut b = Builder::new();
    b
        // The request head limit applies to HTTP/2 header lists too; decoding stops there,
        // which also bounds a CONTINUATION flood.
        .max_header_list_size(u32::try_from(max_header_list).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_STREAMS)
        // Rapid reset (CVE-2023-44487): streams a client resets before we accept them.
        .max_pending_accept_reset_streams(64)
        // Streams we had to reset for the client's errors, before GOAWAY.
        .max_local_error_reset_streams(Some(256))
        // Flow control: 1 MiB per stream, 4 MiB per connection bounds the memory a client can
        // make us buffer.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_frame_size(16 * 1024)
        .max_send_buffer_size(1 << 20);
    b
}

/// One served HTTP/2 connection: the handshake, then streams until the connection closes.
pub(super) struct Server<S> {
    phase: Phase<S>,
    closing: bool,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    keep_alive: KeepAlive,
}

enum Phase<S> {
    Handshake(Handshake<S, Bytes>),
    Serving(Connection<S, Bytes>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Server<S> {
    /// A connection whose client's streams start with `window` (its first SETTINGS).
    pub(super) fn new(
        io: S,
        builders: &Builders,
        window: u32,
        info: Arc<ConnInfo>,
        shared: Arc<Shared>,
    ) -> Self {
        info.state.set_client_window(window);
        if window < SHUT_WINDOW {
            info.counters
                .h2_shut_window_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        Self {
            phase: Phase::Handshake(builders.for_window(window).handshake(io)),
            closing: false,
            info,
            shared,
            keep_alive: KeepAlive::default(),
        }
    }

    /// GOAWAY: streams already opened finish, no new ones are taken.
    pub(super) fn graceful_shutdown(&mut self) {
        self.closing = true;
        if let Phase::Serving(conn) = &mut self.phase {
            conn.graceful_shutdown();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Server<S> {
    type Output = Result<(), h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let conn = match &mut this.phase {
                Phase::Handshake(h) => {
                    let mut conn = ready!(Pin::new(h).poll(cx))?;
                    if this.closing {
                        conn.graceful_shutdown();
                    }
                    this.keep_alive.pings = conn.ping_pong();
                    this.phase = Phase::Serving(conn);
                    continue;
                }
                Phase::Serving(conn) => conn,
            };
            if this.keep_alive.poll(cx).is_err() {
                tracing::debug!(peer = %this.info.peer, "no PING answer in time; closing");
                return Poll::Ready(Ok(()));
            }
            match ready!(conn.poll_accept(cx)) {
                Some(Ok((req, mut respond))) => {
                    let state = &this.info.state;
                    if state.client_window() < SHUT_WINDOW
                        && state.open_streams.load(Ordering::Relaxed) >= SHUT_WINDOW_STREAMS
                    {
                        respond.send_reset(Reason::REFUSED_STREAM);
                        this.info
                            .counters
                            .h2_shut_window_refused
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    start_stream(req, respond, &this.info, &this.shared);
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// PINGs the peer every `PING_INTERVAL`; no answer within `PING_TIMEOUT` ends the connection.
struct KeepAlive {
    pings: Option<h2::PingPong>,
    timer: Pin<Box<Sleep>>,
    waiting: bool,
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self {
            pings: None,
            timer: Box::pin(tokio::time::sleep(PING_INTERVAL)),
            waiting: false,
        }
    }
}

impl KeepAlive {
    /// `Err` when the peer let a PING go unanswered.
    fn poll(&mut self, cx: &mut Context<'_>) -> Result<(), ()> {
        let Some(pings) = self.pings.as_mut() else {
            return Ok(());
        };
        loop {
            if self.waiting {
                match pings.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.waiting = false;
                        self.timer.as_mut().reset(Instant::now() + PING_INTERVAL);
                    }
                    // The connection is closing; it says so itself.
                    Poll::Ready(Err(_)) => {
                        self.pings = None;
                        return Ok(());
                    }
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            if self.waiting {
                return Err(());
            }
            if pings.send_ping(h2::Ping::opaque()).is_err() {
                self.pings = None;
                return Ok(());
            }
            self.waiting = true;
            self.timer.as_mut().reset(Instant::now() + PING_TIMEOUT);
        }
    }
}

/// A stream the client opened: its request's future is built straight into its heap slot
/// (`in_place`), and the stream's task spawned.
fn start_stream(
    req: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    info: &Arc<ConnInfo>,
    shared: &Arc<Shared>,
) {
    let length = weir_core::body::declared_length(req.headers());
    let (mut parts, recv) = req.into_parts();
    let mut opens_tunnel = None;
    if parts.method == http::Method::CONNECT {
        let (connect, opened) = super::h2_tunnel::ConnectStream::new();
        parts.extensions.insert(connect);
        opens_tunnel = Some(opened);
    }
    let interim = Arc::new(StreamInterim::default());
    let of = StreamOf {
        id: u32::from(respond.stream_id()),
        interim: interim.clone(),
    };
    let req = Request::from_parts(parts, ClientBody::Http2(H2Body::new(recv, length)));
    info.state.open_streams.fetch_add(1, Ordering::Relaxed);
    let slot = StreamSlot(info.state.clone());
    let (info, shared) = (info.clone(), shared.clone());
    // Boxed so the request's state is freed once it has answered: a stream whose response
    // waits on the client's window then holds the body alone.
    let handling = weir_core::boxed::pinned(|| pipeline::handle(req, info, shared, Some(of)));
    tokio::spawn(StreamTask {
        respond,
        interim,
        opens_tunnel,
        phase: StreamPhase::Answering(handling),
        _slot: slot,
    });
}

/// Counts a stream among its connection's open streams while it lives.
struct StreamSlot(Arc<super::state::ConnState>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One stream: the request through the pipeline, then its response within the client's
/// window. A reset from the client ends it wherever it is (the request's future is dropped:
/// logged as abandoned). Written as a state machine, not an `async fn`, so a stream whose
/// client holds its window shut keeps only its body and handles (216 bytes, where the
/// generated future was 1.7 KB).
struct StreamTask<F> {
    respond: SendResponse<Bytes>,
    interim: Arc<StreamInterim>,
    opens_tunnel: Option<tokio::sync::oneshot::Sender<SendStream<Bytes>>>,
    phase: StreamPhase<F>,
    _slot: StreamSlot,
}

enum StreamPhase<F> {
    /// The request's future, until it answers.
    Answering(Pin<Box<F>>),
    /// The response body, sent as the window allows.
    Sending {
        body: LoggedBody,
        send: SendStream<Bytes>,
    },
    Done,
}

impl<F> Future for StreamTask<F>
where
    F: Future<Output = Result<Response<LoggedBody>, h2::Error>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // One clock reading for the poll (weir_core::clock).
        weir_core::clock::scope(|| self.get_mut().poll_scoped(cx))
    }
}

impl<F> StreamTask<F>
where
    F: Future<Output = Result<Response<LoggedBody>, h2::Error>>,
{
    fn poll_scoped(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let this = self;
        match &mut this.phase {
            StreamPhase::Answering(handling) => {
                let answer = handling.as_mut().poll(cx);
                // Interim responses go before the final one, as they come.
                this.interim.send(&mut this.respond, cx);
                let answer = match answer {
                    Poll::Ready(answer) => answer,
                    // Reset by the client: dropping the request's future logs it abandoned.
                    Poll::Pending => return this.respond.poll_reset(cx).map(|_| ()),
                };
                // The request's state is freed now, before the response is sent.
                this.phase = StreamPhase::Done;
                match answer {
                    Ok(resp) => this.respond_with(resp),
                    Err(refused) => {
                        let reason = refused.reason().unwrap_or(Reason::INTERNAL_ERROR);
                        this.respond.send_reset(reason);
                    }
                }
                if matches!(this.phase, StreamPhase::Done) {
                    return Poll::Ready(());
                }
                this.poll_scoped(cx)
            }
            StreamPhase::Sending { body, send } => send_body(body, send, cx),
            StreamPhase::Done => Poll::Ready(()),
        }
    }
}

impl<F> StreamTask<F> {
    /// Sends the response head; a body still to send makes the task's next phase.
    fn respond_with(&mut self, resp: Response<LoggedBody>) {
        let (mut head, body) = resp.into_parts();
        // Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2): the error
        // mapping's `connection: close` and the like.
        crate::headers::strip_hop_by_hop(&mut head.headers);
        head.headers.entry(DATE).or_insert_with(super::io::date);
        if let Some(opened) = self
            .opens_tunnel
            .take()
            .filter(|_| head.status.is_success())
        {
            // A 2xx to CONNECT opens the tunnel: the stream stays open and carries its bytes.
            head.headers.remove(CONTENT_LENGTH);
            drop(body);
            match self
                .respond
                .send_response(Response::from_parts(head, ()), false)
            {
                Ok(send) => {
                    let _ = opened.send(send);
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT answer not sent"),
            }
            return;
        }
        let end = body.is_end_stream();
        if !end {
            if let Some(n) = body.size_hint().exact() {
                head.headers
                    .entry(CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(n));
            }
        }
        match self
            .respond
            .send_response(Response::from_parts(head, ()), end)
        {
            Ok(send) if !end => self.phase = StreamPhase::Sending { body, send },
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "response head not sent");
                self.respond.send_reset(Reason::INTERNAL_ERROR);
            }
        }
    }
}

/// Sends the body frame by frame, taking the next frame from it only once the client's window
/// has room (so an unread response holds one frame, and the send-stall watchdog sees a body
/// waiting on its client). Ready when the stream is done with, whichever way.
fn send_body(
    body: &mut LoggedBody,
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if send.capacity() == 0 {
            send.reserve_capacity(1);
            loop {
                match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(0))) => continue,
                    Poll::Ready(Some(Ok(_))) => break,
                    Poll::Ready(_) => return Poll::Ready(()),
                    Poll::Pending => return send.poll_reset(cx).map(|_| ()),
                }
            }
        }
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            // Reset by the client, or waiting for the upstream.
            Poll::Pending => return send.poll_reset(cx).map(|_| ()),
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return Poll::Ready(());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    // Sending asks for the window the frame needs beyond what was reserved
                    // (`h2` raises the stream's requested capacity to what it buffers).
                    if send.send_data(data, end).is_err() || end {
                        return Poll::Ready(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                    }
                    return Poll::Ready(());
                }
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; resetting the stream");
                send.send_reset(Reason::INTERNAL_ERROR);
                return Poll::Ready(());
            }
        }
    }
}
