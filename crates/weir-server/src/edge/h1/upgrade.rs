//! Handing an HTTP/1.1 connection over to a tunnel: a CONNECT or `Upgrade` request carries a
//! [`ClientUpgrade`] in its extensions; once its response opened a tunnel (2xx to CONNECT,
//! 101 to an upgrade) and the response head is written, the connection gives its socket, with
//! any bytes it had read past the request, to whoever holds the handle.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A client connection's stream, whatever it is (TCP, TLS).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// The client's side of a tunnel, once its response is written. (Shared and taken once:
/// request extensions must be `Clone`.)
#[derive(Clone)]
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
pub(crate) type Upgraded = super::super::proxy_protocol::Prefixed<Box<dyn Stream>>;
