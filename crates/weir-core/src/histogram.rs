//! A lock-free latency histogram with fixed buckets (seconds), for Prometheus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (`+Inf` is implied). They start at 100 µs: a
/// gateway's own share of a request is well under a millisecond.
pub const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// Counts of observations per bucket, their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Non-cumulative here; cumulated when rendered.
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Cumulative counts per bucket (as Prometheus wants), then the total count and the sum in
    /// seconds.
    pub fn snapshot(&self) -> ([u64; BUCKETS.len()], u64, f64) {
        let mut out = [0u64; BUCKETS.len()];
        let mut running = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            running += b.load(Ordering::Relaxed);
            out[i] = running;
        }
        let count = self.count.load(Ordering::Relaxed).max(running);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (out, count, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let (b, count, sum) = h.snapshot();
        assert_eq!(b[2], 1);
        assert_eq!(b[8], 2);
        assert_eq!(b[14], 2);
        assert_eq!(count, 3);
        assert!((sum - 20.0305).abs() < 1e-6);
    }
}
