//! Sending one request to one endpoint over a pooled connection, and classifying failures into
//! `ProxyError`s.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;

use http::header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use weir_core::boxed;
use weir_core::h1_client::{self, Home};
use weir_core::{BodyStats, BoxError, ErrorKind, ProxyError, RequestBody, Retry, UpstreamBody};

use crate::pool::{EndpointPool, Sender};
use crate::Endpoint;

/// What one try sends: an HTTP/1.1 head encoded once for every try and the body, or a
/// request for hyper's HTTP/2 client.
pub(crate) enum Outgoing {
    H1(h1_client::Head, RequestBody),
    H2(Request<RequestBody>),
}

/// Sends `out` over `sender` (from `pool.checkout`) and waits, until `deadline`, for the
/// response head (an elapsed deadline is the caller's [`timed_out`]); interim responses go to
/// `opts.interim`, if any. A request never written because a reused connection had closed is
/// sent once more on a fresh connection. An HTTP/1.1 connection goes back to `pool` when its
/// response has been read, unless it is `single_use` (it announced one client with a PROXY
/// header).
///
/// Not an `async fn`, and the timeout is the future returned: an `async fn` would hold `out`
/// (384 bytes) three times over in every request's future — its argument, the block the
/// timeout wraps, and the value matched — and the timeout twice (architecture.md, "Small
/// request futures").
pub(crate) fn exchange<'a>(
    pool: &'a Arc<EndpointPool>,
    endpoint: &'a Endpoint,
    (sender, reused): (Sender, bool),
    out: Outgoing,
    opts: &'a crate::CallOpts<'a>,
    deadline: tokio::time::Instant,
    single_use: bool,
) -> tokio::time::Timeout<impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + 'a> {
    let body_stats = &opts.body_stats;
    let interim = opts.interim.as_ref();
    let home = move || (!single_use).then(|| pool.clone() as Arc<dyn Home>);
    let exchange = async move {
        match out {
            Outgoing::H1(head, body) => {
                let Sender::H1(conn) = sender else {
                    return Err(ProxyError::new(ErrorKind::Internal));
                };
                // Boxed: the exchange's state (the connection, what is queued to write, the
                // response head being read) would otherwise sit in every request's future.
                let unsent = match boxed::pinned(|| {
                    h1_client::send_head(conn, &head, body, interim, home())
                })
                .await
                {
                    Ok(resp) => return Ok(resp.map(UpstreamBody::Http1)),
                    // Never written: the pooled connection closed under us. Safe to send
                    // on a fresh one.
                    Err(failed) => match failed.unsent {
                        Some(body) if reused => body,
                        _ => return Err(classify(failed.error.into(), body_stats)),
                    },
                };
                Box::pin(resend_h1(
                    pool,
                    endpoint,
                    &head,
                    unsent,
                    interim,
                    home(),
                    body_stats,
                ))
                .await
            }
            Outgoing::H2(req) => {
                let Sender::H2(conn) = sender else {
                    return Err(ProxyError::new(ErrorKind::Internal));
                };
                let req = for_h2(req, pool, endpoint)?;
                // Boxed, as the HTTP/1.1 exchange is: kept out of every request's future.
                let unsent = match boxed::pinned(|| conn.send(req, interim)).await {
                    Ok(resp) => return Ok(resp),
                    // The shared connection had closed: nothing was sent.
                    Err(failed) => match failed.unsent {
                        Some(req) if reused => req,
                        _ => return Err(classify(failed.error, body_stats)),
                    },
                };
                Box::pin(resend_h2(pool, endpoint, unsent, interim, body_stats)).await
            }
        }
    };
    tokio::time::timeout_at(deadline, exchange)
}

/// Sends an HTTP/1.1 request the pooled connection never wrote (it had closed) on a fresh
/// connection. A rare path, boxed by the caller: as a branch of [`exchange`]'s future it made
/// that future (moved twice into every request's) 1.4 KB larger.
async fn resend_h1(
    pool: &Arc<EndpointPool>,
    endpoint: &Endpoint,
    head: &h1_client::Head,
    body: RequestBody,
    interim: Option<&weir_core::InterimSink>,
    home: Option<Arc<dyn Home>>,
    body_stats: &BodyStats,
) -> Result<Response<UpstreamBody>, ProxyError> {
    // Boxed: a connect with its TLS handshake is ~1.6 KB.
    let Sender::H1(fresh) = Box::pin(pool.connect(endpoint)).await? else {
        return Err(ProxyError::new(ErrorKind::Internal));
    };
    Box::pin(h1_client::send_head(fresh, head, body, interim, home))
        .await
        .map(|r| r.map(UpstreamBody::Http1))
        .map_err(|f| classify(f.error.into(), body_stats))
}

