//! The cache phase of `proxy` routes with `cache = "name"` (RFC 9111 shared cache, memory
//! tier): before forwarding, a stored variant that may be reused answers (with `Age`, client
//! conditionals → 304/412, HEAD from a stored GET); a stale one is revalidated with
//! `If-None-Match`/`If-Modified-Since`, freshened by a 304, or served when the origin fails
//! and `stale-if-error` or the grace allows; after forwarding, a storable response is copied
//! into the store as it streams to the client. Unsafe methods invalidate what they touch.
//! Every response of a cached route carries `Cache-Status` (RFC 9211).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{AGE, CONTENT_LENGTH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use weir_cache::conditional::{self, Outcome as Cond};
use weir_cache::directives::{RequestDirectives, ResponseDirectives};
use weir_cache::disk::{DiskStore, FileBody};
use weir_cache::freshness::Freshness;
use weir_cache::key::{self, KeyRules, QueryRule};
use weir_cache::reuse::{self, Reuse, StalePolicy};
use weir_cache::status::{CacheStatus, Forward};
use weir_cache::storable::{self, StoreRules};
use weir_cache::store::{Lookup, MemoryStore, Purge, Variant};
use weir_core::{ProxyError, RequestCtx, ResponseBody};

use crate::pipeline::Outcome;
use crate::ranges::{self, Part};

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Counters of one cache, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hit: AtomicU64,
    pub(crate) miss: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) stale_while_revalidate: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) revalidated: AtomicU64,
    pub(crate) refetched: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) not_stored: AtomicU64,
    pub(crate) invalidated: AtomicU64,
    pub(crate) collapsed: AtomicU64,
    pub(crate) purged: AtomicU64,
    pub(crate) disk_hits: AtomicU64,
    pub(crate) disk_writes: AtomicU64,
    pub(crate) disk_errors: AtomicU64,
}

/// Fills in flight: the first miss of a key leads; later ones wait for it.
#[derive(Debug, Default)]
struct Fills {
    map: std::sync::Mutex<std::collections::HashMap<Vec<u8>, tokio::sync::watch::Receiver<()>>>,
}

/// Held by the request filling a key; dropping it wakes the waiters.
pub(crate) struct FillGuard {
    handle: Arc<CacheHandle>,
    key: Vec<u8>,
    _tx: tokio::sync::watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let mut map = self
            .handle
            .fills
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.key);
        // The sender drops with the guard: every waiter's `changed()` returns.
    }
}

enum Turn {
    Lead(FillGuard),
    Wait(tokio::sync::watch::Receiver<()>),
}

