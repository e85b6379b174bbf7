//! Power of two choices: two members at random, the less loaded wins. `P2c` compares
//! requests in flight; `Ewma` compares peak-EWMA latency × (in flight + 1), as linkerd does,
//! so a slow endpoint is avoided even before requests pile up on it.

use super::{two_positions, Balancer, Pick, PickCx, View};
use crate::Endpoint;

/// Two random choices by requests in flight.
#[derive(Debug, Default)]
pub struct P2c;

/// Two random choices by peak-EWMA latency × load.
#[derive(Debug, Default)]
pub struct Ewma;

impl Balancer for P2c {
    fn prepare(&self, _view: &View, _endpoints: &[Endpoint]) -> Box<dyn Pick> {
        Box::new(P2c)
    }
}

impl Balancer for Ewma {
    fn prepare(&self, _view: &View, _endpoints: &[Endpoint]) -> Box<dyn Pick> {
        Box::new(Ewma)
    }
}

/// Picks the cheaper of two random members by `cost` (lower is better).
fn two_choices(cx: &PickCx<'_>, cost: impl Fn(usize, usize) -> f64) -> Option<usize> {
    let n = cx.view.members.len();
    if n == 0 {
        return None;
    }
    let (a, b) = two_positions(n);
    let (ea, eb) = (cx.view.members[a], cx.view.members[b]);
    if cost(a, ea) <= cost(b, eb) {
        Some(ea)
    } else {
        Some(eb)
    }
}

fn weight(cx: &PickCx<'_>, pos: usize) -> f64 {
    f64::from(cx.view.weights.get(pos).copied().unwrap_or(1).max(1))
}

impl Pick for P2c {
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize> {
        two_choices(cx, |pos, e| {
            let load = cx.states.get(e).map_or(0, |m| m.state.in_flight());
            f64::from(load) / weight(cx, pos)
        })
    }
}

impl Pick for Ewma {
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize> {
        two_choices(cx, |pos, e| {
            let Some(s) = cx.states.get(e).map(|m| &m.state) else {
                return f64::MAX;
            };
            s.ewma_ns(cx.now_ms) * f64::from(s.in_flight() + 1) / weight(cx, pos)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::sync::atomic::Ordering;

    fn counts(
        pick: &dyn Pick,
        view: &View,
        states: &[std::sync::Arc<crate::Member>],
    ) -> Vec<usize> {
        let mut counts = vec![0; view.in_service.len()];
        for _ in 0..3000 {
            let cx = PickCx {
                view,
                states,
                hash: None,
                now_ms: 1,
            };
            if let Some(e) = pick.pick(&cx) {
                counts[e] += 1;
            }
        }
        counts
    }

    #[test]
    fn p2c_steers_away_from_load() {
        let eps = endpoints(3, &[]);
        let states = states(3);
        states[0].state.in_flight.store(10, Ordering::Relaxed);
        let view = View::all(&eps);
        let c = counts(&*P2c.prepare(&view, &eps), &view, &states);
        // Endpoint 0 wins only when drawn against itself, which two distinct draws never do.
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[test]
    fn ewma_steers_away_from_slow() {
        let eps = endpoints(3, &[]);
        let states = states(3);
        states[2].state.observe_latency(500_000_000.0, 1);
        let view = View::all(&eps);
        let c = counts(&*Ewma.prepare(&view, &eps), &view, &states);
        assert_eq!(c[2], 0, "{c:?}");
    }

    #[test]
    fn single_member_is_always_picked() {
        let eps = endpoints(1, &[]);
        let view = View::all(&eps);
        let c = counts(&*P2c.prepare(&view, &eps), &view, &states(1));
        assert_eq!(c, [3000]);
    }
}
