//! The file format of the disk tier: `WEIRCACHE1`, the freshness facts at fixed offsets (a
//! soft purge rewrites them in place), the head's length and the head (keys, URI, `Vary`,
//! tags, status, header fields), then the body.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::freshness::Freshness;
use crate::variant::Variant;

pub(super) const MAGIC: &[u8; 10] = b"WEIRCACHE1";
/// magic, lifetime ms, heuristic, initial age ms, response time ms, head length.
pub(super) const FIXED: usize = 10 + 8 + 1 + 8 + 8 + 4;
/// The largest head a file may claim (a corrupt length must not allocate gigabytes).
pub(super) const MAX_HEAD: usize = 1 << 20;

/// Whether `file` is the object stored for exactly these keys (its head names them).
pub(super) fn holds_keys(file: &File, primary: &[u8], secondary: &[(HeaderName, String)]) -> bool {
    let mut fixed = [0u8; FIXED];
    if file.read_exact_at(&mut fixed, 0).is_err() || &fixed[..10] != MAGIC {
        return false;
    }
    let mut hl = [0u8; 4];
    hl.copy_from_slice(&fixed[35..39]);
    let Some(len) = usize::try_from(u32::from_le_bytes(hl))
        .ok()
        .filter(|n| *n <= MAX_HEAD)
    else {
        return false;
    };
    let mut head = vec![0u8; len];
    if file.read_exact_at(&mut head, FIXED as u64).is_err() {
        return false;
    }
    decode_head(&head).is_some_and(|h| h.primary == primary && h.secondary == secondary)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    pub(super) fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }
}

pub(super) struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    pub(super) fn u32(&mut self) -> Option<u32> {
        let (a, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*a))
    }
    pub(super) fn bytes(&mut self) -> Option<&[u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        if n > self.0.len() {
            return None;
        }
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(a)
    }
    pub(super) fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    pub(super) fn name(&mut self) -> Option<HeaderName> {
        HeaderName::from_bytes(self.bytes()?).ok()
    }
}

/// What a file's head says.
pub(super) struct Head {
    pub(super) primary: Vec<u8>,
    pub(super) uri: String,
    pub(super) vary: Vec<HeaderName>,
    pub(super) tags: Vec<String>,
    pub(super) secondary: Vec<(HeaderName, String)>,
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
}

pub(super) fn encode_head(
    primary: &[u8],
    uri: &str,
    vary: &[HeaderName],
    tags: &[String],
    v: &Variant,
) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(512));
    w.bytes(primary);
    w.bytes(uri.as_bytes());
    w.count(vary.len());
    for f in vary {
        w.bytes(f.as_str().as_bytes());
    }
    w.count(tags.len());
    for t in tags {
        w.bytes(t.as_bytes());
    }
    w.count(v.secondary.len());
    for (k, val) in &v.secondary {
        w.bytes(k.as_str().as_bytes());
        w.bytes(val.as_bytes());
    }
    w.count(usize::from(v.status.as_u16()));
    w.count(v.headers.len());
    for (k, val) in &v.headers {
        w.bytes(k.as_str().as_bytes());
        w.bytes(val.as_bytes());
    }
    w.0
}

pub(super) fn decode_head(b: &[u8]) -> Option<Head> {
    let mut r = Reader(b);
    let primary = r.bytes()?.to_vec();
    let uri = r.string()?;
    let vary = (0..r.u32()?)
        .map(|_| r.name())
        .collect::<Option<Vec<_>>>()?;
    let tags = (0..r.u32()?)
        .map(|_| r.string())
        .collect::<Option<Vec<_>>>()?;
    let secondary = (0..r.u32()?)
        .map(|_| Some((r.name()?, r.string()?)))
        .collect::<Option<Vec<_>>>()?;
    let status = StatusCode::from_u16(u16::try_from(r.u32()?).ok()?).ok()?;
    let mut headers = HeaderMap::new();
    for _ in 0..r.u32()? {
        let name = r.name()?;
        let value = HeaderValue::from_bytes(r.bytes()?).ok()?;
        headers.append(name, value);
    }
    Some(Head {
        primary,
        uri,
        vary,
        tags,
        secondary,
        status,
        headers,
    })
}

pub(super) fn encode_freshness(f: &Freshness) -> [u8; 25] {
    let mut out = [0u8; 25];
    out[..8].copy_from_slice(&millis(f.lifetime).to_le_bytes());
    out[8] = u8::from(f.heuristic);
    out[9..17].copy_from_slice(&millis(f.initial_age).to_le_bytes());
    out[17..25].copy_from_slice(&since_epoch(f.response_time).to_le_bytes());
    out
}

pub(super) fn decode_freshness(b: &[u8; 25]) -> Freshness {
    let u = |r: std::ops::Range<usize>| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[r]);
        u64::from_le_bytes(a)
    };
    Freshness {
        lifetime: Duration::from_millis(u(0..8)),
        heuristic: b[8] != 0,
        initial_age: Duration::from_millis(u(9..17)),
        response_time: UNIX_EPOCH + Duration::from_millis(u(17..25)),
    }
}
