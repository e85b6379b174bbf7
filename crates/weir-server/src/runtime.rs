//! The compiled, immutable snapshot a request runs on. Built from a validated config; a later
//! reload builds a new one beside it and swaps it in atomically.

use std::sync::Arc;

use weir_route::{RouteError, Router};
use weir_upstream::{Upstream, UpstreamError};

/// Why a config could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A route failed to compile.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// An upstream failed to build.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A policy failed to compile (a key that does not parse, an unreadable key file …).
    #[error(transparent)]
    Policy(#[from] weir_policy::CompileError),
    /// A cache's disk tier could not be opened.
    #[error("caches `{0}`: disk tier: {1}")]
    CacheDisk(String, std::io::Error),
    /// A route's rewrite regex failed to compile.
    #[error("routes[{0}].rewrite: {1}")]
    Rewrite(usize, regex::Error),
}

/// One compiled route beyond the router's view of it (which matches and names the action),
/// indexed like the router's routes: everything the pipeline applies to a matched request.
#[derive(Debug, Default)]
pub(crate) struct RouteEntry {
    /// Its policy chain, in order.
    pub(crate) policies: Vec<Arc<weir_policy::Policy>>,
    /// The route's own `max_request_body_size` (0 = unlimited).
    pub(crate) max_body: Option<u64>,
    /// The path rewrite of a `proxy` route.
    pub(crate) rewrite: Option<weir_route::Rewrite>,
    /// On-the-fly compression.
    pub(crate) compress: Option<Arc<crate::compress::Compressor>>,
    /// The route's cache.
    pub(crate) cache: Option<Arc<crate::cache::CacheHandle>>,
    /// A `proxy` route's split between versions (and its canary plan).
    pub(crate) split: Option<Arc<crate::deploy::split::Split>>,
    /// Shadow traffic.
    pub(crate) mirror: Option<Arc<crate::deploy::mirror::Mirror>>,
}

/// Request limits, resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// `server.max_request_body_size` in bytes; 0 = unlimited.
    pub(crate) max_body: u64,
    /// `server.max_request_headers`: header fields per request.
    pub(crate) max_headers: usize,
}

/// The compiled config.
#[derive(Debug)]
pub struct Runtime {
    /// One router per listener; a short list scanned by name beats hashing the name per request.
    pub(crate) routers: Vec<(Arc<str>, Router)>,
    pub(crate) upstreams: Vec<Arc<Upstream>>,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Metrics of each route by name, and of requests no route matched.
    /// Looked up once per request by route name: FNV, not SipHash (the keys are the config's).
    pub(crate) route_metrics: fnv::FnvHashMap<Arc<str>, Arc<weir_observe::RouteMetrics>>,
    pub(crate) unmatched_metrics: Arc<weir_observe::RouteMetrics>,
    pub(crate) limits: Limits,
    /// Spans, when `[tracing]` is configured (carried over a reload that leaves it unchanged,
    /// so queued spans and the collector connection survive).
    pub(crate) tracer: Option<Arc<weir_observe::Tracer>>,
    /// Route metrics are recorded (`metrics.enabled`).
    pub(crate) metrics_enabled: bool,
    /// How access-log lines are written.
    pub(crate) log_format: weir_observe::LogFormat,
    /// The headers the access log copies; `None` when it lists none.
    pub(crate) log_headers: Option<weir_observe::headers::HeaderCapture>,
    /// Every policy, by config order (carried over a reload that leaves it unchanged, so
    /// rate-limit state survives).
    pub(crate) policies: Vec<Arc<weir_policy::Policy>>,
    /// Each route's policy chain, by the route's position in the config.

    /// Each route's body limit and rewrite, by the route's position in the config.

    /// Each route, by the router's route index.
    pub(crate) routes: Vec<RouteEntry>,
    /// State policies share (the Redis connection), carried over when `[redis]` is unchanged.
    pub(crate) policy_shared: Arc<weir_policy::Shared>,
    /// Query parameters that carry credentials, redacted wherever the target is recorded.
    pub(crate) redact: weir_core::redact::QueryRedaction,
    /// Listener IP rules, by listener name.
    pub(crate) listener_ip: Vec<(Arc<str>, weir_policy::ip::IpRules)>,
    /// The caches, by config order (each carried over a reload that leaves it unchanged, so
    /// what it stores survives).
    pub(crate) caches: Vec<Arc<crate::cache::CacheHandle>>,
    /// The SHA-256 of the admin API's bearer token (a reload that changes it applies at once:
    /// a rotated token stops working with the swap). Digests are compared, so the comparison
    /// takes the same time whatever the length of the token or of the guess.
    pub(crate) admin_token: Option<[u8; 32]>,
    /// Some listener's ACME certificate is shared by a fleet: HTTP-01 tokens this instance does
    /// not hold are looked up in Redis.
    pub(crate) acme_fleet: bool,
    /// The admin listener's connection cap and request-head timeout, read when it starts.
    pub(crate) admin_limits: crate::admin::auth::AdminLimits,
}

