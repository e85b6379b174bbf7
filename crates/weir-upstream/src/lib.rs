//! Upstream pools: named groups of weighted endpoints, the [`Balancer`] that picks one per
//! request, health (active probes, outlier detection, panic threshold, slow start), the
//! circuit breaker, the concurrency cap and queue, retries with a budget, sticky sessions, and
//! the pooled keep-alive HTTP/1.1 client. Errors come back already classified as
//! [`ProxyError`]s (who is at fault, whether a retry is safe).
//!
//! ```no_run
//! # async fn demo() {
//! let config = weir_config::parse(r#"
//! [[listeners]]
//! name = "main"
//! bind = "127.0.0.1:8080"
//! [[upstreams]]
//! name = "api"
//! endpoints = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 3 }]
//! balance = "p2c"
//! "#, "weir.toml").unwrap();
//! let upstream = std::sync::Arc::new(weir_upstream::Upstream::new(&config.upstreams[0]).unwrap());
//! upstream.start(); // health checks and the membership task
//! let stats = upstream.stats();
//! println!("{} endpoints in service", stats.endpoints.iter().filter(|e| e.in_service).count());
//! # }
//! ```

mod admission;
pub mod balance;
mod breaker;
mod call;
mod client;
mod clock;
pub mod discovery;
mod endpoint;
mod h2_client;
pub mod hash;
mod health;
pub mod key;
mod member;
pub mod metrics;
mod pool;
mod proxy_protocol;
mod retry;
mod stats;
mod sticky;
mod tls;
mod window;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use admission::ConcurrencyLimit;
pub use balance::{Balancer, Pick, PickCx, View};
pub use breaker::{Admit, BreakerState, CircuitBreaker};
pub use call::{CallInfo, CallOpts, UpstreamGuard};
pub use clock::Clock;
pub use endpoint::{Endpoint, EndpointState};
pub use health::outlier::TryOutcome;
pub use member::{Diff, Member, Source, Wanted};
pub use retry::{RetryBudget, RetryPolicy};
pub use stats::{EndpointStats, UpstreamStats};
pub use sticky::StickyCookies;
pub use weir_core::ProxyError;

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
    /// The upstream's TLS settings could not be used.
    #[error("upstream `{0}`: {1}")]
    Tls(String, String),
    /// No random key for sticky cookies could be made.
    #[error("upstream `{0}`: cannot make a sticky-cookie key: {1}")]
    StickyKey(String, getrandom::Error),
}

/// The balancer prepared over the current view of one endpoint set.
pub(crate) struct Prepared {
    /// The set the view's indices point into.
    pub(crate) set: Arc<member::Set>,
    pub(crate) view: View,
    pub(crate) pick: Box<dyn Pick>,
}

/// Upstream-wide counters, for metrics.
#[derive(Debug, Default)]
pub(crate) struct UpstreamCounters {
    pub(crate) ejections: AtomicU64,
    pub(crate) ejections_skipped: AtomicU64,
    pub(crate) requests: AtomicU64,
}

/// A named pool of endpoints with its balancer, health, resilience policies and client.
pub struct Upstream {
    /// The upstream's name.
    pub name: Arc<str>,
    /// The endpoint set now (the balancer's view may lag it by one refresh).
    pub(crate) set: ArcSwap<member::Set>,
    /// Serialises set changes.
    pub(crate) apply_lock: Mutex<()>,
    /// Members that left the set, until their last request is done.
    pub(crate) draining: Mutex<Vec<Weak<Member>>>,
    /// How each member's connection pool is made.
    pub(crate) pool_template: pool::Template,
    /// What the set is made of: static endpoints, the provider's last good answer, and the
    /// admin API's changes.
    pub(crate) sources: Mutex<discovery::Sources>,
    /// The provider, if the upstream has one.
    pub(crate) provider: Option<weir_config::Discovery>,
    /// The provider's health, for metrics and the admin API.
    pub(crate) discovery: discovery::Status,
    pub(crate) balancer: Box<dyn Balancer>,
    /// The configured algorithm (for `explain` and the admin API).
    pub balance: weir_config::Balance,
    pub(crate) current: ArcSwap<Prepared>,
    pub(crate) refresh_lock: Mutex<()>,
    pub(crate) changed: Arc<Notify>,
    pub(crate) clock: Clock,
    pub(crate) panic_threshold: u8,
    pub(crate) slow_start_ms: u64,
    pub(crate) passive: weir_config::PassiveHealth,
    pub(crate) active: Option<weir_config::ActiveHealth>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) limit: Option<ConcurrencyLimit>,
    pub(crate) retry: RetryPolicy,
    pub(crate) sticky: Option<StickyCookies>,
    /// What `ip_hash` / `consistent_hash` hash; `None` for the other balancers.
    pub(crate) hash_key: Option<weir_config::HashKey>,
    pub(crate) metrics: UpstreamCounters,
    /// Replaces `Host` on forwarded requests when set.
    pub host_header: Option<http::HeaderValue>,
    /// Whole-exchange timeout, if any.
    pub total_timeout: Option<std::time::Duration>,
    /// PROXY protocol header sent on new connections.
    pub(crate) proxy_protocol: Option<weir_config::ProxyProtocolVersion>,
    /// Idle timeout of upgraded connections (WebSocket tunnels).
    pub tunnel_idle: std::time::Duration,
    pub(crate) background: CancellationToken,
    started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("endpoints", &self.set.load().endpoints)
            .finish_non_exhaustive()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.background.cancel();
    }
}

