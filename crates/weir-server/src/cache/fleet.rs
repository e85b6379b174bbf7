//! Purges that reach the fleet (`fleet_purge = true` with `[redis]`): every purge applied here
//! (admin API or `PURGE`) is also appended to a Redis Stream, and every instance reads the
//! stream and applies the purges the others made.
//!
//! A stream rather than pub/sub because an instance that was cut off resumes reading from the
//! last entry it applied and replays what it missed. An entry carries the instance that made
//! it, which skips its own (applied when made), and each instance reads each entry once (the
//! id it resumes from only moves forward). Publishing is at least once (an `XADD` Redis ran
//! whose reply was lost is sent again), so an entry also carries its maker's sequence number
//! (`seq`, rising by one per purge, in order) and a reader skips any entry whose number is not
//! above the last it applied from that maker: no purge is applied twice to one store. With a
//! disk tier the last id is kept in its directory, so a restarted instance also replays what
//! it missed while it was down. When Redis is unreachable a purge applies here at once and
//! waits in a bounded queue to be published when Redis is back.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use weir_cache::store::Purge;
use weir_policy::RedisStore;

use super::CacheHandle;

/// Purges waiting to be published, at most (the oldest are dropped past it, counted).
const MAX_PENDING: usize = 10_000;
/// Entries the stream keeps (approximately); an instance away for longer than it takes the
/// fleet to make this many purges misses the oldest.
const STREAM_LEN: usize = 100_000;
/// How long one blocking read waits for new entries.
const BLOCK: Duration = Duration::from_secs(1);
/// Makers whose last sequence number a reader remembers, at most (one per instance lifetime
/// seen; a duplicate follows its original closely, so forgetting old makers loses nothing).
const MAX_MAKERS: usize = 4096;

/// One purge, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    /// `url`, `prefix`, `tag` or `all`.
    pub(crate) kind: &'static str,
    pub(crate) target: String,
    pub(crate) soft: bool,
}

/// An order as queued: numbered by its maker when queued.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Numbered {
    seq: u64,
    order: Order,
}

impl Order {
    /// Applies the order to the cache (on the blocking pool: a disk tier deletes files).
    pub(crate) async fn apply(self, cache: Arc<CacheHandle>) -> usize {
        tokio::task::spawn_blocking(move || {
            let what = match self.kind {
                "url" => Purge::Uri(&self.target),
                "prefix" => Purge::Prefix(&self.target),
                "tag" => Purge::Tag(&self.target),
                _ => Purge::All,
            };
            cache.purge(what, self.soft)
        })
        .await
        .unwrap_or(0)
    }

    fn parse(fields: &HashMap<String, String>) -> Option<Self> {
        let kind = match fields.get("kind")?.as_str() {
            "url" => "url",
            "prefix" => "prefix",
            "tag" => "tag",
            "all" => "all",
            _ => return None,
        };
        Some(Self {
            kind,
            target: fields.get("target").cloned().unwrap_or_default(),
            soft: fields.get("soft").is_some_and(|s| s == "1"),
        })
    }
}

/// What the fleet channel of one cache did.
#[derive(Debug, Default)]
pub(crate) struct FleetCounters {
    pub(crate) published: AtomicU64,
    /// Publish attempts that failed (the purge stays queued).
    pub(crate) publish_errors: AtomicU64,
    /// Queued purges dropped because the queue was full.
    pub(crate) dropped: AtomicU64,
    /// Purges made by other instances, applied here.
    pub(crate) applied: AtomicU64,
    /// Reads of the stream that failed (the reader reconnects and resumes).
    pub(crate) read_errors: AtomicU64,
}

/// What this instance publishes from: its name in the stream, the next sequence number and the
/// purges not yet published. Kept by the cache across reloads, so numbers keep rising and a
/// purge queued while Redis is away survives a reload.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// This instance (a random id), in the entries it writes.
    instance: Box<str>,
    next_seq: AtomicU64,
    pending: Mutex<VecDeque<Numbered>>,
    wake: Notify,
}

