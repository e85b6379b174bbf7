//! The circuit breaker of one upstream: closed → open when the failure rate over a rolling
//! window passes the threshold (with a minimum request count); open answers at once without
//! touching the upstream; after `open_for` it is half-open and lets a bounded number of probe
//! requests through: all succeed → closed, any fails → open again.
//!
//! The closed state's success path is two relaxed atomics; transitions take a lock.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::ms;
use crate::window::RollingCount;

/// Breaker state, as shown in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused.
    Open,
    /// A few probes are let through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`: the word `/upstreams` and `weir explain` use.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What admission decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// An ordinary request (breaker closed).
    Normal,
    /// A half-open probe: its outcome decides the breaker.
    Probe,
}

/// A circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    failure_rate: u64,
    min_requests: u64,
    open_for_ms: u64,
    half_open_requests: u32,
    requests: RollingCount,
    failures: RollingCount,
    state: AtomicU8,
    open_until: AtomicU64,
    probes_started: AtomicU32,
    probes_ok: AtomicU32,
    /// Times the breaker opened, for metrics.
    pub opened: AtomicU64,
    /// Requests refused while open, for metrics.
    pub rejected: AtomicU64,
    transition: Mutex<()>,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

impl CircuitBreaker {
    /// A closed breaker from config.
    pub fn new(cfg: &weir_config::CircuitBreaker) -> Self {
        Self {
            failure_rate: u64::from(cfg.failure_rate),
            min_requests: u64::from(cfg.min_requests),
            open_for_ms: ms(cfg.open_for.get()),
            half_open_requests: cfg.half_open_requests,
            requests: RollingCount::new(cfg.window.get()),
            failures: RollingCount::new(cfg.window.get()),
            state: AtomicU8::new(CLOSED),
            open_until: AtomicU64::new(0),
            probes_started: AtomicU32::new(0),
            probes_ok: AtomicU32::new(0),
            opened: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            transition: Mutex::new(()),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Lets a request through, or says how long until the breaker may let one through.
    pub fn admit(&self, now_ms: u64) -> Result<Admit, Duration> {
        match self.state.load(Ordering::Acquire) {
            CLOSED => return Ok(Admit::Normal),
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if now_ms < until {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Duration::from_millis(until - now_ms));
                }
                let _g = self.transition.lock().unwrap_or_else(|p| p.into_inner());
                if self.state.load(Ordering::Acquire) == OPEN {
                    self.probes_started.store(0, Ordering::Relaxed);
                    self.probes_ok.store(0, Ordering::Relaxed);
                    self.state.store(HALF_OPEN, Ordering::Release);
                }
            }
            _ => {}
        }
        if self.state.load(Ordering::Acquire) == CLOSED {
            return Ok(Admit::Normal);
        }
        if self.probes_started.fetch_add(1, Ordering::AcqRel) < self.half_open_requests {
            Ok(Admit::Probe)
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs(1))
        }
    }

    /// Records the outcome of an admitted request.
    pub fn record(&self, admit: Admit, failed: bool, now_ms: u64) {
        match admit {
            Admit::Normal => {
                self.requests.add(now_ms, 1);
                if !failed {
                    return;
                }
                self.failures.add(now_ms, 1);
                let total = self.requests.sum(now_ms);
                let bad = self.failures.sum(now_ms);
                if total >= self.min_requests && bad * 100 >= self.failure_rate * total {
                    let _g = self.transition.lock().unwrap_or_else(|p| p.into_inner());
                    if self.state.load(Ordering::Acquire) == CLOSED {
                        self.open(now_ms);
                    }
                }
            }
            Admit::Probe => {
                let _g = self.transition.lock().unwrap_or_else(|p| p.into_inner());
                if self.state.load(Ordering::Acquire) != HALF_OPEN {
                    return;
                }
                if failed {
                    self.open(now_ms);
                } else if self.probes_ok.fetch_add(1, Ordering::AcqRel) + 1
                    >= self.half_open_requests
                {
                    self.requests.reset();
                    self.failures.reset();
                    self.state.store(CLOSED, Ordering::Release);
                }
            }
        }
    }

    /// Gives back a probe slot whose request ended without an outcome (the client left).
    pub fn release(&self, admit: Admit) {
        if admit == Admit::Probe && self.state.load(Ordering::Acquire) == HALF_OPEN {
            let _ = self
                .probes_started
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    fn open(&self, now_ms: u64) {
        self.open_until
            .store(now_ms + self.open_for_ms, Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(&weir_config::CircuitBreaker {
            failure_rate: 50,
            window: weir_config::Duration::from_secs(10),
            min_requests: 10,
            open_for: weir_config::Duration::from_secs(30),
            half_open_requests: 2,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn closed_open_half_open_closed() {
        let clock = Clock::new();
        let b = breaker();
        // Below the minimum request count nothing opens, whatever the rate.
        for _ in 0..9 {
            b.record(Admit::Normal, true, clock.now_ms());
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.record(Admit::Normal, true, clock.now_ms());
        assert_eq!(b.state(), BreakerState::Open);
        let wait = b.admit(clock.now_ms()).expect_err("open");
        assert!(wait <= Duration::from_secs(30) && wait > Duration::from_secs(29));

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.admit(clock.now_ms()), Ok(Admit::Probe));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(clock.now_ms()), Ok(Admit::Probe));
        // Only `half_open_requests` probes at once.
        assert!(b.admit(clock.now_ms()).is_err());
        b.record(Admit::Probe, false, clock.now_ms());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(Admit::Probe, false, clock.now_ms());
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.admit(clock.now_ms()), Ok(Admit::Normal));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let clock = Clock::new();
        let b = breaker();
        for _ in 0..10 {
            b.record(Admit::Normal, true, clock.now_ms());
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.admit(clock.now_ms()), Ok(Admit::Probe));
        b.record(Admit::Probe, true, clock.now_ms());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit(clock.now_ms()).is_err());
        assert_eq!(b.opened.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_low_failure_rate_stays_closed() {
        let clock = Clock::new();
        let b = breaker();
        for i in 0..100 {
            b.record(Admit::Normal, i % 3 == 0, clock.now_ms());
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
