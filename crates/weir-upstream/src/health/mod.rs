//! Health: who is in service. Active probes ([`active`]) and outlier detection from live
//! traffic ([`outlier`]) write each endpoint's state; [`Upstream::refresh`] turns those states
//! into a new balancer view — applying the panic threshold and slow start — and a background
//! task runs it whenever something changed or an ejection or ramp step is due.

pub(crate) mod active;
pub(crate) mod outlier;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio_util::sync::CancellationToken;

use crate::balance::{View, WEIGHT_SCALE};
use crate::{Prepared, Upstream};

/// Smallest share of its weight a slow-starting endpoint gets (Envoy's default 10%).
const SLOW_START_FLOOR: f64 = 0.1;

impl Upstream {
    /// Rebuilds the view from endpoint states and swaps in a freshly prepared balancer.
    /// Returns when the next refresh is due (an ejection ending, a slow-start step), if ever.
    pub(crate) fn refresh(&self) -> Option<u64> {
        let _one_at_a_time = self.refresh_lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        let set = self.set.load_full();
        let n = set.members.len();
        let drained: Vec<bool> = set
            .members
            .iter()
            .map(|m| m.state.drained.load(Ordering::Acquire))
            .collect();
        let waiting: Vec<bool> = set
            .members
            .iter()
            .map(|m| m.state.awaiting_first_check())
            .collect();
        let mut healthy: Vec<bool> = set
            .members
            .iter()
            .zip(&drained)
            .map(|(m, d)| !d && m.state.active_up.load(Ordering::Acquire) && !m.state.ejected(now))
            .collect();
        // SRV priority groups (RFC 2782): only the lowest group with a healthy endpoint takes
        // traffic; with none healthy anywhere, the lowest group that has endpoints at all.
        let priority = |i: usize| set.members[i].priority();
        let lowest = |ok: &dyn Fn(usize) -> bool| (0..n).filter(|&i| ok(i)).map(priority).min();
        let group = lowest(&|i| healthy[i]).or_else(|| lowest(&|i| !drained[i] && !waiting[i]));
        let in_group = |i: usize| group.is_none_or(|g| priority(i) == g);
        for (i, h) in healthy.iter_mut().enumerate() {
            *h = *h && in_group(i);
        }
        // Drained endpoints are out by an operator's choice: they do not count toward the
        // panic threshold and stay out in panic mode. Endpoints that joined but have not
        // passed their first check yet are not counted either: they were never in service.
        let available = (0..n)
            .filter(|&i| !drained[i] && !waiting[i] && in_group(i))
            .count();
        let count = healthy.iter().filter(|h| **h).count();
        let panic = available > 0 && count * 100 < usize::from(self.panic_threshold) * available;
        let in_service: Vec<bool> = if panic {
            (0..n)
                .map(|i| !drained[i] && !waiting[i] && in_group(i))
                .collect()
        } else {
            healthy
        };

        let mut next: Option<u64> = None;
        let mut due = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        let mut view = View {
            members: Vec::with_capacity(n),
            weights: Vec::with_capacity(n),
            in_service: in_service.clone(),
            panic,
        };
        for (i, (member, endpoint)) in set.members.iter().zip(&set.endpoints).enumerate() {
            let state = &member.state;
            let until = state.ejected_until.load(Ordering::Acquire);
            if until > now {
                due(until);
            }
            let was = state.in_service.swap(in_service[i], Ordering::AcqRel);
            if !in_service[i] {
                continue;
            }
            if !was {
                state.up_since.store(now.max(1), Ordering::Release);
            }
            let mut weight = endpoint.weight * WEIGHT_SCALE;
            let since = state.up_since.load(Ordering::Acquire);
            if self.slow_start_ms > 0 && since > 0 && now - since < self.slow_start_ms {
                let ramp = ((now - since) as f64 / self.slow_start_ms as f64).max(SLOW_START_FLOOR);
                weight = ((f64::from(weight) * ramp) as u32).max(1);
                due(now + (self.slow_start_ms / 10).max(100));
            }
            view.members.push(i);
            view.weights.push(weight);
        }
        let pick = self.balancer.prepare(&view, &set.endpoints);
        self.current.store(Arc::new(Prepared { set, view, pick }));
        next
    }

    /// Drains (no new requests; in-flight ones finish) or re-enables the endpoint at
    /// `address`; false when there is none. Takes effect before this returns.
    pub fn set_drained(&self, address: &str, drained: bool) -> bool {
        let set = self.set.load();
        let Some(m) = set.members.iter().find(|m| &*m.endpoint.address == address) else {
            return false;
        };
        m.state.drained.store(drained, Ordering::Release);
        drop(set);
        self.refresh();
        self.changed();
        true
    }

