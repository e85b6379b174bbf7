//! Least connections: the member with the fewest requests in flight relative to its weight.
//! Scans every member (O(n)); starts at a random member so ties spread out.

use super::{Balancer, Pick, PickCx, View};
use crate::Endpoint;

/// Fewest requests in flight per unit of weight.
#[derive(Debug, Default)]
pub struct LeastConn;

impl Balancer for LeastConn {
    fn prepare(&self, _view: &View, _endpoints: &[Endpoint]) -> Box<dyn Pick> {
        Box::new(LeastConn)
    }
}

impl Pick for LeastConn {
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize> {
        let members = &cx.view.members;
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = fastrand::usize(..n);
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let pos = (start + k) % n;
            let e = members[pos];
            let load = u64::from(cx.states.get(e).map_or(0, |m| m.state.in_flight()));
            let weight = u64::from(cx.view.weights.get(pos).copied().unwrap_or(1).max(1));
            // load/weight < best_load/best_weight, without division.
            let better = match best {
                None => true,
                Some((_, bl, bw)) => load * bw < bl * weight,
            };
            if better {
                best = Some((e, load, weight));
            }
        }
        best.map(|(e, _, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn avoids_the_busy_endpoint() {
        let eps = endpoints(3, &[]);
        let states = states(3);
        states[1].state.in_flight.store(5, Ordering::Relaxed);
        let view = View::all(&eps);
        let p = LeastConn.prepare(&view, &eps);
        for _ in 0..100 {
            let cx = PickCx {
                view: &view,
                states: &states,
                hash: None,
                now_ms: 0,
            };
            assert_ne!(p.pick(&cx), Some(1));
        }
    }
}
