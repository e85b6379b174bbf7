//! The memory and disk tiers of one cache as one store: lookups fall through memory to disk
//! (a small object found on disk is promoted into memory, a large one is served from its
//! file), stores go to memory unless large and to disk, purges and invalidations reach both,
//! and a reload carries both tiers over. Nothing here blocks except [`DiskWrite::run`] and
//! what the caller does with a [`Found::Promote`]'s file: callers run those on a blocking
//! thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use crate::disk::{DiskHit, DiskStore};
use crate::store::MemoryStore;
use crate::variant::{Lookup, Purge, Variant};

/// A disk tier's settings.
#[derive(Debug, Clone, Copy)]
pub struct DiskTier<'a> {
    /// Its directory (one index per directory).
    pub dir: &'a Path,
    /// Its byte cap.
    pub max_bytes: u64,
    /// Objects at least this large live on disk only.
    pub large_object: u64,
}

/// Both tiers of one cache.
#[derive(Debug)]
pub struct Tiers {
    memory: Arc<MemoryStore>,
    max_memory: u64,
    disk: Option<Arc<DiskStore>>,
    /// Objects at least this large live on disk only (with a disk tier).
    large_object: usize,
}

/// What a lookup through both tiers found.
#[derive(Debug)]
pub enum Found {
    /// The answer: from memory, or a miss in both tiers.
    Memory(Lookup),
    /// A large variant on disk, to be served from its file (`Variant::file`).
    Disk(Arc<Variant>),
    /// A small variant on disk: read its body (blocking) and hand it to [`Tiers::promote`];
    /// if the read fails, the answer is `memory` (the memory tier's miss).
    Promote {
        /// The variant as indexed (its body not yet read).
        variant: Arc<Variant>,
        /// Its file and keys.
        hit: DiskHit,
        /// What memory answered.
        memory: Lookup,
    },
}

/// A variant to write to the disk tier: [`DiskWrite::run`] on a blocking thread.
#[derive(Debug)]
pub struct DiskWrite {
    disk: Arc<DiskStore>,
    primary: Vec<u8>,
    uri: String,
    vary: Vec<HeaderName>,
    variant: Variant,
    tags: Vec<String>,
}

impl DiskWrite {
    /// Writes the file (blocking). A disk-only variant freshened by a 304 has its body read
    /// from its old file first.
    pub fn run(mut self) -> std::io::Result<()> {
        if let Some(file) = self.variant.file.take() {
            self.variant.body = file.read(0, file.len)?;
        }
        self.disk.insert(
            &self.primary,
            &self.uri,
            &self.vary,
            &self.variant,
            &self.tags,
        )
    }
}

