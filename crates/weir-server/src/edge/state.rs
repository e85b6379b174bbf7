//! What one connection shares with the requests on it: who the client is ([`ConnInfo`]) and
//! the connection's activity ([`ConnState`]), read by the pipeline, the IO wrapper and the
//! watchdog. A leaf: it imports nothing of the server but the listener's settings and two
//! helpers that import nothing themselves (hop-by-hop stripping, the HTTP/1.1 head writer).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::time::Instant;

use super::counters::ListenerCounters;
use super::settings::ListenerOpts;

/// Abandoned requests on one connection (with more abandoned than twice the answered) before it
/// is closed: far above what a browser cancelling navigations does, far below a rapid-reset
/// flood.
const ABANDONED_LIMIT: u32 = 100;

/// What the pipeline knows about the connection a request came on.
pub(crate) struct ConnInfo {
    /// The client: the TCP peer, or the address a PROXY protocol header named.
    pub(crate) peer: SocketAddr,
    /// The address the client connected to.
    pub(crate) local: SocketAddr,
    pub(crate) listener: Arc<str>,
    pub(crate) state: Arc<ConnState>,
    pub(crate) opts: Arc<ListenerOpts>,
    pub(crate) counters: Arc<ListenerCounters>,
    /// The verified client certificate's subject (mTLS).
    pub(crate) client_subject: Option<http::HeaderValue>,
    /// What the TLS handshake negotiated (TLS listeners only).
    pub(crate) tls_session: Option<Arc<weir_core::TlsSession>>,
    /// The forwarding fields its requests last sent upstream.
    pub(crate) forwarding: crate::headers::ForwardingMemo,
    /// The Host its requests last named, normalised.
    pub(crate) host: crate::pipeline::request::HostMemo,
}

/// Activity of one connection, shared by the IO wrapper, the pipeline and the watchdog.
/// Times are milliseconds since `base`, plus one, so 0 means "unset".
pub(crate) struct ConnState {
    base: Instant,
    pub(super) in_flight: AtomicUsize,
    pub(super) idle_since: AtomicU64,
    pub(super) head_started: AtomicU64,
    multiplexed: AtomicBool,
    /// Requests the client abandoned before any response, and requests answered: a
    /// connection that mostly abandons its requests (HTTP/2 rapid reset and its variants)
    /// is told to go away.
    abandoned: AtomicU32,
    answered: AtomicU32,
    pub(super) abusive: tokio::sync::Notify,
    /// Protocol seen on the first request (0 none yet, 1 HTTP/1.x, 2 HTTP/2), counted in the
    /// listener's open connections by protocol until the connection ends.
    protocol: std::sync::atomic::AtomicU8,
    counters: Arc<ListenerCounters>,
    /// Response bodies with data (or their first frame) waiting for the client to take it,
    /// and when the client last took any: a connection whose waiting bodies make no
    /// progress for `send_stall_timeout` is closed.
    pub(super) awaiting_client: AtomicUsize,
    pub(super) last_sent: AtomicU64,
    /// HTTP bytes read from and written to the connection (inside TLS), and what the wire
    /// byte counts of HTTP/1.x requests are taken from.
    read_total: AtomicU64,
    written_total: AtomicU64,
    /// Whether the access log wants the counts (else records are written at once and no
    /// request ends are kept).
    wire_wanted: bool,
    has_deferred: AtomicBool,
    wire: std::sync::Mutex<WireLedger>,
    /// HTTP/1.1: interim responses (103 Early Hints…) from the upstream of the request in
    /// flight, as bytes, written ahead of its final response (see `h1/`); and the
    /// connection task, woken to write them.
    interim: std::sync::Mutex<Vec<u8>>,
    has_interim: AtomicBool,
    interim_waker: futures_util::task::AtomicWaker,
    /// HTTP/2: the window each new stream of the client starts with (its SETTINGS), and the
    /// streams being served now.
    client_window: AtomicU32,
    pub(super) open_streams: AtomicUsize,
}

