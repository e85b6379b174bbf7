//! The disk tier: one file per stored variant under a directory, an in-memory index of what
//! is there (primary key → variants, URI, tags, sizes), a byte cap kept by evicting the least
//! recently used, and a re-index at start so the tier survives a restart.
//!
//! A file is `WEIRCACHE1`, then the freshness facts at fixed offsets (so a soft purge
//! rewrites them in place), then the length of a head (keys, URI, `Vary`, tags, status,
//! header fields) and the head, then the body. Files are written to a temporary name and
//! renamed into place, so a crash or a failed fill never leaves a half-written object that a
//! restart would read; leftovers of either kind are removed by the re-index.
//!
//! Everything here does blocking file I/O: callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`), except [`DiskStore::lookup`], which only consults the
//! index and opens one file.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use crate::directives::ResponseDirectives;
use crate::key;
mod fill;
mod format;
mod index;

pub use crate::variant::FileBody;
pub use fill::{remove_files, DiskFill};
use format::*;
use index::{Index, Indexed};

use crate::variant::{Lookup, Purge, Variant};

/// A variant found on disk.
#[derive(Debug, Clone)]
pub struct DiskHit {
    /// Its body.
    pub body: FileBody,
    /// Its primary key's target URI.
    pub uri: String,
    /// Its primary key's `Vary` fields.
    pub vary: Vec<HeaderName>,
    /// Its primary key's purge tags.
    pub tags: Vec<String>,
}

/// The disk tier of one cache.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    /// The byte cap; a reload may change it (the tier is carried over, see `set_max_bytes`).
    max_bytes: AtomicU64,
    targeted: Vec<HeaderName>,
    name: Namer,
    index: Mutex<Index>,
    evictions: AtomicU64,
    seq: AtomicU64,
}

/// Names a variant's file from its keys.
pub(crate) type Namer = fn(&[u8], &[(HeaderName, String)]) -> String;