impl Tiers {
    /// Opens the tiers. At a reload, `same_name` is the running cache of the same name (its
    /// memory tier is kept when `max_memory` is unchanged) and `previous` every running
    /// cache (a disk tier in the same directory is always kept, with the new byte cap).
    pub fn open<'a>(
        max_memory: u64,
        disk: Option<DiskTier<'_>>,
        targeted: Vec<HeaderName>,
        same_name: Option<&Tiers>,
        mut previous: impl Iterator<Item = &'a Tiers>,
    ) -> std::io::Result<Self> {
        let large_object = disk.map_or(usize::MAX, |d| {
            usize::try_from(d.large_object).unwrap_or(usize::MAX)
        });
        let disk = match disk {
            None => None,
            Some(d) => {
                let kept = previous
                    .find_map(|t| t.disk.as_ref().filter(|k| k.dir() == d.dir))
                    .cloned();
                match kept {
                    Some(k) => {
                        k.set_max_bytes(d.max_bytes);
                        Some(k)
                    }
                    None => Some(Arc::new(DiskStore::open(d.dir, d.max_bytes, targeted)?)),
                }
            }
        };
        let memory = same_name
            .filter(|t| t.max_memory == max_memory)
            .map_or_else(
                || Arc::new(MemoryStore::new(max_memory)),
                |t| t.memory.clone(),
            );
        Ok(Self {
            memory,
            max_memory,
            disk,
            large_object,
        })
    }

    /// Whether there is a disk tier.
    pub fn has_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// The disk tier, when a response of `len` bytes (`None`: not known yet) goes straight
    /// to disk rather than through memory.
    pub fn disk_for(&self, len: Option<usize>) -> Option<&Arc<DiskStore>> {
        self.disk
            .as_ref()
            .filter(|_| len.is_none_or(|n| n >= self.large_object))
    }

    /// The variant for a request: from memory, else from disk.
    pub fn lookup(&self, primary: &[u8], request: &HeaderMap) -> Found {
        let memory = self.memory.lookup(primary, request);
        let Some(disk) = &self.disk else {
            return Found::Memory(memory);
        };
        if matches!(memory, Lookup::Found(_)) {
            return Found::Memory(memory);
        }
        let (found, hit) = disk.lookup(primary, request);
        let (Lookup::Found(variant), Some(hit)) = (found, hit) else {
            return Found::Memory(memory);
        };
        let len = usize::try_from(variant.body_len).unwrap_or(usize::MAX);
        if len >= self.large_object {
            let mut on_disk = (*variant).clone();
            on_disk.file = Some(hit.body);
            return Found::Disk(Arc::new(on_disk));
        }
        Found::Promote {
            variant,
            hit,
            memory,
        }
    }

    /// A small variant read from disk (`body`), put in memory too.
    pub fn promote(
        &self,
        primary: &[u8],
        hit: DiskHit,
        variant: &Variant,
        body: Bytes,
    ) -> Arc<Variant> {
        let mut promoted = variant.clone();
        promoted.body = body;
        self.memory.insert_tagged(
            primary.to_vec(),
            hit.uri,
            hit.vary,
            promoted.clone(),
            hit.tags,
        );
        Arc::new(promoted)
    }

    /// Stores a variant: in memory unless it is large (and there is a disk tier); what is to
    /// go on disk too comes back as a [`DiskWrite`].
    pub fn store(
        &self,
        primary: Vec<u8>,
        uri: String,
        vary: Vec<HeaderName>,
        variant: Variant,
        tags: Vec<String>,
    ) -> Option<DiskWrite> {
        let Some(disk) = self.disk.clone() else {
            self.memory.insert_tagged(primary, uri, vary, variant, tags);
            return None;
        };
        let large = usize::try_from(variant.body_len).unwrap_or(usize::MAX) >= self.large_object;
        if !large {
            self.memory.insert_tagged(
                primary.clone(),
                uri.clone(),
                vary.clone(),
                variant.clone(),
                tags.clone(),
            );
        }
        Some(DiskWrite {
            disk,
            primary,
            uri,
            vary,
            variant,
            tags,
        })
    }

    /// Purges (hard or soft) what `what` names in both tiers; returns how many URIs (or
    /// tagged objects) it touched in the tier that held more.
    pub fn purge(&self, what: Purge<'_>, soft: bool, now: SystemTime) -> usize {
        let n = self.memory.purge(what, soft, now);
        match &self.disk {
            Some(d) => n.max(d.purge(what, soft, now)),
            None => n,
        }
    }

    /// Forgets everything stored for a target URI (`host` + path and query) in both tiers;
    /// returns how many primary keys it touched and the disk files to delete
    /// ([`crate::disk::remove_files`], blocking). Both indexes forget at once: the next
    /// lookup misses.
    pub fn forget_uri(&self, uri: &str) -> (usize, Vec<PathBuf>) {
        let n = self.memory.invalidate_uri(uri);
        let Some(d) = &self.disk else {
            return (n, Vec::new());
        };
        let (on_disk, doomed) = d.forget_uri(uri);
        (n.max(on_disk), doomed)
    }

    /// Objects and bytes stored, in memory and on disk.
    pub fn usage(&self) -> [(u64, u64); 2] {
        let disk = self.disk.as_ref().map_or((0, 0), |d| d.usage());
        [self.memory.usage(), disk]
    }

    /// Objects evicted to stay under the byte caps, from memory and from disk.
    pub fn evictions(&self) -> [u64; 2] {
        [
            self.memory.evictions(),
            self.disk.as_ref().map_or(0, |d| d.evictions()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-tiers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn variant(body: &'static str) -> Variant {
        crate::test_variant(Vec::new(), HeaderMap::new(), body, 60)
    }

    fn tiers(dir: &Path, large_object: u64, previous: &[&Tiers]) -> Tiers {
        let disk = DiskTier {
            dir,
            max_bytes: 1 << 20,
            large_object,
        };
        let same = previous.first().copied();
        Tiers::open(
            1 << 20,
            Some(disk),
            Vec::new(),
            same,
            previous.iter().copied(),
        )
        .expect("open")
    }

    #[test]
    fn a_small_object_on_disk_is_promoted_and_a_large_one_served_from_its_file() {
        let dir = tmpdir("promote");
        let t = tiers(&dir, 10, &[]);
        let write = t
            .store(
                b"k".to_vec(),
                "h/s".into(),
                Vec::new(),
                variant("tiny"),
                Vec::new(),
            )
            .expect("a disk tier writes");
        write.run().expect("write");
        // A restart: memory is empty, the disk index is re-read.
        let t = tiers(&dir, 10, &[]);
        let Found::Promote {
            variant: v, hit, ..
        } = t.lookup(b"k", &HeaderMap::new())
        else {
            panic!("small objects are promoted");
        };
        let body = hit.body.read(0, hit.body.len).expect("read");
        t.promote(b"k", hit, &v, body);
        assert!(matches!(
            t.lookup(b"k", &HeaderMap::new()),
            Found::Memory(Lookup::Found(_))
        ));

        let big = "a body of more than ten bytes";
        t.store(
            b"b".to_vec(),
            "h/b".into(),
            Vec::new(),
            variant(big),
            Vec::new(),
        )
        .expect("disk")
        .run()
        .expect("write");
        match t.lookup(b"b", &HeaderMap::new()) {
            Found::Disk(v) => assert_eq!(v.file.as_ref().map(|f| f.len), Some(big.len() as u64)),
            other => panic!("a large object is served from disk: {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_keeps_the_disk_tier_of_the_same_directory_and_forgetting_reaches_both() {
        let dir = tmpdir("reload");
        let old = tiers(&dir, 1 << 10, &[]);
        old.store(
            b"k".to_vec(),
            "h/x".into(),
            Vec::new(),
            variant("x"),
            Vec::new(),
        )
        .expect("disk")
        .run()
        .expect("write");
        let new = tiers(&dir, 1 << 10, &[&old]);
        assert_eq!(new.usage()[1].0, 1, "the disk index carried over");
        assert!(matches!(
            new.lookup(b"k", &HeaderMap::new()),
            Found::Memory(Lookup::Found(_))
        ));
        let (n, doomed) = new.forget_uri("h/x");
        assert_eq!((n, doomed.len()), (1, 1));
        crate::disk::remove_files(doomed);
        assert!(matches!(
            new.lookup(b"k", &HeaderMap::new()),
            Found::Memory(Lookup::UriMiss)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
