//! Upstream pools: named groups of endpoints, the [`Balancer`] that picks one per request, and
//! the pooled keep-alive HTTP/1.1 client with per-upstream timeouts. Errors come back already
//! classified as [`ProxyError`]s (who is at fault, whether a retry is safe).
//!
//! ```no_run
//! # async fn demo() {
//! let config = weir_config::parse(r#"
//! [[listeners]]
//! name = "main"
//! bind = "127.0.0.1:8080"
//! [[upstreams]]
//! name = "api"
//! endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]
//! "#, "weir.toml").unwrap();
//! let upstream = weir_upstream::Upstream::new(&config.upstreams[0]).unwrap();
//! let (_, endpoint) = upstream.select().unwrap();
//! println!("would send to {}", endpoint.address);
//! # }
//! ```

pub mod balance;
mod client;
mod endpoint;
mod pool;

use std::sync::Arc;

pub use balance::{Balancer, RoundRobin};
pub use endpoint::Endpoint;
pub use pool::PooledConn;
use weir_core::{ErrorKind, ProxyError};

/// Why an upstream could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// An endpoint is not `host:port`.
    #[error("upstream `{upstream}`: invalid endpoint `{endpoint}`")]
    Endpoint {
        /// Upstream name.
        upstream: String,
        /// The endpoint text.
        endpoint: String,
    },
    /// `host_header` is not a valid header value.
    #[error("upstream `{0}`: invalid host_header")]
    HostHeader(String),
}

/// A named pool of endpoints with its balancer, client and timeouts.
pub struct Upstream {
    /// The upstream's name.
    pub name: Arc<str>,
    endpoints: Vec<Endpoint>,
    /// One connection pool per endpoint, same order as `endpoints`.
    pools: Vec<Arc<pool::EndpointPool>>,
    balancer: Box<dyn Balancer>,
    response_header_timeout: std::time::Duration,
    /// Replaces `Host` on forwarded requests when set.
    pub host_header: Option<http::HeaderValue>,
    /// Whole-exchange timeout, if any.
    pub total_timeout: Option<std::time::Duration>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds an upstream from its config.
    pub fn new(cfg: &weir_config::Upstream) -> Result<Self, UpstreamError> {
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                Endpoint::parse(e).ok_or_else(|| UpstreamError::Endpoint {
                    upstream: cfg.name.clone(),
                    endpoint: e.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host_header = cfg
            .host_header
            .as_deref()
            .map(http::HeaderValue::from_str)
            .transpose()
            .map_err(|_| UpstreamError::HostHeader(cfg.name.clone()))?;
        let balancer: Box<dyn Balancer> = match cfg.balance {
            weir_config::Balance::RoundRobin => Box::new(RoundRobin::default()),
        };
        let total = cfg.timeouts.total.get();
        let pools = endpoints
            .iter()
            .map(|_| {
                Arc::new(pool::EndpointPool::new(
                    cfg.max_idle_per_endpoint,
                    cfg.timeouts.connect.get(),
                    cfg.timeouts.idle.get(),
                ))
            })
            .collect();
        Ok(Self {
            name: cfg.name.as_str().into(),
            endpoints,
            pools,
            balancer,
            response_header_timeout: cfg.timeouts.response_header.get(),
            host_header,
            total_timeout: (!total.is_zero()).then_some(total),
        })
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Picks the endpoint for the next request (its index and itself); 503 (`NoEndpoint`) when
    /// there is none.
    pub fn select(&self) -> Result<(usize, &Endpoint), ProxyError> {
        self.balancer
            .pick(&self.endpoints)
            .and_then(|i| self.endpoints.get(i).map(|e| (i, e)))
            .ok_or_else(|| ProxyError::new(ErrorKind::NoEndpoint).retry(weir_core::Retry::No))
    }

    /// Sends `req` (headers already prepared, `Host` set) to endpoint `index` over a pooled
    /// connection and waits, up to the response-header timeout, for the response head. The
    /// returned guard puts the connection back in the pool when dropped: keep it until the
    /// response body has ended.
    pub async fn send(
        &self,
        index: usize,
        req: http::Request<weir_core::RequestBody>,
        body_stats: &weir_core::BodyStats,
    ) -> Result<(http::Response<hyper::body::Incoming>, PooledConn), ProxyError> {
        let (Some(endpoint), Some(pool)) = (self.endpoints.get(index), self.pools.get(index))
        else {
            return Err(ProxyError::new(ErrorKind::NoEndpoint));
        };
        client::send(
            pool,
            endpoint,
            req,
            body_stats,
            self.response_header_timeout,
        )
        .await
    }
}