/// A file name for a variant: the SHA-256 of its keys, so no one can make two keys share a
/// file. The file holds the full keys too and every lookup checks them ([`holds_keys`]): a
/// file that is not the key's own is a miss, never another object served under its key.
fn file_name(primary: &[u8], secondary: &[(HeaderName, String)]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // Length-prefixed parts: ("ab", "c") and ("a", "bc") differ.
    let mut eat = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    eat(primary);
    for (k, v) in secondary {
        eat(k.as_str().as_bytes());
        eat(v.as_bytes());
    }
    let digest = h.finalize();
    let mut name = String::with_capacity(68);
    for b in digest {
        name.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        name.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    name.push_str(".obj");
    name
}

impl DiskStore {
    /// Opens (creating) the tier in `dir`, holding at most `max_bytes` of files, and indexes
    /// what a previous run left there; `targeted` are the cache's targeted fields (RFC 9213),
    /// for re-reading directives.
    pub fn open(dir: &Path, max_bytes: u64, targeted: Vec<HeaderName>) -> std::io::Result<Self> {
        Self::open_named(dir, max_bytes, targeted, file_name)
    }

    /// [`DiskStore::open`] with another way of naming files (tests force collisions).
    pub(crate) fn open_named(
        dir: &Path,
        max_bytes: u64,
        targeted: Vec<HeaderName>,
        name: Namer,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let store = Self {
            name,
            dir: dir.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            targeted,
            index: Mutex::default(),
            evictions: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        };
        store.reindex()?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads every object's head; removes temporary files, unreadable objects and older
    /// duplicates; then evicts down to the cap (oldest responses first).
    fn reindex(&self) -> std::io::Result<()> {
        let mut found: Vec<(Head, Indexed)> = Vec::new();
        for dirent in std::fs::read_dir(&self.dir)? {
            let dirent = dirent?;
            let path = dirent.path();
            let name = dirent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".obj") {
                continue;
            }
            match self.read_head(&path) {
                Some(pair) => found.push(pair),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        // Oldest first, so the newest of duplicates wins and is the last evicted.
        found.sort_by_key(|(_, i)| i.variant.freshness.response_time);
        let mut idx = self.lock();
        for (head, indexed) in found {
            let old = idx.entries.get(&head.primary).and_then(|e| {
                e.variants
                    .iter()
                    .find(|v| v.variant.secondary == head.secondary)
                    .map(|v| v.path.clone())
            });
            if let Some(old) = old {
                if old != indexed.path {
                    let _ = std::fs::remove_file(&old);
                }
                idx.forget(&head.primary, &old);
            }
            idx.add(head.primary, head.uri, head.vary, head.tags, indexed);
        }
        let doomed = self.over_cap(&mut idx);
        drop(idx);
        remove_files(doomed);
        Ok(())
    }

    fn read_head(&self, path: &Path) -> Option<(Head, Indexed)> {
        let mut f = File::open(path).ok()?;
        let size = f.metadata().ok()?.len();
        let mut fixed = [0u8; FIXED];
        f.read_exact(&mut fixed).ok()?;
        if &fixed[..10] != MAGIC {
            return None;
        }
        let mut fr = [0u8; 25];
        fr.copy_from_slice(&fixed[10..35]);
        let freshness = decode_freshness(&fr);
        let mut hl = [0u8; 4];
        hl.copy_from_slice(&fixed[35..39]);
        let head_len = usize::try_from(u32::from_le_bytes(hl)).ok()?;
        if head_len > MAX_HEAD {
            return None;
        }
        let mut head = vec![0u8; head_len];
        f.read_exact(&mut head).ok()?;
        let head = decode_head(&head)?;
        let body_offset = (FIXED + head_len) as u64;
        let directives = ResponseDirectives::parse(&head.headers, Some(&self.targeted));
        let variant = Variant {
            secondary: head.secondary.clone(),
            status: head.status,
            headers: head.headers.clone(),
            body: Bytes::new(),
            freshness,
            directives,
            body_len: size.checked_sub(body_offset)?,
            file: None,
        };
        let indexed = Indexed {
            path: path.to_path_buf(),
            size,
            body_offset,
            tick: 0,
            variant: Arc::new(variant),
        };
        Some((head, indexed))
    }

    /// Evicts least recently used files until the tier fits; returns them for deleting.
    fn over_cap(&self, idx: &mut Index) -> Vec<PathBuf> {
        let mut doomed = Vec::new();
        let cap = self.max_bytes.load(Ordering::Relaxed);
        while idx.bytes > cap {
            let Some((_, (primary, path))) = idx.lru.pop_first() else {
                break;
            };
            // `forget` removes the LRU entry too; it is already gone.
            if let Some(p) = idx.forget(&primary, &path) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
                doomed.push(p);
            }
        }
        doomed
    }

    /// The variant stored for a request; a found one comes with its body's file, opened, and
    /// its primary key's URI, `Vary` and tags (to promote it into memory).
    pub fn lookup(&self, primary: &[u8], request: &HeaderMap) -> (Lookup, Option<DiskHit>) {
        let mut idx = self.lock();
        let tick = idx.next_tick();
        let Some(entry) = idx.entries.get_mut(primary) else {
            return (Lookup::UriMiss, None);
        };
        let wanted = key::secondary(&entry.vary, request);
        let Some(v) = entry
            .variants
            .iter_mut()
            .find(|v| v.variant.secondary == wanted)
        else {
            return (Lookup::VaryMiss, None);
        };
        let file = File::open(&v.path)
            .ok()
            .filter(|f| holds_keys(f, primary, &v.variant.secondary));
        let Some(file) = file else {
            // Removed behind Weir's back, or replaced by another key's object: forget it, so
            // the next fill stores it again.
            let path = v.path.clone();
            idx.forget(primary, &path);
            return (Lookup::VaryMiss, None);
        };
        let old = std::mem::replace(&mut v.tick, tick);
        let (path, variant, offset) = (v.path.clone(), v.variant.clone(), v.body_offset);
        idx.lru.remove(&old);
        idx.lru.insert(tick, (primary.to_vec(), path));
        let body = FileBody {
            file: Arc::new(file),
            offset,
            len: variant.body_len,
        };
        let (uri, vary, tags) = match idx.entries.get(primary) {
            Some(e) => (e.uri.clone(), e.vary.clone(), e.tags.clone()),
            None => Default::default(),
        };
        let hit = DiskHit {
            body,
            uri,
            vary,
            tags,
        };
        (Lookup::Found(variant), Some(hit))
    }

    /// Writes a variant (blocking) and indexes it, replacing the one with the same secondary
    /// key (and, when `Vary` changed, all of the primary key's); evicts to stay under the cap.
    pub fn insert(
        self: &Arc<Self>,
        primary: &[u8],
        uri: &str,
        vary: &[HeaderName],
        variant: &Variant,
        tags: &[String],
    ) -> std::io::Result<()> {
        let mut fill = self.begin(primary, uri, vary, variant, tags)?;
        fill.write(&variant.body)?;
        fill.commit()
    }

    /// Starts writing a variant whose body is still arriving (blocking): its head goes to a
    /// temporary file now, the body as [`DiskFill::write`] is given it; nothing is visible
    /// until [`DiskFill::commit`], and a fill dropped before that leaves nothing behind.
    pub fn begin(
        self: &Arc<Self>,
        primary: &[u8],
        uri: &str,
        vary: &[HeaderName],
        meta: &Variant,
        tags: &[String],
    ) -> std::io::Result<DiskFill> {
        let head = encode_head(primary, uri, vary, tags, meta);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let mut fill = DiskFill {
            store: self.clone(),
            file: None,
            tmp,
            body_offset: (FIXED + head.len()) as u64,
            written: 0,
            primary: primary.to_vec(),
            uri: uri.to_owned(),
            vary: vary.to_vec(),
            tags: tags.to_vec(),
            meta: Variant {
                body: Bytes::new(),
                file: None,
                ..meta.clone()
            },
        };
        let mut f = std::io::BufWriter::with_capacity(64 * 1024, File::create(&fill.tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&encode_freshness(&meta.freshness))?;
        f.write_all(&(head.len() as u32).to_le_bytes())?;
        f.write_all(&head)?;
        fill.file = Some(f);
        Ok(fill)
    }

    /// Indexes a committed file, replacing what it supersedes; evicts to stay under the cap.
    fn index_committed(&self, fill: &DiskFill, path: PathBuf) {
        let primary = &fill.primary[..];
        let variant = &fill.meta;
        let indexed = Indexed {
            path: path.clone(),
            size: fill.body_offset + fill.written,
            body_offset: fill.body_offset,
            tick: 0,
            variant: Arc::new(Variant {
                body_len: fill.written,
                ..variant.clone()
            }),
        };
        let mut idx = self.lock();
        let mut doomed = Vec::new();
        // Tags stay with the URI when one of its variants is replaced.
        let mut tags = fill.tags.clone();
        if let Some(e) = idx.entries.get(primary) {
            for t in &e.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        let same_vary = idx.entries.get(primary).map(|e| e.vary == fill.vary);
        match same_vary {
            Some(true) => {
                let old = idx.entries.get(primary).and_then(|e| {
                    e.variants
                        .iter()
                        .find(|v| v.variant.secondary == variant.secondary)
                        .map(|v| v.path.clone())
                });
                if let Some(old) = old {
                    // Same name as the new file when the keys hash alike: not deleted then.
                    if let Some(p) = idx.forget(primary, &old) {
                        if p != path {
                            doomed.push(p);
                        }
                    }
                }
            }
            Some(false) => {
                doomed.extend(idx.forget_all(primary).into_iter().filter(|p| *p != path))
            }
            None => {}
        }
        idx.add(
            primary.to_vec(),
            fill.uri.clone(),
            fill.vary.clone(),
            tags,
            indexed,
        );
        doomed.extend(self.over_cap(&mut idx).into_iter().filter(|p| *p != path));
        drop(idx);
        remove_files(doomed);
    }

    /// Removes (or, `soft`, marks stale from `now` in the files themselves) what `what` names;
    /// returns how many URIs it touched.
    pub fn purge(&self, what: Purge<'_>, soft: bool, now: SystemTime) -> usize {
        let mut idx = self.lock();
        let keys: Vec<Vec<u8>> = match what {
            Purge::Uri(u) => idx
                .by_uri
                .get(u)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
            _ => idx
                .entries
                .iter()
                .filter(|(_, e)| match what {
                    Purge::Prefix(p) => e.uri.starts_with(p),
                    Purge::Tag(t) => e.tags.iter().any(|x| x == t),
                    _ => true,
                })
                .map(|(k, _)| k.clone())
                .collect(),
        };
        let mut doomed = Vec::new();
        for k in &keys {
            if soft {
                let Some(e) = idx.entries.get_mut(k) else {
                    continue;
                };
                for v in &mut e.variants {
                    let mut freshness = v.variant.freshness;
                    freshness.lifetime = freshness.lifetime.min(freshness.age(now));
                    let Ok(f) = std::fs::OpenOptions::new().write(true).open(&v.path) else {
                        continue;
                    };
                    if f.write_all_at(&encode_freshness(&freshness), 10).is_ok() {
                        let mut copy = (*v.variant).clone();
                        copy.freshness = freshness;
                        v.variant = Arc::new(copy);
                    }
                }
            } else {
                doomed.extend(idx.forget_all(k));
            }
        }
        drop(idx);
        remove_files(doomed);
        keys.len()
    }

    /// Removes everything stored for a target URI, whatever the extra key parts (blocking:
    /// deletes the files).
    pub fn invalidate_uri(&self, uri: &str) -> usize {
        self.purge(Purge::Uri(uri), false, SystemTime::now())
    }

    /// Forgets everything stored for a target URI, from the index only (no file I/O: safe on
    /// a runtime thread; lookups miss from now on). Returns the primary keys forgotten and the
    /// files to delete, for [`remove_files`] on a blocking thread.
    pub fn forget_uri(&self, uri: &str) -> (usize, Vec<PathBuf>) {
        let mut idx = self.lock();
        let keys: Vec<Vec<u8>> = idx
            .by_uri
            .get(uri)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default();
        let doomed = keys.iter().flat_map(|k| idx.forget_all(k)).collect();
        (keys.len(), doomed)
    }

    /// Primary keys and bytes (file sizes) stored now.
    pub fn usage(&self) -> (u64, u64) {
        let idx = self.lock();
        (idx.entries.len() as u64, idx.bytes)
    }

    /// The directory this tier keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes the byte cap (a reload kept this tier with a new `max_size`), evicting least
    /// recently used files at once when the tier is now over it.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
        let doomed = self.over_cap(&mut self.lock());
        remove_files(doomed);
    }

    /// Variants evicted to stay under the cap so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn variant(secondary: Vec<(HeaderName, String)>, body: &'static str, lifetime: u64) -> Variant {
        let headers = crate::headers_of(&[("content-type", "text/plain"), ("etag", "\"x\"")]);
        crate::test_variant(secondary, headers, body, lifetime)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn body_of(s: &DiskStore, k: &[u8], req: &HeaderMap) -> Option<String> {
        match s.lookup(k, req) {
            (Lookup::Found(v), Some(hit)) => {
                let b = hit.body.read(0, v.body_len).expect("read");
                Some(String::from_utf8(b.to_vec()).expect("utf8"))
            }
            _ => None,
        }
    }

    /// Two keys whose file names collide (forced here; with SHA-256 names nobody can find
    /// such a pair): the second overwrites the first's file, and a lookup of the first is a
    /// miss, never the second's object under the first's key.
    #[test]
    fn a_file_name_collision_is_a_miss_not_another_object() {
        fn same_name(_: &[u8], _: &[(HeaderName, String)]) -> String {
            "collide.obj".to_owned()
        }
        let dir = tmpdir("collide");
        let none = HeaderMap::new();
        let s = Arc::new(DiskStore::open_named(&dir, 1 << 20, vec![], same_name).expect("open"));
        s.insert(b"victim", "h/v", &[], &variant(vec![], "victim's", 60), &[])
            .expect("insert");
        assert_eq!(body_of(&s, b"victim", &none).as_deref(), Some("victim's"));
        s.insert(
            b"attacker",
            "h/a",
            &[],
            &variant(vec![], "attacker's", 60),
            &[],
        )
        .expect("insert");
        assert_eq!(
            body_of(&s, b"victim", &none),
            None,
            "served another key's object"
        );
        assert!(matches!(s.lookup(b"victim", &none).0, Lookup::UriMiss));
        assert_eq!(
            body_of(&s, b"attacker", &none).as_deref(),
            Some("attacker's")
        );
        // Real names differ for different keys, and carry no structure to aim at.
        let a = file_name(b"ab", &[]);
        assert_ne!(
            a,
            file_name(b"a", &[(HeaderName::from_static("b"), String::new())])
        );
        assert_eq!(a.len(), 64 + 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_a_restart_and_drops_junk() {
        let dir = tmpdir("restart");
        let none = HeaderMap::new();
        {
            let s = Arc::new(DiskStore::open(&dir, 1 << 20, vec![]).expect("open"));
            s.insert(
                b"k1",
                "h/a",
                &[],
                &variant(vec![], "one", 60),
                &["t".into()],
            )
            .expect("insert");
            s.insert(b"k2", "h/b", &[], &variant(vec![], "two", 60), &[])
                .expect("insert");
            assert_eq!(body_of(&s, b"k1", &none).as_deref(), Some("one"));
        }
        std::fs::write(dir.join(".tmp-1-1"), b"half").expect("tmp");
        std::fs::write(dir.join("0000000000000000.obj"), b"WEIRCACHE1garbage").expect("junk");
        let s = Arc::new(DiskStore::open(&dir, 1 << 20, vec![]).expect("reopen"));
        assert_eq!(body_of(&s, b"k1", &none).as_deref(), Some("one"));
        assert_eq!(body_of(&s, b"k2", &none).as_deref(), Some("two"));
        assert_eq!(s.usage().0, 2);
        assert!(!dir.join(".tmp-1-1").exists());
        assert!(!dir.join("0000000000000000.obj").exists());
        match s.lookup(b"k1", &none).0 {
            Lookup::Found(v) => {
                assert_eq!(v.headers["etag"], "\"x\"");
                assert_eq!(v.freshness.lifetime, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.purge(Purge::Tag("t"), false, SystemTime::now()), 1);
        assert_eq!(body_of(&s, b"k1", &none), None);
        assert_eq!(
            s.invalidate_uri("h/a"),
            0,
            "the URI index followed the purge"
        );
        assert_eq!(s.invalidate_uri("h/b"), 1);
        assert_eq!(body_of(&s, b"k2", &none), None);
        assert_eq!(s.usage(), (0, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A tier with room for three 125-byte files, holding `a`, `b`, `c` (oldest first).
    fn three_files(dir: &Path) -> Arc<DiskStore> {
        let s = Arc::new(DiskStore::open(dir, 400, vec![]).expect("open"));
        for k in ["a", "b", "c"] {
            s.insert(
                k.as_bytes(),
                k,
                &[],
                &variant(vec![], "0123456789", 60),
                &[],
            )
            .expect("insert");
        }
        s
    }

    #[test]
    fn evicts_least_recently_used_to_stay_under_the_cap() {
        let dir = tmpdir("evict");
        let none = HeaderMap::new();
        let s = three_files(&dir);
        assert!(
            body_of(&s, b"a", &none).is_some(),
            "a used: b is now the oldest"
        );
        s.insert(b"d", "d", &[], &variant(vec![], "0123456789", 60), &[])
            .expect("insert");
        assert!(s.usage().1 <= 400);
        assert!(body_of(&s, b"b", &none).is_none(), "b evicted");
        assert!(body_of(&s, b"a", &none).is_some());
        assert!(body_of(&s, b"d", &none).is_some());
        assert!(s.evictions() >= 1);
        let files = std::fs::read_dir(&dir).expect("dir").count() as u64;
        assert_eq!(files, s.usage().0, "evicted files are deleted");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_lower_cap_evicts_at_once() {
        let dir = tmpdir("recap");
        let none = HeaderMap::new();
        let s = three_files(&dir);
        assert_eq!(s.usage().0, 3);
        // Room for one 125-byte file: the two least recently used go.
        s.set_max_bytes(200);
        assert_eq!(s.usage().0, 1);
        assert!(body_of(&s, b"c", &none).is_some());
        assert_eq!(s.evictions(), 2);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn variants_and_soft_purge_persist() {
        let dir = tmpdir("soft");
        let ae = HeaderName::from_static("accept-encoding");
        let gz = crate::headers_of(&[("accept-encoding", "gzip")]);
        let br = crate::headers_of(&[("accept-encoding", "br")]);
        {
            let s = Arc::new(DiskStore::open(&dir, 1 << 20, vec![]).expect("open"));
            for (req, body) in [(&gz, "gz"), (&br, "br")] {
                let sec = key::secondary(std::slice::from_ref(&ae), req);
                s.insert(
                    b"k",
                    "h/a",
                    std::slice::from_ref(&ae),
                    &variant(sec, body, 600),
                    &[],
                )
                .expect("insert");
            }
            assert_eq!(s.purge(Purge::Prefix("h/"), true, SystemTime::now()), 1);
        }
        let s = Arc::new(DiskStore::open(&dir, 1 << 20, vec![]).expect("reopen"));
        assert_eq!(body_of(&s, b"k", &gz).as_deref(), Some("gz"));
        assert_eq!(body_of(&s, b"k", &br).as_deref(), Some("br"));
        match s.lookup(b"k", &gz).0 {
            Lookup::Found(v) => assert!(!v.freshness.is_fresh(SystemTime::now()), "still stale"),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_streamed_fill_is_invisible_until_committed_and_leaves_nothing_when_dropped() {
        let dir = tmpdir("fill");
        let none = HeaderMap::new();
        let s = Arc::new(DiskStore::open(&dir, 1 << 20, vec![]).expect("open"));
        let meta = variant(vec![], "", 60);
        let mut dropped = s.begin(b"k", "h/k", &[], &meta, &[]).expect("begin");
        dropped.write(b"half of it").expect("write");
        drop(dropped);
        assert_eq!(
            std::fs::read_dir(&dir).expect("dir").count(),
            0,
            "no leftovers"
        );
        let mut fill = s.begin(b"k", "h/k", &[], &meta, &[]).expect("begin");
        for chunk in ["one ", "two ", "three"] {
            fill.write(chunk.as_bytes()).expect("write");
        }
        assert_eq!(body_of(&s, b"k", &none), None, "not visible before commit");
        fill.commit().expect("commit");
        assert_eq!(body_of(&s, b"k", &none).as_deref(), Some("one two three"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
