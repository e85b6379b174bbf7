//! Where an upstream's endpoint set comes from, and keeping it current while Weir runs.
//!
//! The set is composed from three layers ([`Sources`]): the static `endpoints` of the config,
//! the provider's last good answer (DNS, etcd or a file: one per upstream, [`dns`], [`etcd`],
//! [`file`]), and the admin API's changes (added or reweighted endpoints, removed ones), which
//! last until the next reload. Every change of any layer recomposes the set and applies it
//! as a diff ([`Upstream::apply`]): survivors keep their state, additions slow-start,
//! removals drain.
//!
//! A provider that fails keeps the last good set and counts the failure by reason; an answer
//! that legitimately holds no endpoint empties the provider's layer only after
//! `empty_grace`.

mod dns;
mod etcd;
mod file;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::member::{Diff, Source, Wanted};
use crate::{Endpoint, Upstream};

/// The layers the set is composed from.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    statics: Vec<Wanted>,
    discovered: Vec<Wanted>,
    added: Vec<Wanted>,
    removed: Vec<String>,
}

impl Sources {
    pub(crate) fn new(statics: Vec<Wanted>) -> Self {
        Self {
            statics,
            ..Self::default()
        }
    }

    /// The set these layers make: static and discovered endpoints (less the removed ones, at
    /// the admin API's weight where it set one), then the admin API's additions.
    fn wanted(&self) -> Vec<Wanted> {
        let mut out: Vec<Wanted> = Vec::new();
        for w in self.statics.iter().chain(&self.discovered) {
            if self.removed.contains(&w.address) || out.iter().any(|o| o.address == w.address) {
                continue;
            }
            let weight = self
                .added
                .iter()
                .find(|a| a.address == w.address)
                .map_or(w.weight, |a| a.weight);
            out.push(Wanted {
                weight,
                ..w.clone()
            });
        }
        for a in &self.added {
            if !out.iter().any(|o| o.address == a.address) {
                out.push(a.clone());
            }
        }
        out
    }
}

/// Why a runtime change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// The address is not `HOST:PORT`.
    #[error("`{0}` is not HOST:PORT")]
    Address(String),
    /// The weight is outside 1–1000.
    #[error("weight must be between 1 and 1000, found {0}")]
    Weight(u32),
}

impl Upstream {
    /// Adds an endpoint, or sets the weight of one already in the set (admin API). Lasts until
    /// the next reload. Returns the change applied.
    pub fn add_endpoint(self: &Arc<Self>, address: &str, weight: u32) -> Result<Diff, ChangeError> {
        if !(1..=1000).contains(&weight) {
            return Err(ChangeError::Weight(weight));
        }
        if Endpoint::parse(address).is_none() {
            return Err(ChangeError::Address(address.to_owned()));
        }
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.removed.retain(|r| r != address);
        sources.added.retain(|a| a.address != address);
        sources.added.push(Wanted {
            address: address.to_owned(),
            weight,
            priority: 0,
            source: Source::Admin,
        });
        Ok(self.apply(&sources.wanted()))
    }

    /// Removes the endpoint at `address` from the set (admin API): it drains. Lasts until the
    /// next reload, even if a provider lists it again. False when it is not in the set.
    pub fn remove_endpoint(self: &Arc<Self>, address: &str) -> bool {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if !self
            .set
            .load()
            .members
            .iter()
            .any(|m| &*m.endpoint.address == address)
        {
            return false;
        }
        sources.added.retain(|a| a.address != address);
        sources.removed.push(address.to_owned());
        self.apply(&sources.wanted());
        true
    }

    /// Forgets the admin API's changes (a reload keeps this upstream but not them).
    pub fn reset_runtime_changes(self: &Arc<Self>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.added.is_empty() && sources.removed.is_empty() {
            return;
        }
        sources.added.clear();
        sources.removed.clear();
        self.apply(&sources.wanted());
    }

    /// The provider's new answer.
    fn discovered(self: &Arc<Self>, endpoints: Vec<Wanted>) -> Diff {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.discovered = endpoints;
        self.apply(&sources.wanted())
    }

