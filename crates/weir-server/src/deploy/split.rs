//! A route's split between upstreams (versions): which one a request goes to — a tester's
//! override first, then a point on a line of a million parts, from a hash of the sticky key
//! (or drawn at random), that falls in one version's range.
//!
//! The ranges are laid out in config order and only their bounds move, so when the shares
//! change a client whose point stays inside its version's range stays there: between two
//! versions, only the share that must move moves.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::request::Parts;
use http::HeaderValue;
use weir_config::HashKey;
use weir_core::Histogram;
use weir_upstream::Upstream;

use super::canary::Plan;

pub(crate) use super::line::PARTS;

/// Mixed into every sticky hash, so a split does not follow a `consistent_hash` balancer's
/// choices on the same key. The same on every route and instance: a client holds the same
/// point everywhere, so routes with the same shares put it on the same version.
const SALT: u64 = 0x5e11_7a5e_d00d_cafe;

/// How a request's version was chosen (the access log's `split` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChosenBy {
    /// A tester's override named it.
    Override,
    /// The sticky key's hash fell in its range.
    Sticky,
    /// Drawn at random by weight.
    Weight,
}

impl ChosenBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChosenBy::Override => "override",
            ChosenBy::Sticky => "sticky",
            ChosenBy::Weight => "weight",
        }
    }
}

/// One request's version.
pub(crate) struct Choice {
    /// Index into the split's targets.
    pub(crate) index: usize,
    pub(crate) by: ChosenBy,
    /// A new sticky cookie to send back (the client had none).
    pub(crate) set_cookie: Option<HeaderValue>,
}

/// What a version has answered on this route, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct VersionStats {
    /// Requests by status class (1xx … 5xx).
    pub(crate) classes: [AtomicU64; 5],
    /// Time from the request's head to the version's response head.
    pub(crate) latency: Histogram,
}

