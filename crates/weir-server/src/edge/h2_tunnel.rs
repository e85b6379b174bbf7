//! An HTTP/2 CONNECT stream as a byte stream (RFC 9113 §8.5): once Weir has answered 2xx, the
//! stream's DATA frames carry the tunnel's bytes each way, within the stream's flow-control
//! window. What a forward listener splices to the destination's TCP connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use h2::SendStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use weir_core::body::H2Body;

/// A CONNECT request's stream, in its extensions: the sending half arrives once the 2xx that
/// opens the tunnel has been sent.
#[derive(Clone)]
pub(crate) struct ConnectStream(Arc<Mutex<Option<oneshot::Receiver<SendStream<Bytes>>>>>);

impl ConnectStream {
    pub(super) fn new() -> (Self, oneshot::Sender<SendStream<Bytes>>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(rx)))), tx)
    }

    /// The tunnel, once the answer has opened it; `None` if it never did.
    pub(crate) async fn open(self, recv: H2Body) -> Option<Tunnel> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let send = rx.await.ok()?;
        Some(Tunnel {
            send,
            recv,
            unread: Bytes::new(),
        })
    }
}

/// Both halves of an open CONNECT stream.
pub(crate) struct Tunnel {
    send: SendStream<Bytes>,
    recv: H2Body,
    /// Received and not yet read.
    unread: Bytes,
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.unread = data,
                // The client's END_STREAM (or a reset): the end of what it sends.
                None | Some(Err(_)) => return Poll::Ready(Ok(())),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.send.reserve_capacity(buf.len());
        let room = loop {
            match this.send.capacity() {
                0 => match ready!(this.send.poll_capacity(cx)) {
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                    None => return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
                },
                n => break n,
            }
        };
        let n = room.min(buf.len());
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(std::io::Error::other)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.send.reserve_capacity(0);
        // Already closed or reset: nothing left to end.
        let _ = this.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
