//! The memory and disk tiers as one store: lookups fall through memory to disk (promoting
//! small objects), stores go to memory unless large and to disk, purges and invalidations
//! reach both.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName};
use weir_cache::store::{Lookup, Purge, Variant};

use super::CacheHandle;

impl CacheHandle {
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
    pub(super) fn invalidate_uri(&self, uri: &str) -> usize {
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

    /// The variant for a request: from memory, else from disk (a small one is read and put in
    /// memory; a large one is served from its file).
    pub(super) async fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Lookup {
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
    pub(super) fn keep(
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
}