impl VersionStats {
    fn record(&self, status: u16, latency: std::time::Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(latency);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.classes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One version of a split.
pub(crate) struct Target {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: Arc<Upstream>,
    /// Its configured weight.
    pub(crate) weight: u32,
    pub(crate) stats: Arc<VersionStats>,
}

/// A compiled split.
pub(crate) struct Split {
    pub(crate) route: Arc<str>,
    pub(crate) targets: Vec<Target>,
    /// The upper bound of each target's range on the line, in order; the last is `PARTS`.
    bounds: Vec<u32>,
    sticky: Option<HashKey>,
    pin: Option<HashKey>,
    /// The canary plan that sets the shares, when the split has one.
    pub(crate) canary: Option<Arc<Plan>>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split")
            .field("route", &self.route)
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Split {
    pub(crate) fn new(
        route: Arc<str>,
        targets: Vec<Target>,
        sticky: Option<HashKey>,
        pin: Option<HashKey>,
        canary: Option<Arc<Plan>>,
    ) -> Self {
        let weights: Vec<u64> = targets.iter().map(|t| u64::from(t.weight)).collect();
        Self {
            route,
            bounds: bounds_of(&weights),
            targets,
            sticky,
            pin,
            canary,
        }
    }

    /// Each target's share now, in percent.
    pub(crate) fn shares(&self) -> Vec<f64> {
        (0..self.targets.len())
            .map(|i| {
                let (from, to) = self.range(i);
                f64::from(to - from) * 100.0 / f64::from(PARTS)
            })
            .collect()
    }

    /// Target `i`'s range on the line now. A canary plan's share is read per request: the
    /// canary holds the end of the line next to it (the start when it is listed first), so a
    /// client inside its range stays inside as the share grows.
    fn range(&self, i: usize) -> (u32, u32) {
        if let Some(plan) = &self.canary {
            let share = plan.share_ppm().min(PARTS);
            let canary = plan.canary_index();
            return match (i == canary, canary == 0) {
                (true, true) => (0, share),
                (false, true) => (share, PARTS),
                (true, false) => (PARTS - share, PARTS),
                (false, false) => (0, PARTS - share),
            };
        }
        let from = i
            .checked_sub(1)
            .and_then(|p| self.bounds.get(p))
            .copied()
            .unwrap_or(0);
        (from, self.bounds.get(i).copied().unwrap_or(PARTS))
    }

    /// What `weir explain` says of the split: the first line names the versions and their
    /// shares now.
    pub(crate) fn describe(&self) -> Vec<String> {
        let shares: Vec<String> = self
            .targets
            .iter()
            .zip(self.shares())
            .map(|(t, share)| format!("`{}` {share}%", t.name))
            .collect();
        let mut lines = vec![format!("proxy, split: {}", shares.join(", "))];
        lines.push(match &self.sticky {
            Some(key) => format!("sticky by {key}"),
            None => "not sticky: each request is drawn by the shares".to_owned(),
        });
        if let Some(pin) = &self.pin {
            lines.push(format!("override: {pin} naming a version"));
        }
        if let Some(plan) = &self.canary {
            let s = plan.state();
            lines.push(format!(
                "canary `{}` against `{}`: {} at step {}, {}%",
                plan.names[1],
                plan.names[0],
                super::canary::phase_word(s.phase),
                s.step + 1,
                f64::from(plan.share_ppm()) / 10_000.0
            ));
        }
        lines
    }

    /// The version for this request.
    pub(crate) fn choose(&self, parts: &Parts, client_ip: IpAddr) -> Choice {
        if let Some(index) = self.pinned(parts) {
            return Choice {
                index,
                by: ChosenBy::Override,
                set_cookie: None,
            };
        }
        let (point, by, set_cookie) = match &self.sticky {
            None => (fastrand::u32(..PARTS), ChosenBy::Weight, None),
            Some(key) => match weir_upstream::key::hash_of(
                key,
                parts,
                &weir_core::added::NO_FIELDS,
                client_ip,
            ) {
                Some(h) => (point_of(h), ChosenBy::Sticky, None),
                // A new client: Weir draws its point and gives it a cookie that holds it.
                None => match key {
                    HashKey::Cookie(name) => {
                        let id = format!("{:016x}", fastrand::u64(..));
                        let h = weir_upstream::hash::hash_bytes(id.as_bytes());
                        let cookie = HeaderValue::from_str(&format!(
                            "{name}={id}; Path=/; HttpOnly; SameSite=Lax"
                        ))
                        .ok();
                        (point_of(h), ChosenBy::Sticky, cookie)
                    }
                    _ => (fastrand::u32(..PARTS), ChosenBy::Weight, None),
                },
            },
        };
        let index = (0..self.targets.len())
            .find(|i| {
                let (from, to) = self.range(*i);
                from <= point && point < to
            })
            .unwrap_or(self.targets.len().saturating_sub(1));
        Choice {
            index,
            by,
            set_cookie,
        }
    }

    fn pinned(&self, parts: &Parts) -> Option<usize> {
        let value: &[u8] = match self.pin.as_ref()? {
            HashKey::Header(name) => parts.headers.get(name.as_str())?.as_bytes(),
            HashKey::Cookie(name) => {
                weir_upstream::key::cookie(&parts.headers, name.as_str())?.as_bytes()
            }
            HashKey::Query(name) => weir_upstream::key::query_param(parts.uri.query()?, name)?,
            HashKey::ClientIp | HashKey::Path => return None,
        };
        self.targets.iter().position(|t| t.name.as_bytes() == value)
    }

    /// Records what the chosen version answered: its status (or the status of the error Weir
    /// answered for it) and the time to its response head.
    pub(crate) fn record(&self, index: usize, status: u16, latency: std::time::Duration) {
        let Some(t) = self.targets.get(index) else {
            return;
        };
        t.stats.record(status, latency);
        if let Some(plan) = &self.canary {
            plan.observe(index, status, latency);
        }
    }
}

/// A hash's point on the line.
fn point_of(hash: u64) -> u32 {
    (weir_upstream::hash::mix(hash ^ SALT) % u64::from(PARTS)) as u32
}

/// Cumulative bounds on the line for these weights (relative); all-zero weights give the
/// whole line to the last target.
fn bounds_of(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut running = 0u64;
    let mut out: Vec<u32> = weights
        .iter()
        .map(|w| {
            running += w;
            (running * u64::from(PARTS))
                .checked_div(total)
                .map_or(0, |p| p as u32)
        })
        .collect();
    if let Some(last) = out.last_mut() {
        *last = PARTS;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_follow_weights_and_end_at_the_line() {
        assert_eq!(bounds_of(&[95, 5]), vec![950_000, PARTS]);
        assert_eq!(bounds_of(&[1, 1, 2]), vec![250_000, 500_000, PARTS]);
        assert_eq!(bounds_of(&[0, 0]), vec![0, PARTS]);
        assert_eq!(bounds_of(&[3, 0]), vec![PARTS, PARTS]);
    }

    /// Moving 95/5 to 75/25 moves exactly the points in [750,000, 950,000): 20 % of clients,
    /// every one of them from the first version to the second.
    #[test]
    fn changing_shares_moves_only_the_share_that_must_move() {
        let before = bounds_of(&[95, 5]);
        let after = bounds_of(&[75, 25]);
        let side = |b: &[u32], p: u32| b.iter().position(|x| p < *x).unwrap_or(0);
        let mut moved = 0;
        let n = 100_000u64;
        for i in 0..n {
            let p = point_of(weir_upstream::hash::hash_bytes(&i.to_le_bytes()));
            let (a, b) = (side(&before, p), side(&after, p));
            if a != b {
                assert_eq!((a, b), (0, 1), "only v1 → v2 moves");
                moved += 1;
            }
        }
        let share = moved as f64 / n as f64;
        assert!((share - 0.20).abs() < 0.01, "moved {share}");
    }
}