    /// The provider's endpoints now (its last good answer).
    fn discovered_count(&self) -> usize {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .discovered
            .len()
    }
}

/// A provider's health, for metrics and the admin API.
#[derive(Debug, Clone)]
pub struct DiscoveryStats {
    /// `dns`, `etcd` or `file`.
    pub provider: &'static str,
    /// What it reads: the DNS name, the etcd prefix, the file.
    pub target: String,
    /// Answers taken (each successful lookup, read or watch event batch).
    pub refreshes: u64,
    /// Failures by reason (`timeout`, `nxdomain`, `unreachable`, `unreadable`, `invalid`, …).
    pub failures: BTreeMap<&'static str, u64>,
    /// When the last answer was taken.
    pub last_success: Option<SystemTime>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Endpoints in the provider's last good answer.
    pub endpoints: usize,
    /// An empty answer has lasted since then; the set empties after `empty_grace`.
    pub empty_since: Option<SystemTime>,
}

/// The provider's stats, if the upstream has one.
#[derive(Debug)]
pub(crate) struct Status(Option<Mutex<DiscoveryStats>>);

impl Status {
    pub(crate) fn new(cfg: Option<&weir_config::Discovery>) -> Self {
        Self(cfg.map(|c| {
            Mutex::new(DiscoveryStats {
                provider: c.provider(),
                target: target_of(c),
                refreshes: 0,
                failures: BTreeMap::new(),
                last_success: None,
                last_error: None,
                endpoints: 0,
                empty_since: None,
            })
        }))
    }

