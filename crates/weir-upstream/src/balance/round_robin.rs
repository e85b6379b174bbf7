//! Round robin: each endpoint in turn, with one relaxed atomic per pick.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Balancer;
use crate::Endpoint;

/// Each endpoint in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &[Endpoint]) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        Some(self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_evenly() {
        let eps: Vec<Endpoint> = ["a:1", "b:2", "c:3"]
            .iter()
            .filter_map(|s| Endpoint::parse(s))
            .collect();
        let rr = RoundRobin::default();
        let mut counts = [0usize; 3];
        for _ in 0..300 {
            counts[rr.pick(&eps).unwrap_or(99)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        assert_eq!(rr.pick(&[]), None);
    }
}
