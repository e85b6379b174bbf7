//! The memory tier: primary key → the variants stored under it (one per distinct secondary
//! key of the response's `Vary`), in a moka cache bounded by bytes (bodies plus headers),
//! evicting the least valuable by TinyLFU. Entries are replaced whole (copy on write): a
//! reader never sees a half-updated variant list.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::directives::ResponseDirectives;
use crate::freshness::Freshness;
use crate::key;

/// One stored response.
#[derive(Debug)]
pub struct Variant {
    /// The request's normalised values of the `Vary`d fields.
    pub secondary: Vec<(HeaderName, String)>,
    /// Status.
    pub status: StatusCode,
    /// Header fields as received (hop-by-hop removed).
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Freshness facts.
    pub freshness: Freshness,
    /// Its caching directives.
    pub directives: ResponseDirectives,
}

impl Variant {
    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// The variants stored for one primary key.
#[derive(Debug)]
struct Entry {
    /// The target URI (`host` + path and query) for invalidation.
    uri: String,
    vary: Vec<HeaderName>,
    variants: Vec<Arc<Variant>>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing stored for the URI.
    UriMiss,
    /// Stored, but no variant for this request's `Vary`d fields.
    VaryMiss,
    /// A variant.
    Found(Arc<Variant>),
}

/// The memory tier.
pub struct MemoryStore {
    cache: moka::sync::Cache<Vec<u8>, Arc<Entry>>,
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
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &Vec<u8>, e: &Arc<Entry>| {
                let w: usize = e.variants.iter().map(|v| v.weight()).sum();
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self { cache }
    }

    /// The variant stored for a request.
    pub fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Lookup {
        let Some(entry) = self.cache.get(primary) else {
            return Lookup::UriMiss;
        };
        let wanted = key::secondary(&entry.vary, request);
        match entry.variants.iter().find(|v| v.secondary == wanted) {
            Some(v) => Lookup::Found(v.clone()),
            None => Lookup::VaryMiss,
        }
    }

    /// Stores a variant: it replaces one with the same secondary key; a response whose `Vary`
    /// names other fields than the stored ones replaces them all.
    pub fn insert(&self, primary: Vec<u8>, uri: String, vary: Vec<HeaderName>, variant: Variant) {
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
        self.cache.insert(
            primary,
            Arc::new(Entry {
                uri,
                vary,
                variants,
            }),
        );
    }

    /// Removes everything stored for a target URI (`host` + path and query), whatever the
    /// extra key parts.
    pub fn invalidate_uri(&self, uri: &str) {
        let uri = uri.to_owned();
        let _ = self.cache.invalidate_entries_if(move |_, e| e.uri == uri);
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
    use std::time::{Duration, SystemTime};

    fn variant(secondary: Vec<(HeaderName, String)>, body: &'static str) -> Variant {
        Variant {
            secondary,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            freshness: Freshness {
                lifetime: Duration::from_secs(60),
                heuristic: false,
                initial_age: Duration::ZERO,
                response_time: SystemTime::now(),
            },
            directives: ResponseDirectives::default(),
        }
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
}
