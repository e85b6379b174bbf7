//! `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): on the methods configured
//! (POST and PATCH by default), a request with a key is fingerprinted — method, path and
//! query, chosen headers, SHA-256 of the body (read up to `max_body`) — and the key locked.
//! The upstream's response is stored (status, headers, body up to `max_body`) for `ttl` when
//! its status is in the configured set; a repeat with the same fingerprint is answered from
//! the record with `Idempotent-Replayed: true` and never reaches the upstream. The same key
//! with another fingerprint gets 422, a repeat while the first is in flight 409, a missing
//! key where required 400. A failed attempt (an error, a status outside the set, a body too
//! large to store, a client gone mid-way) releases the key so the client can try again.

mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use weir_config::OnStoreError;
use weir_core::{ErrorKind, ProxyError, RequestBody, RequestCtx, ResponseBody};

use crate::{CompileError, Early, Events, Hooks, Shared};
use store::{Begin, Record, Store};

/// Events an idempotency policy counts.
pub(crate) const EVENTS: &[&str] = &[
    "replayed",
    "conflict",
    "mismatch",
    "missing",
    "store_error",
    "recorded",
    "released",
];

static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A compiled `idempotency` policy.
#[derive(Debug)]
pub struct IdempotencyPolicy {
    name: String,
    methods: Vec<Method>,
    required: bool,
    header: HeaderName,
    ttl: Duration,
    lock_ttl: Duration,
    fingerprint_headers: Vec<HeaderName>,
    max_body: usize,
    statuses: Vec<(u16, u16)>,
    store: Store,
    on_store_error: OnStoreError,
    per_consumer: bool,
    key_prefix: String,
}

impl IdempotencyPolicy {
    pub(crate) fn compile(
        name: &str,
        cfg: &weir_config::Idempotency,
        shared: &Shared,
    ) -> Result<Self, CompileError> {
        let (store, prefix) = match cfg.store {
            weir_config::StoreKind::Memory => (Store::Memory(Arc::default()), String::new()),
            weir_config::StoreKind::Redis => {
                let r = shared
                    .redis
                    .clone()
                    .ok_or_else(|| CompileError::new(name, "store = \"redis\" needs [redis]"))?;
                let prefix = r.prefix().to_owned();
                (Store::Redis(r), prefix)
            }
        };
        Ok(Self {
            name: name.to_owned(),
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            required: cfg.required,
            header: HeaderName::from_bytes(cfg.header.as_bytes())
                .map_err(|_| CompileError::new(name, "invalid header"))?,
            ttl: cfg.ttl.get(),
            lock_ttl: cfg.lock_ttl.get(),
            fingerprint_headers: cfg
                .fingerprint_headers
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            max_body: usize::try_from(cfg.max_body.bytes()).unwrap_or(usize::MAX),
            statuses: cfg
                .statuses
                .iter()
                .filter_map(|s| weir_config::validate_policy::parse_status_set(s))
                .collect(),
            store,
            on_store_error: cfg.on_store_error,
            per_consumer: cfg.per_consumer,
            key_prefix: format!("{prefix}idem:{name}:"),
        })
    }

    pub(crate) async fn check(
        &self,
        ctx: &mut RequestCtx,
        parts: &mut Parts,
        body: &mut RequestBody,
        hooks: &mut Hooks,
        events: &Events,
    ) -> Result<(), Early> {
        if !self.methods.contains(&parts.method) {
            return Ok(());
        }
        let Some(raw) = parts.headers.get(&self.header) else {
            if self.required {
                events.add("missing");
                ctx.idempotency = Some(weir_core::IdempotencyOutcome::Missing);
                return Err(ProxyError::new(ErrorKind::IdempotencyKeyMissing).into());
            }
            return Ok(());
        };
        // The key is a structured-field string; a bare token is accepted too.
        let key = raw.as_bytes();
        let key = key
            .strip_prefix(b"\"")
            .and_then(|k| k.strip_suffix(b"\""))
            .unwrap_or(key);
        if key.is_empty() || key.len() > 255 {
            events.add("missing");
            ctx.idempotency = Some(weir_core::IdempotencyOutcome::Missing);
            return Err(ProxyError::new(ErrorKind::IdempotencyKeyMissing).into());
        }
        // Read the body (bounded) for the fingerprint, then send it on from memory.
        let taken = std::mem::replace(body, RequestBody::buffered(Bytes::new(), ctx.body.clone()));
        let collected = http_body_util::Limited::new(taken, self.max_body)
            .collect()
            .await
            .map_err(|e| {
                let kind = if e.is::<http_body_util::LengthLimitError>() || ctx.body.too_large() {
                    ErrorKind::BodyTooLarge
                } else {
                    ErrorKind::ClientBody
                };
                Early::Error(ProxyError::new(kind).with_source(e))
            })?
            .to_bytes();
        let mut h = Sha256::new();
        h.update(parts.method.as_str().as_bytes());
        h.update([0]);
        h.update(
            parts
                .uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes(),
        );
        for name in &self.fingerprint_headers {
            h.update([0]);
            h.update(name.as_str().as_bytes());
            for v in parts.headers.get_all(name) {
                h.update([1]);
                h.update(v.as_bytes());
            }
        }
        h.update([0]);
        h.update(Sha256::digest(&collected));
        let fp: [u8; 32] = h.finalize().into();
        *body = RequestBody::buffered(collected, ctx.body.clone());

        let mut store_key = self.key_prefix.as_bytes().to_vec();
        if self.per_consumer {
            store_key.extend_from_slice(ctx.consumer.as_deref().unwrap_or("").as_bytes());
            store_key.push(b':');
        }
        store_key.extend_from_slice(key);
        match self.store.begin(&store_key, fp, self.lock_ttl).await {
            Ok(Begin::Acquired) => {
                ctx.idempotency = Some(weir_core::IdempotencyOutcome::Stored);
                hooks.idempotency = Some(Pending {
                    inner: Some(PendingInner {
                        store: self.store.clone(),
                        key: store_key,
                        fp,
                        ttl: self.ttl,
                        max_body: self.max_body,
                        statuses: self.statuses.clone(),
                        policy: self.name.clone(),
                        events: events.clone(),
                    }),
                });
                Ok(())
            }
            Ok(Begin::InFlight(f)) if f == fp => {
                events.add("conflict");
                ctx.idempotency = Some(weir_core::IdempotencyOutcome::Conflict);
                Err(ProxyError::new(ErrorKind::IdempotencyConflict)
                    .retry_after(Duration::from_secs(1))
                    .into())
            }
            Ok(Begin::Done(f, record)) if f == fp => {
                events.add("replayed");
                ctx.idempotency = Some(weir_core::IdempotencyOutcome::Replayed);
                Err(Early::Response(Box::new(replay(&record))))
            }
            Ok(_) => {
                events.add("mismatch");
                ctx.idempotency = Some(weir_core::IdempotencyOutcome::Mismatch);
                Err(ProxyError::new(ErrorKind::IdempotencyMismatch).into())
            }
            Err(e) => {
                events.add("store_error");
                tracing::warn!(error = %e, "idempotency store failed; on_store_error decides");
                match self.on_store_error {
                    OnStoreError::Deny => Err(ProxyError::new(ErrorKind::PolicyStoreUnavailable)
                        .with_source(e)
                        .into()),
                    _ => {
                        ctx.idempotency = Some(weir_core::IdempotencyOutcome::Bypass);
                        Ok(())
                    }
                }
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        format!(
            "idempotency: {} keys on {}{}",
            self.header,
            methods.join(" "),
            if matches!(self.store, Store::Redis(_)) {
                " (redis)"
            } else {
                ""
            }
        )
    }
}

fn replay(record: &Record) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(Bytes::from(record.body.clone())));
    *resp.status_mut() = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    for (name, value) in &record.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(record.body.len()),
    );
    resp.headers_mut()
        .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
    resp
}