/// One `[[caches]]` entry, compiled; carried over a reload when its settings are unchanged.
#[derive(Debug)]
pub(crate) struct CacheHandle {
    pub(crate) name: Arc<str>,
    /// Shared with the handle this one replaced at a reload when `max_memory` is unchanged.
    store: Arc<MemoryStore>,
    max_memory: u64,
    /// The disk tier, when configured.
    disk: Option<Arc<DiskStore>>,
    /// Objects at least this large live on disk only (with a disk tier).
    large_object: usize,
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
    /// counters, its fills in flight (so waiters keep coalescing across the swap) and its
    /// memory tier when `max_memory` is unchanged; a disk tier in the same directory is
    /// always kept (one index per directory), with the new byte cap.
    pub(crate) fn compile(
        cfg: &weir_config::Cache,
        previous: &[Arc<CacheHandle>],
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
        let disk = match &cfg.disk {
            Some(d) => {
                let dir = std::path::Path::new(&d.path);
                let kept = previous
                    .iter()
                    .filter_map(|h| h.disk.as_ref())
                    .find(|k| k.dir() == dir)
                    .cloned();
                match kept {
                    Some(k) => {
                        k.set_max_bytes(d.max_size.bytes());
                        Some(k)
                    }
                    None => Some(Arc::new(DiskStore::open(
                        dir,
                        d.max_size.bytes(),
                        targeted.clone(),
                    )?)),
                }
            }
            None => None,
        };
        let max_memory = cfg.max_memory.bytes();
        let mut methods = vec![Method::GET, Method::HEAD];
        if cfg.store_post {
            methods.push(Method::POST);
        }
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            store: same_name
                .filter(|h| h.max_memory == max_memory)
                .map_or_else(
                    || Arc::new(MemoryStore::new(max_memory)),
                    |h| h.store.clone(),
                ),
            max_memory,
            disk,
            large_object: cfg.disk.as_ref().map_or(usize::MAX, |d| {
                usize::try_from(d.large_object_size.bytes()).unwrap_or(usize::MAX)
            }),
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
        })
    }

    /// Purges (hard or soft) what `what` names; returns the URIs (or tagged objects) touched.
    pub(crate) fn purge(&self, what: Purge<'_>, soft: bool) -> usize {
        self.counters.purged.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let n = self.store.purge(what, soft, now);
        match &self.disk {
            Some(d) => n.max(d.purge(what, soft, now)),
            None => n,
        }
    }

    /// Objects and bytes stored, in memory and on disk.
    pub(crate) fn usage(&self) -> [(u64, u64); 2] {
        let disk = self.disk.as_ref().map_or((0, 0), |d| d.usage());
        [self.store.usage(), disk]
    }

    /// Objects evicted to stay under the byte caps, from memory and from disk.
    pub(crate) fn evictions(&self) -> [u64; 2] {
        [
            self.store.evictions(),
            self.disk.as_ref().map_or(0, |d| d.evictions()),
        ]
    }

    /// Removes everything stored for a target URI (`host` + path and query), in both tiers;
    /// returns how many primary keys it touched. Both indexes forget at once (the next lookup
    /// misses); the disk tier's files are deleted on the blocking pool, never on this thread.
    fn invalidate_uri(&self, uri: &str) -> usize {
        let n = self.store.invalidate_uri(uri);
        let Some(d) = &self.disk else { return n };
        let (on_disk, doomed) = d.forget_uri(uri);
        if !doomed.is_empty() {
            drop(tokio::task::spawn_blocking(move || {
                weir_cache::disk::remove_files(doomed);
            }));
        }
        n.max(on_disk)
    }

    /// Fills in flight: keys being filled now (each ends when its response is stored or
    /// abandoned).
    pub(crate) fn fills_in_flight(&self) -> usize {
        self.fills
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether the cache has a disk tier.
    pub(crate) fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The variant for a request: from memory, else from disk (a small one is read and put in
    /// memory; a large one is served from its file).
    async fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Lookup {
        let mem = self.store.lookup(primary, request);
        let Some(disk) = &self.disk else {
            return mem;
        };
        if matches!(mem, Lookup::Found(_)) {
            return mem;
        }
        let (found, hit) = disk.lookup(primary, request);
        let (Lookup::Found(v), Some(hit)) = (found, hit) else {
            return mem;
        };
        self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
        let len = usize::try_from(v.body_len).unwrap_or(usize::MAX);
        if len >= self.large_object {
            let mut on_disk = (*v).clone();
            on_disk.file = Some(hit.body);
            return Lookup::Found(Arc::new(on_disk));
        }
        let file = hit.body.clone();
        let read = tokio::task::spawn_blocking(move || file.read(0, file.len)).await;
        let Ok(Ok(body)) = read else {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            return mem;
        };
        let mut promoted = (*v).clone();
        promoted.body = body;
        self.store.insert_tagged(
            primary.to_vec(),
            hit.uri,
            hit.vary,
            promoted.clone(),
            hit.tags,
        );
        Lookup::Found(Arc::new(promoted))
    }

    /// Stores a variant: in memory unless it is large (and there is a disk tier), and on disk
    /// (written on a blocking thread).
    fn keep(
        self: &Arc<Self>,
        primary: Vec<u8>,
        uri: String,
        vary: Vec<HeaderName>,
        v: Variant,
        tags: Vec<String>,
    ) {
        let Some(disk) = self.disk.clone() else {
            self.store.insert_tagged(primary, uri, vary, v, tags);
            return;
        };
        let large = usize::try_from(v.body_len).unwrap_or(usize::MAX) >= self.large_object;
        if !large {
            self.store.insert_tagged(
                primary.clone(),
                uri.clone(),
                vary.clone(),
                v.clone(),
                tags.clone(),
            );
        }
        let this = self.clone();
        drop(tokio::task::spawn_blocking(move || {
            let mut v = v;
            if let Some(file) = v.file.take() {
                // A disk-only object freshened by a 304: its body comes from its old file.
                match file.read(0, file.len) {
                    Ok(b) => v.body = b,
                    Err(_) => {
                        this.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            match disk.insert(&primary, &uri, &vary, &v, &tags) {
                Ok(()) => this.counters.disk_writes.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "cache disk write failed");
                    this.counters.disk_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }));
    }

    /// Leads the fill of `key`, or waits for the request that does.
    fn turn(self: &Arc<Self>, key: &[u8]) -> Turn {
        let mut map = self.fills.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(key) {
            return Turn::Wait(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(());
        map.insert(key.to_vec(), rx);
        Turn::Lead(FillGuard {
            handle: self.clone(),
            key: key.to_vec(),
            _tx: tx,
        })
    }

    /// Looks the request up; may answer it (waiting for a fill of the same key in flight).
    pub(crate) async fn begin(self: &Arc<Self>, ctx: &mut RequestCtx, parts: &mut Parts) -> Begin {
        let scheme = if ctx.tls { "https" } else { "http" };
        let host = ctx.host.as_deref().unwrap_or("").to_owned();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let primary = self.rules.primary(
            scheme,
            &host,
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        );
        let mut plan = Plan {
            handle: self.clone(),
            uri: format!("{host}{path_and_query}"),
            primary,
            scheme,
            host,
            path_and_query,
            method: parts.method.clone(),
            request_headers: HeaderMap::new(),
            request_time: SystemTime::now(),
            fwd: Forward::Method,
            stale: None,
            added_validators: false,
            fill: None,
        };
        if parts.method.as_str() == "PURGE" {
            if let Some(rules) = &self.purge_method {
                ctx.cache = Some("purge");
                let (status, body) = if rules.admits(ctx.client_ip) {
                    self.counters.purged.fetch_add(1, Ordering::Relaxed);
                    let n = self.invalidate_uri(&plan.uri);
                    (StatusCode::OK, format!("{{\"purged\":{n}}}\n"))
                } else {
                    (
                        StatusCode::FORBIDDEN,
                        "{\"status\":403,\"error\":\"purge_denied\"}\n".to_owned(),
                    )
                };
                let mut resp = Response::new(ResponseBody::full(body));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return Begin::Serve(resp);
            }
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            ctx.cache = Some("bypass");
            if parts.method == Method::POST && self.store_post {
                plan.request_headers = parts.headers.clone();
            }
            return Begin::Forward(Box::new(plan));
        }
        plan.request_headers = parts.headers.clone();
        let req = RequestDirectives::parse(&parts.headers);
        let mut collapsed = false;
        loop {
            let now = SystemTime::now();
            let found = match self.lookup(&plan.primary, &parts.headers).await {
                Lookup::Found(v) => {
                    let decision =
                        reuse::decide(&v.freshness, &v.directives, &req, self.stale, now);
                    if decision == Reuse::StaleWhileRevalidate && !collapsed {
                        // RFC 5861 §3: serve the stored response now; one request in the
                        // background refreshes it (none when a fill of the key is in flight).
                        self.counters
                            .stale_while_revalidate
                            .fetch_add(1, Ordering::Relaxed);
                        ctx.cache = Some("stale");
                        let status = CacheStatus {
                            hit: true,
                            ttl: Some(ttl(&v.freshness, now)),
                            detail: Some("stale-while-revalidate"),
                            ..Default::default()
                        };
                        let resp =
                            serve(&v, &parts.method, &parts.headers, now, &status, &self.name);
                        let Turn::Lead(guard) = self.turn(&plan.primary) else {
                            return Begin::Serve(resp);
                        };
                        let mut headers = parts.headers.clone();
                        for h in REFRESH_DROPS {
                            headers.remove(h);
                        }
                        plan.added_validators = add_validators(&mut headers, &v);
                        plan.request_headers = headers.clone();
                        plan.fwd = Forward::Stale;
                        plan.stale = Some((v, true));
                        plan.fill = Some(guard);
                        let mut refresh = http::Request::new(());
                        *refresh.uri_mut() = parts.uri.clone();
                        *refresh.version_mut() = parts.version;
                        *refresh.headers_mut() = headers;
                        return Begin::Refresh {
                            response: resp,
                            plan: Box::new(plan),
                            request: Box::new(refresh.into_parts().0),
                        };
                    }
                    if decision == Reuse::Fresh {
                        self.counters.hit.fetch_add(1, Ordering::Relaxed);
                        ctx.cache = Some("hit");
                        let status = CacheStatus {
                            hit: true,
                            ttl: Some(ttl(&v.freshness, now)),
                            collapsed,
                            ..Default::default()
                        };
                        return Begin::Serve(serve(
                            &v,
                            &parts.method,
                            &parts.headers,
                            now,
                            &status,
                            &self.name,
                        ));
                    }
                    plan.fwd = if req.no_cache || req.max_age.is_some() || req.min_fresh.is_some() {
                        Forward::Request
                    } else {
                        Forward::Stale
                    };
                    // Background refresh is not built yet: stale-while-revalidate revalidates in
                    // line (always allowed); the origin allowed this staleness, so a failure
                    // may still be answered with it.
                    let sie = match decision {
                        Reuse::Revalidate { stale_if_error } => stale_if_error,
                        _ => true,
                    };
                    Some((v, sie))
                }
                Lookup::UriMiss => {
                    plan.fwd = Forward::UriMiss;
                    None
                }
                Lookup::VaryMiss => {
                    plan.fwd = Forward::VaryMiss;
                    None
                }
            };
            // Not answerable from the store: one request per key goes forward, the others
            // wait for it (once, for at most lock_timeout) and look again.
            if !collapsed && !req.only_if_cached && parts.method == Method::GET {
                match self.turn(&plan.primary) {
                    Turn::Wait(mut rx) => {
                        self.counters.collapsed.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::time::timeout(self.lock_timeout, rx.changed()).await;
                        collapsed = true;
                        continue;
                    }
                    Turn::Lead(guard) => plan.fill = Some(guard),
                }
            }
            if parts.method == Method::GET && !req.no_store {
                // The whole object is fetched so that it can be stored; this client gets all of
                // it (a server may ignore Range), later ones their ranges from the store.
                if parts.headers.remove(RANGE).is_some() {
                    parts.headers.remove(IF_RANGE);
                }
            }
            if let Some((v, sie)) = found {
                if !has_validators(&parts.headers) {
                    plan.added_validators = add_validators(&mut parts.headers, &v);
                }
                plan.stale = Some((v, sie));
            }
            break;
        }
        if req.only_if_cached {
            ctx.cache = Some("miss");
            let mut resp = Response::new(ResponseBody::Empty);
            *resp.status_mut() = StatusCode::GATEWAY_TIMEOUT;
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            let status = CacheStatus {
                fwd: Some(plan.fwd),
                detail: Some("only-if-cached"),
                ..Default::default()
            };
            set_status(resp.headers_mut(), &status, &self.name);
            return Begin::Serve(resp);
        }
        Begin::Forward(Box::new(plan))
    }
}

/// Request fields a background refresh does not copy from the request that triggered it:
/// the client's own conditionals and ranges are about its copy, not the cache's.
const REFRESH_DROPS: [HeaderName; 5] = [
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::RANGE,
];

/// Adds the stored response's validator (its `ETag`, else its `Last-Modified`) to a request
/// going forward; whether it added one.
fn add_validators(h: &mut HeaderMap, v: &Variant) -> bool {
    if let Some(tag) = v.headers.get(http::header::ETAG) {
        h.insert(IF_NONE_MATCH, tag.clone());
        true
    } else if let Some(lm) = v.headers.get(http::header::LAST_MODIFIED) {
        h.insert(IF_MODIFIED_SINCE, lm.clone());
        true
    } else {
        false
    }
}

fn has_validators(h: &HeaderMap) -> bool {
    h.contains_key(IF_NONE_MATCH) || h.contains_key(IF_MODIFIED_SINCE)
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

/// Fields a 304 carries (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 7] = [
    http::header::CACHE_CONTROL,
    http::header::CONTENT_LOCATION,
    http::header::DATE,
    http::header::ETAG,
    http::header::EXPIRES,
    http::header::LAST_MODIFIED,
    http::header::VARY,
];

/// A response from a stored variant, with the client's conditionals applied.
fn serve(
    v: &Variant,
    method: &Method,
    request: &HeaderMap,
    now: SystemTime,
    status: &CacheStatus,
    name: &str,
) -> Response<ResponseBody> {
    let age = HeaderValue::from(v.freshness.age(now).as_secs());
    let mut resp = match conditional::evaluate(method, request, &v.headers) {
        Cond::NotModified => {
            let mut r = Response::new(ResponseBody::Empty);
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            for name in &NOT_MODIFIED_FIELDS {
                for value in v.headers.get_all(name) {
                    r.headers_mut().append(name.clone(), value.clone());
                }
            }
            r
        }
        Cond::PreconditionFailed => {
            let mut r = Response::new(ResponseBody::Empty);
            *r.status_mut() = StatusCode::PRECONDITION_FAILED;
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            r
        }
        Cond::Serve => {
            let body = match &v.file {
                _ if *method == Method::HEAD => ResponseBody::Empty,
                Some(f) => file_body(vec![Part::Slice(0, f.len)], f.clone()),
                None => ResponseBody::full(v.body.clone()),
            };
            let mut r = Response::new(body);
            *r.status_mut() = v.status;
            *r.headers_mut() = v.headers.clone();
            r.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(v.body_len));
            if *method == Method::GET && v.status == StatusCode::OK {
                serve_ranges(&mut r, v, request);
            }
            r
        }
    };
    resp.headers_mut().insert(AGE, age);
    set_status(resp.headers_mut(), status, name);
    resp
}

/// A stored 200 answers a `Range` request (RFC 9110 §14.2) with a 206 of the stored bytes (or
/// `multipart/byteranges`, or a 416), when `If-Range` (if any) still matches.
fn serve_ranges(r: &mut Response<ResponseBody>, v: &Variant, request: &HeaderMap) {
    let Some(header) = request.get(RANGE).and_then(|h| h.to_str().ok()) else {
        return;
    };
    let etag = v
        .headers
        .get(http::header::ETAG)
        .and_then(|e| e.to_str().ok());
    let modified = v
        .headers
        .get(http::header::LAST_MODIFIED)
        .and_then(|m| m.to_str().ok())
        .and_then(|m| httpdate::parse_http_date(m).ok());
    if !ranges::if_range_holds(request, etag, modified) {
        return;
    }
    let len = v.body_len;
    let Some(set) = ranges::parse(header, len) else {
        return;
    };
    if let Some(f) = &v.file {
        let parts = ranges::partial(r, &set, len);
        *r.body_mut() = file_body(parts, f.clone());
        return;
    }
    let mut body = bytes::BytesMut::new();
    let mut single = None;
    let parts = ranges::partial(r, &set, len);
    let only = parts.len() == 1;
    for part in parts {
        match part {
            Part::Bytes(b) => body.extend_from_slice(&b),
            Part::Slice(start, n) => {
                let (a, b) = (
                    usize::try_from(start).unwrap_or(usize::MAX),
                    usize::try_from(start + n).unwrap_or(usize::MAX),
                );
                let slice = v.body.slice(a.min(v.body.len())..b.min(v.body.len()));
                if only {
                    single = Some(slice);
                } else {
                    body.extend_from_slice(&slice);
                }
            }
        }
    }
    *r.body_mut() = ResponseBody::full(single.unwrap_or_else(|| body.freeze()));
}

/// A body made of framing bytes and slices of a stored object's file, read 64 KiB at a time
/// on blocking threads as the client takes them.
fn file_body(parts: Vec<Part>, file: FileBody) -> ResponseBody {
    use futures_util::StreamExt;
    const CHUNK: u64 = 64 * 1024;
    let pieces = parts.into_iter().flat_map(|p| -> Vec<Part> {
        match p {
            Part::Bytes(b) => vec![Part::Bytes(b)],
            Part::Slice(start, n) => (0..n.div_ceil(CHUNK))
                .map(|i| Part::Slice(start + i * CHUNK, CHUNK.min(n - i * CHUNK)))
                .collect(),
        }
    });
    let stream = futures_util::stream::iter(pieces).then(move |p| {
        let file = file.clone();
        async move {
            match p {
                Part::Bytes(b) => Ok(b),
                Part::Slice(start, n) => tokio::task::spawn_blocking(move || file.read(start, n))
                    .await
                    .map_err(std::io::Error::other)?,
            }
        }
    });
    let frames = stream.map(|r| {
        r.map(http_body::Frame::data)
            .map_err(|e| -> weir_core::BoxError { e.into() })
    });
    ResponseBody::Stream(http_body_util::BodyExt::boxed_unsync(
        http_body_util::StreamBody::new(frames),
    ))
}

/// What a fill straight to disk needs on its blocking thread.
struct DiskJob {
    handle: Arc<CacheHandle>,
    disk: Arc<DiskStore>,
    primary: Vec<u8>,
    uri: String,
    vary: Vec<HeaderName>,
    meta: Variant,
    tags: Vec<String>,
    /// The declared length: a fill that reached it is complete even if the body was not
    /// polled to its end (hyper stops at the declared length).
    expected: Option<usize>,
    fill: Option<FillGuard>,
}

/// What the body hands the disk writer.
enum FillMsg {
    Chunk(Bytes),
    End,
}

/// Writes what a [`DiskTee`] sends into a disk fill, and commits it when the body ended whole.
/// Opening the file, each batch of writes (whatever is queued when the previous batch is done)
/// and the commit run on the blocking pool; while the origin is still sending, no thread is
/// held, so slow fills do not tie up the pool.
async fn write_fill(job: DiskJob, mut rx: tokio::sync::mpsc::Receiver<FillMsg>) {
    let DiskJob {
        handle,
        disk,
        primary,
        uri,
        vary,
        meta,
        tags,
        expected,
        fill,
    } = job;
    let _fill = fill;
    let counters = &handle.counters;
    let begun =
        tokio::task::spawn_blocking(move || disk.begin(&primary, &uri, &vary, &meta, &tags)).await;
    let Ok(Ok(mut writing)) = begun else {
        counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut ended = false;
    while !ended {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                FillMsg::Chunk(b) => batch.push(b),
                FillMsg::End => {
                    ended = true;
                    break;
                }
            }
            next = rx.try_recv().ok();
        }
        let written = tokio::task::spawn_blocking(move || {
            for b in &batch {
                writing.write(b)?;
            }
            Ok::<_, std::io::Error>(writing)
        })
        .await;
        match written {
            Ok(Ok(w)) => writing = w,
            // The fill was dropped on the blocking thread, its temporary file removed.
            _ => {
                counters.disk_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    let complete = ended || expected.is_some_and(|n| writing.written() == n as u64);
    let committed = tokio::task::spawn_blocking(move || {
        // An incomplete fill is dropped here, which removes its temporary file.
        complete.then(|| writing.commit())
    })
    .await;
    match committed {
        Ok(Some(Ok(()))) => {
            counters.stored.fetch_add(1, Ordering::Relaxed);
            counters.disk_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(None) => {}
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "cache disk write failed");
            counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            counters.disk_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A response body on its way to the client whose bytes are also written, as they pass, into
/// a disk fill (see [`write_fill`]). The channel is bounded: a client is never served faster
/// than the disk takes the copy (no unbounded buffering), and the copy is abandoned — its
/// temporary file removed — when the body fails, exceeds `limit`, or is dropped early.
struct DiskTee {
    inner: ResponseBody,
    tx: Option<tokio_util::sync::PollSender<FillMsg>>,
    seen: usize,
    limit: usize,
}

impl DiskTee {
    fn start(
        inner: ResponseBody,
        limit: usize,
        job: DiskJob,
    ) -> http_body_util::combinators::UnsyncBoxBody<Bytes, weir_core::BoxError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<FillMsg>(16);
        drop(tokio::spawn(write_fill(job, rx)));
        http_body_util::combinators::UnsyncBoxBody::new(Self {
            inner,
            tx: Some(tokio_util::sync::PollSender::new(tx)),
            seen: 0,
            limit,
        })
    }
}

impl http_body::Body for DiskTee {
    type Data = Bytes;
    type Error = weir_core::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        // Room for the copy first: the client waits for the disk, not the other way round.
        if let Some(tx) = &mut this.tx {
            match tx.poll_reserve(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => this.tx = None,
                Poll::Ready(Ok(())) => {}
            }
        }
        let polled = match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(p) => p,
        };
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(data), Some(tx)) = (frame.data_ref(), &mut this.tx) {
                    this.seen += data.len();
                    // Over the limit, or the writer gone: the copy is abandoned.
                    if this.seen > this.limit || tx.send_item(FillMsg::Chunk(data.clone())).is_err()
                    {
                        this.tx = None;
                    }
                }
            }
            None => {
                if let Some(mut tx) = this.tx.take() {
                    let _ = tx.send_item(FillMsg::End);
                }
            }
            Some(Err(_)) => this.tx = None,
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.tx.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Plan {
    /// Counts a background refresh starting.
    pub(crate) fn count_refresh(&self) {
        self.handle
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Finishes a forwarded request: invalidation, stale-if-error, 304 freshening, storing.
    pub(crate) fn finish(
        self,
        result: Result<Outcome, ProxyError>,
        ctx: &mut RequestCtx,
        compress: Option<crate::compress::Plan>,
        compression: &Arc<crate::compress::CompressionStats>,
    ) -> Result<Outcome, ProxyError> {
        let mut compress = compress;
        let mut out = self.finish_stored(result, ctx, &mut compress, compression)?;
        out.compress = compress;
        Ok(out)
    }

    /// [`Plan::finish`]; takes `compress` when it compressed the response itself.
    fn finish_stored(
        self,
        result: Result<Outcome, ProxyError>,
        ctx: &mut RequestCtx,
        compress: &mut Option<crate::compress::Plan>,
        compression: &Arc<crate::compress::CompressionStats>,
    ) -> Result<Outcome, ProxyError> {
        let h = &self.handle;
        let now = SystemTime::now();
        let post_stored = |out: &Outcome| {
            self.method == Method::POST
                && h.store_post
                && storable::post_reusable(
                    self.scheme,
                    &self.host,
                    &self.path_and_query,
                    out.response.headers(),
                    &ResponseDirectives::parse(out.response.headers(), Some(&h.targeted)),
                )
        };
        let store_post = result.as_ref().is_ok_and(post_stored);
        if self.method != Method::GET && self.method != Method::HEAD {
            if let Ok(out) = &result {
                let targets = weir_cache::invalidate::targets(
                    &self.method,
                    out.response.status(),
                    self.scheme,
                    &self.host,
                    &self.path_and_query,
                    out.response.headers(),
                );
                for t in targets {
                    h.invalidate_uri(&format!("{}{}", t.host, t.path_and_query));
                    h.counters.invalidated.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.method != Method::GET && self.method != Method::HEAD && !store_post {
            return result.map(|mut out| {
                let s = CacheStatus {
                    fwd: Some(Forward::Method),
                    ..Default::default()
                };
                set_status(out.response.headers_mut(), &s, &h.name);
                out
            });
        }
        let failed = match &result {
            Err(_) => true,
            Ok(out) => matches!(out.response.status().as_u16(), 500 | 502 | 503 | 504),
        };
        if let (true, Some((v, true))) = (failed, &self.stale) {
            h.counters.stale.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some("stale");
            let s = CacheStatus {
                hit: true,
                fwd: Some(self.fwd),
                fwd_status: result.as_ref().ok().map(|o| o.response.status().as_u16()),
                ttl: Some(ttl(&v.freshness, now)),
                detail: Some("stale-if-error"),
                ..Default::default()
            };
            return Ok(Outcome::from(serve(
                v,
                &self.method,
                &self.request_headers,
                now,
                &s,
                &h.name,
            )));
        }
        let mut out = result?;
        let status = out.response.status();
        if status != StatusCode::NOT_MODIFIED || !self.added_validators {
            if let Some(c) = compress.take() {
                ctx.compressed = c.apply(&mut out.response, compression);
            }
        }
        if status == StatusCode::NOT_MODIFIED && self.added_validators {
            if let Some((v, _)) = &self.stale {
                if weir_cache::update::selects(&v.headers, out.response.headers()) {
                    let mut headers = v.headers.clone();
                    weir_cache::update::freshen(&mut headers, out.response.headers());
                    headers.remove(AGE);
                    let directives = ResponseDirectives::parse(&headers, Some(&h.targeted));
                    let freshened = Variant {
                        secondary: v.secondary.clone(),
                        status: v.status,
                        freshness: Freshness::of(
                            v.status,
                            &headers,
                            &directives,
                            self.request_time,
                            now,
                        ),
                        headers,
                        body: v.body.clone(),
                        directives,
                        body_len: v.body_len,
                        file: v.file.clone(),
                    };
                    let vary = key::vary_fields(&freshened.headers).unwrap_or_default();
                    h.counters.revalidated.fetch_add(1, Ordering::Relaxed);
                    ctx.cache = Some("revalidated");
                    let s = CacheStatus {
                        fwd: Some(self.fwd),
                        fwd_status: Some(304),
                        ttl: Some(ttl(&freshened.freshness, now)),
                        stored: true,
                        ..Default::default()
                    };
                    let resp = serve(
                        &freshened,
                        &self.method,
                        &self.request_headers,
                        now,
                        &s,
                        &h.name,
                    );
                    h.keep(self.primary, self.uri, vary, freshened, Vec::new());
                    return Ok(Outcome::from(resp));
                }
                // A 304 that does not select what the cache asked about (another validator):
                // the client made no conditional request, so it gets the stored response,
                // left as it was, never the bare 304.
                let s = CacheStatus {
                    fwd: Some(self.fwd),
                    fwd_status: Some(304),
                    ttl: Some(ttl(&v.freshness, now)),
                    detail: Some("unselected-304"),
                    ..Default::default()
                };
                ctx.cache = Some("stale");
                let resp = serve(v, &self.method, &self.request_headers, now, &s, &h.name);
                return Ok(Outcome::from(resp));
            }
        }
        let mut cs = CacheStatus {
            fwd: Some(self.fwd),
            fwd_status: Some(status.as_u16()),
            ..Default::default()
        };
        if self.stale.is_some() {
            h.counters.refetched.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some("refetched");
        } else {
            h.counters.miss.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some("miss");
        }
        let req = RequestDirectives::parse(&self.request_headers);
        let d = ResponseDirectives::parse(out.response.headers(), Some(&h.targeted));
        let authorized = self
            .request_headers
            .contains_key(http::header::AUTHORIZATION);
        let verdict = if self.method == Method::HEAD {
            Err(storable::NotStorable::Method)
        } else {
            storable::check(
                &h.store_rules,
                &self.method,
                &req,
                authorized,
                status,
                out.response.headers(),
                &d,
            )
        };
        let declared = out
            .response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match (verdict, key::vary_fields(out.response.headers())) {
            (Ok(()), Some(vary)) if declared.is_none_or(|n| n <= h.max_object) => {
                let mut headers = out.response.headers().clone();
                headers.remove(CACHE_STATUS.clone());
                if h.set_cookie == weir_config::SetCookie::Strip {
                    headers.remove(http::header::SET_COOKIE);
                }
                headers.remove(HeaderName::from_static("x-request-id"));
                let mut tags: Vec<String> = Vec::new();
                for name in &h.tag_headers {
                    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
                        tags.extend(
                            v.split([' ', ','])
                                .filter(|t| !t.is_empty())
                                .map(str::to_owned),
                        );
                    }
                    headers.remove(name);
                }
                let secondary = key::secondary(&vary, &self.request_headers);
                let freshness = Freshness::of(status, &headers, &d, self.request_time, now);
                cs.stored = true;
                let meta = Variant {
                    secondary,
                    status,
                    headers,
                    body: Bytes::new(),
                    freshness,
                    directives: d,
                    body_len: 0,
                    file: None,
                };
                let (primary, uri) = (self.primary, self.uri);
                // Waiters wake once the response is stored (or abandoned), not before.
                let fill = self.fill;
                let body = std::mem::take(out.response.body_mut());
                let large = declared.is_none_or(|n| n >= h.large_object);
                let teed =
                    match &h.disk {
                        // Large (or of unknown size) with a disk tier: straight to disk as it
                        // streams, never held whole in memory.
                        Some(disk) if large => {
                            let job = DiskJob {
                                handle: h.clone(),
                                disk: disk.clone(),
                                primary,
                                uri,
                                vary,
                                meta,
                                tags,
                                expected: declared,
                                fill,
                            };
                            DiskTee::start(body, h.max_object, job)
                        }
                        _ => {
                            let handle = h.clone();
                            let done: weir_core::body::TeeDone =
                                Box::new(move |whole: Option<Bytes>| {
                                    let _fill = fill;
                                    if let Some(body) = whole {
                                        handle.counters.stored.fetch_add(1, Ordering::Relaxed);
                                        let v = Variant {
                                            body_len: body.len() as u64,
                                            body,
                                            ..meta
                                        };
                                        handle.keep(primary, uri, vary, v, tags);
                                    }
                                });
                            http_body_util::combinators::UnsyncBoxBody::new(
                                weir_core::body::Tee::new(body, h.max_object, declared, done),
                            )
                        }
                    };
                *out.response.body_mut() = ResponseBody::Stream(teed);
            }
            (Err(why), _) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some(why.as_str());
            }
            (Ok(()), None) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some("vary-star");
            }
            (Ok(()), Some(_)) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some("too-large");
            }
        }
        for name in &h.tag_headers {
            out.response.headers_mut().remove(name);
        }
        set_status(out.response.headers_mut(), &cs, &h.name);
        Ok(out)
    }
}
