//! Serving one connection: Weir's HTTP/1.1 server (`h1/`), or its HTTP/2 one (`h2.rs`) for ALPN
//! `h2` and the h2c preface, plus a watchdog that enforces the request-head timeout
//! (slowloris) and the keep-alive idle timeout, and turns a shutdown signal into a graceful
//! close (h2 GOAWAY; h1 close after the response).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::counters::ListenerCounters;
use super::frames::FrameTap;
use super::io::WakeFlag;
use super::settings::ListenerSettings;
use super::state::{ConnInfo, ConnState};
use crate::shared::Shared;

/// What the watchdog decided.
enum Verdict {
    /// Idle too long: close politely.
    Idle,
    /// A request head took too long: drop the connection.
    HeadTimeout,
    /// Response data waited too long for the client to take it: drop the connection.
    SendStall,
}

async fn watchdog(state: &ConnState, settings: &ListenerSettings) -> Verdict {
    let (head_timeout, idle_timeout, stall_timeout) = (
        settings.header_read_timeout,
        settings.keepalive_timeout,
        settings.send_stall_timeout,
    );
    loop {
        let deadline = if state.in_flight.load(Ordering::Relaxed) > 0 {
            // Busy: only a response the client takes nothing of can end it.
            (state.awaiting_client.load(Ordering::Relaxed) > 0).then(|| {
                (
                    state.at(state.last_sent.load(Ordering::Relaxed)) + stall_timeout,
                    Verdict::SendStall,
                )
            })
        } else {
            match state.head_started.load(Ordering::Relaxed) {
                0 => Some((
                    state.at(state.idle_since.load(Ordering::Relaxed)) + idle_timeout,
                    Verdict::Idle,
                )),
                started => Some((state.at(started) + head_timeout, Verdict::HeadTimeout)),
            }
        };
        match deadline {
            Some((when, verdict)) if when <= Instant::now() => return verdict,
            // Looked at again within a stall timeout at most: a connection that was idle when
            // this deadline was set may be busy with stalled responses by then.
            Some((when, _)) => {
                tokio::time::sleep_until(when.min(Instant::now() + stall_timeout)).await
            }
            // Busy: look again later; a busy connection is never idle.
            None => tokio::time::sleep(head_timeout.min(idle_timeout).min(stall_timeout)).await,
        }
    }
}

pin_project_lite::pin_project! {
    /// An HTTP/2 connection's stream: bytes counted, a new request's first bytes noted, and
    /// the client's frames followed (its SETTINGS say what window new streams get; with the
    /// access log on, frames each way, for per-stream counts).
    struct WatchedIo<S> {
        #[pin]
        inner: S,
        state: Arc<ConnState>,
        taps: Taps,
    }
}

/// The HTTP/2 frame taps of a connection: the client's frames always, Weir's when the access
/// log counts bytes per stream.
struct Taps {
    read: FrameTap,
    write: Option<FrameTap>,
}

