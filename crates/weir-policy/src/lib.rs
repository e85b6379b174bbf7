//! Route policies (DESIGN §1, the request phase): named in `[[policies]]`, applied by routes in
//! order before their action. Any policy may answer early (401, 403, 409, 429 …) or with a
//! response of its own (a CORS preflight, a replayed idempotent response); what a policy must
//! do to the response (CORS headers, header edits, storing an idempotent response, ending a
//! concurrency slot) is left in the request's [`Hooks`].
//!
//! Kinds, one module each: [`ip`] rules, [`ratelimit`] (memory or Redis), [`concurrency`]
//! limits, identity in [`auth`] (JWT/JWKS, API keys, basic, external), [`idempotency`] keys,
//! [`cors`], and [`headers`] edits. Every compiled [`Policy`] counts its decisions and its
//! kind's events for `/metrics`.
//!
//! ```
//! # async fn demo() {
//! let cfg: weir_config::Config = weir_config::parse(r#"
//! [[listeners]]
//! name = "main"
//! bind = "127.0.0.1:0"
//! [[policies]]
//! name = "office"
//! ip = { allow = ["10.0.0.0/8"] }
//! "#, "demo.toml").expect("valid");
//! let shared = weir_policy::Shared::new(&cfg, None);
//! let policy = weir_policy::Policy::compile(&cfg.policies[0], &cfg, &shared).expect("compiles");
//! assert_eq!(policy.describe(), "ip: allow 10.0.0.0/8, deny -");
//! # }
//! ```

pub mod auth;
pub mod concurrency;
pub mod cors;
mod fetch;
pub mod headers;
pub mod idempotency;
pub mod ip;
mod key;
mod kind;
pub mod ratelimit;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use weir_core::{ProxyError, RequestBody, RequestCtx, ResponseBody};

use kind::Kind;

pub use store::RedisStore;

/// Why a policy could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("policy `{policy}`: {message}")]
pub struct CompileError {
    /// The policy.
    pub policy: String,
    /// What is wrong.
    pub message: String,
}

impl CompileError {
    fn new(policy: &str, message: impl Into<String>) -> Self {
        Self {
            policy: policy.to_owned(),
            message: message.into(),
        }
    }
}

/// State every policy of a runtime shares: the Redis store and the consumers' API keys.
/// Carried over a reload when `[redis]` is unchanged, so its connection survives.
#[derive(Debug)]
pub struct Shared {
    /// The `[redis]` store, when configured.
    pub redis: Option<Arc<RedisStore>>,
}

impl Shared {
    /// Shared state for `cfg`, keeping `previous`'s Redis connection when `[redis]` did not
    /// change.
    pub fn new(
        cfg: &weir_config::Config,
        previous: Option<(&Shared, &weir_config::Config)>,
    ) -> Arc<Self> {
        let redis = cfg.redis.as_ref().map(|r| {
            previous
                .filter(|(_, old)| old.redis.as_ref() == Some(r))
                .and_then(|(s, _)| s.redis.clone())
                .unwrap_or_else(|| RedisStore::shared(r))
        });
        Arc::new(Self { redis })
    }

    /// The store a policy named `name` counts in: none for `memory`, the `[redis]` store for
    /// `redis` (an error without one; validation refuses that config first).
    pub(crate) fn store_for(
        &self,
        name: &str,
        kind: weir_config::StoreKind,
    ) -> Result<Option<Arc<RedisStore>>, CompileError> {
        match kind {
            weir_config::StoreKind::Memory => Ok(None),
            weir_config::StoreKind::Redis => self
                .redis
                .clone()
                .map(Some)
                .ok_or_else(|| CompileError::new(name, "store = \"redis\" needs [redis]")),
        }
    }
}

/// The answer when the store failed and `on_store_error = "deny"`.
pub(crate) fn store_unavailable() -> Early {
    ProxyError::new(weir_core::ErrorKind::PolicyStoreUnavailable)
        .retry_after(std::time::Duration::from_secs(1))
        .into()
}

