//! Concurrency limits: at most `limit` requests of one key in flight at once, in this
//! instance or (with `store = "redis"`) across every instance. A slot is taken in the request
//! phase and given back when the response body is done (or the request is dropped); a request
//! over the limit is answered 429 at once.
//!
//! In memory, counters are sharded maps of key → in-flight count; a key at zero is removed, so
//! memory follows the keys in flight, not the keys ever seen. In Redis, a key is a sorted set
//! of slot leases (id → expiry on Redis's clock): taking a slot drops expired leases and adds
//! one if fewer than `limit` remain, in one script; a request in flight renews its lease every
//! third of `lease`; giving the slot back removes it. An instance that dies holding slots
//! frees them when their leases run out.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use weir_config::{OnStoreError, RateKey};
use weir_core::{ErrorKind, ProxyError, RequestCtx};

use crate::store::RedisStore;
use crate::{CompileError, Early, Events, Hooks, Shared};

/// Events counted beside allowed/denied.
pub(crate) const EVENTS: &[&str] = &["store_error"];

/// Takes a slot if fewer than `limit` unexpired leases remain: `KEYS[1]` the set,
/// `ARGV` = lease ms, limit, slot id. Returns 1 when taken.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
return 0
";

/// Extends a held lease (`XX`: a lease already expired and removed is not brought back).
const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
";

/// The Redis side of a policy.
#[derive(Debug)]
struct RedisSlots {
    store: Arc<RedisStore>,
    /// `<prefix>conc:<policy>:`, followed by the request's key.
    prefix: Vec<u8>,
    lease: std::time::Duration,
    /// The script arguments that never change: the lease in milliseconds and the limit.
    lease_ms: Arc<str>,
    limit: String,
    acquire: redis::Script,
    renew: Arc<redis::Script>,
}

const SHARDS: usize = 16;

#[derive(Debug)]
struct Counts {
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
}

/// A compiled `concurrency` policy.
#[derive(Debug)]
pub struct ConcurrencyPolicy {
    limit: u64,
    keys: Vec<RateKey>,
    ipv6_prefix: u8,
    counts: Arc<Counts>,
    redis: Option<RedisSlots>,
    on_store_error: OnStoreError,
}

/// One request's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit(Slot);

#[derive(Debug)]
enum Slot {
    Local {
        counts: Arc<Counts>,
        hash: u64,
    },
    Redis {
        store: Arc<RedisStore>,
        key: Vec<u8>,
        id: [u8; 16],
        /// Renews the lease while the request is in flight; aborted on drop.
        renewing: tokio::task::JoinHandle<()>,
    },
    /// Admitted without a count (Redis failed and `on_store_error = "allow"`).
    None,
}

impl Drop for Permit {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.0, Slot::None) {
            Slot::Local { counts, hash } => counts.release(hash),
            Slot::Redis {
                store,
                key,
                id,
                renewing,
            } => {
                renewing.abort();
                // Given back in the background; if that fails, the lease runs out.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    drop(rt.spawn(async move {
                        let mut cmd = redis::cmd("ZREM");
                        cmd.arg(&key).arg(&id[..]);
                        let _: Result<i64, _> = store.query(&cmd).await;
                    }));
                }
            }
            Slot::None => {}
        }
    }
}

impl Counts {
    fn release(&self, hash: u64) {
        let shard = &self.shards[(hash >> 60) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&hash) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&hash);
            }
        }
    }
}

impl Counts {
    /// Takes a slot of `hash` if fewer than `limit` are taken.
    fn take(self: &Arc<Self>, hash: u64, limit: u64) -> Option<Slot> {
        let shard = &self.shards[(hash >> 60) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(hash).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot::Local {
            counts: self.clone(),
            hash,
        })
    }
}

