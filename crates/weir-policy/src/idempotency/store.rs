//! Where idempotency records live: in memory (bounded, expired entries swept) or in Redis
//! (`SET NX PX` for the lock; the lock and the record expire by themselves, so an instance
//! that dies mid-request frees its keys after `lock_ttl`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{RedisStore, StoreError};

/// A stored response.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// What `begin` found.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The key was free and is now locked by this request.
    Acquired,
    /// Another request with this key is in flight; its fingerprint.
    InFlight([u8; 32]),
    /// A finished request's response; its fingerprint.
    Done([u8; 32], Box<Record>),
}

#[derive(Debug)]
enum Entry {
    Locked([u8; 32], Instant),
    Done([u8; 32], Box<Record>, Instant),
}

/// The in-memory store.
#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    map: Mutex<HashMap<Vec<u8>, Entry>>,
}

const MEMORY_MAX: usize = 100_000;

impl MemoryStore {
    fn begin(&self, key: &[u8], fp: [u8; 32], lock_ttl: Duration) -> Begin {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(Entry::Locked(f, until)) if *until > now => return Begin::InFlight(*f),
            Some(Entry::Done(f, r, until)) if *until > now => return Begin::Done(*f, r.clone()),
            _ => {}
        }
        if map.len() >= MEMORY_MAX {
            map.retain(|_, e| match e {
                Entry::Locked(_, t) | Entry::Done(_, _, t) => *t > now,
            });
            if map.len() >= MEMORY_MAX {
                // Every record is live: refuse to grow, forget the oldest-expiring tenth.
                let mut ends: Vec<Instant> = map
                    .values()
                    .map(|e| match e {
                        Entry::Locked(_, t) | Entry::Done(_, _, t) => *t,
                    })
                    .collect();
                let cut = ends.len() / 10;
                let (_, t, _) = ends.select_nth_unstable(cut);
                let t = *t;
                map.retain(|_, e| match e {
                    Entry::Locked(_, x) | Entry::Done(_, _, x) => *x > t,
                });
            }
        }
        map.insert(key.to_vec(), Entry::Locked(fp, now + lock_ttl));
        Begin::Acquired
    }

    fn complete(&self, key: &[u8], fp: [u8; 32], record: Record, ttl: Duration) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(map.get(key), Some(Entry::Locked(f, _)) if *f == fp) {
            map.insert(
                key.to_vec(),
                Entry::Done(fp, Box::new(record), Instant::now() + ttl),
            );
        }
    }

    fn release(&self, key: &[u8], fp: [u8; 32]) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(map.get(key), Some(Entry::Locked(f, _)) if *f == fp) {
            map.remove(key);
        }
    }
}

/// An idempotency store.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

const COMPLETE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

fn lock_value(fp: &[u8; 32]) -> Vec<u8> {
    let mut v = b"L".to_vec();
    v.extend_from_slice(fp);
    v
}

fn scripts() -> &'static (redis::Script, redis::Script) {
    static S: std::sync::OnceLock<(redis::Script, redis::Script)> = std::sync::OnceLock::new();
    S.get_or_init(|| (redis::Script::new(COMPLETE), redis::Script::new(RELEASE)))
}

impl Store {
    pub(crate) async fn begin(
        &self,
        key: &[u8],
        fp: [u8; 32],
        lock_ttl: Duration,
    ) -> Result<Begin, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.begin(key, fp, lock_ttl)),
            Store::Redis(r) => {
                let ms = u64::try_from(lock_ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let set: Option<String> = r
                    .query(
                        redis::cmd("SET")
                            .arg(key)
                            .arg(lock_value(&fp))
                            .arg("NX")
                            .arg("PX")
                            .arg(ms),
                    )
                    .await?;
                if set.is_some() {
                    return Ok(Begin::Acquired);
                }
                let value: Option<Vec<u8>> = r.query(redis::cmd("GET").arg(key)).await?;
                Ok(match value {
                    // Expired between the two commands: someone else's turn now.
                    None => Begin::InFlight(fp),
                    Some(v) if v.first() == Some(&b'L') && v.len() == 33 => {
                        let mut f = [0u8; 32];
                        f.copy_from_slice(&v[1..]);
                        Begin::InFlight(f)
                    }
                    Some(v) if v.first() == Some(&b'D') && v.len() > 33 => {
                        let mut f = [0u8; 32];
                        f.copy_from_slice(&v[1..33]);
                        match serde_json::from_slice::<Record>(&v[33..]) {
                            Ok(rec) => Begin::Done(f, Box::new(rec)),
                            Err(_) => Begin::InFlight(f),
                        }
                    }
                    Some(_) => Begin::InFlight([0; 32]),
                })
            }
        }
    }

    pub(crate) async fn complete(
        &self,
        key: &[u8],
        fp: [u8; 32],
        record: Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.complete(key, fp, record, ttl);
                Ok(())
            }
            Store::Redis(r) => {
                let mut value = b"D".to_vec();
                value.extend_from_slice(&fp);
                value.extend_from_slice(&serde_json::to_vec(&record).unwrap_or_default());
                let ms = u64::try_from(ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1)
                    .to_string();
                let _: i64 = r
                    .script(
                        &scripts().0,
                        &[key],
                        &[&lock_value(&fp), &value, ms.as_bytes()],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    pub(crate) async fn release(&self, key: &[u8], fp: [u8; 32]) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.release(key, fp);
                Ok(())
            }
            Store::Redis(r) => {
                let _: i64 = r.script(&scripts().1, &[key], &[&lock_value(&fp)]).await?;
                Ok(())
            }
        }
    }
}
