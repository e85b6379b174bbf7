//! An HTTP/1.1 request body fed by the connection that reads it.
//!
//! The connection owns the socket; the body is the pipeline's end of a small shared slot that
//! the connection fills ([`Feed`]) with what it decodes, only while the slot holds less than
//! [`Feed::ROOM`] bytes, so a client sending faster than the upstream takes is held back by TCP,
//! not by memory. Each piece is counted with its bookkeeping ([`PIECE_COST`]), so a body sent
//! as one-byte chunks cannot make the slot hold many times what the client sent. A request
//! without a body has no slot at all.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::BoxError;

/// Where the body is.
#[derive(Debug, Default)]
enum End {
    #[default]
    Open,
    /// All data fed; trailers to give once the data is taken.
    Done(Option<HeaderMap>),
    /// Given out: nothing more.
    Taken,
    /// The connection failed to read the rest.
    Failed(String),
}

#[derive(Debug, Default)]
struct Slot {
    data: VecDeque<Bytes>,
    queued: usize,
    end: End,
    /// Bytes still to come, when the framing says (`Content-Length`).
    remaining: Option<u64>,
    /// The body has been asked for data at least once (what `Expect: 100-continue` waits for).
    wanted: bool,
    dropped: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
}

type Shared = Arc<Mutex<Slot>>;

/// What one queued piece costs beside its bytes (its `Bytes`, its allocation's header, its
/// place in the queue), counted against the slot's room.
pub const PIECE_COST: usize = 64;

fn lock(slot: &Shared) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request body read by the HTTP/1.1 connection (none when the request has no body).
#[derive(Debug, Default)]
pub struct Inbound {
    slot: Option<Shared>,
}

/// The connection's end of an [`Inbound`] body.
#[derive(Debug)]
pub struct Feed {
    slot: Shared,
}

impl Inbound {
    /// A body of `length` bytes when known (else chunked), and the connection's end of it.
    pub fn channel(length: Option<u64>) -> (Self, Feed) {
        let slot = Arc::new(Mutex::new(Slot {
            remaining: length,
            ..Slot::default()
        }));
        (
            Self {
                slot: Some(slot.clone()),
            },
            Feed { slot },
        )
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            let mut s = lock(slot);
            s.dropped = true;
            s.data.clear();
            s.queued = 0;
            if let Some(w) = s.feeder.take() {
                w.wake();
            }
        }
    }
}

impl Body for Inbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(slot) = &self.slot else {
            return Poll::Ready(None);
        };
        let mut s = lock(slot);
        if let Some(data) = s.data.pop_front() {
            let was_full = s.queued >= Feed::ROOM;
            s.queued -= data.len() + PIECE_COST;
            if let Some(r) = s.remaining.as_mut() {
                *r = r.saturating_sub(data.len() as u64);
            }
            if was_full && s.queued < Feed::ROOM {
                if let Some(w) = s.feeder.take() {
                    w.wake();
                }
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match std::mem::replace(&mut s.end, End::Taken) {
            End::Open => {
                s.end = End::Open;
                s.reader = Some(cx.waker().clone());
                if !s.wanted {
                    s.wanted = true;
                    if let Some(w) = s.feeder.take() {
                        w.wake();
                    }
                }
                Poll::Pending
            }
            End::Done(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            End::Done(None) | End::Taken => Poll::Ready(None),
            End::Failed(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.slot.as_ref().is_none_or(|slot| {
            let s = lock(slot);
            s.data.is_empty() && matches!(s.end, End::Done(None) | End::Taken)
        })
    }

    fn size_hint(&self) -> SizeHint {
        match &self.slot {
            None => SizeHint::with_exact(0),
            Some(slot) => match lock(slot).remaining {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

impl Feed {
    /// Bytes the slot holds before the connection stops reading for it.
    pub const ROOM: usize = 64 * 1024;

    /// Whether the body takes more now; if not, the connection is woken when it does. `false`
    /// too once the body was dropped (see [`Feed::is_dropped`]).
    pub fn has_room(&self, cx: &Context<'_>) -> bool {
        let mut s = lock(&self.slot);
        if s.dropped {
            return false;
        }
        if s.queued < Self::ROOM {
            return true;
        }
        s.feeder = Some(cx.waker().clone());
        false
    }

    /// Whether the body was asked for data yet; if not, the connection is woken when it is.
    pub fn is_wanted(&self, cx: &Context<'_>) -> bool {
        let mut s = lock(&self.slot);
        if s.wanted || s.dropped {
            return true;
        }
        s.feeder = Some(cx.waker().clone());
        false
    }

    /// The pipeline let go of the body: what is left of it is the connection's to discard.
    pub fn is_dropped(&self) -> bool {
        lock(&self.slot).dropped
    }

    /// Data read for the body.
    pub fn push(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let mut s = lock(&self.slot);
        if s.dropped {
            return;
        }
        s.queued += data.len() + PIECE_COST;
        s.data.push_back(data);
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    /// The body's last byte was read (and its trailers, if chunked).
    pub fn end(&self, trailers: Option<HeaderMap>) {
        self.close(End::Done(trailers));
    }

    /// The rest of the body cannot be read.
    pub fn fail(&self, why: impl Into<String>) {
        self.close(End::Failed(why.into()));
    }

    fn close(&self, end: End) {
        let mut s = lock(&self.slot);
        if matches!(s.end, End::Open) {
            s.end = end;
        }
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn data_then_trailers_then_the_end() {
        let (mut body, feed) = Inbound::channel(None);
        feed.push(Bytes::from_static(b"ab"));
        feed.push(Bytes::from_static(b"cd"));
        let mut t = HeaderMap::new();
        t.insert("x-t", "1".parse().expect("value"));
        feed.end(Some(t));
        let collected = (&mut body).collect().await.expect("body");
        assert_eq!(collected.trailers().map(|t| t.len()), Some(1));
        assert_eq!(collected.to_bytes(), "abcd");
    }

    #[test]
    fn the_feed_stops_at_its_room_and_resumes_when_taken() {
        let waker = Waker::noop();
        let cx = Context::from_waker(waker);
        let (mut body, feed) = Inbound::channel(Some(2 * Feed::ROOM as u64));
        feed.push(Bytes::from(vec![0u8; Feed::ROOM]));
        assert!(!feed.has_room(&cx));
        let mut cx2 = Context::from_waker(waker);
        assert!(Pin::new(&mut body).poll_frame(&mut cx2).is_ready());
        assert!(feed.has_room(&cx));
        assert_eq!(body.size_hint().exact(), Some(Feed::ROOM as u64));
        drop(body);
        assert!(feed.is_dropped() && !feed.has_room(&cx));
    }

    /// One-byte pieces fill the room after ROOM / (1 + PIECE_COST) of them: what a client
    /// sending tiny chunks makes the slot hold stays near ROOM.
    #[test]
    fn tiny_pieces_are_counted_with_their_cost() {
        let waker = Waker::noop();
        let cx = Context::from_waker(waker);
        let (_body, feed) = Inbound::channel(None);
        let mut pieces = 0;
        while feed.has_room(&cx) {
            feed.push(Bytes::from_static(b"x"));
            pieces += 1;
        }
        assert_eq!(pieces, Feed::ROOM.div_ceil(1 + PIECE_COST));
    }

    #[test]
    fn no_slot_is_an_empty_body() {
        let body = Inbound::default();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
