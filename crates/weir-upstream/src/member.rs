//! The live endpoint set. Each endpoint in it is a [`Member`]: the endpoint with everything
//! that lives as long as it is in the upstream — its state (health, outlier counters, EWMA,
//! in-flight count), probe counters and connection pool. A change of the set (discovery, the
//! admin API) is applied as a diff by address: members that stay are the same `Arc`, so they
//! keep all of that; added ones enter through slow start (and their first passing check when
//! active checks run); removed ones drain — no new requests, while the requests and tunnels
//! that hold them finish, and their idle pooled connections close at once.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use tokio_util::sync::CancellationToken;

use crate::endpoint::{Endpoint, EndpointState};
use crate::health::active::ProbeStats;
use crate::pool::EndpointPool;
use crate::Upstream;

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `endpoints = [...]` in the config file.
    Static,
    /// The upstream's DNS provider.
    Dns,
    /// The upstream's etcd provider.
    Etcd,
    /// The upstream's file provider.
    File,
    /// `POST /upstreams/NAME/endpoints` (until the next reload).
    Admin,
}

impl Source {
    /// The name used in the admin API, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Dns => "dns",
            Source::Etcd => "etcd",
            Source::File => "file",
            Source::Admin => "admin",
        }
    }
}

/// One endpoint of the current set.
pub struct Member {
    /// Where to connect; `endpoint.weight` is the weight it joined with.
    pub endpoint: Endpoint,
    /// Live state shared by balancers, health checks and the proxy.
    pub state: EndpointState,
    /// Where it came from.
    pub source: Source,
    /// The weight now (reweighting keeps the member).
    weight: AtomicU32,
    /// Its priority group now (SRV).
    priority: AtomicU32,
    pub(crate) probe: ProbeStats,
    pub(crate) pool: Arc<EndpointPool>,
    /// Cancelled when the member leaves the set (stops its health prober).
    pub(crate) gone: CancellationToken,
    /// Set (SeqCst) once the set without this member is published: a request that picked it
    /// from the old set sees this after counting itself in flight, and picks again. With the
    /// drain reading `in_flight` after the same publication, no request reaches a removed
    /// endpoint once its drain has been seen to finish.
    left: AtomicBool,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("endpoint", &self.endpoint.address)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Member {
    pub(crate) fn new(
        endpoint: Endpoint,
        source: Source,
        pool: EndpointPool,
        parent: &CancellationToken,
    ) -> Self {
        Self {
            weight: AtomicU32::new(endpoint.weight),
            priority: AtomicU32::new(0),
            endpoint,
            state: EndpointState::default(),
            source,
            probe: ProbeStats::default(),
            pool: Arc::new(pool),
            gone: parent.child_token(),
            left: AtomicBool::new(false),
        }
    }

    /// A member outside any upstream (balancer tests).
    #[cfg(test)]
    pub(crate) fn detached(endpoint: Endpoint) -> Self {
        let template = crate::pool::Template {
            protocol: weir_config::UpstreamProtocol::Http1,
            tls: None,
            max_idle: 1,
            connect_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
        };
        Self::new(
            endpoint,
            Source::Static,
            template.pool(),
            &CancellationToken::new(),
        )
    }

    /// The weight now.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Its priority group (lower is preferred).
    pub fn priority(&self) -> u32 {
        self.priority.load(Ordering::Relaxed)
    }

    /// Whether it has left the set.
    pub fn removed(&self) -> bool {
        self.gone.is_cancelled()
    }

    /// Whether the set it left has been replaced (the check a request makes after counting
    /// itself in flight).
    pub(crate) fn has_left(&self) -> bool {
        self.left.load(Ordering::SeqCst)
    }
}

/// The endpoint set the balancer's view indexes: members in order (static first, in config
/// order; then discovered; then added through the admin API), and a copy of each endpoint
/// at its current weight for the balancers.
#[derive(Debug, Default)]
pub(crate) struct Set {
    pub(crate) members: Vec<Arc<Member>>,
    pub(crate) endpoints: Vec<Endpoint>,
}

impl Set {
    pub(crate) fn new(members: Vec<Arc<Member>>) -> Self {
        let endpoints = members
            .iter()
            .map(|m| Endpoint {
                weight: m.weight(),
                ..m.endpoint.clone()
            })
            .collect();
        Self { members, endpoints }
    }

