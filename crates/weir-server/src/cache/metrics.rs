//! What each cache counts: its samples in `/metrics`, and its summary in `GET /caches`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use weir_observe::prometheus::{Exposition, Kind};

use super::CacheHandle;

/// The `cache` and `tier` labels of a cache's gauges.
type TierLabel<'a> = [(&'a str, &'a str); 2];

/// Every cache's results, stores, fills in flight, usage, evictions and disk events.
pub(crate) fn render(caches: &[Arc<CacheHandle>], e: &mut Exposition) {
    type Labelled<'a> = Vec<([(&'a str, &'a str); 2], u64)>;
    /// One sample per counter, labelled with the cache and `label` = the counter's name.
    fn counts<'a, const N: usize>(
        out: &mut Labelled<'a>,
        cache: &'a str,
        label: &'static str,
        counters: [(&'static str, &std::sync::atomic::AtomicU64); N],
    ) {
        for (name, n) in counters {
            out.push(([("cache", cache), (label, name)], n.load(Ordering::Relaxed)));
        }
    }
    let mut cache_results: Labelled<'_> = Vec::new();
    let mut stores: Labelled<'_> = Vec::new();
    let mut cache_usage: Vec<(TierLabel<'_>, u64, u64)> = Vec::new();
    let mut cache_evictions: Labelled<'_> = Vec::new();
    let mut cache_disk: Labelled<'_> = Vec::new();
    let mut cache_fills: Vec<([(&str, &str); 1], f64)> = Vec::new();
    let mut fleet: Labelled<'_> = Vec::new();
    let mut fleet_pending: Vec<([(&str, &str); 1], f64)> = Vec::new();
    for c in caches {
        if let Some(f) = &c.fleet {
            let k = &f.counters;
            counts(
                &mut fleet,
                &c.name,
                "event",
                [
                    ("published", &k.published),
                    ("publish_error", &k.publish_errors),
                    ("dropped", &k.dropped),
                    ("applied", &k.applied),
                    ("read_error", &k.read_errors),
                ],
            );
            fleet_pending.push(([("cache", &*c.name)], f.pending() as f64));
        }
        let k = &c.counters;
        cache_fills.push(([("cache", &*c.name)], c.fills_in_flight() as f64));
        counts(
            &mut cache_results,
            &c.name,
            "result",
            [
                ("hit", &k.hit),
                ("miss", &k.miss),
                ("stale", &k.stale),
                ("stale_while_revalidate", &k.stale_while_revalidate),
                ("revalidated", &k.revalidated),
                ("refetched", &k.refetched),
            ],
        );
        counts(
            &mut stores,
            &c.name,
            "result",
            [
                ("stored", &k.stored),
                ("not_stored", &k.not_stored),
                ("invalidated", &k.invalidated),
                ("collapsed", &k.collapsed),
                ("refreshes", &k.refreshes),
                ("purges", &k.purged),
            ],
        );
        let [memory, disk] = c.usage();
        let [evicted_memory, evicted_disk] = c.evictions();
        cache_usage.push((
            [("cache", &*c.name), ("tier", "memory")],
            memory.0,
            memory.1,
        ));
        cache_evictions.push(([("cache", &*c.name), ("tier", "memory")], evicted_memory));
        if c.has_disk() {
            cache_usage.push(([("cache", &*c.name), ("tier", "disk")], disk.0, disk.1));
            cache_evictions.push(([("cache", &*c.name), ("tier", "disk")], evicted_disk));
            counts(
                &mut cache_disk,
                &c.name,
                "event",
                [
                    ("hit", &k.disk_hits),
                    ("write", &k.disk_writes),
                    ("error", &k.disk_errors),
                ],
            );
        }
    }
    e.family(
        "weir_cache_requests_total",
        Kind::Counter,
        "Cacheable requests by outcome: hit, miss, stale (served stale on an origin failure), stale_while_revalidate (served stale while a background refresh runs), revalidated (304), refetched (stale, new 200).",
        cache_results.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_stores_total",
        Kind::Counter,
        "Responses stored, not stored (not storable, too large), stored URIs invalidated by unsafe requests, requests that waited for another's fill (collapsed), background refreshes started (refreshes) and purges.",
        stores.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_fills_in_flight",
        Kind::Gauge,
        "Responses being stored now: read from the origin, not yet in the store (waiters on the same key are collapsed onto them).",
        cache_fills.iter().map(|(l, n)| (&l[..], *n)),
    );
    e.family(
        "weir_cache_objects",
        Kind::Gauge,
        "URIs stored, per tier (memory, disk).",
        cache_usage.iter().map(|(l, o, _)| (&l[..], *o as f64)),
    );
    e.family(
        "weir_cache_bytes",
        Kind::Gauge,
        "Bytes stored per tier: bodies and headers in memory, file sizes on disk.",
        cache_usage.iter().map(|(l, _, b)| (&l[..], *b as f64)),
    );
    e.family(
        "weir_cache_evictions_total",
        Kind::Counter,
        "Objects evicted to stay under a tier's byte cap.",
        cache_evictions.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_fleet_purges_total",
        Kind::Counter,
        "fleet_purge: purges made here published to the fleet's stream, publish attempts that failed (the purge waits and is retried), queued purges dropped (queue full), other instances' purges applied here, stream reads that failed (the reader resumes where it was).",
        fleet.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    e.family(
        "weir_cache_fleet_purges_pending",
        Kind::Gauge,
        "Purges made here while Redis was unreachable, waiting to be published.",
        fleet_pending.iter().map(|(l, n)| (&l[..], *n)),
    );
    e.family(
        "weir_cache_disk_total",
        Kind::Counter,
        "Disk tier events: hits (found on disk, not in memory), writes, errors (failed reads or writes).",
        cache_disk.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
}

/// Every cache's summary for `GET /caches`: what each tier holds, lookups by result, the hit
/// ratio (answered from the store, fresh or stale or revalidated, over all lookups; `null`
/// before the first), evictions and fills in flight.
pub(crate) fn summary(caches: &[Arc<CacheHandle>]) -> serde_json::Value {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let list: Vec<serde_json::Value> = caches
        .iter()
        .map(|c| {
            let k = &c.counters;
            let [memory, disk] = c.usage();
            let [evicted_memory, evicted_disk] = c.evictions();
            let (hit, stale, revalidated) = (n(&k.hit), n(&k.stale), n(&k.revalidated));
            let lookups = hit + stale + revalidated + n(&k.miss) + n(&k.refetched);
            let served = hit + stale + revalidated;
            let tier = |(objects, bytes): (u64, u64)| serde_json::json!({"objects": objects, "bytes": bytes});
            serde_json::json!({
                "name": &*c.name,
                "memory": tier(memory),
                "disk": c.has_disk().then(|| tier(disk)),
                "hit_ratio": (lookups > 0).then(|| served as f64 / lookups as f64),
                "lookups": {
                    "hit": hit,
                    "stale": stale,
                    "revalidated": revalidated,
                    "miss": n(&k.miss),
                    "refetched": n(&k.refetched),
                },
                "stored": n(&k.stored),
                "evictions": {"memory": evicted_memory, "disk": evicted_disk},
                "fills_in_flight": c.fills_in_flight(),
                "fleet_purge": c.fleet.as_ref().map(|f| serde_json::json!({
                    "published": n(&f.counters.published),
                    "pending": f.pending(),
                    "applied": n(&f.counters.applied),
                    "publish_errors": n(&f.counters.publish_errors),
                    "read_errors": n(&f.counters.read_errors),
                })),
            })
        })
        .collect();
    serde_json::json!({ "caches": list })
}
