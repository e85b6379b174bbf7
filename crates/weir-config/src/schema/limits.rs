//! Rate and concurrency limits, and where their shared state lives (`store`, `on_store_error`).

use serde::{Deserialize, Serialize};

use crate::units::Duration;

/// Where a policy keeps its shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process (the default).
    #[default]
    Memory,
    /// In the `[redis]` server, shared by every Weir instance that uses it.
    Redis,
}

/// What a Redis-backed policy does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Let the request through (the default: a limiter outage is no site outage).
    #[default]
    Allow,
    /// Answer 503 `policy_store_unavailable`.
    Deny,
    /// Decide with this instance's in-memory state (rate and concurrency limits).
    Local,
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
    /// What is limited: one of `client_ip` (default), `route`, `consumer`, `header:NAME`,
    /// `claim:NAME`, or a list of them (a composite key).
    #[serde(default)]
    pub key: RateKeys,
    /// IPv6 clients are keyed by this prefix of their address (one /64 is usually one
    /// household or host).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Distinct keys tracked at most in memory (idle ones are forgotten first).
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Add `RateLimit-Policy` and `RateLimit` fields to admitted responses too (429s always
    /// carry them).
    #[serde(default = "default_true")]
    pub headers: bool,
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// With `store = "redis"`: what to do when Redis fails.
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

fn default_max_keys() -> usize {
    1_000_000
}

fn default_ipv6_prefix() -> u8 {
    64
}

pub(super) fn default_true() -> bool {
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

/// What a rate limit (or concurrency limit) counts by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RateKey {
    /// The client address (after trusted proxies; IPv6 by prefix).
    #[default]
    ClientIp,
    /// One counter for the whole route.
    Route,
    /// The consumer an identity policy earlier in the chain recognised.
    Consumer,
    /// A request header's value (requests without it share one counter).
    Header(String),
    /// A claim of the JWT an earlier `jwt` policy verified.
    Claim(String),
}

impl std::str::FromStr for RateKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "client_ip" => Ok(Self::ClientIp),
            "route" => Ok(Self::Route),
            "consumer" => Ok(Self::Consumer),
            _ => {
                if let Some(h) = s.strip_prefix("header:") {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_ok() {
                        return Ok(Self::Header(h.to_ascii_lowercase()));
                    }
                }
                if let Some(c) = s.strip_prefix("claim:") {
                    if !c.is_empty() {
                        return Ok(Self::Claim(c.to_owned()));
                    }
                }
                Err(format!(
                    "`{s}` is not a key: use client_ip, route, consumer, header:NAME or claim:NAME"
                ))
            }
        }
    }
}

impl std::fmt::Display for RateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientIp => f.write_str("client_ip"),
            Self::Route => f.write_str("route"),
            Self::Consumer => f.write_str("consumer"),
            Self::Header(h) => write!(f, "header:{h}"),
            Self::Claim(c) => write!(f, "claim:{c}"),
        }
    }
}

impl<'de> Deserialize<'de> for RateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(crate::units::FromStrVisitor::<RateKey>::new(
            "client_ip, route, consumer, header:NAME or claim:NAME",
        ))
    }
}

crate::units::serialize_as_text!(RateKey);

/// One key or a composite of several (`["consumer", "header:x-tenant"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateKeys(pub Vec<RateKey>);

impl Default for RateKeys {
    fn default() -> Self {
        Self(vec![RateKey::ClientIp])
    }
}

impl std::fmt::Display for RateKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            k.fmt(f)?;
        }
        Ok(())
    }
}

impl Serialize for RateKeys {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let [one] = self.0.as_slice() {
            one.serialize(s)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for RateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RateKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a key (client_ip, route, consumer, header:NAME, claim:NAME) or a list of keys",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RateKeys, E> {
                v.parse().map(|k| RateKeys(vec![k])).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<RateKeys, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = a.next_element::<RateKey>()? {
                    out.push(k);
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom(
                        "a composite key needs at least one part",
                    ));
                }
                Ok(RateKeys(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// At most `limit` requests of one key in flight at once; more are answered 429 at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyLimit {
    /// Requests in flight at once per key.
    pub limit: u64,
    /// What is limited (as for `rate_limit.key`; default `client_ip`).
    #[serde(default)]
    pub key: RateKeys,
    /// As for `rate_limit.ipv6_prefix`.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// `memory` (default: per instance) or `redis` (one count shared by every instance).
    #[serde(default)]
    pub store: StoreKind,
    /// With `store = "redis"`: how long a slot stays taken without word from its instance; a
    /// request in flight renews its slot every third of this, so only a crashed instance's
    /// slots wait this long to come free.
    #[serde(default = "default_lease")]
    pub lease: Duration,
    /// With `store = "redis"`: what to do when Redis fails (`local`: count in this instance).
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}