impl<S: AsyncWrite> WatchedIo<S> {
    /// The write took the first `n` bytes of `bufs`: counted, and followed for HTTP/2 frames.
    fn wrote(self: Pin<&mut Self>, bufs: &[std::io::IoSlice<'_>], n: usize) {
        let this = self.project();
        this.state.wrote(n);
        if let Some(tap) = this.taps.write.as_mut() {
            let state = &**this.state;
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                tap.feed(&b[..take], |f| state.stream_frame(f, false));
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite> AsyncRead for WatchedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.bytes_read();
            this.state.read_http(buf.filled().len() - before);
            let state = &**this.state;
            let credit = this.taps.write.is_some();
            this.taps.read.feed(&buf.filled()[before..], |f| {
                if credit {
                    state.stream_frame(f, true)
                }
            });
            state.set_client_window(this.taps.read.client_window());
        }
        res
    }
}

// Writes go through, counted; a flush lets a held access-log record go (see
// `ConnState::defer_record`).
impl<S: AsyncWrite> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = self.as_mut().project().inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            self.wrote(&[std::io::IoSlice::new(buf)], n);
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_flush(cx);
        if res.is_ready() {
            this.state.flushed();
        }
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = self.as_mut().project().inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            self.wrote(bufs, n);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a connection as open while alive.
struct OpenConn(Arc<ListenerCounters>);

impl OpenConn {
    fn new(counters: Arc<ListenerCounters>) -> Self {
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        counters.open.fetch_add(1, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves an accepted connection: the TLS handshake first on TLS listeners (bounded by the
/// head timeout), then HTTP.
pub(crate) async fn accept(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    settings: Arc<ListenerSettings>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let _open = OpenConn::new(settings.counters.clone());
    let mut rest = Vec::new();
    if settings.proxy_protocol {
        match super::proxy_protocol::read_header(&mut stream, settings.header_read_timeout).await {
            Ok(header) => {
                tracing::trace!(%peer, reads = header.reads, "PROXY protocol header read");
                if let Some(client) = header.client {
                    peer = client;
                }
                rest = header.rest;
            }
            Err(e) => {
                settings
                    .counters
                    .proxy_protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "PROXY protocol header refused; closing");
                return;
            }
        }
    }
    // What came after the PROXY header is the start of the TLS handshake or the first request.
    let stream = super::proxy_protocol::Prefixed::new(weir_core::tcp::Tcp(stream), rest);
    let Some(tls) = settings.tls.clone() else {
        serve(stream, peer, None, false, settings, shared, stop, permit).await;
        return;
    };
    let handshake = tokio::time::timeout(settings.header_read_timeout, tls.acceptor.accept(stream));
    let stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tls.counters
                .tls_handshake_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tls.counters
                .tls_handshake_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| super::tls::client_subject(leaf))
        .and_then(|s| http::HeaderValue::from_str(&s).ok());
    let handshake = Handshake {
        client_subject: subject,
        session: Arc::new(super::tls::session(stream.get_ref().1)),
    };
    // Boxed: side by side with the plain connection's, the compiler would lay the two
    // connection futures out one after the other in every connection's task (12.6 KB where
    // either is 4–5 KB).
    Box::pin(serve(
        stream,
        peer,
        Some(handshake),
        h2,
        settings,
        shared,
        stop,
        permit,
    ))
    .await;
}

/// What a finished TLS handshake tells the requests of its connection.
struct Handshake {
    /// The verified client certificate's subject (mTLS).
    client_subject: Option<http::HeaderValue>,
    session: Arc<weir_core::TlsSession>,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the first bytes of a connection and tells HTTP/2 by prior knowledge (h2c) from
/// HTTP/1.x, as hyper-util's auto builder does, so that each protocol gets its own service
/// shape. One read in the usual case (the client's first flight), bounded by the head timeout;
/// `None` when the client sent nothing in time or the read failed.
async fn sniff_h2<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Option<(bool, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(4096);
    let read = async {
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                // Closed: let the HTTP/1 server see the end (and answer nothing).
                return Ok::<_, std::io::Error>(false);
            }
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] != H2_PREFACE[..n] {
                return Ok(false);
            }
            if n == H2_PREFACE.len() {
                return Ok(true);
            }
            if buf.capacity() == buf.len() {
                buf.reserve(4096);
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(h2)) => Some((h2, buf)),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve<S>(
    mut stream: S,
    peer: SocketAddr,
    handshake: Option<Handshake>,
    h2: bool,
    settings: Arc<ListenerSettings>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (h2, mut first) = if h2 {
        (true, Vec::new())
    } else {
        match sniff_h2(&mut stream, settings.header_read_timeout).await {
            Some(sniffed) => sniffed,
            None => {
                tracing::debug!(%peer, "no request bytes in time; closing");
                return;
            }
        }
    };
    // HTTP/2: the client's first SETTINGS decides how the connection is set up.
    let window = if h2 {
        match super::h2::client_window(&mut stream, &mut first, settings.header_read_timeout).await
        {
            Some(window) => window,
            None => {
                tracing::debug!(%peer, "no HTTP/2 preface and SETTINGS in time; closing");
                return;
            }
        }
    } else {
        super::frames::DEFAULT_WINDOW
    };
    let state = Arc::new(ConnState::new(
        settings.counters.clone(),
        shared.access_log.enabled(),
    ));
    let (client_subject, tls_session) = match handshake {
        Some(h) => (h.client_subject, Some(h.session)),
        None => (None, None),
    };
    let info = Arc::new(ConnInfo {
        peer,
        local: settings.local,
        listener: settings.name.clone(),
        state: state.clone(),
        opts: settings.opts.clone(),
        counters: settings.counters.clone(),
        client_subject,
        tls_session,
        forwarding: Default::default(),
        host: Default::default(),
    });
    if h2 {
        let io = WatchedIo {
            inner: super::proxy_protocol::Prefixed::new(stream, first),
            state: state.clone(),
            taps: Taps {
                read: FrameTap::from_client(),
                write: shared.access_log.enabled().then(FrameTap::to_client),
            },
        };
        let conn = std::pin::pin!(super::h2::Server::new(
            io,
            &settings.h2,
            window,
            info,
            shared
        ));
        drive(conn, peer, &settings, &state, &stop).await;
    } else {
        let conn = std::pin::pin!(super::h1::server(
            stream,
            first,
            info,
            shared,
            settings.http1
        ));
        drive(conn, peer, &settings, &state, &stop).await;
    }
    state.connection_ended();
}

/// A served connection that can be asked to finish gracefully.
pub(super) trait Graceful: std::future::Future {
    fn shutdown(self: Pin<&mut Self>);
}

impl<S: AsyncRead + AsyncWrite + Unpin> Graceful for super::h2::Server<S> {
    fn shutdown(self: Pin<&mut Self>) {
        self.get_mut().graceful_shutdown();
    }
}

/// Runs a connection to its end: graceful close on shutdown or keep-alive idle, drop on a head
/// timeout or abuse. The connection is pinned by the caller: taken by value, its future would
/// sit twice in this one (as the argument and as the pinned local).
async fn drive<C, E>(
    mut conn: Pin<&mut C>,
    peer: SocketAddr,
    settings: &ListenerSettings,
    state: &ConnState,
    stop: &CancellationToken,
) where
    C: Graceful<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut closing = false;
    loop {
        // The rare events are polled only when one of them woke the task, not on each of the
        // connection's own wake-ups (two or more per request).
        let rare = Quiet::new(rare_event(settings, state, stop, closing));
        tokio::pin!(rare);
        let event = tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            event = rare => event,
        };
        match event {
            Rare::Stop | Rare::Verdict(Verdict::Idle) => {
                conn.as_mut().shutdown();
                closing = true;
            }
            Rare::Abuse => {
                tracing::warn!(%peer, "client abandons most of its requests (rapid reset?); closing the connection");
                return;
            }
            Rare::Verdict(Verdict::HeadTimeout) => {
                tracing::debug!(%peer, "request head not received in time; closing");
                return;
            }
            Rare::Verdict(Verdict::SendStall) => {
                settings
                    .counters
                    .send_stalls
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "client took no response data for send_stall_timeout; closing");
                return;
            }
        }
    }
}

/// What can end or wind down a connection besides the connection itself.
enum Rare {
    Stop,
    Abuse,
    Verdict(Verdict),
}

/// The first rare event; once closing, only abuse (the stop and the watchdog have had their say).
async fn rare_event(
    settings: &ListenerSettings,
    state: &ConnState,
    stop: &CancellationToken,
    closing: bool,
) -> Rare {
    tokio::select! {
        () = stop.cancelled(), if !closing => Rare::Stop,
        () = state.abusive.notified() => Rare::Abuse,
        verdict = watchdog(state, settings), if !closing => Rare::Verdict(verdict),
    }
}

pin_project_lite::pin_project! {
    /// A future polled only when a waker it registered fired (and on its first poll): beside a
    /// busy future in one task, it costs a flag check per wake-up instead of a poll.
    struct Quiet<F> {
        #[pin]
        fut: F,
        flag: WakeFlag,
    }
}

impl<F: std::future::Future> Quiet<F> {
    fn new(fut: F) -> Self {
        Self {
            fut,
            flag: WakeFlag::new(),
        }
    }
}

impl<F: std::future::Future> std::future::Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !this.flag.take(cx) {
            return Poll::Pending;
        }
        this.fut.poll(&mut Context::from_waker(this.flag.waker()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection holds its task's future: its size is memory per connection. It
    /// was 28.6 KB: the connection taken by value into `drive` sat there twice, the lingering
    /// close's 4 KiB read buffer was on the stack, and the TLS and plain paths were laid out
    /// side by side; 4.3 KB with each fixed; 3.2 KB with the HTTP/1.1 loop an `async move`
    /// block (not an `async fn`, which held the connection twice) and its lingering close
    /// boxed. This fails when something large lands in it again.
    #[test]
    fn a_connection_future_stays_small() {
        fn future_size<F, Fut>(_: F) -> usize
        where
            F: FnOnce(
                TcpStream,
                SocketAddr,
                Arc<ListenerSettings>,
                Arc<Shared>,
                CancellationToken,
                OwnedSemaphorePermit,
            ) -> Fut,
        {
            std::mem::size_of::<Fut>()
        }
        let size = future_size(accept);
        assert!(size <= 3584, "the connection future is {size} bytes");
    }
}