impl Runtime {
    /// Compiles a validated config.
    pub fn compile(config: &weir_config::Config) -> Result<Self, CompileError> {
        Self::compile_carrying(config, None, &weir_observe::MetricsRegistry::default())
    }

    /// Compiles a validated config, carrying over from `previous` (the running runtime and the
    /// config it was built from) every upstream whose settings did not change: the same
    /// `Upstream`, so its connection pools, health, ejections, breaker and counters live on.
    pub(crate) fn compile_carrying(
        config: &weir_config::Config,
        previous: Option<(&Runtime, &weir_config::Config)>,
        metrics: &weir_observe::MetricsRegistry,
    ) -> Result<Self, CompileError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let same = previous.and_then(|(rt, old)| {
                    old.upstreams.iter().find(|o| o.name == u.name && *o == u)?;
                    rt.upstreams.iter().find(|x| *x.name == *u.name).cloned()
                });
                match same {
                    Some(kept) => {
                        // The admin API's endpoint changes last until the next reload.
                        kept.reset_runtime_changes();
                        Ok(kept)
                    }
                    None => Upstream::new(u).map(Arc::new),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = |name: &str| upstreams.iter().position(|u| &*u.name == name);
        let mut routers = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let router = Router::compile(&config.routes, &l.name, index)?;
            routers.push((Arc::from(l.name.as_str()), router));
        }
        let mut route_metrics = fnv::FnvHashMap::default();
        for (_, router) in &routers {
            for r in router.routes() {
                route_metrics
                    .entry(r.name.clone())
                    .or_insert_with(|| metrics.route(&r.name));
            }
        }
        let tracer = config.tracing.as_ref().map(|t| {
            previous
                .filter(|(_, old)| old.tracing.as_ref() == Some(t))
                .and_then(|(rt, _)| rt.tracer.clone())
                .unwrap_or_else(|| Arc::new(weir_observe::Tracer::new(t, metrics.traces.clone())))
        });
        let policy_shared =
            weir_policy::Shared::new(config, previous.map(|(rt, old)| (&*rt.policy_shared, old)));
        // A policy is carried over (with its counters, limiter and idempotency state) when
        // neither it nor what it reads (consumers, the Redis server) changed.
        let policies: Vec<Arc<weir_policy::Policy>> = config
            .policies
            .iter()
            .map(|p| {
                let kept = previous
                    .filter(|(_, old)| {
                        old.policies.iter().any(|o| o == p)
                            && old.consumers == config.consumers
                            && old.redis == config.redis
                    })
                    .and_then(|(rt, _)| rt.policies.iter().find(|x| *x.name == *p.name).cloned());
                match kept {
                    Some(k) => Ok(k),
                    None => weir_policy::Policy::compile(p, config, &policy_shared).map(Arc::new),
                }
            })
            .collect::<Result<_, _>>()?;
        let caches: Vec<Arc<crate::cache::CacheHandle>> = config
            .caches
            .iter()
            .map(|c| {
                previous
                    .filter(|(_, old)| {
                        old.caches.iter().any(|o| o == c)
                            && (!c.fleet_purge || old.redis == config.redis)
                    })
                    .and_then(|(rt, _)| rt.caches.iter().find(|x| *x.name == *c.name).cloned())
                    .map_or_else(
                        || {
                            let running = previous.map_or(&[][..], |(rt, _)| &rt.caches[..]);
                            crate::cache::CacheHandle::compile(
                                c,
                                running,
                                policy_shared.redis.as_ref(),
                            )
                            .map(Arc::new)
                            .map_err(|e| CompileError::CacheDisk(c.name.clone(), e))
                        },
                        Ok,
                    )
            })
            .collect::<Result<_, _>>()?;
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let name: Arc<str> = r
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("route-{i}"))
                    .into();
                let carried = previous
                    .and_then(|(rt, old)| {
                        let j = old.routes.iter().enumerate().position(|(j, o)| {
                            o.name.clone().unwrap_or_else(|| format!("route-{j}")) == *name
                        })?;
                        let same = match (&old.routes[j].proxy, &r.proxy) {
                            (Some(a), Some(b)) => {
                                crate::deploy::same_plan(a, b) && old.redis == config.redis
                            }
                            _ => false,
                        };
                        let entry = rt.routes.get(j);
                        Some(crate::deploy::Carried::from(
                            entry.and_then(|e| e.split.as_deref()),
                            entry.and_then(|e| e.mirror.as_deref()),
                            same,
                        ))
                    })
                    .unwrap_or_default();
                Ok(RouteEntry {
                    split: r.proxy.as_ref().and_then(|p| {
                        crate::deploy::compile_split(
                            &name,
                            p,
                            &upstreams,
                            &carried,
                            policy_shared.redis.as_ref(),
                        )
                    }),
                    mirror: r.mirror.as_ref().and_then(|m| {
                        crate::deploy::compile_mirror(&name, m, &upstreams, &carried)
                    }),
                    policies: r
                        .policies
                        .iter()
                        .filter_map(|name| policies.iter().find(|p| *p.name == **name).cloned())
                        .collect(),
                    max_body: r.max_request_body_size.map(|b| b.bytes()),
                    rewrite: r
                        .rewrite
                        .as_ref()
                        .map(weir_route::Rewrite::compile)
                        .transpose()
                        .map_err(|e| CompileError::Rewrite(i, e))?,
                    compress: r
                        .compress
                        .as_ref()
                        .map(|c| Arc::new(crate::compress::Compressor::compile(c))),
                    cache: r
                        .cache
                        .as_ref()
                        .and_then(|name| caches.iter().find(|c| *c.name == **name).cloned()),
                })
            })
            .collect::<Result<_, CompileError>>()?;
        let listener_ip = config
            .listeners
            .iter()
            .filter_map(|l| {
                let rules = l.ip.as_ref()?;
                Some((
                    Arc::from(l.name.as_str()),
                    weir_policy::ip::IpRules::compile(rules),
                ))
            })
            .collect();
        Ok(Self {
            acme_fleet: config.redis.is_some()
                && config
                    .listeners
                    .iter()
                    .filter_map(|l| l.tls.as_ref()?.acme.as_ref())
                    .any(|a| a.fleet_key.is_some()),
            admin_token: config
                .admin
                .as_ref()
                .and_then(|a| a.token.as_ref())
                .map(|t| crate::admin::auth::token_digest(t.expose().as_bytes())),
            admin_limits: crate::admin::auth::AdminLimits {
                max_connections: config.admin.as_ref().map_or(64, |a| a.max_connections),
                header_read_timeout: config.server.header_read_timeout.get(),
            },
            policies,
            routes,
            policy_shared,
            listener_ip,
            redact: weir_core::redact::QueryRedaction::new(
                config.policies.iter().flat_map(|p| p.query_credentials()),
            ),
            caches,
            tracer,
            metrics_enabled: config.metrics.enabled,
            log_format: weir_observe::LogFormat::from_config(
                &config.access_log.format,
                config.access_log.names,
            ),
            log_headers: weir_observe::headers::HeaderCapture::new(
                &config.access_log.headers,
                config.policies.iter().flat_map(|p| p.header_credentials()),
            ),
            route_metrics,
            unmatched_metrics: metrics.route(""),
            routers,
            upstreams,
            trusted_proxies: config.trusted_proxies.iter().map(|c| c.0).collect(),
            limits: Limits {
                max_body: config.server.max_request_body_size.bytes(),
                max_headers: config.server.max_request_headers,
            },
        })
    }

    /// Starts each upstream's health checks and membership task (they stop when the
    /// runtime, and so the upstream, is dropped).
    pub(crate) fn start_background(&self) {
        for u in &self.upstreams {
            u.start();
        }
        if let Some(t) = &self.tracer {
            t.start();
        }
        for p in &self.policies {
            p.start();
        }
        for plan in self.canary_plans() {
            plan.start();
        }
        for cache in &self.caches {
            if let Some(fleet) = &cache.fleet {
                fleet.start(cache);
            }
        }
    }

    /// Every split route's split.
    pub(crate) fn splits(&self) -> Vec<&crate::deploy::split::Split> {
        self.routes
            .iter()
            .filter_map(|r| r.split.as_deref())
            .collect()
    }

    /// Every route's mirror.
    pub(crate) fn mirrors(&self) -> Vec<&crate::deploy::mirror::Mirror> {
        self.routes
            .iter()
            .filter_map(|r| r.mirror.as_deref())
            .collect()
    }

    /// Every route's canary plan.
    pub(crate) fn canary_plans(
        &self,
    ) -> impl Iterator<Item = &Arc<crate::deploy::canary::Plan>> + '_ {
        self.routes
            .iter()
            .filter_map(|r| r.split.as_ref()?.canary.as_ref())
    }

    /// The upstreams, in config order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The router of a listener.
    pub fn router(&self, listener: &str) -> Option<&Router> {
        self.routers
            .iter()
            .find(|(name, _)| &**name == listener)
            .map(|(_, router)| router)
    }
}
