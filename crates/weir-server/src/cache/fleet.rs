//! Purges that reach the fleet (`fleet_purge = true` with `[redis]`): every purge applied here
//! (admin API or `PURGE`) is also appended to a Redis Stream, and every instance reads the
//! stream and applies the purges the others made.
//!
//! A stream rather than pub/sub because an instance that was cut off resumes reading from the
//! last entry it applied and replays what it missed. An entry carries the instance that made
//! it, which skips its own (applied when made), and each instance reads each entry once (the
//! id it resumes from only moves forward), so no purge is applied twice to one store. With a
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

/// One purge, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Order {
    /// `url`, `prefix`, `tag` or `all`.
    pub(crate) kind: &'static str,
    pub(crate) target: String,
    pub(crate) soft: bool,
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

/// One cache's fleet channel.
pub(crate) struct Fleet {
    store: Arc<RedisStore>,
    stream: String,
    /// This instance (a random id, kept by the cache across reloads), in the entries it writes.
    pub(crate) instance: Arc<str>,
    pending: Mutex<VecDeque<Order>>,
    wake: Notify,
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
    /// `instance` names this instance in the stream: the running cache's, or a new random one.
    pub(crate) fn new(
        cache: &str,
        store: Arc<RedisStore>,
        disk: Option<&str>,
        instance: Option<Arc<str>>,
    ) -> Self {
        Self {
            stream: format!("{}purge:{cache}", store.prefix()),
            store,
            instance: instance.unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)).into()),
            pending: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            id_file: disk.map(|d| PathBuf::from(d).join("fleet-purge.id")),
            counters: FleetCounters::default(),
            started: AtomicBool::new(false),
        }
    }

    /// Purges waiting to be published.
    pub(crate) fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queues a purge made here for the fleet (it has been applied here already).
    pub(crate) fn publish(&self, order: Order) {
        let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_PENDING {
            q.pop_front();
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(order);
        drop(q);
        self.wake.notify_one();
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

    async fn xadd(&self, o: &Order) -> Result<(), weir_policy::store::StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LEN)
            .arg("*")
            .arg("origin")
            .arg(&*self.instance)
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
        let next = f
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .front()
            .cloned();
        let Some(order) = next else {
            // Woken by a publish; re-checked every second so the loop notices when its cache is
            // gone.
            let _ = tokio::time::timeout(Duration::from_secs(1), f.wake.notified()).await;
            continue;
        };
        match f.xadd(&order).await {
            Ok(()) => {
                let mut q = f.pending.lock().unwrap_or_else(|p| p.into_inner());
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
                let theirs = fields.get("origin").map(String::as_str) != Some(&*fleet.instance);
                if let (true, Some(order)) = (theirs, Order::parse(&fields)) {
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