impl Outbox {
    fn new() -> Self {
        Self {
            instance: format!("{:016x}", fastrand::u64(..)).into(),
            next_seq: AtomicU64::new(1),
            pending: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Numbered>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One cache's fleet channel.
pub(crate) struct Fleet {
    store: Arc<RedisStore>,
    stream: String,
    pub(crate) outbox: Arc<Outbox>,
    /// Where the last applied entry's id is kept (a disk tier's directory).
    id_file: Option<PathBuf>,
    pub(crate) counters: FleetCounters,
    started: AtomicBool,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// `outbox` is the running cache's (same instance name, numbers and queue), or a new one.
    pub(crate) fn new(
        cache: &str,
        store: Arc<RedisStore>,
        disk: Option<&str>,
        outbox: Option<Arc<Outbox>>,
    ) -> Self {
        Self {
            stream: format!("{}purge:{cache}", store.prefix()),
            store,
            outbox: outbox.unwrap_or_else(|| Arc::new(Outbox::new())),
            id_file: disk.map(|d| PathBuf::from(d).join("fleet-purge.id")),
            counters: FleetCounters::default(),
            started: AtomicBool::new(false),
        }
    }

    /// Purges waiting to be published.
    pub(crate) fn pending(&self) -> usize {
        self.outbox.queue().len()
    }

    /// Queues a purge made here for the fleet (it has been applied here already).
    pub(crate) fn publish(&self, order: Order) {
        let mut q = self.outbox.queue();
        if q.len() >= MAX_PENDING {
            q.pop_front();
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // Numbered under the queue's lock, so the queue is in number order.
        let seq = self.outbox.next_seq.fetch_add(1, Ordering::Relaxed);
        q.push_back(Numbered { seq, order });
        drop(q);
        self.outbox.wake.notify_one();
    }

    /// Starts the publisher and the reader (once); both end when the cache is dropped.
    pub(crate) fn start(self: &Arc<Self>, cache: &Arc<CacheHandle>) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(cache);
        tokio::spawn(publish_loop(Arc::downgrade(self)));
        tokio::spawn(read_loop(self.clone(), weak));
    }

    async fn xadd(&self, n: &Numbered) -> Result<(), weir_policy::store::StoreError> {
        let o = &n.order;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("origin")
            .arg(&*self.outbox.instance)
            .arg("seq")
            .arg(n.seq)
            .arg("kind")
            .arg(o.kind)
            .arg("target")
            .arg(&o.target)
            .arg("soft")
            .arg(if o.soft { "1" } else { "0" });
        self.store.query::<String>(&cmd).await.map(drop)
    }

    fn saved_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.id_file.as_ref()?).ok()?;
        let id = text.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '-'))
            .then(|| id.to_owned())
    }

    fn save_id(&self, id: &str) {
        if let Some(path) = &self.id_file {
            let tmp = path.with_extension("id.new");
            if std::fs::write(&tmp, id).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

/// Publishes queued purges in order; on failure keeps them and tries again with backoff.
async fn publish_loop(fleet: Weak<Fleet>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(f) = fleet.upgrade() else { return };
        let next = f.outbox.queue().front().cloned();
        let Some(order) = next else {
            // Woken by a publish; re-checked every second so the loop notices when its cache is
            // gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), f.outbox.wake.notified()).await;
            continue;
        };
        match f.xadd(&order).await {
            Ok(()) => {
                // A reloaded cache's publisher may have sent it too (readers skip the repeat).
                let mut q = f.outbox.queue();
                if q.front() == Some(&order) {
                    q.pop_front();
                }
                f.counters.published.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                f.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(stream = %f.stream, error = %e, "fleet purge not published yet");
                drop(f);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One stream's reply to `XREAD`: `[[stream, [[id, {field: value}], …]]]`, or nil.
type Entries = Option<Vec<(String, Vec<(String, HashMap<String, String>)>)>>;

/// Reads the stream from the last entry applied (from the top at first start), applying other
/// instances' purges; reconnects and resumes after any error.
async fn read_loop(fleet: Arc<Fleet>, cache: Weak<CacheHandle>) {
    let mut last: Option<String> = fleet.saved_id();
    let mut makers = Makers::default();
    let mut backoff = Duration::from_millis(100);
    'connect: loop {
        if cache.strong_count() == 0 {
            return;
        }
        let conn = fleet.store.dedicated(BLOCK + Duration::from_secs(2)).await;
        let mut conn = match conn {
            Ok(c) => c,
            Err(_) => {
                fleet.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        // First start without a saved id: only purges made from now on.
        if last.is_none() {
            let top: redis::RedisResult<Vec<(String, HashMap<String, String>)>> =
                redis::cmd("XREVRANGE")
                    .arg(&fleet.stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await;
            match top {
                Ok(top) => {
                    last = Some(
                        top.first()
                            .map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone()),
                    );
                }
                Err(_) => {
                    fleet.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        loop {
            let Some(handle) = cache.upgrade() else {
                return;
            };
            drop(handle);
            let from = last.clone().unwrap_or_else(|| "0-0".to_owned());
            let read: redis::RedisResult<Entries> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(256)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&fleet.stream)
                .arg(&from)
                .query_async(&mut conn)
                .await;
            let entries = match read {
                Ok(r) => r.into_iter().flatten().flat_map(|(_, e)| e),
                Err(e) => {
                    fleet.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(stream = %fleet.stream, error = %e, "fleet purge stream read failed; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue 'connect;
                }
            };
            backoff = Duration::from_millis(100);
            let mut moved = false;
            for (id, fields) in entries {
                let origin = fields.get("origin").map(String::as_str);
                let theirs = origin != Some(&*fleet.outbox.instance);
                let fresh = makers.fresh(origin, fields.get("seq").map(String::as_str));
                if let (true, true, Some(order)) = (theirs, fresh, Order::parse(&fields)) {
                    let Some(handle) = cache.upgrade() else {
                        return;
                    };
                    let n = order.clone().apply(handle).await;
                    fleet.counters.applied.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(stream = %fleet.stream, kind = order.kind, target = %order.target, purged = n, "fleet purge applied");
                }
                last = Some(id);
                moved = true;
            }
            if moved {
                if let Some(id) = &last {
                    fleet.save_id(id);
                }
            }
        }
    }
}

/// The last sequence number applied from each maker, to skip an entry published twice.
#[derive(Debug, Default)]
struct Makers(HashMap<String, u64>);

impl Makers {
    /// Whether an entry from `origin` numbered `seq` is new; remembers it if so. An entry
    /// without a number (an older Weir's) is always new.
    fn fresh(&mut self, origin: Option<&str>, seq: Option<&str>) -> bool {
        let (Some(origin), Some(seq)) = (origin, seq.and_then(|s| s.parse::<u64>().ok())) else {
            return true;
        };
        if let Some(last) = self.0.get_mut(origin) {
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        if self.0.len() >= MAX_MAKERS {
            self.0.clear();
        }
        self.0.insert(origin.to_owned(), seq);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_or_older_number_from_one_maker_is_skipped() {
        let mut m = Makers::default();
        assert!(m.fresh(Some("a"), Some("1")));
        assert!(m.fresh(Some("a"), Some("2")));
        assert!(!m.fresh(Some("a"), Some("2")), "published twice");
        assert!(!m.fresh(Some("a"), Some("1")));
        assert!(m.fresh(Some("b"), Some("1")), "another maker's own numbers");
        assert!(m.fresh(Some("a"), Some("3")));
        assert!(m.fresh(Some("a"), None), "unnumbered entries always apply");
        assert!(m.fresh(None, Some("1")));
    }
}
