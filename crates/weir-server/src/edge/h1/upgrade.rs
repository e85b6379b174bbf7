//! Handing an HTTP/1.1 connection over to a tunnel: a CONNECT or `Upgrade` request carries a
//! [`ClientUpgrade`] in its extensions; once its response opened a tunnel (2xx to CONNECT,
//! 101 to an upgrade) and the response head is written, the connection gives its socket, with
//! any bytes it had read past the request, to whoever holds the handle.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A client connection's stream, whatever it is (TCP, TLS).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// The client's side of a tunnel, once its response is written. (Shared and taken once:
/// request extensions must be `Clone`.)
#[derive(Debug, Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The connection's end: sends the socket when the tunnel opens (dropped when it does not).
pub(super) type Handover = oneshot::Sender<Upgraded>;

pub(super) fn pair() -> (Handover, ClientUpgrade) {
    let (tx, rx) = oneshot::channel();
    (tx, ClientUpgrade(Arc::new(Mutex::new(Some(rx)))))
}

impl ClientUpgrade {
    /// The client's connection, or `None` if the response did not open a tunnel or the
    /// connection ended first.
    pub(crate) async fn connection(self) -> Option<Upgraded> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        rx.await.ok()
    }
}

/// A client connection given over to a tunnel: bytes the client sent after its request head
/// come first.
pub(crate) struct Upgraded {
    read: BytesMut,
    io: Box<dyn Stream>,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("read", &self.read.len())
            .finish()
    }
}

impl Upgraded {
    pub(super) fn new(io: Box<dyn Stream>, read: BytesMut) -> Self {
        Self { read, io }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
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
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