/// [`resend_h1`] for an HTTP/2 upstream whose shared connection had closed.
async fn resend_h2(
    pool: &Arc<EndpointPool>,
    endpoint: &Endpoint,
    req: Request<RequestBody>,
    interim: Option<&weir_core::InterimSink>,
    body_stats: &BodyStats,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let Sender::H2(fresh) = Box::pin(pool.connect(endpoint)).await? else {
        return Err(ProxyError::new(ErrorKind::Internal));
    };
    Box::pin(fresh.send(req, interim))
        .await
        .map_err(|f| classify(f.error, body_stats))
}

/// What an exchange whose deadline passed ([`exchange`]) fails with: never retried (the
/// upstream may be working on it).
pub(crate) fn timed_out() -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::No)
}

/// HTTP/2 carries the target as :scheme, :authority and :path; the authority is the Host the
/// caller chose, and Host itself is not sent twice.
fn for_h2(
    mut req: Request<RequestBody>,
    pool: &EndpointPool,
    endpoint: &Endpoint,
) -> Result<Request<RequestBody>, ProxyError> {
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    // Connection-specific fields have no place in HTTP/2 (RFC 9113 §8.2.2); an upgrade asked
    // of an HTTP/2 upstream is simply not made.
    let headers = req.headers_mut();
    for name in [CONNECTION, UPGRADE, TRANSFER_ENCODING] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers.get(TE).is_some_and(|v| v != "trailers") {
        headers.remove(TE);
    }
    let authority = req
        .headers_mut()
        .remove(HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| endpoint.authority.clone());
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(if pool.scheme() == "https" {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    parts.authority = Some(authority);
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|e| ProxyError::new(ErrorKind::BadRequest).with_source(e))?;
    *req.version_mut() = Version::HTTP_2;
    Ok(req)
}

/// Decides what a failed exchange means: whose fault, and whether a retry is safe. The request
/// was written (a request the pool never wrote is re-sent above), so the upstream may have acted
/// on it: a retry is the retry policy's call (`on = ["reset"]`, idempotent methods), never
/// implied here.
fn classify(e: BoxError, body: &BodyStats) -> ProxyError {
    if body.too_large() {
        return ProxyError::new(ErrorKind::BodyTooLarge).with_source(e);
    }
    if body.client_error()
        || matches!(
            e.downcast_ref::<weir_core::h1_client::Error>(),
            Some(weir_core::h1_client::Error::RequestBody(_))
        )
    {
        return ProxyError::new(ErrorKind::ClientBody).with_source(e);
    }
    let retry = Retry::No;
    let kind = if has_io_kind(&*e, std::io::ErrorKind::TimedOut) {
        ErrorKind::UpstreamTimeout
    } else {
        ErrorKind::UpstreamProtocol
    };
    ProxyError::new(kind).retry(retry).with_source(e)
}

fn has_io_kind(e: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == kind {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
    use weir_config::UpstreamProtocol;
    use weir_core::added::AddedFields;

    /// A pooled connection that still looks open (nothing to read) but whose peer is gone:
    /// the first write fails, so nothing of the request was written.
    struct Gone;

    impl tokio::io::AsyncRead for Gone {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl tokio::io::AsyncWrite for Gone {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// An origin on a real socket that answers each connection's first request with `fresh`.
    async fn origin() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    async fn send_on_gone(reused: bool) -> (Result<Response<UpstreamBody>, ProxyError>, usize) {
        let (addr, accepted) = origin().await;
        let endpoint = Endpoint::parse(&addr.to_string()).expect("endpoint");
        let pool = Arc::new(EndpointPool::new(
            UpstreamProtocol::Http1,
            None,
            4,
            Duration::from_secs(5),
            Duration::from_secs(60),
        ));
        let added = AddedFields::new();
        let opts = crate::CallOpts {
            client_ip: addr.ip(),
            retry_non_idempotent: false,
            body_stats: Arc::default(),
            addrs: None,
            interim: None,
            added: &added,
        };
        let (mut parts, ()) = Request::get("/x").body(()).expect("request").into_parts();
        parts
            .headers
            .insert(HOST, http::HeaderValue::from_static("origin"));
        let body = RequestBody::buffered(bytes::Bytes::new(), opts.body_stats.clone());
        let head = h1_client::Head::new(&parts, &added, &body);
        let gone = h1_client::Conn::new(h1_client::Io::Other(Box::new(Gone)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let answer = exchange(
            &pool,
            &endpoint,
            (Sender::H1(gone), reused),
            Outgoing::H1(head, body),
            &opts,
            deadline,
            false,
        )
        .await
        .expect("answered before the deadline");
        (answer, accepted.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The exchange's resend path (`resend_h1`): a request a reused connection never wrote is
    /// sent again on a fresh connection; one on a new connection is not (it failed for real).
    #[tokio::test]
    async fn a_request_a_reused_connection_never_wrote_goes_on_a_fresh_one() {
        let (answer, accepted) = send_on_gone(true).await;
        let resp = answer.expect("the fresh connection's answer");
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"fresh");
        assert_eq!(accepted, 1, "one fresh connection");

        let (answer, accepted) = send_on_gone(false).await;
        assert!(answer.is_err(), "a new connection's failure is not resent");
        assert_eq!(accepted, 0);
    }
}
