//! The cache's tiers ([`weir_cache::tiers::Tiers`]) on the runtime: what blocks (disk reads,
//! writes and deletions) runs on the blocking pool, and what happens is counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName};
use weir_cache::store::{Lookup, Purge, Variant};
use weir_cache::tiers::Found;

use super::CacheHandle;

impl CacheHandle {
    /// Purges (hard or soft) what `what` names; returns the URIs (or tagged objects) touched.
    pub(crate) fn purge(&self, what: Purge<'_>, soft: bool) -> usize {
        self.counters.purged.fetch_add(1, Ordering::Relaxed);
        self.tiers.purge(what, soft, SystemTime::now())
    }

    /// Objects and bytes stored, in memory and on disk.
    pub(crate) fn usage(&self) -> [(u64, u64); 2] {
        self.tiers.usage()
    }

    /// Objects evicted to stay under the byte caps, from memory and from disk.
    pub(crate) fn evictions(&self) -> [u64; 2] {
        self.tiers.evictions()
    }

    /// Removes everything stored for a target URI (`host` + path and query), in both tiers;
    /// returns how many primary keys it touched. The disk tier's files are deleted on the
    /// blocking pool, never on this thread.
    pub(super) fn invalidate_uri(&self, uri: &str) -> usize {
        let (n, doomed) = self.tiers.forget_uri(uri);
        if !doomed.is_empty() {
            drop(tokio::task::spawn_blocking(move || {
                weir_cache::disk::remove_files(doomed);
            }));
        }
        n
    }

    /// The variant for a request: from memory, else from disk (a small one is read on the
    /// blocking pool and put in memory; a large one is served from its file).
    pub(super) async fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Lookup {
        let (variant, hit, memory) = match self.tiers.lookup(primary, request) {
            Found::Memory(found) => return found,
            Found::Disk(v) => {
                self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Found(v);
            }
            Found::Promote {
                variant,
                hit,
                memory,
            } => (variant, hit, memory),
        };
        self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
        let file = hit.body.clone();
        let read = tokio::task::spawn_blocking(move || file.read(0, file.len)).await;
        let Ok(Ok(body)) = read else {
            self.counters.disk_errors.fetch_add(1, Ordering::Relaxed);
            return memory;
        };
        Lookup::Found(self.tiers.promote(primary, hit, &variant, body))
    }

    /// Stores a variant in the tiers it belongs in; the disk write runs on the blocking pool.
    pub(super) fn keep(
        self: &Arc<Self>,
        primary: Vec<u8>,
        uri: String,
        vary: Vec<HeaderName>,
        v: Variant,
        tags: Vec<String>,
    ) {
        let Some(write) = self.tiers.store(primary, uri, vary, v, tags) else {
            return;
        };
        let counters = self.counters.clone();
        drop(tokio::task::spawn_blocking(move || {
            match write.run() {
                Ok(()) => counters.disk_writes.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "cache disk write failed");
                    counters.disk_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }));
    }
}
