//! Round robin, weighted the way nginx does it ("smooth weighted round robin"): over each
//! cycle every endpoint gets its share, interleaved rather than in bursts. The cycle is
//! computed once per view, so a pick is one relaxed atomic and an index.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Balancer, Pick, PickCx, View};
use crate::Endpoint;

/// Longest precomputed cycle; larger weight sums are scaled down to fit (shares stay within
/// a fraction of a percent).
const MAX_CYCLE: u64 = 1 << 16;

/// Smooth weighted round robin.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Shared by every prepared view, so a membership change does not restart the cycle.
    next: Arc<AtomicUsize>,
}

impl Balancer for RoundRobin {
    fn prepare(&self, view: &View, _endpoints: &[Endpoint]) -> Box<dyn Pick> {
        let order = if view.uniform() {
            view.members.clone()
        } else {
            smooth_cycle(&view.members, &view.weights)
        };
        Box::new(Cycle {
            next: self.next.clone(),
            order,
        })
    }
}

struct Cycle {
    next: Arc<AtomicUsize>,
    order: Vec<usize>,
}

impl Pick for Cycle {
    fn pick(&self, _cx: &PickCx<'_>) -> Option<usize> {
        if self.order.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.order.get(n % self.order.len()).copied()
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// One full cycle of nginx's smooth weighted round robin: each step, every member's current
/// weight grows by its weight; the largest is chosen and reduced by the total.
pub(crate) fn smooth_cycle(members: &[usize], weights: &[u32]) -> Vec<usize> {
    let mut w: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let g = w.iter().fold(0, |g, &x| gcd(g, x)).max(1);
    w.iter_mut().for_each(|x| *x /= g);
    let mut total: u64 = w.iter().sum();
    if total > MAX_CYCLE {
        let scale = total as f64 / MAX_CYCLE as f64;
        w.iter_mut()
            .for_each(|x| *x = ((*x as f64 / scale).round() as u64).max(1));
        total = w.iter().sum();
    }
    let total_i = i64::try_from(total).unwrap_or(i64::MAX);
    let mut current = vec![0i64; w.len()];
    let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, c) in current.iter_mut().enumerate() {
            *c += i64::try_from(w[i]).unwrap_or(i64::MAX);
        }
        // The largest current weight wins; ties go to the earliest, as in nginx.
        for (i, c) in current.iter().enumerate() {
            if *c > current[best] {
                best = i;
            }
        }
        current[best] -= total_i;
        order.push(members[best]);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn uniform_cycles_evenly() {
        let eps = endpoints(3, &[]);
        assert_eq!(
            distribution(&RoundRobin::default(), &eps, 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn smooth_interleaves_like_nginx() {
        // nginx's documented example: weights 5, 1, 1 → a a b a c a a.
        let order = smooth_cycle(&[0, 1, 2], &[5, 1, 1]);
        assert_eq!(order, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_are_exact_over_whole_cycles() {
        let eps = endpoints(3, &[1, 2, 7]);
        assert_eq!(
            distribution(&RoundRobin::default(), &eps, 10_000),
            [1000, 2000, 7000]
        );
    }

    #[test]
    fn empty_view_picks_nothing() {
        let rr = RoundRobin::default();
        let view = View::default();
        let p = rr.prepare(&view, &[]);
        let cx = PickCx {
            view: &view,
            states: &[],
            hash: None,
            now_ms: 0,
        };
        assert_eq!(p.pick(&cx), None);
    }
}
