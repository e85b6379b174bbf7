//! The four algorithms as Redis Lua scripts: one atomic `EVALSHA` per decision, on Redis's
//! own clock (`TIME`, microseconds) so instances with skewed clocks still agree, one key per
//! limited key (a hash of the same two words the in-memory store keeps) with an expiry of
//! the state's idle horizon. Each returns `{allowed, remaining, reset_us, retry_after_us}`.

use std::sync::OnceLock;

use super::{Algorithm, Decision, Rate};
use crate::store::{RedisStore, StoreError};

const PRELUDE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
"#;

const GCRA: &str = r#"
local interval = math.max(math.floor(period / limit), 1)
local tolerance = interval * burst
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat'))
if not tat or tat < now then tat = now end
local new_tat = tat + interval * cost
if new_tat - now <= tolerance then
  redis.call('HSET', KEYS[1], 'tat', string.format('%d', new_tat))
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, math.floor((tolerance - (new_tat - now)) / interval), new_tat - now, 0}
end
return {0, math.floor(math.max(tolerance - (tat - now), 0) / interval), tat - now, new_tat - now - tolerance}
"#;

const TOKEN_BUCKET: &str = r#"
local per_us = limit / period
local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(s[1])
local last = tonumber(s[2])
if not tokens then tokens = burst; last = now end
if now > last then tokens = math.min(burst, tokens + (now - last) * per_us) end
local allowed = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', string.format('%d', math.max(now, last)))
redis.call('PEXPIRE', KEYS[1], ttl)
local retry = 0
if allowed == 0 then
  if cost > burst then retry = period else retry = math.ceil((cost - tokens) / per_us) end
end
return {allowed, math.floor(tokens), math.ceil((burst - tokens) / per_us), retry}
"#;

const FIXED_WINDOW: &str = r#"
local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(s[1]) == window then count = tonumber(s[2]) end
local reset = (window + 1) * period - now
if count + cost > limit then
  return {0, math.max(limit - count, 0), reset, reset}
end
count = count + cost
redis.call('HSET', KEYS[1], 'w', string.format('%d', window), 'c', count)
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, limit - count, reset, 0}
"#;

const SLIDING_WINDOW: &str = r#"
local window = math.floor(now / period)
local s = redis.call('HMGET', KEYS[1], 'w', 'p', 'c')
local w = tonumber(s[1])
local prev, curr = 0, 0
if w == window then prev = tonumber(s[2]); curr = tonumber(s[3])
elseif w == window - 1 then prev = tonumber(s[3]) end
local elapsed = now - window * period
local weight = (period - elapsed) / period
local allowed = 0
if prev * weight + curr + cost <= limit then
  allowed = 1
  curr = curr + cost
end
redis.call('HSET', KEYS[1], 'w', string.format('%d', window), 'p', prev, 'c', curr)
redis.call('PEXPIRE', KEYS[1], ttl)
local remaining = math.max(math.floor(limit - (prev * weight + curr)), 0)
local to_end = period - elapsed
local reset = to_end
if curr > 0 then reset = to_end + period end
local retry = 0
if allowed == 0 then
  if curr + cost > limit or prev == 0 then
    local room = limit - cost
    local fade = 0
    if curr > room and curr > 0 then fade = (1 - room / curr) * period end
    retry = to_end + math.ceil(fade)
  else
    local room = limit - curr - cost
    local e = period * (1 - room / prev)
    retry = math.max(math.ceil(e) - elapsed, 1)
  end
end
return {allowed, remaining, reset, retry}
"#;

fn script(algorithm: Algorithm) -> &'static redis::Script {
    static SCRIPTS: OnceLock<[redis::Script; 4]> = OnceLock::new();
    let all = SCRIPTS.get_or_init(|| {
        [GCRA, TOKEN_BUCKET, FIXED_WINDOW, SLIDING_WINDOW]
            .map(|body| redis::Script::new(&format!("{PRELUDE}{body}")))
    });
    match algorithm {
        Algorithm::Gcra => &all[0],
        Algorithm::TokenBucket => &all[1],
        Algorithm::FixedWindow => &all[2],
        Algorithm::SlidingWindow => &all[3],
    }
}

/// One limit kept in Redis.
#[derive(Debug)]
pub(crate) struct RedisLimiter {
    algorithm: Algorithm,
    rate: Rate,
    burst: u64,
    /// `{prefix}rl:{policy}:`; the limited key's bytes follow.
    key_prefix: Vec<u8>,
    /// Integer text of period (µs), limit, burst, and the state's expiry (ms).
    args: [String; 4],
}

impl RedisLimiter {
    pub(crate) fn new(
        store: &RedisStore,
        policy: &str,
        algorithm: Algorithm,
        rate: Rate,
        burst: u64,
    ) -> Self {
        let period_us = (rate.period_ns / 1_000).max(1);
        let ttl_ms = (algorithm.idle_after_ns(rate, burst) / 1_000_000).max(1) + 1_000;
        Self {
            algorithm,
            rate,
            burst,
            key_prefix: format!("{}rl:{policy}:", store.prefix()).into_bytes(),
            args: [
                period_us.to_string(),
                rate.limit.to_string(),
                burst.to_string(),
                ttl_ms.to_string(),
            ],
        }
    }

    pub(crate) async fn check(
        &self,
        store: &RedisStore,
        key: &[u8],
        cost: u64,
    ) -> Result<Decision, StoreError> {
        let mut full = Vec::with_capacity(self.key_prefix.len() + key.len());
        full.extend_from_slice(&self.key_prefix);
        full.extend_from_slice(key);
        let cost = cost.to_string();
        let [period, limit, burst, ttl] = &self.args;
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = store
            .script(
                script(self.algorithm),
                &[&full],
                &[
                    period.as_bytes(),
                    limit.as_bytes(),
                    burst.as_bytes(),
                    cost.as_bytes(),
                    ttl.as_bytes(),
                ],
            )
            .await?;
        let us = |n: i64| u64::try_from(n).unwrap_or(0).saturating_mul(1_000);
        Ok(Decision {
            allowed: allowed == 1,
            limit: match self.algorithm {
                Algorithm::Gcra | Algorithm::TokenBucket => self.burst,
                _ => self.rate.limit,
            },
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset_ns: us(reset_us),
            retry_after_ns: us(retry_us),
        })
    }
}
