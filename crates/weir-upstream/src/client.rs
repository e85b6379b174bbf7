//! Sending one request to one endpoint over a pooled connection, and classifying failures into
//! `ProxyError`s.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use weir_core::{BodyStats, ErrorKind, ProxyError, RequestBody, Retry};

use crate::pool::{EndpointPool, PooledConn};
use crate::Endpoint;

/// Sends `req` over `sender` (from `pool.checkout`) and waits, up to `timeout`, for the
/// response head. A request never written because a reused connection had closed is sent once
/// more on a fresh connection.
pub(crate) async fn exchange(
    pool: &Arc<EndpointPool>,
    endpoint: &Endpoint,
    (mut sender, reused): (SendRequest<RequestBody>, bool),
    mut req: Request<RequestBody>,
    body_stats: &BodyStats,
    timeout: Duration,
) -> Result<(Response<Incoming>, PooledConn), ProxyError> {
    // Origin-form request target; `Host` was set by the caller.
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    *req.version_mut() = Version::HTTP_11;

    let exchange = async {
        match sender.try_send_request(req).await {
            Ok(resp) => Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                // Never written: the pooled connection closed under us. Safe to send on a fresh one.
                Some(req) if reused => {
                    let mut fresh = pool.connect(endpoint).await?;
                    match fresh.send_request(req).await {
                        Ok(resp) => Ok((resp, fresh)),
                        Err(e) => Err(classify(e, body_stats, false)),
                    }
                }
                _ => Err(classify(e.into_error(), body_stats, reused)),
            },
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((resp, sender))) => Ok((resp, PooledConn::new(sender, pool.clone()))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::No)),
    }
}

/// Decides what a failed exchange means: whose fault, and whether a retry is safe.
fn classify(e: hyper::Error, body: &BodyStats, reused: bool) -> ProxyError {
    if body.too_large() {
        return ProxyError::new(ErrorKind::BodyTooLarge).with_source(e);
    }
    if body.client_error() {
        return ProxyError::new(ErrorKind::ClientBody).with_source(e);
    }
    let retry = if reused {
        Retry::OnlyIfReused
    } else {
        Retry::No
    };
    let kind = if has_io_kind(&e, std::io::ErrorKind::TimedOut) {
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
