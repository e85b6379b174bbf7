//! Milliseconds since an upstream was built, on tokio's clock (so tests can pause time).
//! Zero is reserved for "never", hence the +1.

use tokio::time::Instant;

/// The upstream's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// Now, in ms (at least 1).
    pub fn now_ms(&self) -> u64 {
        self.ms_at(weir_core::clock::now())
    }

    /// The reading of this clock at `at` (a reading taken for something else as well).
    pub fn ms_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX - 1)
            + 1
    }

    /// The instant a reading of this clock stands for.
    pub fn instant(&self, ms: u64) -> Instant {
        self.epoch + std::time::Duration::from_millis(ms.saturating_sub(1))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration in whole ms.
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
