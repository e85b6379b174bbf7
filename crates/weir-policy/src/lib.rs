//! Route policies (DESIGN §1: the request phase): named in `[[policies]]`, applied by routes in
//! order before their action; any policy may answer early (403, 429 …). Each compiled
//! [`Policy`] counts its decisions for `/metrics`.
//!
//! So far: IP rules ([`Policy`] with `ip`) and rate limits ([`ratelimit`], in memory). Identity,
//! the Redis store, idempotency, CORS and header operations build on the same chain.

pub mod ratelimit;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use weir_config::{RateAlgorithm, RateKey};
use weir_core::{ErrorKind, ProxyError, RequestCtx};

use ratelimit::{Algorithm, LocalLimiter, Rate};

/// The `RateLimit-Policy` and `RateLimit` field values of one limit
/// (draft-ietf-httpapi-ratelimit-headers, structured fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitFields {
    /// `"name";q=100;w=10`
    pub policy: HeaderValue,
    /// `"name";r=42;t=7`
    pub state: HeaderValue,
}

/// Why a policy stopped a request.
#[derive(Debug)]
pub struct Denied {
    /// The response to send.
    pub error: ProxyError,
    /// Rate-limit fields to add to it.
    pub fields: Option<RateLimitFields>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    /// Its name.
    pub name: Arc<str>,
    kind: Kind,
    allowed: AtomicU64,
    denied: AtomicU64,
}

#[derive(Debug)]
enum Kind {
    Ip {
        allow: Vec<ipnet::IpNet>,
        deny: Vec<ipnet::IpNet>,
    },
    RateLimit(Box<Limit>),
}

#[derive(Debug)]
struct Limit {
    limiter: LocalLimiter,
    key: RateKey,
    headers: bool,
    quoted_name: String,
    policy_field: HeaderValue,
}

impl Policy {
    /// Compiles a validated policy.
    pub fn compile(cfg: &weir_config::Policy) -> Self {
        let kind = match (&cfg.ip, &cfg.rate_limit) {
            (_, Some(rl)) => {
                let algorithm = match rl.algorithm {
                    RateAlgorithm::TokenBucket => Algorithm::TokenBucket,
                    RateAlgorithm::FixedWindow => Algorithm::FixedWindow,
                    RateAlgorithm::SlidingWindow => Algorithm::SlidingWindow,
                    RateAlgorithm::Gcra => Algorithm::Gcra,
                };
                // Validation guarantees a non-zero limit and period.
                let rate = Rate::new(rl.limit.max(1), rl.period.get()).unwrap_or(Rate {
                    limit: 1,
                    period_ns: 1_000_000_000,
                });
                let burst = rl.burst.unwrap_or(rl.limit).max(1);
                let quoted_name = sf_string(&cfg.name);
                let window = rl.period.get().as_secs().max(1);
                let quota = match algorithm {
                    Algorithm::TokenBucket | Algorithm::Gcra => burst,
                    _ => rl.limit,
                };
                let policy_field =
                    HeaderValue::from_str(&format!("{quoted_name};q={quota};w={window}"))
                        .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
                Kind::RateLimit(Box::new(Limit {
                    limiter: LocalLimiter::new(algorithm, rate, burst, rl.max_keys),
                    key: rl.key.clone(),
                    headers: rl.headers,
                    quoted_name,
                    policy_field,
                }))
            }
            (Some(ip), None) => Kind::Ip {
                allow: ip.allow.iter().map(|c| c.0).collect(),
                deny: ip.deny.iter().map(|c| c.0).collect(),
            },
            // Validation refuses a policy without a kind; let everything through.
            (None, None) => Kind::Ip {
                allow: Vec::new(),
                deny: Vec::new(),
            },
        };
        Self {
            name: Arc::from(cfg.name.as_str()),
            kind,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    /// Decides a request: `Ok` with the rate-limit fields to add to the response (when this
    /// policy adds any), or the early answer.
    pub fn check(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
    ) -> Result<Option<RateLimitFields>, Denied> {
        let result = match &self.kind {
            Kind::Ip { allow, deny } => {
                let ip = ctx.client_ip;
                let refused = deny.iter().any(|n| n.contains(&ip))
                    || (!allow.is_empty() && !allow.iter().any(|n| n.contains(&ip)));
                if refused {
                    Err(Denied {
                        error: ProxyError::new(ErrorKind::IpDenied),
                        fields: None,
                    })
                } else {
                    Ok(None)
                }
            }
            Kind::RateLimit(limit) => limit.check(ctx, headers),
        };
        let counter = if result.is_ok() {
            &self.allowed
        } else {
            &self.denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Requests this policy let through and stopped.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.denied.load(Ordering::Relaxed),
        )
    }

    /// What the policy does, for `weir explain` and the admin API.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Ip { allow, deny } => format!("ip: allow {}, deny {}", list(allow), list(deny)),
            Kind::RateLimit(l) => format!(
                "rate_limit: {} by {}",
                l.policy_field.to_str().unwrap_or(""),
                l.key
            ),
        }
    }
}

fn list(nets: &[ipnet::IpNet]) -> String {
    if nets.is_empty() {
        return "-".to_owned();
    }
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Limit {
    fn check(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
    ) -> Result<Option<RateLimitFields>, Denied> {
        let octets;
        let key: &[u8] = match &self.key {
            RateKey::ClientIp => {
                octets = match ctx.client_ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                    IpAddr::V6(v6) => v6.octets(),
                };
                &octets
            }
            RateKey::Route => b"",
            RateKey::Header(name) => headers.get(name).map_or(&b""[..], HeaderValue::as_bytes),
        };
        let d = self.limiter.check(key, now_ns(ctx.start), 1);
        let fields = (self.headers || !d.allowed).then(|| {
            let reset = d.reset_ns.div_ceil(1_000_000_000);
            let state = format!("{};r={};t={reset}", self.quoted_name, d.remaining);
            RateLimitFields {
                policy: self.policy_field.clone(),
                state: HeaderValue::from_str(&state)
                    .unwrap_or_else(|_| HeaderValue::from_static("\"limit\"")),
            }
        });
        if d.allowed {
            Ok(fields)
        } else {
            Err(Denied {
                error: ProxyError::new(ErrorKind::RateLimited)
                    .retry_after(std::time::Duration::from_nanos(d.retry_after_ns)),
                fields,
            })
        }
    }
}

/// A structured-field string (RFC 8941 §3.3.3): quoted, `"` and `\` escaped, other
/// characters outside printable ASCII dropped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// Nanoseconds since the first request the process saw: the limiters' clock.
fn now_ns(at: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_field_strings_are_escaped() {
        assert_eq!(sf_string("per-ip"), "\"per-ip\"");
        assert_eq!(sf_string("a\"b\\c\u{e9}"), "\"a\\\"b\\\\c\"");
    }
}
