//! `[[caches]]`: RFC 9111 shared caches, their memory and disk tiers, keys and purges.

use serde::{Deserialize, Serialize};

use super::{defaults, IpRules};
use crate::units::{ByteSize, Duration};

/// An RFC 9111 shared cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Unique name, used by routes.
    pub name: String,
    /// Memory the stored responses may take (bodies and headers).
    #[serde(default = "defaults::cache_memory")]
    pub max_memory: ByteSize,
    /// Larger responses are passed through, not stored.
    #[serde(default = "defaults::cache_object")]
    pub max_object_size: ByteSize,
    /// Serve a stale response this long past expiry when the origin fails or times out, even
    /// without `stale-if-error` (never against `must-revalidate` or `no-cache`).
    #[serde(default)]
    pub grace: Duration,
    /// Fields that, when present, replace `Cache-Control` for this cache (RFC 9213), first
    /// present wins.
    #[serde(default = "defaults::cache_targeted")]
    pub targeted_fields: Vec<String>,
    /// Responses that carry `Set-Cookie`: `no-store` (pass them through), `strip` (store
    /// them without the `Set-Cookie` fields; the client that caused the fill still gets its
    /// cookie) or `store` (store and replay the cookie to everyone).
    #[serde(default)]
    pub set_cookie: SetCookie,
    /// Store POST responses that RFC 9110 §9.3.3 allows to be reused (explicit freshness and
    /// a `Content-Location` equal to the target URI), for later GET and HEAD of that URI.
    #[serde(default)]
    pub store_post: bool,
    /// A disk tier: objects survive a restart; objects of `large_object_size` and more are
    /// kept on disk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<CacheDisk>,
    /// Concurrent misses (and revalidations) of one key wait this long for the first to fill
    /// the cache before going to the origin themselves.
    #[serde(default = "defaults::cache_lock_timeout")]
    pub lock_timeout: Duration,
    /// Response headers whose values (separated by spaces or commas) tag the stored object
    /// for purging; removed from the response sent to the client.
    #[serde(default = "defaults::cache_tag_headers")]
    pub tag_headers: Vec<String>,
    /// Accept `PURGE /path` on the cached routes from these client addresses (none: PURGE is
    /// forwarded like any other method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_method: Option<IpRules>,
    /// With `[redis]`: every purge made on any instance (admin API or `PURGE`) reaches every
    /// instance with the same cache name, through a Redis Stream.
    #[serde(default)]
    pub fleet_purge: bool,
    /// Query parameters in the key: `all`, `none`, or a table `{ keep = [...] }` /
    /// `{ drop = [...] }`.
    #[serde(default)]
    pub key_query: KeyQuery,
    /// Sort query parameters in the key.
    #[serde(default)]
    pub key_sort_query: bool,
    /// Request headers added to the key.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Cookies added to the key.
    #[serde(default)]
    pub key_cookies: Vec<String>,
}

/// A cache's disk tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheDisk {
    /// Directory of the tier (created if missing; Weir owns its `*.obj` files).
    pub path: String,
    /// Bytes the files may take; the least recently used are evicted beyond.
    pub max_size: ByteSize,
    /// Objects at least this large skip the memory tier.
    #[serde(default = "defaults::cache_large_object")]
    pub large_object_size: ByteSize,
}

/// What a cache does with responses that set cookies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetCookie {
    /// Not stored.
    #[default]
    NoStore,
    /// Stored without their `Set-Cookie` fields.
    Strip,
    /// Stored with them.
    Store,
}

/// Which query parameters take part in a cache key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyQuery {
    /// All, as sent.
    #[default]
    All,
    /// None.
    None,
    /// Only these.
    Keep(Vec<String>),
    /// All but these.
    Drop(Vec<String>),
}
