//! Outlier detection (passive health): consecutive 5xx responses or consecutive transport
//! failures eject an endpoint for `base_ejection_time × n` (n = its ejection count, capped at
//! `max_ejection_time`), while `max_ejection_percent` keeps a floor of endpoints in service.

use std::sync::atomic::Ordering;

use crate::clock::ms;
use crate::{Member, Upstream};

/// What one try at an endpoint came to, as health sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// A response below 500.
    Success,
    /// A 5xx response.
    ServerError,
    /// Connect failure, timeout or reset: the endpoint did not answer properly.
    TransportError,
}

impl Upstream {
    /// Folds one try's outcome into the endpoint's counters; may eject it.
    pub(crate) fn observe(&self, member: &Member, outcome: TryOutcome) {
        let state = &member.state;
        let cfg = &self.passive;
        match outcome {
            TryOutcome::Success => {
                state.consecutive_5xx.store(0, Ordering::Relaxed);
                state.consecutive_failures.store(0, Ordering::Relaxed);
            }
            TryOutcome::ServerError => {
                state.failures.fetch_add(1, Ordering::Relaxed);
                state.consecutive_failures.store(0, Ordering::Relaxed);
                let n = state.consecutive_5xx.fetch_add(1, Ordering::AcqRel) + 1;
                // Exactly one of several racing failures crosses the threshold.
                if cfg.consecutive_5xx > 0 && n == cfg.consecutive_5xx {
                    self.eject(member);
                }
            }
            TryOutcome::TransportError => {
                state.failures.fetch_add(1, Ordering::Relaxed);
                let n = state.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
                if cfg.consecutive_failures > 0 && n == cfg.consecutive_failures {
                    self.eject(member);
                }
            }
        }
    }

    fn eject(&self, member: &Member) {
        let now = self.clock.now_ms();
        let set = self.set.load();
        let n = set.members.len();
        let ejected = set.members.iter().filter(|m| m.state.ejected(now)).count();
        drop(set);
        let cap = (n * usize::from(self.passive.max_ejection_percent) / 100).max(1);
        let state = &member.state;
        state.consecutive_5xx.store(0, Ordering::Relaxed);
        state.consecutive_failures.store(0, Ordering::Relaxed);
        if ejected >= cap || state.ejected(now) {
            self.metrics
                .ejections_skipped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let base = ms(self.passive.base_ejection_time.get());
        let max = ms(self.passive.max_ejection_time.get());
        // An endpoint that behaved for a whole max_ejection_time starts over at one base.
        let last_until = state.ejected_until.load(Ordering::Acquire);
        if last_until > 0 && now.saturating_sub(last_until) > max {
            state.ejections.store(0, Ordering::Relaxed);
        }
        let count = u64::from(state.ejections.fetch_add(1, Ordering::AcqRel) + 1);
        let length = base.saturating_mul(count).min(max);
        state.ejected_until.store(now + length, Ordering::Release);
        self.metrics.ejections.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            upstream = %self.name,
            endpoint = %member.endpoint.address,
            ejection_ms = length,
            "endpoint ejected by outlier detection"
        );
        self.changed();
    }
}
