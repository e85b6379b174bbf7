//! The cache phase of `proxy` routes with `cache = "name"` (RFC 9111 shared cache, memory
//! tier): before forwarding, a stored variant that may be reused answers (with `Age`, client
//! conditionals → 304/412, HEAD from a stored GET); a stale one is revalidated with
//! `If-None-Match`/`If-Modified-Since`, freshened by a 304, or served when the origin fails
//! and `stale-if-error` or the grace allows; after forwarding, a storable response is copied
//! into the store as it streams to the client. Unsafe methods invalidate what they touch.
//! Every response of a cached route carries `Cache-Status` (RFC 9211).

use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
use weir_cache::freshness::Freshness;
use weir_cache::key::{KeyRules, QueryRule};
use weir_cache::reuse::StalePolicy;
use weir_cache::status::{CacheStatus, Forward};
use weir_cache::storable::StoreRules;
use weir_cache::store::Variant;
use weir_cache::tiers::{DiskTier, Tiers};
use weir_core::ResponseBody;

mod coalesce;
mod counters;
mod disk_fill;
pub(crate) mod fleet;
mod lookup;
pub(crate) mod metrics;
pub(crate) mod refresh;
mod serve;
mod store;
mod tiers;

use coalesce::{FillGuard, Fills};
use counters::CacheCounters;

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// One `[[caches]]` entry, compiled; carried over a reload when its settings are unchanged.
#[derive(Debug)]
pub(crate) struct CacheHandle {
    pub(crate) name: Arc<str>,
    /// Memory and disk, carried over a reload (see [`Tiers::open`]).
    tiers: Tiers,
    set_cookie: weir_config::SetCookie,
    store_post: bool,
    rules: KeyRules,
    store_rules: StoreRules,
    targeted: Vec<HeaderName>,
    max_object: usize,
    stale: StalePolicy,
    lock_timeout: std::time::Duration,
    fills: Arc<Fills>,
    tag_headers: Vec<HeaderName>,
    purge_method: Option<weir_policy::ip::IpRules>,
    pub(crate) counters: Arc<CacheCounters>,
    /// The fleet channel (`fleet_purge`).
    pub(crate) fleet: Option<Arc<fleet::Fleet>>,
}

