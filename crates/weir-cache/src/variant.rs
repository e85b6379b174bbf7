//! What the tiers store and answer: a stored response ([`Variant`]), where a body lies on
//! disk ([`FileBody`]), what a lookup found ([`Lookup`]) and what a purge names ([`Purge`]).
//! Both tiers and their callers share these types; this file imports neither tier.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use crate::directives::ResponseDirectives;
use crate::freshness::Freshness;

/// One stored response.
#[derive(Debug, Clone)]
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
    /// The body's length (`body.len()` in memory; on disk `body` is empty and the bytes are
    /// in the file).
    pub body_len: u64,
    /// Where the body is when it is on disk only (then `body` is empty).
    pub file: Option<FileBody>,
}

impl Variant {
    /// What it costs the memory tier: body, header fields and bookkeeping.
    pub(crate) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + headers + 256
    }
}

/// A stored body on disk: an open file (still readable if the object is evicted meanwhile)
/// and where the body lies in it.
#[derive(Debug, Clone)]
pub struct FileBody {
    /// The object's file, opened when it was looked up.
    pub file: Arc<File>,
    /// Where the body starts.
    pub offset: u64,
    /// Body length.
    pub len: u64,
}

impl FileBody {
    /// Reads `n` bytes from `start` within the body (blocking).
    pub fn read(&self, start: u64, n: u64) -> std::io::Result<Bytes> {
        let n = usize::try_from(n.min(self.len.saturating_sub(start)))
            .map_err(std::io::Error::other)?;
        let mut buf = vec![0u8; n];
        self.file.read_exact_at(&mut buf, self.offset + start)?;
        Ok(Bytes::from(buf))
    }
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

/// What a purge removes (or, soft, marks stale).
#[derive(Debug, Clone, Copy)]
pub enum Purge<'a> {
    /// Every variant of one URI (`host` + path and query).
    Uri(&'a str),
    /// Every URI starting with this (`host` + path prefix).
    Prefix(&'a str),
    /// Every object carrying this tag.
    Tag(&'a str),
    /// Everything.
    All,
}

/// A copy of `v` that is stale from `at` on (its lifetime ends at its age then).
pub(crate) fn stale_copy(v: &Variant, at: std::time::SystemTime) -> Variant {
    let mut copy = v.clone();
    copy.freshness.lifetime = copy.freshness.lifetime.min(copy.freshness.age(at));
    copy
}
