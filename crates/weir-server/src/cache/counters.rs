//! What each cache counts (kept across reloads with the cache's name). A leaf of the cache
//! module; `metrics.rs` renders them.

use std::sync::atomic::AtomicU64;

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
