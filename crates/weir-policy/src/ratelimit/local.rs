//! The in-memory store: 64 shards of `key hash → state`, each behind its own mutex (held for
//! a few dozen nanoseconds, never across an await), bounded in keys. Keys idle long enough
//! that their state no longer matters are swept when a shard fills; if a shard is still full,
//! the eighth of its keys used longest ago are evicted (their quota starts afresh) and counted.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{Algorithm, Decision, Rate, State};

const SHARDS: usize = 64;

/// Keys are already uniform 64-bit hashes (keyed SipHash of the key bytes): hash them no
/// further.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Clone, Copy)]
struct Entry {
    state: State,
    last_used: u64,
}

type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// One limit (algorithm, rate, burst) over many keys, in memory.
pub struct LocalLimiter {
    algorithm: Algorithm,
    rate: Rate,
    burst: u64,
    idle_after: u64,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
    evicted: AtomicU64,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("algorithm", &self.algorithm)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("keys", &self.len())
            .finish()
    }
}

impl LocalLimiter {
    /// Memory per tracked key: a 40-byte slot (the key's 64-bit hash, two state words, the
    /// last use) plus hashbrown's control byte, at 50–87.5% table load: 47–82 bytes.
    pub const BYTES_PER_KEY: (usize, usize) = (47, 82);

    /// A limiter for `algorithm` at `rate` with `burst` (bucket algorithms), tracking at most
    /// about `max_keys` keys.
    pub fn new(algorithm: Algorithm, rate: Rate, burst: u64, max_keys: usize) -> Self {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        Self {
            algorithm,
            rate,
            burst,
            idle_after: algorithm.idle_after_ns(rate, burst),
            per_shard,
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            evicted: AtomicU64::new(0),
        }
    }

    /// Decides one request of `cost` for `key` at `now` (nanoseconds, monotonic).
    pub fn check(&self, key: &[u8], now: u64, cost: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        // The top bits pick the shard; the map uses the whole hash.
        let shard = &self.shards[(hash >> 58) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(&hash) {
            self.make_room(&mut map, now);
        }
        let entry = map.entry(hash).or_insert(Entry {
            state: [0, 0],
            last_used: now,
        });
        // A key idle past its horizon starts afresh (as if swept).
        if now.saturating_sub(entry.last_used) >= self.idle_after {
            entry.state = [0, 0];
        }
        entry.last_used = now;
        self.algorithm
            .decide(&mut entry.state, self.rate, self.burst, now, cost)
    }

    fn make_room(&self, map: &mut Shard, now: u64) {
        let idle_after = self.idle_after;
        map.retain(|_, e| now.saturating_sub(e.last_used) < idle_after);
        if map.len() >= self.per_shard {
            // Every key is live: forget the eighth used longest ago, so the next inserts find
            // room without another scan (amortized constant work per new key).
            let mut ages: Vec<u64> = map.values().map(|e| e.last_used).collect();
            let cut = ages.len() / 8;
            let (_, threshold, _) = ages.select_nth_unstable(cut);
            let threshold = *threshold;
            let before = map.len();
            map.retain(|_, e| e.last_used > threshold);
            self.evicted
                .fetch_add((before - map.len()) as u64, Ordering::Relaxed);
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live keys forgotten because their shard was full.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn keys_are_limited_separately_and_exactly() {
        let rate = Rate::new(100, Duration::from_secs(10)).expect("rate");
        for alg in [
            Algorithm::TokenBucket,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::Gcra,
        ] {
            let limiter = LocalLimiter::new(alg, rate, 100, 10_000);
            let t = 3 * SEC;
            let a = (0..250)
                .filter(|_| limiter.check(b"a", t, 1).allowed)
                .count();
            let b = (0..250)
                .filter(|_| limiter.check(b"b", t, 1).allowed)
                .count();
            assert_eq!((a, b), (100, 100), "{alg:?}: exact for one instance");
        }
    }

    #[test]
    fn a_million_keys_stay_within_the_bound() {
        let rate = Rate::new(10, Duration::from_secs(1)).expect("rate");
        let limiter = LocalLimiter::new(Algorithm::Gcra, rate, 10, 50_000);
        // A million distinct keys, all live (one per microsecond): the store never holds more
        // than its bound, and live keys beyond it are evicted and counted.
        for i in 0u64..1_000_000 {
            limiter.check(&i.to_le_bytes(), i * 1000, 1);
        }
        let bound = 50_000usize.div_ceil(SHARDS) * SHARDS;
        assert!(limiter.len() <= bound, "{} keys", limiter.len());
        assert!(limiter.evicted() > 0);
        // Idle keys are swept rather than evicted: an hour later, new keys find room (half the
        // bound, so no shard overflows by chance).
        let before = limiter.evicted();
        let later = 3_600 * SEC;
        for i in 0u64..25_000 {
            limiter.check(&(i + 2_000_000).to_le_bytes(), later + i, 1);
        }
        assert!(limiter.len() <= bound);
        assert_eq!(
            limiter.evicted(),
            before,
            "idle keys made room, no live key was evicted"
        );
    }

    #[test]
    fn an_idle_key_starts_afresh() {
        let rate = Rate::new(1, Duration::from_secs(1)).expect("rate");
        let limiter = LocalLimiter::new(Algorithm::FixedWindow, rate, 1, 100);
        assert!(limiter.check(b"k", 0, 1).allowed);
        assert!(!limiter.check(b"k", 1, 1).allowed);
        assert!(limiter.check(b"k", 10 * SEC, 1).allowed);
    }
}
