//! The four algorithms, each a pure function of a key's two-word state, the time and the cost.
//! Time is nanoseconds on any monotonic clock; a state of `[0, 0]` is a key never seen.

use std::time::Duration;

/// How a limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Tokens refill continuously at the rate up to `burst`; a request takes `cost` tokens.
    TokenBucket,
    /// At most `limit` per window aligned to the clock; the count resets at each boundary
    /// (bursts of up to twice the limit across a boundary are possible).
    FixedWindow,
    /// The previous window's count, weighted by how much of it still overlaps the sliding
    /// window, plus this window's count (Cloudflare's approximation; no boundary bursts).
    SlidingWindow,
    /// Generic cell rate algorithm: one theoretical arrival time per key; smooth spacing with
    /// a burst allowance, the same answers as a token bucket with exact arithmetic.
    Gcra,
}

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period.
    pub limit: u64,
    /// The period, in nanoseconds.
    pub period_ns: u64,
}

impl Rate {
    /// A rate; `None` when either part is zero or the period does not fit in nanoseconds.
    pub fn new(limit: u64, period: Duration) -> Option<Self> {
        let period_ns = u64::try_from(period.as_nanos()).ok()?;
        (limit > 0 && period_ns > 0).then_some(Self { limit, period_ns })
    }
}

/// A key's state: two words whose meaning depends on the algorithm.
pub type State = [u64; 2];

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may pass.
    pub allowed: bool,
    /// The quota (`limit`, or `burst` for the bucket algorithms).
    pub limit: u64,
    /// Requests (of cost 1) still allowed right now.
    pub remaining: u64,
    /// Nanoseconds until the quota is whole again (the `RateLimit` field's `t`).
    pub reset_ns: u64,
    /// Nanoseconds until this request would pass; 0 when allowed.
    pub retry_after_ns: u64,
}

impl Algorithm {
    /// Decides one request of `cost` at `now` and updates `state`. `burst` is the bucket size
    /// of the token bucket and GCRA (use `rate.limit` for "no extra burst"); the window
    /// algorithms cap at `rate.limit`.
    pub fn decide(
        self,
        state: &mut State,
        rate: Rate,
        burst: u64,
        now: u64,
        cost: u64,
    ) -> Decision {
        match self {
            Self::TokenBucket => token_bucket(state, rate, burst.max(1), now, cost),
            Self::FixedWindow => fixed_window(state, rate, now, cost),
            Self::SlidingWindow => sliding_window(state, rate, now, cost),
            Self::Gcra => gcra(state, rate, burst.max(1), now, cost),
        }
    }

    /// How long an untouched key's state still matters; after it the key is as if new.
    pub fn idle_after_ns(self, rate: Rate, burst: u64) -> u64 {
        let refill = u128::from(rate.period_ns) * u128::from(burst.max(1)) / u128::from(rate.limit);
        let refill = u64::try_from(refill).unwrap_or(u64::MAX);
        refill.max(rate.period_ns.saturating_mul(2))
    }
}

/// `[tokens as f64 bits, last update + 1]`.
fn token_bucket(s: &mut State, rate: Rate, burst: u64, now: u64, cost: u64) -> Decision {
    let per_ns = rate.limit as f64 / rate.period_ns as f64;
    let capacity = burst as f64;
    let (tokens, last) = if s[1] == 0 {
        (capacity, now)
    } else {
        (f64::from_bits(s[0]), s[1] - 1)
    };
    let mut tokens = (tokens + now.saturating_sub(last) as f64 * per_ns).min(capacity);
    let want = cost as f64;
    let allowed = tokens >= want;
    if allowed {
        tokens -= want;
    }
    *s = [tokens.to_bits(), now.max(last) + 1];
    let retry_after_ns = if allowed {
        0
    } else if want > capacity {
        rate.period_ns
    } else {
        ((want - tokens) / per_ns).ceil() as u64
    };
    Decision {
        allowed,
        limit: burst,
        remaining: tokens.floor() as u64,
        reset_ns: ((capacity - tokens) / per_ns).ceil() as u64,
        retry_after_ns,
    }
}