/// Interim response bytes held for one HTTP/1.1 request at most; more are dropped (they are
/// advisory, and an upstream must not make Weir hold without bound).
const MAX_INTERIM_BYTES: usize = 16 * 1024;

/// A request's bytes on the wire: its own, and its response's (on HTTP/2, its stream's frames
/// each way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wire {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// A request's access-log record, held until its response's last bytes are flushed so it can
/// say how many crossed the wire (hyper drops a response body before it writes the body's
/// last bytes).
pub(crate) trait WireRecord: Send {
    fn write(self: Box<Self>, wire: Wire);
}

/// Where requests and responses begin and end in the connection's bytes (HTTP/1.x, where
/// they follow one another), or each HTTP/2 stream's bytes.
#[derive(Default)]
struct WireLedger {
    /// HTTP/2 streams seen and not yet logged.
    streams: std::collections::HashMap<u32, StreamWire>,
    /// Where requests ended (bytes read), as the HTTP/1.1 server parsed them, not yet logged.
    ends: std::collections::VecDeque<u64>,
    /// Where the last logged request ended, and its response.
    logged_in: u64,
    logged_out: u64,
    deferred: Option<Box<dyn WireRecord>>,
}

impl WireLedger {
    /// The next request's counts: it ends where the guard saw it end (or, when its body was
    /// not all read, at what has been read), its response at what has been written.
    fn take(&mut self, read: u64, written: u64) -> Wire {
        let end = loop {
            match self.ends.pop_front() {
                Some(e) if e <= self.logged_in => continue,
                Some(e) => break e,
                None => break read.max(self.logged_in),
            }
        };
        let wire = Wire {
            bytes_in: end - self.logged_in,
            bytes_out: written.saturating_sub(self.logged_out),
        };
        self.logged_in = end;
        self.logged_out = written.max(self.logged_out);
        wire
    }
}

/// One HTTP/2 stream's frames so far, and its record once the request is over.
#[derive(Default)]
struct StreamWire {
    wire: Wire,
    /// Weir sent the stream's last frame (or either side reset it): its counts are final.
    ended: bool,
    record: Option<Box<dyn WireRecord>>,
}

/// Request ends kept for records not yet written (see `read_http`).
const MAX_PENDING_ENDS: usize = 1024;

/// HTTP/2 streams tracked per connection before ended ones without a record are let go (a
/// stream refused or reset before it reached the pipeline has none coming); well above the
/// 128 a client may have open.
const MAX_TRACKED_STREAMS: usize = 1024;