    pub(crate) fn snapshot(&self) -> Option<DiscoveryStats> {
        self.0
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn update(&self, f: impl FnOnce(&mut DiscoveryStats)) {
        if let Some(m) = &self.0 {
            f(&mut m.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

fn target_of(c: &weir_config::Discovery) -> String {
    if let Some(d) = &c.dns {
        match (&d.srv, &d.name) {
            (Some(srv), _) => format!("SRV {srv}"),
            (None, Some(name)) => name.clone(),
            (None, None) => String::new(),
        }
    } else if let Some(e) = &c.etcd {
        e.prefix.clone()
    } else if let Some(f) = &c.file {
        f.path.display().to_string()
    } else {
        String::new()
    }
}

/// What a provider hands its answers to: applies them (holding back an empty one for the
/// grace) and keeps the stats.
pub(crate) struct Feed {
    upstream: Weak<Upstream>,
    grace: Duration,
    empty_since: Option<Instant>,
}

impl Feed {
    /// A good answer. Returns when to look again at the latest because an empty answer's
    /// grace ends then.
    pub(crate) fn answer(&mut self, endpoints: Vec<Wanted>) -> Option<Instant> {
        let up = self.upstream.upgrade()?;
        let now = SystemTime::now();
        let mut recheck = None;
        let count = endpoints.len();
        if endpoints.is_empty() && up.discovered_count() > 0 {
            let since = *self.empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() < self.grace {
                recheck = Some(since + self.grace);
                let wall = now - since.elapsed();
                up.discovery.update(|s| {
                    s.refreshes += 1;
                    s.last_success = Some(now);
                    s.empty_since = Some(wall);
                });
                return recheck;
            }
            tracing::warn!(upstream = %up.name, "discovery answered no endpoints for the whole empty_grace; emptying");
        }
        if count > 0 {
            self.empty_since = None;
        }
        let diff = up.discovered(endpoints);
        if diff != Diff::default() {
            tracing::info!(upstream = %up.name, added = diff.added, removed = diff.removed, reweighted = diff.reweighted, "discovery changed the endpoint set");
        }
        up.discovery.update(|s| {
            s.refreshes += 1;
            s.last_success = Some(now);
            s.endpoints = count;
            s.empty_since = None;
        });
        recheck
    }

    /// A failed lookup: the last good set stays.
    pub(crate) fn failure(&self, reason: &'static str, message: String) {
        let Some(up) = self.upstream.upgrade() else {
            return;
        };
        tracing::warn!(upstream = %up.name, reason, error = %message, "discovery failed; keeping the last good endpoints");
        up.discovery.update(|s| {
            *s.failures.entry(reason).or_default() += 1;
            s.last_error = Some(message);
        });
    }

    /// Whether the upstream is still there (a provider stops when it is gone).
    pub(crate) fn alive(&self) -> bool {
        self.upstream.strong_count() > 0
    }
}

/// Runs the upstream's provider until `token` is cancelled.
pub(crate) fn spawn(up: &Arc<Upstream>, cfg: weir_config::Discovery, token: CancellationToken) {
    let feed = Feed {
        upstream: Arc::downgrade(up),
        grace: cfg.empty_grace.get(),
        empty_since: None,
    };
    let name = up.name.clone();
    if let Some(d) = cfg.dns {
        tokio::spawn(dns::run(d, feed, token));
    } else if let Some(e) = cfg.etcd {
        tokio::spawn(etcd::run(e, name, feed, token));
    } else if let Some(f) = cfg.file {
        tokio::spawn(file::run(f, feed, token));
    }
}

/// Sleeps until `at` (or forever when `None`), or returns false when `token` is cancelled.
pub(crate) async fn wait(token: &CancellationToken, at: Option<Instant>) -> bool {
    tokio::select! {
        () = token.cancelled() => false,
        () = sleep_until(at) => true,
    }
}

/// Sleeps until `at`; forever when `None`.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The earlier of two optional instants.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses the `{"address", "weight", "metadata"}` form shared by etcd values and file
/// entries (a bare `"HOST:PORT"` string is allowed too).
pub(crate) fn entry(value: &serde_json::Value, source: Source) -> Result<Wanted, String> {
    let (address, weight) = match value {
        serde_json::Value::String(s) => (s.clone(), 1),
        serde_json::Value::Object(o) => {
            let address = o
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or("missing \"address\"")?
                .to_owned();
            let weight = match o.get("weight") {
                None => 1,
                Some(w) => w
                    .as_u64()
                    .filter(|w| (1..=1000).contains(w))
                    .ok_or("\"weight\" must be a whole number from 1 to 1000")?
                    as u32,
            };
            (address, weight)
        }
        _ => {
            return Err(
                "an endpoint is \"HOST:PORT\" or {\"address\": ..., \"weight\": ...}".into(),
            )
        }
    };
    if Endpoint::parse(&address).is_none() {
        return Err(format!("`{address}` is not HOST:PORT"));
    }
    Ok(Wanted {
        address,
        weight,
        priority: 0,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(address: &str, weight: u32, source: Source) -> Wanted {
        Wanted {
            address: address.into(),
            weight,
            priority: 0,
            source,
        }
    }

    #[test]
    fn layers_compose_static_discovered_then_admin() {
        let mut s = Sources::new(vec![w("10.0.0.1:80", 1, Source::Static)]);
        s.discovered = vec![
            w("10.0.0.2:80", 2, Source::Dns),
            w("10.0.0.1:80", 5, Source::Dns),
        ];
        s.added = vec![
            w("10.0.0.2:80", 7, Source::Admin),
            w("10.0.0.9:80", 1, Source::Admin),
        ];
        s.removed = vec!["10.0.0.1:80".into()];
        let got: Vec<(String, u32, Source)> = s
            .wanted()
            .into_iter()
            .map(|w| (w.address, w.weight, w.source))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.2:80".into(), 7, Source::Dns),
                ("10.0.0.9:80".into(), 1, Source::Admin)
            ]
        );
    }

    #[test]
    fn entries_parse_or_say_why_not() {
        let ok = entry(
            &serde_json::json!({"address": "10.0.0.1:80", "weight": 3, "metadata": {"zone": "a"}}),
            Source::Etcd,
        );
        assert_eq!(ok.map(|w| w.weight), Ok(3));
        assert!(entry(&serde_json::json!("api:80"), Source::File).is_ok());
        assert!(entry(&serde_json::json!({"address": "nope"}), Source::File)
            .expect_err("not an address")
            .contains("HOST:PORT"));
        assert!(entry(
            &serde_json::json!({"address": "a:1", "weight": 0}),
            Source::File
        )
        .is_err());
    }
}
