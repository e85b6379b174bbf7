//! The pooled keep-alive HTTP/1.1 client of one upstream, and the classification of its
//! failures into `ProxyError`s.

use std::error::Error as StdError;
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use weir_core::{BodyStats, ErrorKind, ProxyError, RequestBody, Retry};

use crate::Endpoint;

/// Largest read buffer of one upstream connection. Bodies larger than this still stream; they
/// just arrive in several reads.
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

pub(crate) struct PooledClient {
    client: Client<HttpConnector, RequestBody>,
    response_header_timeout: Duration,
}

impl PooledClient {
    pub(crate) fn new(cfg: &weir_config::Upstream) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(cfg.timeouts.connect.get()));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(cfg.timeouts.idle.get())
            .pool_max_idle_per_host(cfg.max_idle_per_endpoint)
            // hyper's default lets each pooled connection's read buffer grow to ~400 KB; with
            // hundreds of pooled connections that is most of the process's memory.
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            .build(connector);
        Self {
            client,
            response_header_timeout: cfg.timeouts.response_header.get(),
        }
    }

    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        mut req: Request<RequestBody>,
        body_stats: &BodyStats,
    ) -> Result<Response<Incoming>, ProxyError> {
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(endpoint.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| ProxyError::new(ErrorKind::Internal).with_source(e))?;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.response_header_timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(e, body_stats)),
            Err(_) => Err(ProxyError::new(ErrorKind::UpstreamTimeout).retry(Retry::No)),
        }
    }
}

/// Decides what a client failure means: whose fault, and whether a retry is safe.
fn classify(e: hyper_util::client::legacy::Error, body: &BodyStats) -> ProxyError {
    if body.too_large() {
        return ProxyError::new(ErrorKind::BodyTooLarge).with_source(e);
    }
    if body.client_error() {
        return ProxyError::new(ErrorKind::ClientBody).with_source(e);
    }
    if e.is_connect() {
        let kind = if has_io_kind(&e, std::io::ErrorKind::TimedOut) {
            ErrorKind::UpstreamTimeout
        } else {
            ErrorKind::UpstreamConnect
        };
        // Nothing was sent: any method may be retried elsewhere.
        return ProxyError::new(kind).retry(Retry::Yes).with_source(e);
    }
    ProxyError::new(ErrorKind::UpstreamProtocol)
        .retry(Retry::OnlyIfReused)
        .with_source(e)
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