#[derive(Debug)]
struct PendingInner {
    store: Store,
    key: Vec<u8>,
    fp: [u8; 32],
    ttl: Duration,
    max_body: usize,
    statuses: Vec<(u16, u16)>,
    policy: String,
    /// The policy's counters: `recorded` once a response is stored, `released` once a key is
    /// freed (operators see both; tests wait on them).
    events: Events,
}

impl PendingInner {
    fn release(self) {
        tokio::spawn(async move {
            match self.store.release(&self.key, self.fp).await {
                Ok(_) => self.events.add("released"),
                Err(e) => {
                    tracing::warn!(policy = %self.policy, error = %e, "idempotency key release failed (it expires by itself)");
                }
            }
        });
    }
}

/// A locked key waiting for its response; dropped without one, it releases the key.
#[derive(Debug)]
pub(crate) struct Pending {
    inner: Option<PendingInner>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.release();
        }
    }
}

impl Pending {
    /// Tees the response into the store, or releases the key when this response is not to
    /// be kept (a Weir error, a status outside the set).
    pub(crate) fn capture(mut self, ctx_error: bool, resp: &mut Response<ResponseBody>) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let status = resp.status().as_u16();
        if ctx_error
            || !inner
                .statuses
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status))
        {
            inner.release();
            return;
        }
        let headers = resp
            .headers()
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "connection"
                        | "keep-alive"
                        | "transfer-encoding"
                        | "content-length"
                        | "x-request-id"
                        | "ratelimit"
                        | "ratelimit-policy"
                )
            })
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let expected =
            weir_core::body::declared_length(resp.headers()).and_then(|n| usize::try_from(n).ok());
        let body = std::mem::take(resp.body_mut());
        let limit = inner.max_body;
        let done: weir_core::body::TeeDone = Box::new(move |whole: Option<Bytes>| match whole {
            Some(bytes) => {
                let record = Record {
                    status,
                    headers,
                    body: bytes.to_vec(),
                };
                tokio::spawn(async move {
                    match inner
                        .store
                        .complete(&inner.key, inner.fp, record, inner.ttl)
                        .await
                    {
                        Ok(_) => inner.events.add("recorded"),
                        Err(e) => {
                            tracing::warn!(policy = %inner.policy, error = %e, "idempotency record not stored");
                        }
                    }
                });
            }
            // Not seen whole (too large, failed, client gone): free the key.
            None => inner.release(),
        });
        let tee = weir_core::body::Tee::new(body, limit, expected, done);
        *resp.body_mut() =
            ResponseBody::Stream(http_body_util::combinators::UnsyncBoxBody::new(tee));
    }
}

impl crate::kind::Compiles for weir_config::Idempotency {
    type Kind = IdempotencyPolicy;
}

impl crate::kind::PolicyKind for IdempotencyPolicy {
    type Config = weir_config::Idempotency;
    const EVENTS: &'static [&'static str] = EVENTS;

    fn build(
        name: &str,
        cfg: &weir_config::Idempotency,
        _: &weir_config::Config,
        shared: &std::sync::Arc<crate::Shared>,
    ) -> Result<Self, crate::CompileError> {
        Self::compile(name, cfg, shared)
    }

    async fn on_request(&self, r: crate::kind::Request<'_>) -> Result<(), crate::Early> {
        self.check(r.ctx, r.parts, r.body, r.hooks, r.events).await
    }

    fn summary(&self) -> String {
        self.describe()
    }
}