/// `[window index + 1, count]`.
fn fixed_window(s: &mut State, rate: Rate, now: u64, cost: u64) -> Decision {
    let window = now / rate.period_ns;
    if s[0] != window + 1 {
        *s = [window + 1, 0];
    }
    let allowed = s[1].saturating_add(cost) <= rate.limit;
    if allowed {
        s[1] += cost;
    }
    let reset_ns = (window + 1) * rate.period_ns - now;
    Decision {
        allowed,
        limit: rate.limit,
        remaining: rate.limit.saturating_sub(s[1]),
        reset_ns,
        retry_after_ns: if allowed { 0 } else { reset_ns },
    }
}

/// `[window index + 1, previous count << 32 | current count]`.
fn sliding_window(s: &mut State, rate: Rate, now: u64, cost: u64) -> Decision {
    let period = rate.period_ns;
    let window = now / period;
    let (mut prev, mut curr) = (s[1] >> 32, s[1] & 0xffff_ffff);
    match s[0].checked_sub(1) {
        Some(w) if w == window => {}
        Some(w) if w + 1 == window => {
            prev = curr;
            curr = 0;
        }
        _ => {
            prev = 0;
            curr = 0;
        }
    }
    let elapsed = now - window * period;
    let weight = (period - elapsed) as f64 / period as f64;
    let estimate = prev as f64 * weight + curr as f64;
    let allowed = estimate + cost as f64 <= rate.limit as f64;
    if allowed {
        curr = (curr + cost).min(0xffff_ffff);
    }
    *s = [window + 1, prev.min(0xffff_ffff) << 32 | curr];
    let used = prev as f64 * weight + curr as f64;
    let to_window_end = period - elapsed;
    let retry_after_ns = if allowed {
        0
    } else if curr + cost > rate.limit || prev == 0 {
        // This window's own count is the obstacle: the next window at the earliest, when the
        // weight of this one (then "previous") has fallen far enough.
        let next_prev = curr as f64;
        let room = rate.limit as f64 - cost as f64;
        let fade = if next_prev <= room || next_prev == 0.0 {
            0.0
        } else {
            (1.0 - room / next_prev) * period as f64
        };
        to_window_end + fade.ceil() as u64
    } else {
        // The previous window's share must fade: solve prev × (period − e) / period + curr +
        // cost ≤ limit for the elapsed time e.
        let room = rate.limit as f64 - curr as f64 - cost as f64;
        let e = period as f64 * (1.0 - room / prev as f64);
        (e.ceil() as u64).saturating_sub(elapsed).max(1)
    };
    Decision {
        allowed,
        limit: rate.limit,
        remaining: (rate.limit as f64 - used).max(0.0).floor() as u64,
        reset_ns: to_window_end + if curr > 0 { period } else { 0 },
        retry_after_ns,
    }
}

