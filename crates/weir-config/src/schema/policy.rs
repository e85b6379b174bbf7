//! Named policies (`[[policies]]`) that routes apply in order (`routes[].policies`).

use serde::{Deserialize, Serialize};

use super::Cidr;
use crate::units::Duration;

/// One named policy; exactly one of its kinds is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique name, used by routes, logs and metrics.
    pub name: String,
    /// Allow and deny lists of client addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpRules>,
    /// A rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Client-address rules. A request from a denied address, or — when `allow` is not empty —
/// from an address it does not contain, is answered 403.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpRules {
    /// Addresses allowed (all when empty).
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Addresses refused; wins over `allow`.
    #[serde(default)]
    pub deny: Vec<Cidr>,
}

/// A rate limit: `limit` requests per `period` for each key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// `token_bucket`, `fixed_window`, `sliding_window` or `gcra`.
    #[serde(default)]
    pub algorithm: RateAlgorithm,
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: Duration,
    /// Bucket size for `token_bucket` and `gcra` (default: `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// What is limited: `client_ip` (default), `route`, or `header:NAME`.
    #[serde(default)]
    pub key: RateKey,
    /// Distinct keys tracked at most (idle ones are forgotten first).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Add `RateLimit-Policy` and `RateLimit` fields to admitted responses too (429s always
    /// carry them).
    #[serde(default = "default_true")]
    pub headers: bool,
}

fn default_max_keys() -> usize {
    1_000_000
}

fn default_true() -> bool {
    true
}

/// A rate-limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateAlgorithm {
    /// Continuous refill up to the burst.
    TokenBucket,
    /// Counts per clock-aligned window.
    FixedWindow,
    /// Weighted previous + current window.
    SlidingWindow,
    /// Generic cell rate algorithm (the default).
    #[default]
    Gcra,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateKey {
    /// The client address (after trusted proxies).
    #[default]
    ClientIp,
    /// One counter for the whole route.
    Route,
    /// A request header's value (requests without it share one counter).
    Header(String),
}

impl std::str::FromStr for RateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client_ip" => Ok(Self::ClientIp),
            "route" => Ok(Self::Route),
            _ => match s.strip_prefix("header:") {
                Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                    Ok(Self::Header(h.to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "`{s}` is not a rate-limit key: use client_ip, route or header:NAME"
                )),
            },
        }
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientIp => f.write_str("client_ip"),
            Self::Route => f.write_str("route"),
            Self::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<RateKey>::new(
            "client_ip, route or header:NAME",
        ))
    }
}

crate::units::serialize_as_text!(RateKey);