/// What a counting policy does when its shared store failed, by its `on_store_error`.
pub(crate) enum StoreFallback {
    /// Let the request through uncounted.
    Allow,
    /// Count it in this instance's memory instead.
    Local,
}

/// A counting policy's store failed: counted (`store_error`) and logged here, then its
/// `on_store_error` decides — `deny` answers 503 with `Retry-After`.
pub(crate) fn store_failed(
    what: &'static str,
    on: weir_config::OnStoreError,
    error: &dyn std::fmt::Display,
    events: &Events,
) -> Result<StoreFallback, Early> {
    events.add("store_error");
    tracing::warn!(error = %error, policy = what, "shared store failed; on_store_error decides");
    match on {
        weir_config::OnStoreError::Allow => Ok(StoreFallback::Allow),
        weir_config::OnStoreError::Deny => Err(store_unavailable()),
        weir_config::OnStoreError::Local => Ok(StoreFallback::Local),
    }
}

/// How a policy stopped a request.
#[derive(Debug)]
pub enum Early {
    /// An error answer through the one error mapping (its headers included).
    Error(ProxyError),
    /// A response of the policy's own (a CORS preflight, an auth service's refusal, a
    /// replayed response).
    Response(Box<Response<ResponseBody>>),
}

impl From<ProxyError> for Early {
    fn from(e: ProxyError) -> Self {
        Self::Error(e)
    }
}

/// What the response phase owes the policies that admitted a request.
#[derive(Debug, Default)]
pub struct Hooks {
    /// `RateLimit-Policy` / `RateLimit` pairs.
    pub rate_limit: Vec<(HeaderValue, HeaderValue)>,
    /// Headers added to the response (CORS); none made when there are none (dropping even an
    /// empty map costs every request ~60 instructions).
    add: Option<HeaderMap>,
    /// The response depends on `Origin` (a CORS policy ran).
    vary_origin: bool,
    /// Response header edits, in chain order.
    edits: Vec<Arc<headers::Edit>>,
    /// A response to store under an idempotency key.
    idempotency: Option<idempotency::Pending>,
    /// Concurrency slots held until the response is done.
    permits: Vec<concurrency::Permit>,
}

impl Hooks {
    /// Applies the response phase to `resp` (a response from the action or an error answer):
    /// CORS headers, header edits, and the idempotency store's tee of the body. Returns what
    /// must stay alive until the response body is done.
    pub fn respond(&mut self, ctx: &RequestCtx, resp: &mut Response<ResponseBody>) -> Held {
        for (name, value) in self.add.iter().flatten() {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        if self.vary_origin {
            headers::vary(resp.headers_mut(), "origin");
        }
        for edit in &self.edits {
            edit.apply(ctx, resp.headers_mut());
        }
        if let Some(pending) = self.idempotency.take() {
            pending.capture(ctx.error.is_some(), resp);
        }
        Held {
            _permits: std::mem::take(&mut self.permits),
        }
    }
}

/// Held by the log phase until the response body is done.
#[derive(Debug, Default)]
pub struct Held {
    _permits: Vec<concurrency::Permit>,
}

/// Named counters of one policy's events (the kind's own, beside allowed/denied). A clone
/// counts into the same counters (a background task of the policy holds one).
#[derive(Debug, Clone)]
pub struct Events {
    names: &'static [&'static str],
    counts: Arc<[AtomicU64]>,
}

