//! The log phase: exactly one `RequestRecord` per request, written when the response body ends
//! or is abandoned, or — if the client leaves before any response — when the request is
//! dropped (logged as 499, as nginx does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use weir_core::{BoxError, RequestCtx, ResponseBody};
use weir_observe::RequestRecord;

use crate::edge::state::ConnState;
use crate::shared::Shared;

/// Owns the request's context until the record is written.
pub(crate) struct LogPhase {
    pub(crate) ctx: RequestCtx,
    shared: Arc<Shared>,
    /// The snapshot the request runs on (its route metrics).
    runtime: Arc<crate::runtime::Runtime>,
    conn: Arc<ConnState>,
    bytes_out: u64,
    completed: bool,
    /// Policy state held until the response is done (concurrency slots).
    pub(crate) held: weir_policy::Held,
    /// The request's share of the request memory budget.
    pub(crate) charge: Option<crate::budget::Charge>,
    /// The connection and counters were told the request is over (`settle`).
    settled: bool,
    /// Bytes on the wire, known once the response's last bytes are sent.
    wire: Option<crate::edge::state::Wire>,
    /// The request's HTTP/2 stream (its bytes on the wire are its stream's frames).
    pub(crate) stream: Option<u32>,
}

impl LogPhase {
    #[inline]
    pub(crate) fn new(
        ctx: RequestCtx,
        shared: Arc<Shared>,
        runtime: Arc<crate::runtime::Runtime>,
        conn: Arc<ConnState>,
    ) -> Self {
        shared
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            ctx,
            shared,
            runtime,
            conn,
            bytes_out: 0,
            completed: false,
            held: weir_policy::Held::default(),
            charge: None,
            settled: false,
            wire: None,
            stream: None,
        }
    }

    /// The request is over for the connection, the counters and the policies (its slots and
    /// budget charge go back); only its record may still wait (for the bytes on the wire).
    fn settle(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.conn.request_finished(self.ctx.status != 0);
        self.shared
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.held = weir_policy::Held::default();
        self.charge = None;
        let status = self.status();
        let metrics = self
            .ctx
            .route
            .as_ref()
            .and_then(|r| self.runtime.route_metrics.get(r))
            .unwrap_or(&self.runtime.unmatched_metrics);
        if self.runtime.metrics_enabled {
            metrics.record(
                &self.ctx.method,
                status,
                weir_core::clock::elapsed(self.ctx.start),
                self.ctx.body.bytes(),
                self.bytes_out,
            );
        }
    }

    /// The status logged: 499 when none was sent.
    fn status(&self) -> u16 {
        if self.ctx.status == 0 {
            499
        } else {
            self.ctx.status
        }
    }

    /// Ends the request: settled now; its record written now or — with the access log on —
    /// once `conn` has sent the response's last bytes.
    pub(crate) fn finish(mut self: Box<Self>, conn: &ConnState) {
        self.settle();
        let stream = self.stream;
        // Refused (no access log): dropped here, which writes what is wanted.
        let _ = conn.defer_record(self, stream);
    }
}

impl crate::edge::state::WireRecord for LogPhase {
    fn write(mut self: Box<Self>, wire: crate::edge::state::Wire) {
        self.wire = Some(wire);
    }
}

impl LogPhase {
    /// The server's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for LogPhase {
    fn drop(&mut self) {
        self.settle();
        let log = &self.shared.access_log;
        let tracer = self
            .runtime
            .tracer
            .as_ref()
            .filter(|t| t.samples(&self.ctx));
        if !log.enabled() && tracer.is_none() {
            return;
        }
        let status = self.status();
        let mut record = RequestRecord::of(&self.ctx, status, self.bytes_out, self.completed);
        if let Some(w) = self.wire {
            record.wire_bytes_in = Some(w.bytes_in);
            record.wire_bytes_out = Some(w.bytes_out);
        }
        if let Some(tracer) = tracer {
            tracer.finish(&self.ctx, &record);
        }
        if log.enabled() {
            log.log_as(&record, &self.runtime.log_format);
        }
    }
}