impl Upstream {
    /// Builds an upstream from its config. Call [`Upstream::start`] (inside a tokio runtime)
    /// to run its health checks and membership updates.
    pub fn new(cfg: &weir_config::Upstream) -> Result<Self, UpstreamError> {
        let statics: Vec<Wanted> = cfg
            .endpoints
            .iter()
            .map(|e| Wanted {
                address: e.address.clone(),
                weight: e.weight,
                priority: 0,
                source: Source::Static,
            })
            .collect();
        let endpoints = statics
            .iter()
            .map(|w| {
                Endpoint::with_weight(&w.address, w.weight).ok_or_else(|| UpstreamError::Endpoint {
                    upstream: cfg.name.clone(),
                    endpoint: w.address.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let host_header = cfg
            .host_header
            .as_deref()
            .map(http::HeaderValue::from_str)
            .transpose()
            .map_err(|_| UpstreamError::HostHeader(cfg.name.clone()))?;
        let sticky = cfg
            .sticky
            .as_ref()
            .map(StickyCookies::new)
            .transpose()
            .map_err(|e| UpstreamError::StickyKey(cfg.name.clone(), e))?;
        let balancer = balance::from_config(cfg);
        let total = cfg.timeouts.total.get();
        let tls = cfg
            .tls
            .as_ref()
            .map(|t| tls::connector(&cfg.name, t, cfg.protocol).map(Arc::new))
            .transpose()
            .map_err(|e| UpstreamError::Tls(cfg.name.clone(), e))?;
        let pool_template = pool::Template {
            protocol: cfg.protocol,
            tls,
            max_idle: cfg.max_idle_per_endpoint,
            connect_timeout: cfg.timeouts.connect.get(),
            idle_timeout: cfg.timeouts.idle.get(),
        };
        let background = CancellationToken::new();
        let members = endpoints
            .into_iter()
            .map(|e| {
                Arc::new(Member::new(
                    e,
                    Source::Static,
                    pool_template.pool(),
                    &background,
                ))
            })
            .collect();
        let set = Arc::new(member::Set::new(members));
        let view = View::all(&set.endpoints);
        let pick = balancer.prepare(&view, &set.endpoints);
        let hash_key = match cfg.balance {
            weir_config::Balance::IpHash => Some(weir_config::HashKey::ClientIp),
            weir_config::Balance::ConsistentHash => Some(cfg.hash_key.clone()),
            _ => None,
        };
        Ok(Self {
            name: cfg.name.as_str().into(),
            current: ArcSwap::from_pointee(Prepared {
                set: set.clone(),
                view,
                pick,
            }),
            set: ArcSwap::new(set),
            apply_lock: Mutex::new(()),
            draining: Mutex::new(Vec::new()),
            pool_template,
            sources: Mutex::new(discovery::Sources::new(statics)),
            provider: cfg.discovery.clone(),
            discovery: discovery::Status::new(cfg.discovery.as_ref()),
            balancer,
            balance: cfg.balance,
            refresh_lock: Mutex::new(()),
            changed: Arc::new(Notify::new()),
            clock: Clock::new(),
            panic_threshold: cfg.panic_threshold,
            slow_start_ms: clock::ms(cfg.slow_start.get()),
            passive: cfg.health.passive.clone(),
            active: cfg.health.active.clone(),
            breaker: cfg.circuit_breaker.as_ref().map(CircuitBreaker::new),
            limit: (cfg.max_in_flight > 0)
                .then(|| ConcurrencyLimit::new(cfg.max_in_flight, &cfg.queue)),
            retry: RetryPolicy::new(&cfg.retry, cfg.timeouts.response_header.get()),
            sticky,
            hash_key,
            metrics: UpstreamCounters::default(),
            host_header,
            total_timeout: (!total.is_zero()).then_some(total),
            tunnel_idle: cfg.timeouts.tunnel_idle.get(),
            proxy_protocol: cfg.proxy_protocol,
            background,
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts the background tasks: one health prober per endpoint (when active checks are
    /// configured) and the task that rebuilds the balancer's view when health changes. They
    /// stop when the upstream is dropped. Must run inside a tokio runtime.
    pub fn start(self: &Arc<Self>) {
        // Once: an upstream carried over by a reload keeps its tasks.
        if self.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let token = self.background.clone();
        tokio::spawn(health::maintain(Arc::downgrade(self), token.clone()));
        for m in self.set.load().members.iter() {
            self.start_probe(m);
        }
        if let Some(provider) = &self.provider {
            discovery::spawn(self, provider.clone(), token);
        }
    }

    /// Starts the active health prober of `member` (once started, when checks are on).
    pub(crate) fn start_probe(self: &Arc<Self>, member: &Arc<Member>) {
        if !self.started.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if let Some(cfg) = &self.active {
            tokio::spawn(health::active::run(
                Arc::downgrade(self),
                member.clone(),
                cfg.clone(),
            ));
        }
    }

    /// The endpoints now, in set order (each at its current weight).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.set.load().endpoints.clone()
    }

    /// The circuit breaker, if configured.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.breaker.as_ref()
    }

    /// The upstream's clock (ms since it was built).
    pub fn clock(&self) -> Clock {
        self.clock
    }
}
