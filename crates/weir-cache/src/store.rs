//! The memory tier: primary key → the variants stored under it (one per distinct secondary
//! key of the response's `Vary`), in a moka cache bounded by bytes (bodies plus headers),
//! evicting the least valuable by TinyLFU. Entries are replaced whole (copy on write): a
//! reader never sees a half-updated variant list.

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::key;
use crate::variant::stale_copy;
pub use crate::variant::{Lookup, Purge, Variant};

/// The variants stored for one primary key.
#[derive(Debug)]
struct Entry {
    /// The target URI (`host` + path and query) for invalidation.
    uri: String,
    vary: Vec<HeaderName>,
    variants: Vec<Arc<Variant>>,
    /// Purge tags of its variants (`Surrogate-Key` / `Cache-Tag` values).
    tags: Vec<String>,
}

/// A name (tag, URI) → the primary keys stored under it.
#[derive(Debug, Default)]
struct KeyIndex(
    std::sync::Mutex<std::collections::HashMap<String, std::collections::HashSet<Vec<u8>>>>,
);

impl KeyIndex {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, std::collections::HashSet<Vec<u8>>>,
    > {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, name: &str, key: &[u8]) {
        let mut idx = self.lock();
        match idx.get_mut(name) {
            Some(keys) => {
                if !keys.contains(key) {
                    keys.insert(key.to_vec());
                }
            }
            None => {
                idx.insert(name.to_owned(), std::iter::once(key.to_vec()).collect());
            }
        }
    }

    fn remove(&self, name: &str, key: &[u8]) {
        let mut idx = self.lock();
        if let Some(keys) = idx.get_mut(name) {
            keys.remove(key);
            if keys.is_empty() {
                idx.remove(name);
            }
        }
    }