    /// Position of the member with this endpoint id.
    pub(crate) fn position(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.endpoint.id == id)
    }
}

/// One wanted endpoint: address, weight and source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `HOST:PORT`.
    pub address: String,
    /// Relative share, at least 1.
    pub weight: u32,
    /// Priority group (SRV): only the lowest group with an endpoint in service takes
    /// traffic. 0 for everything but SRV records.
    pub priority: u16,
    /// Where it comes from.
    pub source: Source,
}

/// What changed when a set was applied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Diff {
    /// Endpoints that joined.
    pub added: usize,
    /// Endpoints that left (now draining).
    pub removed: usize,
    /// Endpoints whose weight changed.
    pub reweighted: usize,
}

impl Upstream {
    /// Makes the set exactly `wanted` (first entry wins for an address listed twice), keeping
    /// every member that stays. Entries whose address does not parse are skipped with a
    /// warning. Takes effect before this returns.
    pub(crate) fn apply(self: &Arc<Self>, wanted: &[Wanted]) -> Diff {
        let _one_at_a_time = self.apply_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.set.load_full();
        let mut diff = Diff::default();
        let mut members: Vec<Arc<Member>> = Vec::with_capacity(wanted.len());
        let mut fresh: Vec<Arc<Member>> = Vec::new();
        for w in wanted {
            if members.iter().any(|m| *m.endpoint.address == *w.address) {
                continue;
            }
            if let Some(kept) = old
                .members
                .iter()
                .find(|m| *m.endpoint.address == *w.address)
            {
                let weight = w.weight.max(1);
                let priority = u32::from(w.priority);
                let reweighted = kept.weight.swap(weight, Ordering::Relaxed) != weight;
                let regrouped = kept.priority.swap(priority, Ordering::Relaxed) != priority;
                if reweighted || regrouped {
                    diff.reweighted += 1;
                }
                members.push(kept.clone());
                continue;
            }
            let Some(endpoint) = Endpoint::with_weight(&w.address, w.weight) else {
                tracing::warn!(upstream = %self.name, endpoint = %w.address, source = w.source.as_str(), "skipping an endpoint that is not HOST:PORT");
                continue;
            };
            let member = Arc::new(self.member(endpoint, w.source));
            member
                .priority
                .store(u32::from(w.priority), Ordering::Relaxed);
            // Enters like an endpoint coming back: slow start from the moment it is in
            // service, and with active checks (unless configured otherwise) only after its
            // first passing probe.
            member.state.in_service.store(false, Ordering::Relaxed);
            if self
                .active
                .as_ref()
                .is_some_and(|a| a.admit_new_after_check)
            {
                member.state.active_up.store(false, Ordering::Relaxed);
                member.state.awaiting_check.store(true, Ordering::Release);
            }
            diff.added += 1;
            fresh.push(member.clone());
            members.push(member);
        }
        let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        draining.retain(|w| w.upgrade().is_some_and(|m| m.state.in_flight() > 0));
        let mut left = Vec::new();
        for m in &old.members {
            if !members.iter().any(|k| Arc::ptr_eq(k, m)) {
                left.push(m.clone());
                m.gone.cancel();
                m.pool.close();
                draining.push(Arc::downgrade(m));
                diff.removed += 1;
                tracing::info!(upstream = %self.name, endpoint = %m.endpoint.address, in_flight = m.state.in_flight(), "endpoint removed; draining");
            }
        }
        drop(draining);
        if diff == Diff::default() {
            return diff;
        }
        self.set.store(Arc::new(Set::new(members)));
        // After the new set is published: a request that still picked from the old one counts
        // itself in flight, then sees this and picks again from the new set.
        for m in left {
            m.left.store(true, Ordering::SeqCst);
        }
        self.refresh();
        for m in fresh {
            tracing::info!(upstream = %self.name, endpoint = %m.endpoint.address, source = m.source.as_str(), "endpoint added");
            self.start_probe(&m);
        }
        self.changed();
        diff
    }

    /// A new member with a pool configured like the upstream's others.
    pub(crate) fn member(&self, endpoint: Endpoint, source: Source) -> Member {
        Member::new(
            endpoint,
            source,
            self.pool_template.pool(),
            &self.background,
        )
    }

