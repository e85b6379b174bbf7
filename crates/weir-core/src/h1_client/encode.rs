//! Writing a request: its head, framed by Weir (never by the fields the client sent), and its
//! body as `Content-Length` bytes or chunks, queued as buffers for vectored writes.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::Method;
use http_body::{Body as _, Frame};
use tokio::io::AsyncWrite;

use super::{Error, Io};
use crate::RequestBody;

/// Buffers waiting to be written, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Bytes>,
    written: usize,
}

impl Outbox {
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queue.push_back(bytes);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.queue.iter().map(Bytes::len).sum()
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> usize {
        self.written
    }

    /// Writes everything queued, then flushes (TLS keeps records until flushed).
    pub(crate) fn poll_write(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
            super::advance(&mut self.queue, n);
        }
        Pin::new(io).poll_flush(cx)
    }
}

/// How the body is framed on the wire.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length`: this many bytes still to send.
    Length(u64),
    Chunked,
}

/// How a body of this shape is framed.
pub(crate) fn framing_of(body: &RequestBody) -> Framing {
    if body.is_end_stream() {
        Framing::None
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else {
        Framing::Chunked
    }
}

/// The request head as written: request line (origin form), fields, framing.
pub(crate) fn head(parts: &Parts, framing: Framing) -> Bytes {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let fields: usize = parts
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let method = &parts.method;
    let mut buf = BytesMut::with_capacity(method.as_str().len() + target.len() + fields + 64);
    buf.put_slice(method.as_str().as_bytes());
    buf.put_u8(b' ');
    buf.put_slice(target.as_bytes());
    buf.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // The framing is Weir's: what the client declared was checked on the way in and is
        // written again below from the body itself.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        buf.put_slice(name.as_str().as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    match framing {
        Framing::None => {
            // Methods whose requests carry a body say that this one is empty.
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                buf.put_slice(b"content-length: 0\r\n");
            }
        }
        Framing::Length(n) => {
            buf.put_slice(b"content-length: ");
            buf.put_slice(n.to_string().as_bytes());
            buf.put_slice(b"\r\n");
        }
        Framing::Chunked => buf.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.put_slice(b"\r\n");
    buf.freeze()
}

/// Frames body data as it comes.
pub(crate) struct BodyWriter {
    framing: Framing,
    done: bool,
}

impl BodyWriter {
    pub(crate) fn new(framing: Framing) -> Self {
        Self {
            done: matches!(framing, Framing::None | Framing::Length(0)),
            framing,
        }
    }

    /// Everything the framing needs has been queued.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Queues one frame of the body. More bytes than the declared length are refused: written,
    /// they would be read upstream as the start of another request.
    pub(crate) fn queue(&mut self, frame: Frame<Bytes>, out: &mut Outbox) -> Result<(), Error> {
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
            Framing::None => {}
            Framing::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(Error::RequestBody(
                        "request body longer than its declared length".into(),
                    ));
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
        }
        Ok(())
    }

    /// The body ended.
    pub(crate) fn finish(&mut self, out: &mut Outbox) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        match self.framing {
            Framing::Chunked => {
                out.push(Bytes::from_static(b"0\r\n\r\n"));
                Ok(())
            }
            Framing::Length(left) if left > 0 => Err(Error::RequestBody(
                "request body shorter than its declared length".into(),
            )),
            _ => Ok(()),
        }
    }
}
