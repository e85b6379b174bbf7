//! A rolling count over a time window, in ten buckets of atomics: counting is lock-free and
//! the sum is approximate only at bucket boundaries.

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: usize = 10;

/// Events counted over the last `window`.
#[derive(Debug)]
pub struct RollingCount {
    width_ms: u64,
    slots: [AtomicU64; BUCKETS],
    counts: [AtomicU64; BUCKETS],
}

impl RollingCount {
    /// A counter over `window` (at least 10 ms).
    pub fn new(window: std::time::Duration) -> Self {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Self {
            width_ms: (ms / BUCKETS as u64).max(1),
            slots: Default::default(),
            counts: Default::default(),
        }
    }

    /// Counts `n` events at `now_ms`.
    pub fn add(&self, now_ms: u64, n: u64) {
        let slot = now_ms / self.width_ms;
        let i = (slot % BUCKETS as u64) as usize;
        // The first writer in a new slot recycles the bucket.
        if self.slots[i].swap(slot, Ordering::AcqRel) != slot {
            self.counts[i].store(0, Ordering::Relaxed);
        }
        self.counts[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Events in the window ending at `now_ms`.
    pub fn sum(&self, now_ms: u64) -> u64 {
        let slot = now_ms / self.width_ms;
        (0..BUCKETS)
            .filter(|&i| {
                slot.saturating_sub(self.slots[i].load(Ordering::Acquire)) < BUCKETS as u64
            })
            .map(|i| self.counts[i].load(Ordering::Relaxed))
            .sum()
    }

    /// Forgets everything.
    pub fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_the_window() {
        let c = RollingCount::new(std::time::Duration::from_secs(10));
        c.add(1, 5);
        c.add(5_000, 3);
        assert_eq!(c.sum(9_000), 8);
        assert_eq!(c.sum(12_000), 3);
        assert_eq!(c.sum(30_000), 0);
    }
}
