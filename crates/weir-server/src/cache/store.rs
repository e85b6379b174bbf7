//! After the forward: invalidation by unsafe methods, `stale-if-error`, freshening by a 304,
//! and storing a storable response as it streams to the client (memory, or disk for large
//! objects).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::AGE;
use http::{HeaderName, Method, StatusCode};
use weir_cache::directives::{RequestDirectives, ResponseDirectives};
use weir_cache::freshness::Freshness;
use weir_cache::key;
use weir_cache::status::{CacheStatus, Forward};
use weir_cache::storable;
use weir_cache::store::Variant;
use weir_core::{ProxyError, RequestCtx, ResponseBody};

use super::disk_fill::{DiskJob, DiskTee};
use super::serve::serve;
use super::{set_status, ttl, Plan, CACHE_STATUS};
use crate::pipeline::outcome::Outcome;

impl Plan {
    /// Counts a background refresh starting.
    pub(crate) fn count_refresh(&self) {
        self.handle
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Finishes a forwarded request: invalidation, stale-if-error, 304 freshening, storing.
    pub(crate) fn finish(
        self,
        result: Result<Outcome, ProxyError>,
        ctx: &mut RequestCtx,
        compress: Option<crate::compress::Plan>,
        compression: &Arc<crate::compress::CompressionStats>,
    ) -> Result<Outcome, ProxyError> {
        let mut compress = compress;
        let mut out = self.finish_stored(result, ctx, &mut compress, compression)?;
        out.compress = compress;
        Ok(out)
    }

    /// [`Plan::finish`]; takes `compress` when it compressed the response itself.
    fn finish_stored(
        self,
        result: Result<Outcome, ProxyError>,
        ctx: &mut RequestCtx,
        compress: &mut Option<crate::compress::Plan>,
        compression: &Arc<crate::compress::CompressionStats>,
    ) -> Result<Outcome, ProxyError> {
        let h = &self.handle;
        let now = SystemTime::now();
        let post_stored = |out: &Outcome| {
            self.method == Method::POST
                && h.store_post
                && storable::post_reusable(
                    self.scheme,
                    &self.host,
                    &self.path_and_query,
                    out.response.headers(),
                    &ResponseDirectives::parse(out.response.headers(), Some(&h.targeted)),
                )
        };
        let store_post = result.as_ref().is_ok_and(post_stored);
        if self.method != Method::GET && self.method != Method::HEAD {
            if let Ok(out) = &result {
                let targets = weir_cache::invalidate::targets(
                    &self.method,
                    out.response.status(),
                    self.scheme,
                    &self.host,
                    &self.path_and_query,
                    out.response.headers(),
                );
                for t in targets {
                    h.invalidate_uri(&format!("{}{}", t.host, t.path_and_query));
                    h.counters.invalidated.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if self.method != Method::GET && self.method != Method::HEAD && !store_post {
            return result.map(|mut out| {
                let s = CacheStatus {
                    fwd: Some(Forward::Method),
                    ..Default::default()
                };
                set_status(out.response.headers_mut(), &s, &h.name);
                out
            });
        }
        let failed = match &result {
            Err(_) => true,
            Ok(out) => matches!(out.response.status().as_u16(), 500 | 502 | 503 | 504),
        };
        if let (true, Some((v, true))) = (failed, &self.stale) {
            h.counters.stale.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some(weir_core::CacheOutcome::Stale);
            let s = CacheStatus {
                hit: true,
                fwd: Some(self.fwd),
                fwd_status: result.as_ref().ok().map(|o| o.response.status().as_u16()),
                ttl: Some(ttl(&v.freshness, now)),
                detail: Some("stale-if-error"),
                ..Default::default()
            };
            return Ok(Outcome::from(serve(
                v,
                &self.method,
                &self.request_headers,
                now,
                &s,
                &h.name,
            )));
        }
        let mut out = result?;
        let status = out.response.status();
        if status != StatusCode::NOT_MODIFIED || !self.added_validators {
            if let Some(c) = compress.take() {
                ctx.compressed = c.apply(&mut out.response, compression);
            }
        }
        if status == StatusCode::NOT_MODIFIED && self.added_validators {
            if let Some((v, _)) = &self.stale {
                if weir_cache::update::selects(&v.headers, out.response.headers()) {
                    let mut headers = v.headers.clone();
                    weir_cache::update::freshen(&mut headers, out.response.headers());
                    headers.remove(AGE);
                    let directives = ResponseDirectives::parse(&headers, Some(&h.targeted));
                    let freshened = Variant {
                        secondary: v.secondary.clone(),
                        status: v.status,
                        freshness: Freshness::of(
                            v.status,
                            &headers,
                            &directives,
                            self.request_time,
                            now,
                        ),
                        headers,
                        body: v.body.clone(),
                        directives,
                        body_len: v.body_len,
                        file: v.file.clone(),
                    };
                    let vary = key::vary_fields(&freshened.headers).unwrap_or_default();
                    h.counters.revalidated.fetch_add(1, Ordering::Relaxed);
                    ctx.cache = Some(weir_core::CacheOutcome::Revalidated);
                    let s = CacheStatus {
                        fwd: Some(self.fwd),
                        fwd_status: Some(304),
                        ttl: Some(ttl(&freshened.freshness, now)),
                        stored: true,
                        ..Default::default()
                    };
                    let resp = serve(
                        &freshened,
                        &self.method,
                        &self.request_headers,
                        now,
                        &s,
                        &h.name,
                    );
                    h.keep(self.primary, self.uri, vary, freshened, Vec::new());
                    return Ok(Outcome::from(resp));
                }
                // A 304 that does not select what the cache asked about (another validator):
                // the client made no conditional request, so it gets the stored response,
                // left as it was, never the bare 304.
                let s = CacheStatus {
                    fwd: Some(self.fwd),
                    fwd_status: Some(304),
                    ttl: Some(ttl(&v.freshness, now)),
                    detail: Some("unselected-304"),
                    ..Default::default()
                };
                ctx.cache = Some(weir_core::CacheOutcome::Stale);
                let resp = serve(v, &self.method, &self.request_headers, now, &s, &h.name);
                return Ok(Outcome::from(resp));
            }
        }
        let mut cs = CacheStatus {
            fwd: Some(self.fwd),
            fwd_status: Some(status.as_u16()),
            ..Default::default()
        };
        if self.stale.is_some() {
            h.counters.refetched.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some(weir_core::CacheOutcome::Refetched);
        } else {
            h.counters.miss.fetch_add(1, Ordering::Relaxed);
            ctx.cache = Some(weir_core::CacheOutcome::Miss);
        }
        let req = RequestDirectives::parse(&self.request_headers);
        let d = ResponseDirectives::parse(out.response.headers(), Some(&h.targeted));
        let authorized = self
            .request_headers
            .contains_key(http::header::AUTHORIZATION);
        let verdict = if self.method == Method::HEAD {
            Err(storable::NotStorable::Method)
        } else {
            storable::check(
                &h.store_rules,
                &self.method,
                &req,
                authorized,
                status,
                out.response.headers(),
                &d,
            )
        };
        let declared = weir_core::body::declared_length(out.response.headers())
            .and_then(|n| usize::try_from(n).ok());
        match (verdict, key::vary_fields(out.response.headers())) {
            (Ok(()), Some(vary)) if declared.is_none_or(|n| n <= h.max_object) => {
                let mut headers = out.response.headers().clone();
                headers.remove(CACHE_STATUS.clone());
                if h.set_cookie == weir_config::SetCookie::Strip {
                    headers.remove(http::header::SET_COOKIE);
                }
                headers.remove(HeaderName::from_static("x-request-id"));
                let mut tags: Vec<String> = Vec::new();
                for name in &h.tag_headers {
                    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
                        tags.extend(
                            v.split([' ', ','])
                                .filter(|t| !t.is_empty())
                                .map(str::to_owned),
                        );
                    }
                    headers.remove(name);
                }
                let secondary = key::secondary(&vary, &self.request_headers);
                let freshness = Freshness::of(status, &headers, &d, self.request_time, now);
                cs.stored = true;
                let meta = Variant {
                    secondary,
                    status,
                    headers,
                    body: Bytes::new(),
                    freshness,
                    directives: d,
                    body_len: 0,
                    file: None,
                };
                let (primary, uri) = (self.primary, self.uri);
                // Waiters wake once the response is stored (or abandoned), not before.
                let fill = self.fill;
                let body = std::mem::take(out.response.body_mut());
                let teed =
                    match h.tiers.disk_for(declared) {
                        // Large (or of unknown size) with a disk tier: straight to disk as it
                        // streams, never held whole in memory.
                        Some(disk) => {
                            let job = DiskJob {
                                handle: h.clone(),
                                disk: disk.clone(),
                                primary,
                                uri,
                                vary,
                                meta,
                                tags,
                                expected: declared,
                                fill,
                            };
                            DiskTee::start(body, h.max_object, job)
                        }
                        None => {
                            let handle = h.clone();
                            let done: weir_core::body::TeeDone =
                                Box::new(move |whole: Option<Bytes>| {
                                    let _fill = fill;
                                    if let Some(body) = whole {
                                        handle.counters.stored.fetch_add(1, Ordering::Relaxed);
                                        let v = Variant {
                                            body_len: body.len() as u64,
                                            body,
                                            ..meta
                                        };
                                        handle.keep(primary, uri, vary, v, tags);
                                    }
                                });
                            http_body_util::combinators::UnsyncBoxBody::new(
                                weir_core::body::Tee::new(body, h.max_object, declared, done),
                            )
                        }
                    };
                *out.response.body_mut() = ResponseBody::Stream(teed);
            }
            (Err(why), _) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some(why.as_str());
            }
            (Ok(()), None) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some("vary-star");
            }
            (Ok(()), Some(_)) => {
                h.counters.not_stored.fetch_add(1, Ordering::Relaxed);
                cs.detail = Some("too-large");
            }
        }
        for name in &h.tag_headers {
            out.response.headers_mut().remove(name);
        }
        set_status(out.response.headers_mut(), &cs, &h.name);
        Ok(out)
    }
}
