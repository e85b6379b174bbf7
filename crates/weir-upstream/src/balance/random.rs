//! Weighted random: a binary search over cumulative weights (uniform when weights are equal).

use super::{random_member, Balancer, Pick, PickCx, View};
use crate::Endpoint;

/// Random, in proportion to weight.
#[derive(Debug, Default)]
pub struct Random;

struct Prepared {
    /// Running sum of weights, one per member; empty when weights are uniform.
    cumulative: Vec<u64>,
}

impl Balancer for Random {
    fn prepare(&self, view: &View, _endpoints: &[Endpoint]) -> Box<dyn Pick> {
        let cumulative = if view.uniform() {
            Vec::new()
        } else {
            view.weights
                .iter()
                .scan(0u64, |sum, &w| {
                    *sum += u64::from(w);
                    Some(*sum)
                })
                .collect()
        };
        Box::new(Prepared { cumulative })
    }
}

impl Pick for Prepared {
    fn pick(&self, cx: &PickCx<'_>) -> Option<usize> {
        let Some(&total) = self.cumulative.last() else {
            return random_member(cx.view);
        };
        let r = fastrand::u64(..total.max(1));
        let pos = self.cumulative.partition_point(|&c| c <= r);
        cx.view.members.get(pos).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn honours_weights_within_two_percent() {
        let eps = endpoints(3, &[1, 3, 6]);
        let c = distribution(&Random, &eps, 10_000);
        for (got, want) in c.iter().zip([1000.0, 3000.0, 6000.0]) {
            assert!((*got as f64 - want).abs() / 10_000.0 < 0.02, "{c:?}");
        }
    }
}
