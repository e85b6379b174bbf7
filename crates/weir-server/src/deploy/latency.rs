//! A fine latency histogram for comparing two versions: log-linear buckets of microseconds,
//! eight per doubling (within 9 % of the true value), lock-free to record, and plain counts
//! that add up across instances (a fleet sums its buckets in Redis).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per doubling above `LINEAR`.
const SUB: u64 = 8;
/// Buckets: up to 2^40 µs (12 days), far past any timeout.
pub(crate) const BUCKETS: usize = (LINEAR + (40 - 4) * SUB) as usize;

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let exp = 63 - u64::from(micros.leading_zeros());
    let sub = (micros >> (exp - 3)) & (SUB - 1);
    ((LINEAR + (exp - 4) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest value (µs) a bucket holds.
fn upper_of(bucket: usize) -> u64 {
    let b = bucket as u64;
    if b < LINEAR {
        return b;
    }
    let exp = (b - LINEAR) / SUB + 4;
    let sub = (b - LINEAR) % SUB;
    ((SUB + sub + 1) << (exp - 3)) - 1
}

/// Counts per bucket.
#[derive(Debug)]
pub(crate) struct Latency {
    buckets: Box<[AtomicU64]>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Latency {
    pub(crate) fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub(crate) fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// The `q` quantile (0..1) of bucket counts, as the upper bound of its bucket; `None` with no
/// observations.
pub(crate) fn quantile(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(Duration::from_micros(upper_of(i)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_a_ninth() {
        for v in [
            0u64, 1, 15, 16, 17, 100, 999, 1_000, 12_345, 1_000_000, 98_765_432,
        ] {
            let b = bucket_of(v);
            let up = upper_of(b);
            assert!(up >= v, "{v} in bucket {b} up to {up}");
            if v >= LINEAR {
                assert!((up - v) as f64 <= v as f64 / 8.0 + 1.0, "{v} → {up}");
            }
            if b > 0 {
                assert!(upper_of(b - 1) < v, "{v} belongs to an earlier bucket");
            }
        }
    }

    #[test]
    fn p99_of_a_known_distribution() {
        let l = Latency::default();
        for _ in 0..990 {
            l.observe(Duration::from_millis(2));
        }
        for _ in 0..10 {
            l.observe(Duration::from_millis(300));
        }
        let p99 = quantile(&l.counts(), 0.99).expect("observed");
        assert!(p99 >= Duration::from_millis(2) && p99 < Duration::from_micros(2_300));
        let p999 = quantile(&l.counts(), 0.999).expect("observed");
        assert!(p999 >= Duration::from_millis(300) && p999 < Duration::from_millis(340));
        assert_eq!(quantile(&[0; BUCKETS], 0.99), None);
    }
}