/// `[theoretical arrival time + 1, 0]`.
fn gcra(s: &mut State, rate: Rate, burst: u64, now: u64, cost: u64) -> Decision {
    let interval = (rate.period_ns / rate.limit).max(1);
    let tolerance = interval.saturating_mul(burst);
    let tat = match s[0].checked_sub(1) {
        Some(t) => t.max(now),
        None => now,
    };
    let new_tat = tat.saturating_add(interval.saturating_mul(cost));
    let allowed = new_tat - now <= tolerance;
    let after = if allowed {
        s[0] = new_tat + 1;
        new_tat
    } else {
        tat
    };
    Decision {
        allowed,
        limit: burst,
        remaining: tolerance.saturating_sub(after - now) / interval,
        reset_ns: after - now,
        retry_after_ns: if allowed {
            0
        } else {
            new_tat - now - tolerance
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(limit: u64, secs: u64) -> Rate {
        Rate::new(limit, Duration::from_secs(secs)).expect("rate")
    }

    /// Requests of cost 1 at `times` (ns); which were allowed.
    fn run(alg: Algorithm, r: Rate, burst: u64, times: &[u64]) -> Vec<bool> {
        let mut s = [0, 0];
        times
            .iter()
            .map(|&t| alg.decide(&mut s, r, burst, t, 1).allowed)
            .collect()
    }

    #[test]
    fn every_algorithm_allows_the_limit_then_refuses() {
        for alg in [
            Algorithm::TokenBucket,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::Gcra,
        ] {
            let r = rate(10, 1);
            let t = 5 * SEC; // inside a window, not at its start
            let mut s = [0, 0];
            for i in 0..10 {
                let d = alg.decide(&mut s, r, 10, t, 1);
                assert!(d.allowed, "{alg:?} request {i}");
                assert_eq!(d.remaining, 9 - i, "{alg:?} remaining after {i}");
            }
            let d = alg.decide(&mut s, r, 10, t, 1);
            assert!(!d.allowed, "{alg:?} the 11th");
            assert!(
                d.retry_after_ns > 0 && d.retry_after_ns <= 2 * SEC,
                "{alg:?} {d:?}"
            );
            // Waiting the advertised time lets one through.
            let later = t + d.retry_after_ns;
            assert!(
                alg.decide(&mut s, r, 10, later, 1).allowed,
                "{alg:?} after retry_after ({d:?})"
            );
        }
    }

    #[test]
    fn token_bucket_and_gcra_refill_at_the_rate() {
        for alg in [Algorithm::TokenBucket, Algorithm::Gcra] {
            // 10/s, burst 1: one every 100 ms.
            let r = rate(10, 1);
            let times: Vec<u64> = (0..20).map(|i| i * SEC / 20).collect(); // every 50 ms
            let allowed = run(alg, r, 1, &times).iter().filter(|a| **a).count();
            assert_eq!(allowed, 10, "{alg:?}");
        }
    }

    #[test]
    fn fixed_window_resets_at_the_boundary_and_sliding_does_not() {
        let r = rate(10, 1);
        // 10 at the end of one window, 10 at the start of the next.
        let mut times = vec![SEC - 1000; 10];
        times.extend(vec![SEC + 1000; 10]);
        let fixed = run(Algorithm::FixedWindow, r, 10, &times);
        assert_eq!(fixed.iter().filter(|a| **a).count(), 20, "boundary burst");
        let sliding = run(Algorithm::SlidingWindow, r, 10, &times);
        assert_eq!(
            sliding.iter().filter(|a| **a).count(),
            10,
            "no boundary burst"
        );
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let r = rate(10, 1);
        let mut s = [0, 0];
        for _ in 0..10 {
            assert!(
                Algorithm::SlidingWindow
                    .decide(&mut s, r, 10, SEC / 2, 1)
                    .allowed
            );
        }
        // Three quarters into the next window the previous counts a quarter: 2.5 → 7 more.
        let t = SEC + 3 * SEC / 4;
        let allowed = (0..20)
            .filter(|_| Algorithm::SlidingWindow.decide(&mut s, r, 10, t, 1).allowed)
            .count();
        assert_eq!(allowed, 7);
    }

    #[test]
    fn a_cost_above_the_burst_never_passes_and_idle_keys_forget() {
        let r = rate(5, 1);
        for alg in [
            Algorithm::TokenBucket,
            Algorithm::Gcra,
            Algorithm::FixedWindow,
        ] {
            let mut s = [0, 0];
            assert!(!alg.decide(&mut s, r, 5, 0, 6).allowed, "{alg:?}");
        }
        assert_eq!(Algorithm::Gcra.idle_after_ns(r, 5), 2 * SEC);
        assert_eq!(
            Algorithm::TokenBucket.idle_after_ns(rate(1, 1), 10),
            10 * SEC
        );
    }
}
