//! Load balancing: the [`Balancer`] trait and its algorithms, one file each.
//!
//! A balancer works in two steps. When the set of endpoints in service changes (health,
//! ejection, slow start), [`Balancer::prepare`] builds whatever the algorithm needs — a
//! weighted sequence, a hash ring, a Maglev table — into a [`Pick`]. Per request,
//! [`Pick::pick`] chooses from that prepared state with no locks and, for most algorithms, no
//! loops over the endpoints.

mod consistent;
mod ip_hash;
mod least_conn;
mod p2c;
mod random;
mod round_robin;

pub use consistent::{Maglev, Ring, MAGLEV_TABLE_SIZE, RING_POINTS_PER_WEIGHT};
pub use ip_hash::IpHash;
pub use least_conn::LeastConn;
pub use p2c::{Ewma, P2c};
pub use random::Random;
pub use round_robin::RoundRobin;

use std::sync::Arc;

use crate::endpoint::Endpoint;
use crate::Member;

/// Weight of an endpoint at full strength in a [`View`]; slow start scales it down, so ramps
/// are finer than the configured integer weights.
pub const WEIGHT_SCALE: u32 = 100;

/// Who is in service, with what effective weight: rebuilt whenever that changes.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Indices (into the upstream's endpoints) of the endpoints in service, ascending.
    pub members: Vec<usize>,
    /// Effective weight of each member (configured weight × [`WEIGHT_SCALE`], ramped).
    pub weights: Vec<u32>,
    /// For every endpoint of the upstream: whether it is a member.
    pub in_service: Vec<bool>,
    /// True when too few endpoints are healthy and all of them are members (panic mode).
    pub panic: bool,
}

impl View {
    /// A view with every endpoint in service at its configured weight.
    pub fn all(endpoints: &[Endpoint]) -> Self {
        Self {
            members: (0..endpoints.len()).collect(),
            weights: endpoints.iter().map(|e| e.weight * WEIGHT_SCALE).collect(),
            in_service: vec![true; endpoints.len()],
            panic: false,
        }
    }

    /// Whether every member has the same weight.
    pub fn uniform(&self) -> bool {
        self.weights.windows(2).all(|w| w[0] == w[1])
    }
}

/// What a pick may look at.
#[derive(Clone, Copy)]
pub struct PickCx<'a> {
    /// Membership.
    pub view: &'a View,
    /// Every endpoint of the set with its live state (the view's indices point here).
    pub states: &'a [Arc<Member>],
    /// The request's hash key, for `ip_hash` and `consistent_hash`; `None` when it has none.
    pub hash: Option<u64>,
    /// Now, in ms on the upstream's clock (for latency decay).
    pub now_ms: u64,
}

/// A load-balancing algorithm.
pub trait Balancer: Send + Sync {
    /// Prepares picking over `view`.
    fn prepare(&self, view: &View, endpoints: &[Endpoint]) -> Box<dyn Pick>;
}

/// Picking over one prepared view.
pub trait Pick: Send + Sync {
    /// The index (into the upstream's endpoints) of the endpoint to use; `None` when the view
    /// has no members.
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize>;
}

/// Builds the balancer configured for an upstream.
pub fn from_config(cfg: &weir_config::Upstream) -> Box<dyn Balancer> {
    use weir_config::{Balance, HashTable};
    match cfg.balance {
        Balance::RoundRobin | Balance::Weighted => Box::new(RoundRobin::default()),
        Balance::LeastConn => Box::new(LeastConn),
        Balance::P2c => Box::new(P2c),
        Balance::Ewma => Box::new(Ewma),
        Balance::Random => Box::new(Random),
        Balance::IpHash => Box::new(IpHash),
        Balance::ConsistentHash => match cfg.hash {
            HashTable::Ring => Box::new(Ring),
            HashTable::Maglev => Box::new(Maglev),
        },
    }
}

/// A uniformly random member.
pub(crate) fn random_member(view: &View) -> Option<usize> {
    if view.members.is_empty() {
        return None;
    }
    view.members
        .get(fastrand::usize(..view.members.len()))
        .copied()
}

/// Two distinct random positions in `0..n` (the same one twice when `n == 1`).
pub(crate) fn two_positions(n: usize) -> (usize, usize) {
    let a = fastrand::usize(..n);
    if n == 1 {
        return (a, a);
    }
    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
    (a, b)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// `n` endpoints with the given weights (1 when the slice is short).
    pub fn endpoints(n: usize, weights: &[u32]) -> Vec<Endpoint> {
        (0..n)
            .filter_map(|i| {
                let w = weights.get(i).copied().unwrap_or(1);
                Endpoint::with_weight(&format!("10.0.{}.{}:80", i / 250, i % 250 + 1), w)
            })
            .collect()
    }

    /// `n` members with default state.
    pub fn states(n: usize) -> Vec<Arc<Member>> {
        endpoints(n, &[])
            .into_iter()
            .map(|e| Arc::new(Member::detached(e)))
            .collect()
    }

    /// Counts picks per endpoint over `picks` rounds.
    pub fn distribution(
        balancer: &dyn Balancer,
        endpoints: &[Endpoint],
        picks: usize,
    ) -> Vec<usize> {
        let view = View::all(endpoints);
        let pick = balancer.prepare(&view, endpoints);
        let states = states(endpoints.len());
        let mut counts = vec![0; endpoints.len()];
        for i in 0..picks {
            let cx = PickCx {
                view: &view,
                states: &states,
                hash: Some(crate::hash::mix(i as u64)),
                now_ms: 0,
            };
            if let Some(e) = pick.pick(&cx) {
                counts[e] += 1;
            }
        }
        counts
    }
}