/// The response body as sent: counts bytes, enforces the upstream's total deadline, and
/// carries the log phase until the last frame.
pub(crate) struct LoggedBody {
    inner: ResponseBody,
    log: Option<Box<LogPhase>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Declared length: hyper stops polling once it is sent, so the end is seen by count.
    expected: Option<u64>,
    /// The upstream connection, back to its pool when this body is dropped. Declared after
    /// `inner` so the upstream body is dropped (and drained) first.
    _conn: Option<weir_upstream::UpstreamGuard>,
    /// A gRPC response: a deadline passing mid-stream ends it with `grpc-status: 4` trailers
    /// rather than a reset the client could only report as `INTERNAL`.
    grpc: bool,
    /// The connection, told while this body waits for the client to take a frame (the
    /// send-stall watchdog); `waiting` says whether it is counted there now.
    conn: Arc<ConnState>,
    waiting: bool,
}

impl LoggedBody {
    pub(crate) fn new(
        inner: ResponseBody,
        log: Box<LogPhase>,
        deadline: Option<tokio::time::Instant>,
        expected: Option<u64>,
        conn: Option<weir_upstream::UpstreamGuard>,
        grpc: bool,
    ) -> Self {
        let state = log.conn.clone();
        let waiting = !inner.is_end_stream();
        if waiting {
            state.body_waiting();
        }
        Self {
            conn: state,
            waiting,
            grpc,
            expected,
            _conn: conn,
            inner,
            log: Some(log),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
        }
    }
}

/// The error a body ends with when the upstream's total timeout passes mid-stream.
#[derive(Debug, thiserror::Error)]
#[error("upstream total timeout reached while streaming the response")]
struct TotalTimeout;

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.waiting {
            // hyper asks for the next frame: the client took the last one.
            this.waiting = false;
            this.conn.body_taken(true);
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                if let Some(log) = this.log.as_mut() {
                    log.ctx.error = Some(weir_core::ErrorKind::UpstreamTimeout);
                }
                this.release_log();
                this.deadline = None;
                if this.grpc {
                    this.inner = ResponseBody::Empty;
                    // Through the one error mapping: grpc-status 4 (deadline exceeded).
                    let trailers =
                        weir_core::ProxyError::new(weir_core::ErrorKind::UpstreamTimeout)
                            .grpc_status_fields();
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                return Poll::Ready(Some(Err(TotalTimeout.into())));
            }
        }
        let res = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if matches!(res, Some(Ok(_))) && !this.inner.is_end_stream() {
            // A frame handed over; the next one waits until the client takes this one.
            this.waiting = true;
            this.conn.body_waiting();
        }
        match &res {
            Some(Ok(frame)) => {
                if let (Some(data), Some(log)) = (frame.data_ref(), this.log.as_mut()) {
                    log.bytes_out += data.len() as u64;
                    if this.expected == Some(log.bytes_out) {
                        log.completed = true;
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(log) = this.log.as_mut() {
                    log.ctx
                        .error
                        .get_or_insert(weir_core::ErrorKind::UpstreamProtocol);
                }
                this.release_log();
            }
            None => {
                if let Some(log) = this.log.as_mut() {
                    log.completed = true;
                }
                this.release_log();
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if self.waiting {
            self.conn.body_taken(false);
        }
        if let Some(log) = self.log.as_mut() {
            if self.inner.is_end_stream() || self.expected == Some(log.bytes_out) {
                log.completed = true;
            }
        }
        self.release_log();
    }
}

impl LoggedBody {
    /// The body is done with its log phase: see [`LogPhase::finish`].
    fn release_log(&mut self) {
        if let Some(log) = self.log.take() {
            log.finish(&self.conn);
        }
    }
}