impl Events {
    fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            counts: names.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one `name` event (a name not declared is ignored).
    pub fn add(&self, name: &str) {
        if let Some(i) = self.names.iter().position(|n| *n == name) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Each event and its count.
    pub fn snapshot(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.names
            .iter()
            .zip(self.counts.iter())
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
    }
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    /// Its name.
    pub name: Arc<str>,
    kind: Kind,
    allowed: AtomicU64,
    denied: AtomicU64,
    /// The kind's own events (store errors, JWKS refreshes, replays …).
    pub events: Events,
    started: std::sync::atomic::AtomicBool,
}

impl Policy {
    /// Compiles a validated policy.
    pub fn compile(
        cfg: &weir_config::Policy,
        config: &weir_config::Config,
        shared: &Arc<Shared>,
    ) -> Result<Self, CompileError> {
        let name = cfg.name.as_str();
        let (kind, events) = Kind::compile(cfg, config, shared)?;
        Ok(Self {
            name: Arc::from(name),
            kind,
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            events: Events::new(events),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts background work (a JWKS fetch at start); call once the runtime is live.
    pub fn start(self: &Arc<Self>) {
        // Once: a policy carried over by a reload is already running.
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.kind.start(self.clone());
    }

    /// Runs the request phase of this policy: `Ok` lets the request go on (with what the
    /// response phase owes this policy left in `hooks`), `Err` answers it now.
    pub async fn request(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut Parts,
        body: &mut RequestBody,
        hooks: &mut Hooks,
    ) -> Result<(), Early> {
        let r = kind::Request {
            ctx,
            parts,
            body,
            hooks,
            events: &self.events,
        };
        let result = self.kind.on_request(r).await;
        let counter = if result.is_ok() {
            &self.allowed
        } else {
            &self.denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Requests this policy let through and stopped.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.allowed.load(Ordering::Relaxed),
            self.denied.load(Ordering::Relaxed),
        )
    }

    /// What the policy does, for `weir explain` and the admin API.
    pub fn describe(&self) -> String {
        self.kind.summary()
    }
}

/// A structured-field string (RFC 8941 §3.3.3): quoted, `"` and `\` escaped, other
/// characters outside printable ASCII dropped.
pub(crate) fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// Every policy's decisions (`weir_policy_decisions_total`) and events beside them
/// (`weir_policy_events_total`), in `/metrics`.
/// Each policy's decisions and events as JSON, for the dashboard: the same counters as
/// [`render_metrics`].
pub fn summary(policies: &[Arc<Policy>]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| {
            let (allowed, denied) = p.counts();
            let events: serde_json::Map<String, serde_json::Value> = p
                .events
                .snapshot()
                .filter(|(_, n)| *n > 0)
                .map(|(event, n)| (event.to_owned(), n.into()))
                .collect();
            serde_json::json!({
                "name": &*p.name,
                "describe": p.describe(),
                "allowed": allowed,
                "denied": denied,
                "events": events,
            })
        })
        .collect();
    serde_json::Value::Array(list)
}

pub fn render_metrics(policies: &[Arc<Policy>], e: &mut weir_core::prometheus::Exposition) {
    use weir_core::prometheus::Kind;
    let decisions: Vec<([(&str, &str); 2], u64)> = policies
        .iter()
        .flat_map(|p| {
            let (allowed, denied) = p.counts();
            [
                ([("policy", &*p.name), ("result", "allowed")], allowed),
                ([("policy", &*p.name), ("result", "denied")], denied),
            ]
        })
        .collect();
    e.family(
        "weir_policy_decisions_total",
        Kind::Counter,
        "Requests each policy let through or answered itself (403, 429 …).",
        decisions.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
    let events: Vec<([(&str, &str); 2], u64)> = policies
        .iter()
        .flat_map(|p| {
            p.events
                .snapshot()
                .map(move |(event, n)| ([("policy", &*p.name), ("event", event)], n))
        })
        .collect();
    e.family(
        "weir_policy_events_total",
        Kind::Counter,
        "Policy events beside decisions: store errors, JWKS refreshes, idempotent replays and conflicts, CORS preflights, auth-service errors.",
        events.iter().map(|(l, n)| (&l[..], *n as f64)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_field_strings_are_escaped() {
        assert_eq!(sf_string("per-ip"), "\"per-ip\"");
        assert_eq!(sf_string("a\"b\\c\u{e9}"), "\"a\\\"b\\\\c\"");
    }
}
