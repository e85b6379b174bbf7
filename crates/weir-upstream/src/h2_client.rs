//! HTTP/2 to an upstream on the `h2` crate directly, as Weir's HTTP/2 server is: a request's
//! interim responses (103 Early Hints) are read from its stream and relayed, which hyper's
//! client never reported. One connection per endpoint, shared by its requests; a task drives
//! it and PINGs it every 30 s (10 s to answer), so a peer that went silent is noticed. A
//! request body is sent by a task of its own as the stream's window allows, beside the
//! response (gRPC streams both ways at once).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::SendStream;
use http::{Request, Response};
use http_body::Body as _;
use weir_core::body::H2Body;
use weir_core::h1_client::Io;
use weir_core::{BoxError, InterimSink, RequestBody, UpstreamBody};

const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on a shared HTTP/2 connection; clones share it.
#[derive(Clone)]
pub(crate) struct H2Conn {
    send: SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

/// A failed send; `unsent` is the request back when the connection could take no new stream
/// (nothing was sent).
pub(crate) struct H2Failure {
    pub(crate) error: BoxError,
    pub(crate) unsent: Option<Request<RequestBody>>,
}

impl H2Conn {
    /// The HTTP/2 handshake on `io`, and the task that drives the connection.
    pub(crate) async fn handshake(io: Io) -> Result<Self, h2::Error> {
        let (send, conn) = h2::client::Builder::new()
            .enable_push(false)
            // The same flow-control windows and frames as Weir's server side.
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .max_frame_size(16 * 1024)
            // A response head is bounded as an HTTP/1.1 one is.
            .max_header_list_size(weir_core::h1_client::MAX_HEAD as u32)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive(conn, closed.clone()));
        Ok(Self { send, closed })
    }

    /// The connection ended (closed by either side, or its PING went unanswered).
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends `req` (target with scheme and authority) on a new stream and waits for its
    /// response head; interim responses go to `interim`.
    pub(crate) async fn send(
        self,
        req: Request<RequestBody>,
        interim: Option<&InterimSink>,
    ) -> Result<Response<UpstreamBody>, H2Failure> {
        let mut send = match self.send.ready().await {
            Ok(send) => send,
            Err(e) => {
                return Err(H2Failure {
                    error: e.into(),
                    unsent: Some(req),
                })
            }
        };
        let (parts, body) = req.into_parts();
        let end = body.is_end_stream();
        let (mut response, stream) = send
            .send_request(Request::from_parts(parts, ()), end)
            .map_err(|e| H2Failure {
                error: e.into(),
                unsent: None,
            })?;
        if !end {
            tokio::spawn(pump(body, stream));
        }
        let resp = std::future::poll_fn(|cx| {
            if let Some(sink) = interim {
                while let Poll::Ready(Some(Ok(info))) = response.poll_informational(cx) {
                    sink.send(info.status(), info.headers());
                }
            }
            Pin::new(&mut response).poll(cx)
        })
        .await
        .map_err(|e| H2Failure {
            error: e.into(),
            unsent: None,
        })?;
        let (parts, recv) = resp.into_parts();
        let length = weir_core::body::declared_length(&parts.headers);
        Ok(Response::from_parts(
            parts,
            UpstreamBody::Http2(H2Body::new(recv, length)),
        ))
    }
}

/// Drives the connection until it ends, PINGing it; marks it closed then.
async fn drive(conn: h2::client::Connection<Io, Bytes>, closed: Arc<AtomicBool>) {
    let mut conn = conn;
    let pings = conn.ping_pong();
    let keep_alive = async move {
        let Some(mut pings) = pings else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(PING_INTERVAL).await;
            if pings.send_ping(h2::Ping::opaque()).is_err() {
                return;
            }
            let pong = std::future::poll_fn(|cx| pings.poll_pong(cx));
            match tokio::time::timeout(PING_TIMEOUT, pong).await {
                Ok(Ok(_)) => {}
                _ => {
                    tracing::debug!("upstream HTTP/2 connection left a PING unanswered; closing");
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = &mut conn => {}
        () = keep_alive => {}
    }
    closed.store(true, Ordering::Release);
}

/// Sends a request body on its stream as the window allows: DATA, then trailers or the end.
/// A body that fails resets the stream; an upstream that resets it ends the pump.
async fn pump(mut body: RequestBody, mut stream: SendStream<Bytes>) {
    loop {
        let frame = std::future::poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = frame else {
            return;
        };
        match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    while !data.is_empty() {
                        stream.reserve_capacity(data.len());
                        let granted = std::future::poll_fn(|cx| stream.poll_capacity(cx)).await;
                        let n = match granted {
                            Some(Ok(n)) => n,
                            _ => return,
                        };
                        if n == 0 {
                            continue;
                        }
                        let chunk = data.split_to(n.min(data.len()));
                        if stream.send_data(chunk, false).is_err() {
                            return;
                        }
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = stream.send_trailers(trailers);
                    }
                    return;
                }
            },
            Some(Err(_)) => {
                stream.send_reset(h2::Reason::CANCEL);
                return;
            }
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
        }
    }
}