    /// Asks the background task to refresh now.
    pub(crate) fn changed(&self) {
        self.changed.notify_one();
    }
}

/// Keeps the view current until `token` is cancelled or the upstream is gone.
pub(crate) async fn maintain(upstream: Weak<Upstream>, token: CancellationToken) {
    let sweep_every = match upstream.upgrade() {
        Some(up) => sweep_interval(up.pool_template.idle_timeout),
        None => return,
    };
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (next, changed, clock) = {
            let Some(up) = upstream.upgrade() else { return };
            (up.refresh(), up.changed.clone(), up.clock)
        };
        let wake = async {
            match next {
                Some(ms) => tokio::time::sleep_until(clock.instant(ms)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = token.cancelled() => return,
            () = changed.notified() => {}
            () = wake => {}
            _ = sweep.tick() => {
                let Some(up) = upstream.upgrade() else { return };
                for member in &up.current.load().set.members {
                    member.pool.sweep();
                }
            }
        }
    }
}

/// How often idle pooled connections are swept: half the idle timeout, between 1 and 15 s.
fn sweep_interval(idle_timeout: std::time::Duration) -> std::time::Duration {
    (idle_timeout / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(15),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::TryOutcome;

    fn upstream(extra: &str) -> Upstream {
        let toml = format!(
            "[[listeners]]\nname = \"m\"\nbind = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\nendpoints = [\"10.0.0.1:80\", \"10.0.0.2:80\", \"10.0.0.3:80\", \"10.0.0.4:80\"]\n{extra}"
        );
        let config = weir_config::parse(&toml, "t.toml").expect("config");
        Upstream::new(&config.upstreams[0]).expect("upstream")
    }

    fn weights(u: &Upstream) -> Vec<(usize, u32)> {
        let cur = u.current.load();
        cur.view
            .members
            .iter()
            .copied()
            .zip(cur.view.weights.iter().copied())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_endpoint_returns_and_ramps_up_over_slow_start() {
        let u = upstream(
            "slow_start = \"10s\"\nhealth.passive = { consecutive_failures = 2, base_ejection_time = \"5s\" }",
        );
        u.observe(&u.set.load().members[3], TryOutcome::TransportError);
        u.observe(&u.set.load().members[3], TryOutcome::TransportError);
        let next = u.refresh();
        assert_eq!(weights(&u).len(), 3, "endpoint 3 ejected");
        // The next refresh is due when the ejection ends.
        assert_eq!(next, Some(u.clock.now_ms() + 5000));

        tokio::time::advance(Duration::from_secs(5)).await;
        u.refresh();
        assert_eq!(weights(&u)[3], (3, 10), "back at the 10% floor");
        tokio::time::advance(Duration::from_secs(5)).await;
        u.refresh();
        assert_eq!(weights(&u)[3], (3, 50), "half way through the ramp");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(u.refresh(), None, "nothing left to do");
        assert_eq!(weights(&u)[3], (3, 100), "full weight");
        // A second ejection lasts two bases.
        u.observe(&u.set.load().members[3], TryOutcome::TransportError);
        u.observe(&u.set.load().members[3], TryOutcome::TransportError);
        assert_eq!(u.refresh(), Some(u.clock.now_ms() + 10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_keeps_a_floor() {
        let u = upstream("health.passive = { consecutive_5xx = 1, max_ejection_percent = 50 }");
        for i in 0..4 {
            u.observe(&u.set.load().members[i], TryOutcome::ServerError);
        }
        u.refresh();
        assert_eq!(weights(&u).len(), 2, "at most half ejected");
        assert_eq!(u.stats().ejections_skipped, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_panic_threshold_traffic_spreads_over_all() {
        let u = upstream("panic_threshold = 50");
        u.set.load().members[0]
            .state
            .active_up
            .store(false, Ordering::Release);
        u.refresh();
        assert_eq!(weights(&u).len(), 3);
        assert!(!u.stats().panic);
        u.set.load().members[1]
            .state
            .active_up
            .store(false, Ordering::Release);
        u.set.load().members[2]
            .state
            .active_up
            .store(false, Ordering::Release);
        u.refresh();
        // One of four healthy (25% < 50%): all four take traffic.
        assert_eq!(weights(&u).len(), 4);
        assert!(u.stats().panic);
        // With the threshold off, only the healthy one would.
        let u = upstream("panic_threshold = 0");
        for i in 0..3 {
            u.set.load().members[i]
                .state
                .active_up
                .store(false, Ordering::Release);
        }
        u.refresh();
        assert_eq!(weights(&u), [(3, 100)]);
    }
}
