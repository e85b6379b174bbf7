//! The disk tier's in-memory index: primary key → its variants' files, least recently used
//! order, byte and file counts, and URI → primary keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderName;

use crate::variant::Variant;

/// One variant's file, as indexed.
#[derive(Debug)]
pub(super) struct Indexed {
    pub(super) path: PathBuf,
    pub(super) size: u64,
    pub(super) body_offset: u64,
    pub(super) tick: u64,
    pub(super) variant: Arc<Variant>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) uri: String,
    pub(super) vary: Vec<HeaderName>,
    pub(super) tags: Vec<String>,
    pub(super) variants: Vec<Indexed>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: HashMap<Vec<u8>, Entry>,
    /// Least recently used first: tick → (primary key, file).
    pub(super) lru: BTreeMap<u64, (Vec<u8>, PathBuf)>,
    pub(super) tick: u64,
    pub(super) bytes: u64,
    pub(super) files: u64,
    /// URI → primary keys stored for it (an exact-URI purge or invalidation without a scan).
    pub(super) by_uri: HashMap<String, std::collections::HashSet<Vec<u8>>>,
}

impl Index {
    pub(super) fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Forgets one variant's file; returns its path for deleting.
    pub(super) fn forget(&mut self, primary: &[u8], path: &Path) -> Option<PathBuf> {
        let entry = self.entries.get_mut(primary)?;
        let at = entry.variants.iter().position(|v| v.path == path)?;
        let v = entry.variants.swap_remove(at);
        self.lru.remove(&v.tick);
        self.bytes = self.bytes.saturating_sub(v.size);
        self.files = self.files.saturating_sub(1);
        if entry.variants.is_empty() {
            if let Some(e) = self.entries.remove(primary) {
                self.unlink_uri(&e.uri, primary);
            }
        }
        Some(v.path)
    }

    pub(super) fn unlink_uri(&mut self, uri: &str, primary: &[u8]) {
        if let Some(keys) = self.by_uri.get_mut(uri) {
            keys.remove(primary);
            if keys.is_empty() {
                self.by_uri.remove(uri);
            }
        }
    }

    /// Forgets every variant of a primary key; returns their paths.
    pub(super) fn forget_all(&mut self, primary: &[u8]) -> Vec<PathBuf> {
        let Some(entry) = self.entries.remove(primary) else {
            return Vec::new();
        };
        self.unlink_uri(&entry.uri, primary);
        entry
            .variants
            .into_iter()
            .map(|v| {
                self.lru.remove(&v.tick);
                self.bytes = self.bytes.saturating_sub(v.size);
                self.files = self.files.saturating_sub(1);
                v.path
            })
            .collect()
    }

    pub(super) fn add(
        &mut self,
        primary: Vec<u8>,
        uri: String,
        vary: Vec<HeaderName>,
        tags: Vec<String>,
        mut v: Indexed,
    ) {
        v.tick = self.next_tick();
        self.lru.insert(v.tick, (primary.clone(), v.path.clone()));
        self.bytes += v.size;
        self.files += 1;
        let old_uri = self.entries.get(&primary).map(|e| e.uri.clone());
        if let Some(old) = old_uri.filter(|o| *o != uri) {
            self.unlink_uri(&old, &primary);
        }
        self.by_uri
            .entry(uri.clone())
            .or_default()
            .insert(primary.clone());
        let entry = self.entries.entry(primary).or_insert_with(|| Entry {
            uri: uri.clone(),
            vary: vary.clone(),
            tags: Vec::new(),
            variants: Vec::new(),
        });
        entry.uri = uri;
        entry.vary = vary;
        for t in tags {
            if !entry.tags.contains(&t) {
                entry.tags.push(t);
            }
        }
        entry.variants.push(v);
    }
}
