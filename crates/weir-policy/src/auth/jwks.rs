//! A JWKS key set fetched from a URL through Weir's own client: cached for its
//! `Cache-Control: max-age` (or the configured default), refreshed when it expires or when
//! a token names a `kid` it lacks, and kept as it was when a refresh fails.
//!
//! Refreshes run on a task of their own, one at a time, at most once per `jwks_min_refresh`
//! whatever the reason (an expired set, an unknown `kid`, a set never fetched): a flood of
//! bogus `kid`s or an issuer that is down costs the issuer one request per interval. No
//! request waits on the network while a usable key is known: an expired set keeps serving
//! while its refresh runs. A request waits only for a refresh already running (at most one
//! fetch timeout) when it needs a key that is not known, and is answered at once when no
//! refresh may run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::fetch::Fetcher;
use crate::Events;

/// One usable key of the set.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    /// The key's own `alg`, when it names one: a token must use that algorithm.
    pub(crate) alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

struct Cached {
    keys: Vec<Arc<Key>>,
    expires: Option<Instant>,
}

/// A JWKS document kept fresh.
pub(crate) struct Jwks(Arc<Inner>);

struct Inner {
    fetcher: Fetcher,
    cache: ArcSwap<Cached>,
    refresh: std::sync::Mutex<Refresh>,
    /// Bumped when a refresh ends (with or without new keys).
    done: tokio::sync::watch::Sender<u64>,
    timeout: Duration,
    default_ttl: Duration,
    min_refresh: Duration,
}

#[derive(Default)]
struct Refresh {
    running: bool,
    last_start: Option<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("keys", &self.0.cache.load().keys.len())
            .finish_non_exhaustive()
    }
}

/// What a lookup found.
pub(crate) enum Lookup {
    Found(Arc<Key>),
    /// No such key, even after a refresh (or a refresh was not allowed yet).
    Unknown,
    /// The set was never fetched and cannot be now.
    Unavailable,
}

impl Jwks {
    pub(crate) fn new(
        policy: &str,
        url: &str,
        timeout: Duration,
        default_ttl: Duration,
        min_refresh: Duration,
        tls: Option<&weir_config::UpstreamTls>,
    ) -> Result<Self, String> {
        Ok(Self(Arc::new(Inner {
            fetcher: Fetcher::new(&format!("jwks:{policy}"), url, timeout, tls)?,
            cache: ArcSwap::from_pointee(Cached {
                keys: Vec::new(),
                expires: None,
            }),
            refresh: std::sync::Mutex::new(Refresh::default()),
            done: tokio::sync::watch::channel(0).0,
            timeout,
            default_ttl,
            min_refresh,
        })))
    }

    /// The key for `kid` (or the only key without one) usable with `alg`.
    pub(crate) async fn find(&self, kid: Option<&str>, alg: Algorithm, events: &Events) -> Lookup {
        let cached = self.0.cache.load_full();
        let fresh = cached.expires.is_some_and(|e| Instant::now() < e);
        if let Some(k) = pick(&cached.keys, kid, alg) {
            if !fresh {
                // Expired: keep serving the known key while one refresh runs behind.
                self.start_refresh(events);
            }
            return Lookup::Found(k);
        }
        // A key not known (never fetched, or an unknown kid): wait for a refresh, if one is
        // running or may start; never for more than one.
        let mut done = self.0.done.subscribe();
        if self.start_refresh(events) {
            let _ =
                tokio::time::timeout(self.0.timeout + Duration::from_secs(1), done.changed()).await;
        }
        let cached = self.0.cache.load();
        match pick(&cached.keys, kid, alg) {
            Some(k) => Lookup::Found(k),
            None if cached.expires.is_none() => Lookup::Unavailable,
            None => Lookup::Unknown,
        }
    }

    /// Fetches the set now (at start), unless a refresh is running or ran too recently.
    pub(crate) fn prefetch(&self, events: &Events) {
        self.start_refresh(events);
    }

    /// Starts a refresh on its own task unless one runs; throttled to one per `min_refresh`.
    /// True when a refresh is running now (started here or before).
    fn start_refresh(&self, events: &Events) -> bool {
        let now = Instant::now();
        {
            let mut r = self.0.refresh.lock().unwrap_or_else(|p| p.into_inner());
            if r.running {
                return true;
            }
            if r.last_start
                .is_some_and(|at| now.duration_since(at) < self.0.min_refresh)
            {
                events.add("jwks_refresh_throttled");
                return false;
            }
            r.running = true;
            r.last_start = Some(now);
        }
        let inner = self.0.clone();
        let events = events.clone();
        tokio::spawn(async move {
            match inner.fetch().await {
                Ok((keys, ttl)) => {
                    events.add("jwks_refresh_ok");
                    inner.cache.store(Arc::new(Cached {
                        keys,
                        expires: Some(Instant::now() + ttl),
                    }));
                }
                Err(e) => {
                    events.add("jwks_refresh_failed");
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys already known");
                }
            }
            inner
                .refresh
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .running = false;
            inner.done.send_modify(|n| *n += 1);
        });
        true
    }
}

impl Inner {
    async fn fetch(&self) -> Result<(Vec<Arc<Key>>, Duration), String> {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let target = self.fetcher.target(None);
        let resp = self
            .fetcher
            .send(http::Method::GET, &target, headers)
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status.is_success() {
            return Err(format!("JWKS endpoint answered {}", resp.status));
        }
        let set: JwkSet =
            serde_json::from_slice(&resp.body).map_err(|e| format!("invalid JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            // Keys for other uses (encryption) or of kinds we cannot use are skipped.
            if matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            ) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            keys.push(Arc::new(Key {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            }));
        }
        let ttl = max_age(&resp.headers).unwrap_or(self.default_ttl);
        Ok((keys, ttl))
    }
}

fn pick(keys: &[Arc<Key>], kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
    let usable =
        |k: &&Arc<Key>| k.alg.is_none_or(|a| a == alg) && k.key.family() == super::jwt::family(alg);
    match kid {
        Some(kid) => keys
            .iter()
            .filter(usable)
            .find(|k| k.kid.as_deref() == Some(kid))
            .cloned(),
        None => {
            let mut candidates = keys.iter().filter(usable);
            let first = candidates.next()?;
            // Without a kid, only an unambiguous key will do.
            candidates.next().is_none().then(|| first.clone())
        }
    }
}

/// `Cache-Control: max-age` (`no-store`/`no-cache` mean: do not keep it long).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut out = None;
    for v in headers.get_all(http::header::CACHE_CONTROL) {
        for d in v.to_str().ok()?.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::from_secs(1));
            }
            if let Some(n) = d
                .strip_prefix("max-age=")
                .or_else(|| d.strip_prefix("s-maxage="))
            {
                if let Ok(n) = n.trim_matches('"').parse::<u64>() {
                    out = Some(Duration::from_secs(n.clamp(1, 86_400)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_lifetime() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("public, max-age=300"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(300)));
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(1)));
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("max-age=junk"),
        );
        assert_eq!(max_age(&h), None);
    }
}
