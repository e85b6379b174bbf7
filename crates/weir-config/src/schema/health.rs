//! An upstream's health: active probes, outlier detection (passive) and the circuit breaker.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::upstream::defaults;
use crate::units::Duration;

/// Active and passive health checking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Periodic probes; absent means endpoints are not probed.
    #[serde(default)]
    pub active: Option<ActiveHealth>,
    /// Outlier detection from live traffic.
    #[serde(default)]
    pub passive: PassiveHealth,
}

/// Periodic health probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHealth {
    /// `"http"` (the default) or `"tcp"` (connect only).
    #[serde(default, rename = "type")]
    pub kind: CheckKind,
    /// HTTP method of the probe.
    #[serde(default = "defaults::check_method")]
    pub method: String,
    /// Path (and query) probed.
    #[serde(default = "defaults::check_path")]
    pub path: String,
    /// `Host` header of the probe; default the endpoint's address.
    #[serde(default)]
    pub host: Option<String>,
    /// Statuses that count as healthy: numbers or ranges like `"200-399"`.
    #[serde(default = "defaults::expect_status")]
    pub expect_status: Vec<StatusRange>,
    /// When set, the response body (its first 64 KiB) must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Time between probes of one endpoint.
    #[serde(default = "defaults::check_interval")]
    pub interval: Duration,
    /// Each wait is lengthened by a random amount up to this, so probes do not align.
    #[serde(default = "defaults::check_jitter")]
    pub jitter: Duration,
    /// A probe that takes longer fails.
    #[serde(default = "defaults::check_timeout")]
    pub timeout: Duration,
    /// Consecutive passing probes that bring an unhealthy endpoint back.
    #[serde(default = "defaults::healthy_threshold")]
    pub healthy_threshold: u32,
    /// Consecutive failing probes that take an endpoint out.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// An endpoint that joins while Weir runs (discovery, the admin API) takes traffic only
    /// after its first passing probe; `false`: at once.
    #[serde(default = "yes")]
    pub admit_new_after_check: bool,
}

fn yes() -> bool {
    true
}

/// Kind of active probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// An HTTP/1.1 request.
    #[default]
    Http,
    /// A TCP connect.
    Tcp,
}

/// An inclusive range of status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest status.
    pub from: u16,
    /// Highest status.
    pub to: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.from..=self.to).contains(&status)
    }
}

impl std::str::FromStr for StatusRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid status range `{s}`: expected 200 or \"200-399\"");
        let status = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(bad)
        };
        let (from, to) = match s.split_once('-') {
            Some((a, b)) => (status(a)?, status(b)?),
            None => (status(s)?, status(s)?),
        };
        if from > to {
            return Err(bad());
        }
        Ok(Self { from, to })
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(crate::units::FromStrVisitor::<StatusRange>::new(
            "a status like 200 or a range like \"200-399\"",
        ))
    }
}

/// Outlier detection: endpoints failing live traffic are ejected for a while.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    /// Consecutive 5xx responses that eject an endpoint; `0` disables.
    #[serde(default)]
    pub consecutive_5xx: u32,
    /// Consecutive connect failures, timeouts or resets that eject an endpoint; `0` disables.
    #[serde(default = "defaults::consecutive_failures")]
    pub consecutive_failures: u32,
    /// First ejection's length; each further ejection of the same endpoint is one base longer.
    #[serde(default = "defaults::base_ejection_time")]
    pub base_ejection_time: Duration,
    /// Longest ejection.
    #[serde(default = "defaults::max_ejection_time")]
    pub max_ejection_time: Duration,
    /// At most this percentage of endpoints are ejected at once (at least one may always be).
    #[serde(default = "defaults::max_ejection_percent")]
    pub max_ejection_percent: u8,
}

impl Default for PassiveHealth {
    fn default() -> Self {
        Self {
            consecutive_5xx: 0,
            consecutive_failures: defaults::consecutive_failures(),
            base_ejection_time: defaults::base_ejection_time(),
            max_ejection_time: defaults::max_ejection_time(),
            max_ejection_percent: defaults::max_ejection_percent(),
        }
    }
}

/// Circuit breaker over an upstream's failure rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Percentage of failed requests in `window` that opens the breaker.
    #[serde(default = "defaults::failure_rate")]
    pub failure_rate: u8,
    /// The rolling window the rate is measured over.
    #[serde(default = "defaults::breaker_window")]
    pub window: Duration,
    /// Fewer requests than this in the window never open the breaker.
    #[serde(default = "defaults::min_requests")]
    pub min_requests: u32,
    /// How long the breaker stays open before letting probes through.
    #[serde(default = "defaults::open_for")]
    pub open_for: Duration,
    /// Probe requests let through when half-open; all must succeed to close.
    #[serde(default = "defaults::half_open_requests")]
    pub half_open_requests: u32,
}
