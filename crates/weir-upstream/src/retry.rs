//! Retry policy of one upstream: which failures are retried, backoff with full jitter, and
//! the budget (retries ≤ `percent` of requests in the window, plus a floor per second) that
//! keeps retries from multiplying an outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use weir_config::RetryOn;

use crate::window::RollingCount;

/// The retry policy.
#[derive(Debug)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    /// Retry connect failures.
    pub on_connect: bool,
    /// Retry connections lost before the response head.
    pub on_reset: bool,
    /// Retry per-try timeouts.
    pub on_timeout: bool,
    statuses: Vec<u16>,
    /// Time limit of each try up to the response head.
    pub per_try_timeout: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    /// Bodies up to this size are buffered for replay.
    pub max_body: u64,
    /// Longest upstream `Retry-After` waited.
    pub max_retry_after: Duration,
    budget: RetryBudget,
}

impl RetryPolicy {
    /// The policy from config; `response_header` is the per-try default.
    pub fn new(cfg: &weir_config::Retry, response_header: Duration) -> Self {
        let has = |c: RetryOn| cfg.on.contains(&c);
        Self {
            attempts: cfg.attempts,
            on_connect: has(RetryOn::Connect),
            on_reset: has(RetryOn::Reset),
            on_timeout: has(RetryOn::Timeout),
            statuses: cfg
                .on
                .iter()
                .filter_map(|c| match c {
                    RetryOn::Status(s) => Some(*s),
                    _ => None,
                })
                .collect(),
            per_try_timeout: if cfg.per_try_timeout.is_zero() {
                response_header
            } else {
                cfg.per_try_timeout.get()
            },
            backoff_base: cfg.backoff.base.get(),
            backoff_max: cfg.backoff.max.get(),
            max_body: cfg.max_body.bytes(),
            max_retry_after: cfg.max_retry_after.get(),
            budget: RetryBudget::new(&cfg.budget),
        }
    }

    /// Whether a response with `status` is retried.
    pub fn on_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status.as_u16())
    }

    /// Whether any status is retried.
    pub fn has_statuses(&self) -> bool {
        !self.statuses.is_empty()
    }

    /// The wait before retry number `n` (1-based): uniformly random in
    /// `[0, min(max, base × 2^(n-1))]` ("full jitter").
    pub fn backoff(&self, n: u32) -> Duration {
        let window = self
            .backoff_base
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.backoff_max);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(..=nanos))
    }

    /// The retry budget.
    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }
}

/// Whether `method` may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// A 503's `Retry-After`, as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Retries allowed over a rolling window.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    floor: u64,
    requests: RollingCount,
    retries: RollingCount,
    /// Retries refused by the budget, for metrics.
    pub exhausted: AtomicU64,
    /// Retries made, for metrics.
    pub retried: AtomicU64,
}

impl RetryBudget {
    fn new(cfg: &weir_config::RetryBudget) -> Self {
        let window = cfg.window.get();
        Self {
            percent: u64::from(cfg.percent),
            floor: (u64::from(cfg.min_per_second) * window.as_millis() as u64) / 1000,
            requests: RollingCount::new(window),
            retries: RollingCount::new(window),
            exhausted: AtomicU64::new(0),
            retried: AtomicU64::new(0),
        }
    }

    /// Counts a request (not a retry).
    pub fn request(&self, now_ms: u64) {
        self.requests.add(now_ms, 1);
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let allowed = self.requests.sum(now_ms) * self.percent / 100 + self.floor;
        if self.retries.sum(now_ms) < allowed {
            self.retries.add(now_ms, 1);
            self.retried.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.exhausted.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(&weir_config::Retry::default(), Duration::from_secs(60))
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        for _ in 0..200 {
            assert!(p.backoff(1) <= Duration::from_millis(25));
            assert!(p.backoff(2) <= Duration::from_millis(50));
            assert!(p.backoff(30) <= Duration::from_millis(250));
        }
        // Full jitter: the waits of one step spread over the window rather than sit at its top.
        let waits: Vec<_> = (0..200).map(|_| p.backoff(5)).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_millis(100)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(150)));
    }

    #[test]
    fn budget_is_percent_plus_floor() {
        let b = RetryBudget::new(&weir_config::RetryBudget {
            percent: 20,
            min_per_second: 1,
            window: weir_config::Duration::from_secs(10),
        });
        for _ in 0..100 {
            b.request(1);
        }
        let granted = (0..100).filter(|_| b.try_retry(1)).count();
        assert_eq!(granted, 20 + 10);
        assert_eq!(b.exhausted.load(Ordering::Relaxed), 70);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("3"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