impl CacheHandle {
    /// The primary key a request gets, in words: the URL the entry is stored under, then each
    /// header (`+ name: value`) and cookie the key rules add — what `weir explain` shows.
    pub(crate) fn describe_key(
        &self,
        scheme: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> String {
        let key = self.rules.primary(scheme, host, path, query, headers);
        // The key separates a header's name (0) from each of its values (1).
        let mut out = String::with_capacity(key.len());
        let mut parts = key.split(|&b| b == 0);
        out.push_str(&String::from_utf8_lossy(parts.next().unwrap_or_default()));
        for part in parts {
            let mut values = part.split(|&b| b == 1);
            out.push_str(" + ");
            out.push_str(&String::from_utf8_lossy(values.next().unwrap_or_default()));
            let joined: Vec<String> = values
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            out.push_str(": ");
            out.push_str(if joined.is_empty() { "(absent)" } else { "" });
            out.push_str(&joined.join(", "));
        }
        out
    }
}

/// What the cache decided before the forward.
pub(crate) enum Begin {
    /// Answered from the store.
    Serve(Response<ResponseBody>),
    /// Go forward, then [`Plan::finish`].
    Forward(Box<Plan>),
    /// Answered from the store (`stale-while-revalidate`); `request` goes forward in the
    /// background and its response refreshes the store through [`Plan::finish`].
    Refresh {
        /// The stale response for the client.
        response: Response<ResponseBody>,
        /// The refresh's cache state (it leads the key's fill).
        plan: Box<Plan>,
        /// The refresh request's head (GET, the client's fields minus its conditionals).
        request: Box<Parts>,
    },
}

/// A forwarded request's cache state.
pub(crate) struct Plan {
    handle: Arc<CacheHandle>,
    primary: Vec<u8>,
    uri: String,
    scheme: &'static str,
    host: String,
    path_and_query: String,
    method: Method,
    request_headers: HeaderMap,
    request_time: SystemTime,
    fwd: Forward,
    /// A stored variant being revalidated, and whether it may be served if the origin fails.
    stale: Option<(Arc<Variant>, bool)>,
    /// Weir added the validators (so a 304 is for the cache, not the client).
    added_validators: bool,
    /// This request fills the key; waiters wake when it is dropped.
    fill: Option<FillGuard>,
}

impl CacheHandle {
    /// Compiles `cfg`. At a reload, `previous` are the running caches: what they store
    /// carries over rather than starting cold. The handle of the same name lends its
    /// counters and its fills in flight (so waiters keep coalescing across the swap); the
    /// tiers carry over as [`Tiers::open`] says.
    pub(crate) fn compile(
        cfg: &weir_config::Cache,
        previous: &[Arc<CacheHandle>],
        redis: Option<&Arc<weir_policy::RedisStore>>,
    ) -> Result<Self, std::io::Error> {
        let same_name = previous.iter().find(|h| *h.name == *cfg.name);
        let query = match &cfg.key_query {
            weir_config::KeyQuery::All => QueryRule::All,
            weir_config::KeyQuery::None => QueryRule::Ignore,
            weir_config::KeyQuery::Keep(k) => QueryRule::Keep(k.clone()),
            weir_config::KeyQuery::Drop(d) => QueryRule::Drop(d.clone()),
        };
        let names = |list: &[String]| {
            list.iter()
                .filter_map(|h| HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok())
                .collect::<Vec<_>>()
        };
        let targeted = names(&cfg.targeted_fields);
        let tiers = Tiers::open(
            cfg.max_memory.bytes(),
            cfg.disk.as_ref().map(|d| DiskTier {
                dir: std::path::Path::new(&d.path),
                max_bytes: d.max_size.bytes(),
                large_object: d.large_object_size.bytes(),
            }),
            targeted.clone(),
            same_name.map(|h| &h.tiers),
            previous.iter().map(|h| &h.tiers),
        )?;
        let mut methods = vec![Method::GET, Method::HEAD];
        if cfg.store_post {
            methods.push(Method::POST);
        }
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            tiers,
            set_cookie: cfg.set_cookie,
            store_post: cfg.store_post,
            rules: KeyRules {
                query,
                sort_query: cfg.key_sort_query,
                headers: names(&cfg.key_headers),
                cookies: cfg.key_cookies.clone(),
            },
            store_rules: StoreRules {
                store_set_cookie: cfg.set_cookie != weir_config::SetCookie::NoStore,
                methods,
            },
            targeted,
            max_object: usize::try_from(cfg.max_object_size.bytes()).unwrap_or(usize::MAX),
            stale: StalePolicy {
                grace: cfg.grace.get(),
            },
            lock_timeout: cfg.lock_timeout.get(),
            fills: same_name.map_or_else(Arc::default, |h| h.fills.clone()),
            tag_headers: names(&cfg.tag_headers),
            purge_method: cfg
                .purge_method
                .as_ref()
                .map(weir_policy::ip::IpRules::compile),
            counters: same_name.map_or_else(Arc::default, |h| h.counters.clone()),
            fleet: redis.filter(|_| cfg.fleet_purge).map(|store| {
                Arc::new(fleet::Fleet::new(
                    &cfg.name,
                    store.clone(),
                    cfg.disk.as_ref().map(|d| d.path.as_str()),
                    same_name
                        .and_then(|h| h.fleet.as_ref())
                        .map(|f| f.outbox.clone()),
                ))
            }),
        })
    }

    /// Purges here at once and, with `fleet_purge`, on every other instance.
    pub(crate) async fn purge_everywhere(self: &Arc<Self>, order: fleet::Order) -> usize {
        let n = order.clone().apply(self.clone()).await;
        if let Some(f) = &self.fleet {
            f.publish(order);
        }
        n
    }

    /// Fills in flight: keys being filled now (each ends when its response is stored or
    /// abandoned).
    pub(crate) fn fills_in_flight(&self) -> usize {
        self.fills.in_flight()
    }

    /// Whether the cache has a disk tier.
    pub(crate) fn has_disk(&self) -> bool {
        self.tiers.has_disk()
    }
}

fn ttl(f: &Freshness, now: SystemTime) -> i64 {
    let left = i64::try_from(f.ttl(now).as_secs()).unwrap_or(i64::MAX);
    let stale = i64::try_from(f.staleness(now).as_secs()).unwrap_or(i64::MAX);
    if left > 0 {
        left
    } else {
        -stale
    }
}

fn set_status(h: &mut HeaderMap, status: &CacheStatus, name: &str) {
    if let Ok(v) = HeaderValue::from_str(&status.render(name)) {
        h.insert(CACHE_STATUS.clone(), v);
    }
}
