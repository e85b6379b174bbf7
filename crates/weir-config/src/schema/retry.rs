//! When and how an upstream's failed requests are tried again: conditions, backoff, budget.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::upstream::defaults;
use crate::units::{ByteSize, Duration};

/// When and how failed requests are tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try; `0` disables.
    #[serde(default = "defaults::retry_attempts")]
    pub attempts: u32,
    /// What is retried: `"connect"` (connect failure or timeout), `"reset"` (connection lost
    /// before a response), `"timeout"` (per-try timeout) and response statuses (`503`).
    #[serde(default = "defaults::retry_on")]
    pub on: Vec<RetryOn>,
    /// Time limit of each try, up to the response head; `"0"` (the default) uses
    /// `timeouts.response_header`.
    #[serde(default)]
    pub per_try_timeout: Duration,
    /// Backoff between tries: full jitter over an exponentially growing window.
    #[serde(default)]
    pub backoff: Backoff,
    /// Retries are bounded by a budget so they cannot multiply an outage.
    #[serde(default)]
    pub budget: RetryBudget,
    /// Request bodies up to this size are buffered so they can be replayed; larger bodies
    /// stream and are retried only on connect failures (never sent).
    #[serde(default = "defaults::retry_max_body")]
    pub max_body: ByteSize,
    /// A 503's `Retry-After` up to this long is waited before the retry; longer ones end the
    /// retries and the 503 is passed on.
    #[serde(default = "defaults::max_retry_after")]
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: defaults::retry_attempts(),
            on: defaults::retry_on(),
            per_try_timeout: Duration::default(),
            backoff: Backoff::default(),
            budget: RetryBudget::default(),
            max_body: defaults::retry_max_body(),
            max_retry_after: defaults::max_retry_after(),
        }
    }
}

/// A retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOn {
    /// Connect failed or timed out (nothing was sent: always safe).
    Connect,
    /// The connection closed or reset before the response head.
    Reset,
    /// The per-try timeout passed before the response head.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

impl std::str::FromStr for RetryOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "connect" => Ok(Self::Connect),
            "reset" => Ok(Self::Reset),
            "timeout" => Ok(Self::Timeout),
            _ => match s.parse::<u16>() {
                Ok(n) if (400..=599).contains(&n) => Ok(Self::Status(n)),
                _ => Err(format!(
                    "invalid retry condition `{s}`: expected \"connect\", \"reset\", \"timeout\" or a status 400-599"
                )),
            },
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(crate::units::FromStrVisitor::<RetryOn>::new(
            "\"connect\", \"reset\", \"timeout\" or a status like 503",
        ))
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// Window of the first retry's wait; it doubles with each retry.
    #[serde(default = "defaults::backoff_base")]
    pub base: Duration,
    /// Largest window.
    #[serde(default = "defaults::backoff_max")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: defaults::backoff_base(),
            max: defaults::backoff_max(),
        }
    }
}

/// Retries allowed: `percent` of the requests in `window`, plus `min_per_second`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries as a percentage of requests.
    #[serde(default = "defaults::budget_percent")]
    pub percent: u32,
    /// Retries always allowed per second, so a quiet upstream can still retry.
    #[serde(default = "defaults::budget_min_per_second")]
    pub min_per_second: u32,
    /// The rolling window requests and retries are counted over.
    #[serde(default = "defaults::budget_window")]
    pub window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            percent: defaults::budget_percent(),
            min_per_second: defaults::budget_min_per_second(),
            window: defaults::budget_window(),
        }
    }
}
