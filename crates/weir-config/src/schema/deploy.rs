//! Deployments through the front door: a proxy route's `split` between upstreams (versions),
//! with stickiness, tester overrides and a progressive `canary` plan, and a route's `mirror`
//! (shadow traffic).

use serde::{Deserialize, Serialize};

use super::HashKey;
use crate::units::{ByteSize, Duration};

/// One version a split sends a share of the route's requests to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTarget {
    /// The upstream (one version of the service).
    pub upstream: String,
    /// Its share, relative to the other targets' weights (`95` and `5` is 95 % and 5 %). `0`
    /// sends it nothing but requests an override pins to it.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A progressive canary: the split's share of `upstream` rises through `steps` while the
/// canary compares well with the baseline (the split's other upstream), and falls to 0 at once
/// when it does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The split's upstream that is the new version.
    pub upstream: String,
    /// Its share at each step, in percent, rising; reaching 100 promotes it.
    #[serde(default = "default_steps")]
    pub steps: Vec<f64>,
    /// Least time spent at each step before it may advance.
    #[serde(default = "default_step_time")]
    pub step_time: Duration,
    /// Least requests the canary answers at a step before it is judged at all.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The canary's 5xx ratio may exceed the baseline's by at most this (`0.01`: one
    /// percentage point).
    #[serde(default = "default_max_5xx_excess")]
    pub max_5xx_excess: f64,
    /// The canary's p99 latency may be at most this multiple of the baseline's.
    #[serde(default = "default_max_p99_ratio")]
    pub max_p99_ratio: f64,
    /// p99 latencies below this are never judged too slow (a 2 ms canary beside a 1 ms
    /// baseline is not a regression worth a rollback).
    #[serde(default = "default_p99_floor")]
    pub p99_floor: Duration,
    /// Further statuses to compare, e.g. `[{ status = 401, max_excess = 0.05 }]`: the rate of
    /// 401s the canary's policies or app answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<StatusCriterion>,
    /// How often the criteria are checked.
    #[serde(default = "default_check_interval")]
    pub check_interval: Duration,
    /// With `[redis]`, share the plan's state and counts with every instance running the same
    /// plan, so the fleet moves as one (default); `false` keeps it to this instance.
    #[serde(default = "default_shared")]
    pub shared: bool,
}

/// A status whose rate the canary must not raise by more than `max_excess`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCriterion {
    /// The status code.
    pub status: u16,
    /// Largest allowed excess of its rate over the baseline's (`0.05`: five points).
    pub max_excess: f64,
}

fn default_steps() -> Vec<f64> {
    vec![1.0, 5.0, 25.0, 50.0, 100.0]
}
fn default_step_time() -> Duration {
    Duration::from_secs(60)
}
fn default_min_requests() -> u64 {
    100
}
fn default_max_5xx_excess() -> f64 {
    0.01
}
fn default_max_p99_ratio() -> f64 {
    1.5
}
fn default_p99_floor() -> Duration {
    Duration::from_millis(10)
}
fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_shared() -> bool {
    true
}

/// Shadow traffic: a copy of a share of the route's requests goes to another upstream, fire
/// and forget; its answers are discarded and only measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The upstream that receives the copies.
    pub upstream: String,
    /// Share of the route's requests copied, in percent.
    #[serde(default = "default_percent")]
    pub percent: f64,
    /// Largest request body copied; a request with a larger one is not mirrored (counted).
    #[serde(default = "default_mirror_max_body")]
    pub max_body: ByteSize,
    /// Most copies in flight at once; beyond it a copy is dropped (counted).
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: usize,
    /// A copy still unanswered after this is abandoned (counted as a timeout).
    #[serde(default = "default_mirror_timeout")]
    pub timeout: Duration,
}

fn default_percent() -> f64 {
    100.0
}
fn default_mirror_max_body() -> ByteSize {
    ByteSize::kib(64)
}
fn default_mirror_in_flight() -> usize {
    64
}
fn default_mirror_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Where a tester's override is read: `header:NAME` or `cookie:NAME`, its value the name of a
/// split upstream.
pub type OverrideFrom = HashKey;
