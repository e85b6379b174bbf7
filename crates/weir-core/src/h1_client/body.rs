//! A response body read straight from its connection, and the connection after a 101.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::decode::{Chunked, Framing, Step};
use super::{Conn, Error, Io, Sending};

/// Where the body is.
#[derive(Debug)]
enum State {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Until the upstream closes.
    Close,
    /// After a 101: no body; the connection is the upgrade's.
    Upgrade,
    Done,
}

/// An upstream response body on an HTTP/1.1 connection. Read to its end on a connection that
/// may carry another request, the connection goes back to its home at once (before the last
/// frame is handed out, so a reader that stops at the known end still returns it); dropped
/// before that, the connection is closed.
pub struct Body {
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    /// The request body, still going up beside the response.
    sending: Option<Box<Sending>>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h1_client::Body")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Body {
    pub(crate) fn new(
        conn: Conn,
        framing: Framing,
        keep_alive: bool,
        sending: Option<Box<Sending>>,
    ) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::Size),
            Framing::Close => State::Close,
            Framing::Upgrade => State::Upgrade,
        };
        let mut body = Self {
            conn: Some(conn),
            state,
            keep_alive,
            sending,
        };
        if matches!(body.state, State::Done) {
            body.release();
        } else if let (State::Chunked(c), Some(conn)) = (&mut body.state, body.conn.as_mut()) {
            if c.settle(&mut conn.read) {
                body.state = State::Done;
                body.release();
            }
        }
        body
    }

    /// After a `101`: the connection, with whatever the upstream already sent on it.
    pub fn into_upgraded(mut self) -> Option<Upgraded> {
        if !matches!(self.state, State::Upgrade) {
            return None;
        }
        let conn = self.conn.take()?;
        let state = *conn.0;
        Some(Upgraded {
            io: state.io,
            prefix: state.read.freeze(),
        })
    }

    /// The body has been read whole: the connection goes home if it may carry another
    /// request, else it is closed.
    fn release(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.keep_alive || self.sending.is_some() || !conn.read.is_empty() {
            return;
        }
        if let Some(home) = conn.home.take() {
            // An idle connection holds no buffer; an unshared one serves the next read.
            crate::h1_wire::give_back(std::mem::take(&mut conn.read), super::HEAD_READ);
            home.take_back(conn);
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(sending) = this.sending.as_mut() {
            match sending.poll_progress(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => this.sending = None,
                // The upstream answered without taking all of the request: the connection
                // is closed after this response.
                Poll::Ready(Err(_)) => {
                    this.keep_alive = false;
                    this.sending = None;
                }
                Poll::Pending => {}
            }
        }
        loop {
            let want = match &mut this.state {
                State::Done | State::Upgrade => {
                    this.state = State::Done;
                    this.release();
                    return Poll::Ready(None);
                }
                State::Length(left) => {
                    if !conn.read.is_empty() {
                        let n = (*left).min(conn.read.len() as u64) as usize;
                        let data = crate::h1_wire::take(&mut conn.read, n);
                        *left -= n as u64;
                        if *left == 0 {
                            this.state = State::Done;
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    (*left).min(super::MAX_HEAD as u64) as usize
                }
                State::Chunked(c) => match c.decode(&mut conn.read) {
                    Err(e) => {
                        this.state = State::Done;
                        this.conn = None;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Ok(Some(Step::Data(data))) => {
                        if c.settle(&mut conn.read) {
                            this.state = State::Done;
                            this.release();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Some(Step::Trailers(t))) => {
                        this.state = State::Done;
                        this.release();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Some(Step::End)) => {
                        this.state = State::Done;
                        continue;
                    }
                    Ok(None) => 16 * 1024,
                },
                State::Close => {
                    if !conn.read.is_empty() {
                        let n = conn.read.len();
                        return Poll::Ready(Some(Ok(Frame::data(crate::h1_wire::take(
                            &mut conn.read,
                            n,
                        )))));
                    }
                    16 * 1024
                }
            };
            match conn.poll_fill(cx, want) {
                Poll::Ready(Ok(0)) => {
                    if matches!(this.state, State::Close) {
                        this.state = State::Done;
                        this.conn = None;
                        return Poll::Ready(None);
                    }
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(Some(Err(Error::Closed)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done | State::Upgrade => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// The connection after a `101 Switching Protocols`: the bytes the upstream sent after the
/// response head first, then the connection itself.
pub struct Upgraded {
    io: Io,
    prefix: Bytes,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