    /// Removed endpoints still finishing requests.
    pub fn draining(&self) -> Vec<Arc<Member>> {
        let draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        draining
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|m| m.state.in_flight() > 0)
            .collect()
    }

    /// The current members, in set order.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.set.load().members.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(table: &str, n: usize) -> Arc<Upstream> {
        let endpoints: Vec<String> = (0..n).map(|i| format!("\"10.1.0.{}:80\"", i + 1)).collect();
        let toml = format!(
            "[[listeners]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [{}]\nbalance = \"consistent_hash\"\nhash = \"{table}\"\nhash_key = \"path\"\n",
            endpoints.join(", ")
        );
        let config = weir_config::parse(&toml, "t.toml").expect("config");
        Arc::new(Upstream::new(&config.upstreams[0]).expect("upstream"))
    }

    fn owners(u: &Upstream) -> Vec<Arc<str>> {
        (0..10_000u64)
            .filter_map(|k| u.pick(Some(crate::hash::mix(k)), &[], 0))
            .map(|m| m.endpoint.address.clone())
            .collect()
    }

    fn wanted(addresses: &[String]) -> Vec<Wanted> {
        addresses
            .iter()
            .map(|a| Wanted {
                address: a.clone(),
                weight: 1,
                priority: 0,
                source: Source::Dns,
            })
            .collect()
    }

    /// The hash tables' disruption bound holds on real set changes, not only on prepared
    /// views: removing or adding one of N endpoints moves about 1/N of the keys.
    #[test]
    fn a_set_change_moves_about_one_nth_of_the_keys() {
        for table in ["ring", "maglev"] {
            for n in [5usize, 10, 20] {
                let u = upstream(table, n);
                let before = owners(&u);
                let mut addrs: Vec<String> =
                    (0..n).map(|i| format!("10.1.0.{}:80", i + 1)).collect();
                let gone = addrs.remove(n / 2);
                let diff = u.apply(&wanted(&addrs));
                assert_eq!((diff.added, diff.removed), (0, 1));
                let after = owners(&u);
                let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
                let bound = 10_000.0 * (1.0 / n as f64 + 0.05);
                assert!(
                    (moved as f64) <= bound,
                    "{table} n={n}: removing {gone} moved {moved}"
                );
                addrs.push("10.1.9.9:80".into());
                u.apply(&wanted(&addrs));
                let added = owners(&u);
                let moved = after.iter().zip(&added).filter(|(a, b)| a != b).count();
                let bound = 10_000.0 * (1.0 / (n as f64) + 0.05);
                assert!(
                    (moved as f64) <= bound,
                    "{table} n={n}: adding one moved {moved}"
                );
            }
        }
    }

    #[test]
    fn survivors_keep_their_state_and_removed_ones_drain() {
        let u = upstream("ring", 3);
        let kept = u.members()[0].clone();
        kept.state.consecutive_5xx.store(2, Ordering::Relaxed);
        let removed = u.members()[2].clone();
        removed.state.in_flight.store(1, Ordering::Relaxed);
        let diff = u.apply(&wanted(&[
            "10.1.0.1:80".into(),
            "10.1.0.2:80".into(),
            "10.1.0.7:80".into(),
        ]));
        assert_eq!((diff.added, diff.removed), (1, 1));
        assert!(
            Arc::ptr_eq(&u.members()[0], &kept),
            "the same member, state and all"
        );
        assert_eq!(kept.state.consecutive_5xx.load(Ordering::Relaxed), 2);
        assert!(removed.removed());
        assert_eq!(
            u.draining().len(),
            1,
            "draining while a request is in flight"
        );
        removed.state.in_flight.store(0, Ordering::Relaxed);
        assert!(u.draining().is_empty());
        // No active checks and no slow start: the new one is in service at once.
        assert!(u.stats().endpoints[2].in_service);
    }

    /// A member picked from the old set just before a change: once the new set is published
    /// it reads as having left, so the request that picked it picks again rather than reaching
    /// an endpoint whose drain may already have been seen to finish.
    #[test]
    fn a_member_picked_before_its_removal_reads_as_left() {
        let u = upstream("ring", 3);
        let picked = u.members()[2].clone();
        assert!(!picked.has_left());
        u.apply(&wanted(&["10.1.0.1:80".into(), "10.1.0.2:80".into()]));
        assert!(picked.has_left());
        assert!(!u.members()[0].has_left(), "survivors have not left");
        assert!(u.draining().is_empty(), "nothing in flight on it");
    }
}