impl ConcurrencyPolicy {
    pub(crate) fn compile(
        name: &str,
        cfg: &weir_config::ConcurrencyLimit,
        shared: &Shared,
    ) -> Result<Self, CompileError> {
        let redis = shared.store_for(name, cfg.store)?.map(|store| RedisSlots {
            prefix: format!("{}conc:{name}:", store.prefix()).into_bytes(),
            store,
            lease: cfg.lease.get(),
            lease_ms: Arc::from(cfg.lease.get().as_millis().to_string()),
            limit: cfg.limit.to_string(),
            acquire: redis::Script::new(ACQUIRE),
            renew: Arc::new(redis::Script::new(RENEW)),
        });
        Ok(Self {
            limit: cfg.limit,
            keys: cfg.key.0.clone(),
            ipv6_prefix: cfg.ipv6_prefix,
            counts: Arc::new(Counts {
                hasher: std::collections::hash_map::RandomState::new(),
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            }),
            redis,
            on_store_error: cfg.on_store_error,
        })
    }

    pub(crate) async fn acquire(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
        hooks: &mut Hooks,
        events: &Events,
    ) -> Result<(), Early> {
        let mut key = Vec::with_capacity(32);
        crate::key::build(&self.keys, self.ipv6_prefix, ctx, headers, &mut key);
        let slot = match &self.redis {
            None => self.take_local(&key),
            Some(r) => match self.take_shared(r, &key).await {
                Ok(slot) => slot,
                Err(e) => {
                    match crate::store_failed("concurrency", self.on_store_error, &e, events)? {
                        crate::StoreFallback::Allow => Some(Slot::None),
                        crate::StoreFallback::Local => self.take_local(&key),
                    }
                }
            },
        };
        let Some(slot) = slot else {
            return Err(ProxyError::new(ErrorKind::TooManyInFlight)
                .retry_after(std::time::Duration::from_secs(1))
                .into());
        };
        hooks.permits.push(Permit(slot));
        Ok(())
    }

    fn take_local(&self, key: &[u8]) -> Option<Slot> {
        self.counts
            .take(self.counts.hasher.hash_one(key), self.limit)
    }

    /// One script round trip; a slot taken comes with its renewal task.
    async fn take_shared(
        &self,
        r: &RedisSlots,
        key: &[u8],
    ) -> Result<Option<Slot>, crate::store::StoreError> {
        let mut full = r.prefix.clone();
        full.extend_from_slice(key);
        let mut id = [0u8; 16];
        // A fresh random id per slot, so two slots never share a lease.
        id[..8].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        id[8..].copy_from_slice(&fastrand::u64(..).to_le_bytes());
        let taken: i64 = r
            .store
            .script(
                &r.acquire,
                &[&full],
                &[r.lease_ms.as_bytes(), r.limit.as_bytes(), &id],
            )
            .await?;
        if taken != 1 {
            return Ok(None);
        }
        let renewing = {
            let (store, script, key, lease_ms, every) = (
                r.store.clone(),
                r.renew.clone(),
                full.clone(),
                r.lease_ms.clone(),
                r.lease / 3,
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tick.tick().await;
                    let _: Result<i64, _> = store
                        .script(&script, &[&key], &[lease_ms.as_bytes(), &id])
                        .await;
                }
            })
        };
        Ok(Some(Slot::Redis {
            store: r.store.clone(),
            key: full,
            id,
            renewing,
        }))
    }

    /// Requests in flight now, over all keys.
    pub fn in_flight(&self) -> u64 {
        self.counts
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .sum::<u64>()
            })
            .sum()
    }

    pub(crate) fn describe(&self) -> String {
        let keys: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        let store = if self.redis.is_some() {
            ", shared through redis"
        } else {
            ""
        };
        format!(
            "concurrency: {} in flight by {}{store}",
            self.limit,
            keys.join("+")
        )
    }
}

impl crate::kind::Compiles for weir_config::ConcurrencyLimit {
    type Kind = ConcurrencyPolicy;
}

impl crate::kind::PolicyKind for ConcurrencyPolicy {
    type Config = weir_config::ConcurrencyLimit;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        name: &str,
        cfg: &weir_config::ConcurrencyLimit,
        _: &weir_config::Config,
        shared: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg, shared)
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.acquire(r.ctx, &r.parts.headers, r.hooks, r.events)
            .await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}