    fn keys(&self, name: &str) -> Vec<Vec<u8>> {
        self.lock()
            .get(name)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn count(&self, name: &str) -> usize {
        self.lock()
            .get(name)
            .map_or(0, std::collections::HashSet::len)
    }
}

/// The memory tier.
pub struct MemoryStore {
    cache: moka::sync::Cache<Vec<u8>, Arc<Entry>>,
    /// tag → primary keys: how many objects a tag purge touches.
    tags: Arc<KeyIndex>,
    /// URI → primary keys: exact-URI purges and unsafe-method invalidation without a scan or
    /// a predicate every later read would evaluate.
    uris: Arc<KeyIndex>,
    /// Soft tag purges: tag → when. A variant received before is stale from then on.
    soft_tags: std::sync::RwLock<std::collections::HashMap<String, std::time::SystemTime>>,
    /// Entries evicted for room.
    evictions: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("objects", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryStore {
    /// A store holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        let tags: Arc<KeyIndex> = Arc::default();
        let uris: Arc<KeyIndex> = Arc::default();
        let (tag_index, uri_index) = (tags.clone(), uris.clone());
        let evictions: Arc<std::sync::atomic::AtomicU64> = Arc::default();
        let evicted = evictions.clone();
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &Vec<u8>, e: &Arc<Entry>| {
                let w: usize = e.variants.iter().map(|v| v.weight()).sum();
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            // An entry leaving the cache (evicted, purged) leaves the indexes.
            .eviction_listener(move |key: Arc<Vec<u8>>, entry: Arc<Entry>, cause| {
                if cause == moka::notification::RemovalCause::Replaced {
                    return;
                }
                if cause == moka::notification::RemovalCause::Size {
                    evicted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                for t in &entry.tags {
                    tag_index.remove(t, &key);
                }
                uri_index.remove(&entry.uri, &key);
            })
            .build();
        Self {
            cache,
            tags,
            uris,
            soft_tags: std::sync::RwLock::default(),
            evictions,
        }
    }

    /// The variant stored for a request.
    pub fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Lookup {
        let Some(entry) = self.cache.get(primary) else {
            return Lookup::UriMiss;
        };
        let wanted = key::secondary(&entry.vary, request);
        match entry.variants.iter().find(|v| v.secondary == wanted) {
            Some(v) => Lookup::Found(self.soft_purged(&entry.tags, v)),
            None => Lookup::VaryMiss,
        }
    }

    /// The variant as a soft tag purge left it: stale from the purge on.
    fn soft_purged(&self, tags: &[String], v: &Arc<Variant>) -> Arc<Variant> {
        if tags.is_empty() {
            return v.clone();
        }
        let soft = self.soft_tags.read().unwrap_or_else(|p| p.into_inner());
        let purged_at = tags
            .iter()
            .filter_map(|t| soft.get(t))
            .filter(|at| **at >= v.freshness.response_time)
            .min();
        match purged_at {
            None => v.clone(),
            Some(at) => Arc::new(stale_copy(v, *at)),
        }
    }

    /// Stores a variant: it replaces one with the same secondary key; a response whose `Vary`
    /// names other fields than the stored ones replaces them all.
    pub fn insert(&self, primary: Vec<u8>, uri: String, vary: Vec<HeaderName>, variant: Variant) {
        self.insert_tagged(primary, uri, vary, variant, Vec::new());
    }

    /// [`MemoryStore::insert`] with purge tags.
    pub fn insert_tagged(
        &self,
        primary: Vec<u8>,
        uri: String,
        vary: Vec<HeaderName>,
        variant: Variant,
        new_tags: Vec<String>,
    ) {
        let variant = Arc::new(variant);
        let mut variants = match self.cache.get(&primary) {
            Some(old) if old.vary == vary => old
                .variants
                .iter()
                .filter(|v| v.secondary != variant.secondary)
                .cloned()
                .collect(),
            _ => Vec::new(),
        };
        variants.push(variant);
        let mut tags = match self.cache.get(&primary) {
            Some(old) => old.tags.clone(),
            None => Vec::new(),
        };
        for t in new_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        for t in &tags {
            self.tags.add(t, &primary);
        }
        self.uris.add(&uri, &primary);
        self.cache.insert(
            primary,
            Arc::new(Entry {
                uri,
                vary,
                variants,
                tags,
            }),
        );
    }

    /// Removes (or, `soft`, marks stale from `now` on, so stale-while-revalidate and
    /// stale-if-error still apply) what `what` names; returns how many URIs it touched.
    pub fn purge(&self, what: Purge<'_>, soft: bool, now: std::time::SystemTime) -> usize {
        let keys: Vec<Vec<u8>> = match what {
            // By tag: constant time whatever the number of objects. Hard: moka drops every
            // entry stored before now that carries the tag (no read returns one from here on;
            // memory is reclaimed by its housekeeping). Soft: lookups see the purge time.
            Purge::Tag(tag) => {
                let count = self.tags.count(tag);
                if soft {
                    let mut s = self.soft_tags.write().unwrap_or_else(|p| p.into_inner());
                    s.insert(tag.to_owned(), now);
                } else {
                    let tag = tag.to_owned();
                    let _ = self
                        .cache
                        .invalidate_entries_if(move |_, e| e.tags.contains(&tag));
                }
                return count;
            }
            Purge::All if !soft => {
                self.cache.run_pending_tasks();
                let n = self.cache.entry_count();
                self.cache.invalidate_all();
                self.cache.run_pending_tasks();
                return usize::try_from(n).unwrap_or(usize::MAX);
            }
            Purge::Uri(u) => self.uris.keys(u),
            _ => self
                .cache
                .iter()
                .filter(|(_, e)| match what {
                    Purge::Prefix(p) => e.uri.starts_with(p),
                    _ => true,
                })
                .map(|(k, _)| k.as_ref().clone())
                .collect(),
        };
        let mut touched = 0;
        for k in keys {
            if soft {
                let Some(e) = self.cache.get(&k) else {
                    continue;
                };
                let variants = e
                    .variants
                    .iter()
                    .map(|v| Arc::new(stale_copy(v, now)))
                    .collect();
                let entry = Entry {
                    uri: e.uri.clone(),
                    vary: e.vary.clone(),
                    variants,
                    tags: e.tags.clone(),
                };
                self.cache.insert(k, Arc::new(entry));
            } else {
                if self.cache.remove(&k).is_none() {
                    continue;
                }
            }
            touched += 1;
        }
        touched
    }

    /// Removes everything stored for a target URI (`host` + path and query), whatever the
    /// extra key parts.
    /// Returns how many primary keys it removed. Found by the URI index: no scan, and
    /// nothing left for later reads to evaluate.
    pub fn invalidate_uri(&self, uri: &str) -> usize {
        self.uris
            .keys(uri)
            .into_iter()
            .filter(|k| self.cache.remove(k).is_some())
            .count()
    }

    /// Entries evicted to stay under the byte cap so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Objects (primary keys) and bytes stored now.
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn variant(secondary: Vec<(HeaderName, String)>, body: &'static str) -> Variant {
        crate::test_variant(secondary, HeaderMap::new(), body, 60)
    }

    #[test]
    fn variants_side_by_side_and_invalidation() {
        let s = MemoryStore::new(1 << 20);
        let ae = HeaderName::from_static("accept-encoding");
        let req_gz = crate::headers_of(&[("accept-encoding", "gzip")]);
        let req_br = crate::headers_of(&[("accept-encoding", "br")]);
        assert!(matches!(s.lookup(b"k", &req_gz), Lookup::UriMiss));
        s.insert(
            b"k".to_vec(),
            "h/a".into(),
            vec![ae.clone()],
            variant(key::secondary(std::slice::from_ref(&ae), &req_gz), "gz"),
        );
        assert!(matches!(s.lookup(b"k", &req_br), Lookup::VaryMiss));
        s.insert(
            b"k".to_vec(),
            "h/a".into(),
            vec![ae.clone()],
            variant(key::secondary(std::slice::from_ref(&ae), &req_br), "br"),
        );
        match (s.lookup(b"k", &req_gz), s.lookup(b"k", &req_br)) {
            (Lookup::Found(a), Lookup::Found(b)) => {
                assert_eq!((&a.body[..], &b.body[..]), (&b"gz"[..], &b"br"[..]))
            }
            other => panic!("{other:?}"),
        }
        s.invalidate_uri("h/a");
        s.usage();
        assert!(matches!(s.lookup(b"k", &req_gz), Lookup::UriMiss));
    }

    #[test]
    fn purges_by_uri_prefix_tag_and_all_hard_and_soft() {
        let s = MemoryStore::new(1 << 24);
        let none = HeaderMap::new();
        for (k, uri, tags) in [
            ("k1", "h/a/1", vec!["t1"]),
            ("k2", "h/a/2", vec!["t1", "t2"]),
            ("k3", "h/b/1", vec!["t2"]),
            ("k4", "g/a/1", vec![]),
        ] {
            let tags = tags.into_iter().map(str::to_owned).collect();
            s.insert_tagged(
                k.as_bytes().to_vec(),
                uri.into(),
                vec![],
                variant(vec![], "x"),
                tags,
            );
        }
        let now = SystemTime::now();
        assert_eq!(s.purge(Purge::Uri("h/a/1"), false, now), 1);
        assert!(matches!(s.lookup(b"k1", &none), Lookup::UriMiss));
        assert_eq!(s.purge(Purge::Tag("t2"), true, now), 2, "soft: kept, stale");
        match s.lookup(b"k3", &none) {
            Lookup::Found(v) => assert!(!v.freshness.is_fresh(now)),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.purge(Purge::Prefix("h/"), false, now), 2);
        assert!(matches!(s.lookup(b"k4", &none), Lookup::Found(_)));
        assert_eq!(
            s.purge(Purge::Tag("t1"), false, now),
            0,
            "the index followed the removals"
        );
        assert_eq!(s.purge(Purge::All, false, now), 1);
        assert_eq!(s.usage().0, 0);
    }
}