impl Drop for ConnState {
    fn drop(&mut self) {
        match self.protocol.load(Ordering::Relaxed) {
            1 => self.counters.open_http1.fetch_sub(1, Ordering::Relaxed),
            2 => self.counters.open_h2.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

impl ConnState {
    pub(super) fn new(counters: Arc<ListenerCounters>, wire_wanted: bool) -> Self {
        Self {
            protocol: std::sync::atomic::AtomicU8::new(0),
            counters,
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            // The first request head is due from the moment of accept.
            head_started: AtomicU64::new(1),
            multiplexed: AtomicBool::new(false),
            abandoned: AtomicU32::new(0),
            answered: AtomicU32::new(0),
            abusive: tokio::sync::Notify::new(),
            awaiting_client: AtomicUsize::new(0),
            last_sent: AtomicU64::new(1),
            read_total: AtomicU64::new(0),
            written_total: AtomicU64::new(0),
            wire_wanted,
            has_deferred: AtomicBool::new(false),
            wire: std::sync::Mutex::new(WireLedger::default()),
            interim: std::sync::Mutex::new(Vec::new()),
            has_interim: AtomicBool::new(false),
            interim_waker: futures_util::task::AtomicWaker::new(),
            client_window: AtomicU32::new(super::frames::DEFAULT_WINDOW),
            open_streams: AtomicUsize::new(0),
        }
    }

    pub(super) fn set_client_window(&self, window: u32) {
        self.client_window.store(window, Ordering::Relaxed);
    }

    /// The window each new stream of the client starts with.
    pub(super) fn client_window(&self) -> u32 {
        self.client_window.load(Ordering::Relaxed)
    }

    /// The connection task polls the connection: it is the one to wake for interim bytes.
    pub(super) fn watch_interim(&self, cx: &Context<'_>) {
        self.interim_waker.register(cx.waker());
    }

    /// Interim response bytes wait to be written.
    pub(super) fn interim_pending(&self) -> bool {
        self.has_interim.load(Ordering::Acquire)
    }

    /// The interim bytes waiting, to write (or drop) from the front; `has_interim` follows
    /// what is left.
    pub(super) fn with_interim<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let mut pending = self.interim.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut pending);
        self.has_interim
            .store(!pending.is_empty(), Ordering::Release);
        r
    }

    /// HTTP/1.1: a request's last byte was read, and `unread` bytes read after it are
    /// waiting (the next request's), so it ended at what was read minus those.
    pub(super) fn request_end(&self, unread: usize) {
        if self.wire_wanted {
            let end = self
                .read_total
                .load(Ordering::Relaxed)
                .saturating_sub(unread as u64);
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            w.ends.push_back(end);
            let excess = w.ends.len().saturating_sub(MAX_PENDING_ENDS);
            w.ends.drain(..excess);
        }
    }

    /// `n` bytes of HTTP were read from the connection.
    pub(super) fn read_http(&self, n: usize) {
        self.read_total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Bytes written to the connection.
    pub(super) fn wrote(&self, n: usize) {
        self.written_total.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// HTTP/2: a whole frame of a stream was read from the client (`read`) or written to it.
    /// A record waiting for the stream's end is written when Weir's last frame of it is.
    pub(super) fn stream_frame(&self, frame: super::frames::StreamFrame, read: bool) {
        let done = {
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            if w.streams.len() >= MAX_TRACKED_STREAMS && !w.streams.contains_key(&frame.stream) {
                w.streams.retain(|_, s| !s.ended || s.record.is_some());
            }
            let s = w.streams.entry(frame.stream).or_default();
            if read {
                s.wire.bytes_in += frame.bytes;
            } else {
                s.wire.bytes_out += frame.bytes;
            }
            // The client's END_STREAM ends only its half; its reset ends the stream.
            s.ended |= if read { frame.reset } else { frame.ends };
            if s.ended && s.record.is_some() {
                w.streams.remove(&frame.stream)
            } else {
                None
            }
        };
        if let Some(StreamWire {
            wire,
            record: Some(r),
            ..
        }) = done
        {
            r.write(wire);
        }
    }

    /// A response's body ended: an HTTP/1.x record waits for the flush that sends its last
    /// bytes, an HTTP/2 one (`stream`) for its stream's last frame. With the access log off
    /// records are handed back (`Err`) to be written at once.
    pub(crate) fn defer_record(
        &self,
        record: Box<dyn WireRecord>,
        stream: Option<u32>,
    ) -> Result<(), Box<dyn WireRecord>> {
        if !self.wire_wanted {
            return Err(record);
        }
        if let Some(id) = stream {
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            let s = w.streams.entry(id).or_default();
            if !s.ended {
                s.record = Some(record);
                return Ok(());
            }
            let wire = s.wire;
            w.streams.remove(&id);
            drop(w);
            record.write(wire);
            return Ok(());
        }
        if self.multiplexed.load(Ordering::Relaxed) {
            return Err(record);
        }
        let earlier = {
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            // Never two: one left by a response that was not flushed goes first.
            let earlier = w.deferred.take().map(|r| (r, self.take_counts(&mut w)));
            w.deferred = Some(record);
            earlier
        };
        self.has_deferred.store(true, Ordering::Release);
        if let Some((r, wire)) = earlier {
            r.write(wire);
        }
        Ok(())
    }

    /// The connection's HTTP ended (closed, or handed to a tunnel): records still held are
    /// written with what was sent. (A held record holds this state: it must not wait for
    /// the state's drop.)
    pub(super) fn connection_ended(&self) {
        self.write_held();
        let streams = {
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut w.streams)
        };
        for s in streams.into_values() {
            if let Some(r) = s.record {
                r.write(s.wire);
            }
        }
    }

    /// What was written is flushed: a held record is written now.
    pub(super) fn flushed(&self) {
        if self.has_deferred.load(Ordering::Acquire) {
            self.write_held();
        }
    }

    fn write_held(&self) {
        let held = {
            let mut w = self.wire.lock().unwrap_or_else(|p| p.into_inner());
            self.has_deferred.store(false, Ordering::Relaxed);
            w.deferred.take().map(|r| (r, self.take_counts(&mut w)))
        };
        if let Some((r, wire)) = held {
            r.write(wire);
        }
    }

    fn take_counts(&self, w: &mut WireLedger) -> Wire {
        w.take(
            self.read_total.load(Ordering::Relaxed),
            self.written_total.load(Ordering::Relaxed),
        )
    }

    /// A response body now waits for the client to take its next frame.
    pub(crate) fn body_waiting(&self) {
        if self.awaiting_client.fetch_add(1, Ordering::Relaxed) == 0 {
            // The stall clock starts when something first waits.
            self.last_sent.store(self.now_mark(), Ordering::Relaxed);
        }
    }

    /// The client took a frame (hyper asked the body for the next one), or the body ended.
    pub(crate) fn body_taken(&self, progress: bool) {
        let others = self.awaiting_client.fetch_sub(1, Ordering::Relaxed) > 1;
        // Progress matters only to bodies still waiting (one starting to wait sets the mark
        // itself): a lone response, every HTTP/1.1 one, reads no clock here.
        if progress && others {
            self.last_sent.store(self.now_mark(), Ordering::Relaxed);
        }
    }

    fn now_mark(&self) -> u64 {
        u64::try_from(weir_core::clock::elapsed(self.base).as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(super) fn at(&self, mark: u64) -> Instant {
        self.base + Duration::from_millis(mark.saturating_sub(1))
    }

    /// A request head was parsed: the connection is busy until its response ends.
    pub(crate) fn request_started(&self, http2: bool) {
        let proto = if http2 { 2 } else { 1 };
        if self
            .protocol
            .compare_exchange(0, proto, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let open = if http2 {
                &self.counters.open_h2
            } else {
                &self.counters.open_http1
            };
            open.fetch_add(1, Ordering::Relaxed);
        }
        if http2 {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    /// A response finished (`answered`), or the client abandoned the request before one.
    pub(crate) fn request_finished(&self, answered: bool) {
        if answered {
            self.answered.fetch_add(1, Ordering::Relaxed);
        } else {
            let abandoned = self.abandoned.fetch_add(1, Ordering::Relaxed) + 1;
            if abandoned >= ABANDONED_LIMIT && abandoned > 2 * self.answered.load(Ordering::Relaxed)
            {
                self.abusive.notify_one();
            }
        }
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now_mark(), Ordering::Relaxed);
        }
    }

    pub(super) fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
            && !self.multiplexed.load(Ordering::Relaxed)
        {
            self.head_started.store(self.now_mark(), Ordering::Relaxed);
        }
    }
}

/// HTTP/1.1: an interim response becomes a status line and fields, written by the connection
/// ahead of the final response.
impl weir_core::InterimTarget for ConnState {
    fn interim(&self, status: http::StatusCode, fields: &http::HeaderMap) {
        let mut fields = fields.clone();
        crate::headers::strip_hop_by_hop(&mut fields);
        self.with_interim(|out| {
            let size = fields
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 4)
                .sum::<usize>()
                + 40;
            if out.len() + size <= MAX_INTERIM_BYTES {
                super::io::http1_head(out, status, &fields);
            }
        });
        self.interim_waker.wake();
    }
}
