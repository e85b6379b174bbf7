//! Concurrency limits: at most `limit` requests of one key in flight at once, in this
//! instance. A slot is taken in the request phase and given back when the response body is
//! done (or the request is dropped); a request over the limit is answered 429 at once.
//! Counters are sharded maps of key → in-flight count; a key at zero is removed, so memory
//! follows the keys in flight, not the keys ever seen.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use weir_config::RateKey;
use weir_core::{ErrorKind, ProxyError, RequestCtx};

use crate::{Early, Hooks};

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
}

/// One request's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Counts>,
    hash: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let shard = &self.counts.shards[(self.hash >> 60) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.hash) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.hash);
            }
        }
    }
}

impl ConcurrencyPolicy {
    pub(crate) fn compile(cfg: &weir_config::ConcurrencyLimit) -> Self {
        Self {
            limit: cfg.limit,
            keys: cfg.key.0.clone(),
            ipv6_prefix: cfg.ipv6_prefix,
            counts: Arc::new(Counts {
                hasher: std::collections::hash_map::RandomState::new(),
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            }),
        }
    }

    pub(crate) fn acquire(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
        hooks: &mut Hooks,
    ) -> Result<(), Early> {
        let mut key = Vec::with_capacity(32);
        crate::key::build(&self.keys, self.ipv6_prefix, ctx, headers, &mut key);
        let hash = self.counts.hasher.hash_one(&key);
        let shard = &self.counts.shards[(hash >> 60) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(hash).or_insert(0);
        if *n >= self.limit {
            return Err(ProxyError::new(ErrorKind::TooManyInFlight)
                .retry_after(std::time::Duration::from_secs(1))
                .into());
        }
        *n += 1;
        drop(map);
        hooks.permits.push(Permit {
            counts: self.counts.clone(),
            hash,
        });
        Ok(())
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
        format!(
            "concurrency: {} in flight by {}",
            self.limit,
            keys.join("+")
        )
    }
}
