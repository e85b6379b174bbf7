//! Rate limiting: four algorithms over one compact per-key state, a sharded, bounded
//! in-memory store of those states, and the same algorithms as Redis scripts for limits
//! shared by many Weir instances.
//!
//! ```
//! use std::time::Duration;
//! use weir_policy::ratelimit::{Algorithm, LocalLimiter, Rate};
//!
//! let rate = Rate::new(10, Duration::from_secs(1)).expect("a rate");
//! let limiter = LocalLimiter::new(Algorithm::Gcra, rate, 10, 1_000);
//! let now = 0;
//! let first = limiter.check(b"client-a", now, 1);
//! assert!(first.allowed);
//! assert_eq!(first.remaining, 9);
//! ```
//!
//! Every algorithm keeps two `u64`s per key, so a key costs the same whatever the algorithm;
//! [`LocalLimiter::BYTES_PER_KEY`] states the figure.

mod algorithm;
mod local;
mod redis;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use weir_config::{OnStoreError, RateAlgorithm, RateKey};
use weir_core::{ErrorKind, ProxyError, RequestCtx};

pub use algorithm::{Algorithm, Decision, Rate, State};
pub use local::LocalLimiter;

use crate::store::RedisStore;
use crate::{CompileError, Early, Events, Hooks, Shared};

/// Events a rate-limit policy counts.
pub(crate) const EVENTS: &[&str] = &["store_error"];

static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// A compiled `rate_limit` policy.
#[derive(Debug)]
pub struct RateLimitPolicy {
    local: LocalLimiter,
    redis: Option<(Arc<RedisStore>, redis::RedisLimiter)>,
    on_store_error: OnStoreError,
    keys: Vec<RateKey>,
    ipv6_prefix: u8,
    headers: bool,
    quoted_name: String,
    policy_field: HeaderValue,
}

impl RateLimitPolicy {
    pub(crate) fn compile(
        name: &str,
        rl: &weir_config::RateLimit,
        shared: &Shared,
    ) -> Result<Self, CompileError> {
        let algorithm = match rl.algorithm {
            RateAlgorithm::TokenBucket => Algorithm::TokenBucket,
            RateAlgorithm::FixedWindow => Algorithm::FixedWindow,
            RateAlgorithm::SlidingWindow => Algorithm::SlidingWindow,
            RateAlgorithm::Gcra => Algorithm::Gcra,
        };
        let rate = Rate::new(rl.limit, rl.period.get())
            .ok_or_else(|| CompileError::new(name, "limit and period must be above zero"))?;
        let burst = rl.burst.unwrap_or(rl.limit).max(1);
        let quoted_name = crate::sf_string(name);
        let window = rl.period.get().as_secs().max(1);
        let quota = match algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra => burst,
            _ => rl.limit,
        };
        let policy_field = HeaderValue::from_str(&format!("{quoted_name};q={quota};w={window}"))
            .map_err(|_| CompileError::new(name, "cannot form the RateLimit-Policy field"))?;
        let redis = shared.store_for(name, rl.store)?.map(|store| {
            let limiter = redis::RedisLimiter::new(&store, name, algorithm, rate, burst);
            (store, limiter)
        });
        Ok(Self {
            local: LocalLimiter::new(algorithm, rate, burst, rl.max_keys),
            redis,
            on_store_error: rl.on_store_error,
            keys: rl.key.0.clone(),
            ipv6_prefix: rl.ipv6_prefix,
            headers: rl.headers,
            quoted_name,
            policy_field,
        })
    }

    pub(crate) async fn check(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
        hooks: &mut Hooks,
        events: &Events,
    ) -> Result<(), Early> {
        let mut key = Vec::with_capacity(32);
        crate::key::build(&self.keys, self.ipv6_prefix, ctx, headers, &mut key);
        let decision = match &self.redis {
            None => self.local.check(&key, now_ns(ctx.start), 1),
            Some((store, limiter)) => match limiter.check(store, &key, 1).await {
                Ok(d) => d,
                Err(e) => match crate::store_failed("rate_limit", self.on_store_error, &e, events)?
                {
                    crate::StoreFallback::Allow => return Ok(()),
                    crate::StoreFallback::Local => self.local.check(&key, now_ns(ctx.start), 1),
                },
            },
        };
        let fields = (self.headers || !decision.allowed).then(|| {
            let reset = decision.reset_ns.div_ceil(1_000_000_000);
            let state = format!("{};r={};t={reset}", self.quoted_name, decision.remaining);
            (
                self.policy_field.clone(),
                HeaderValue::from_str(&state)
                    .unwrap_or_else(|_| HeaderValue::from_static("\"limit\"")),
            )
        });
        if decision.allowed {
            hooks.rate_limit.extend(fields);
            Ok(())
        } else {
            let mut e = ProxyError::new(ErrorKind::RateLimited)
                .retry_after(std::time::Duration::from_nanos(decision.retry_after_ns));
            // Fields of policies earlier in the chain that admitted, then this one's.
            for (p, s) in hooks.rate_limit.drain(..).chain(fields) {
                e = e
                    .with_header(RATELIMIT_POLICY.clone(), p)
                    .with_header(RATELIMIT.clone(), s);
            }
            Err(e.into())
        }
    }

    pub(crate) fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        format!(
            "rate_limit: {} by {}{}",
            self.policy_field.to_str().unwrap_or(""),
            keys.join("+"),
            if self.redis.is_some() { " (redis)" } else { "" }
        )
    }
}

/// Adds the `RateLimit-Policy` / `RateLimit` pairs to a response's headers.
pub fn add_fields(headers: &mut HeaderMap, fields: &[(HeaderValue, HeaderValue)]) {
    for (p, s) in fields {
        headers.append(&RATELIMIT_POLICY, p.clone());
        headers.append(&RATELIMIT, s.clone());
    }
}

/// Nanoseconds since the first request the process saw: the in-memory limiters' clock.
fn now_ns(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

impl crate::kind::Compiles for weir_config::RateLimit {
    type Kind = RateLimitPolicy;
}

impl crate::kind::PolicyKind for RateLimitPolicy {
    type Config = weir_config::RateLimit;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        name: &str,
        cfg: &weir_config::RateLimit,
        _: &weir_config::Config,
        shared: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg, shared)
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, &r.parts.headers, r.hooks, r.events).await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}
