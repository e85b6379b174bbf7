//! Shadow traffic: a copy of a share of a route's requests goes to another upstream, fire and
//! forget. The copy leaves once the client's body has been read whole (bodies up to
//! `max_body`); at most `max_in_flight` copies are out at once; the answer is read, measured
//! and discarded. Nothing here can delay, fail or change the client's response: a copy that
//! cannot be made is dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use weir_core::body::Copied;
use weir_core::{BodyStats, Histogram, RequestBody};
use weir_upstream::{CallInfo, CallOpts, Upstream};

use super::line::PARTS;

/// The header that marks a copy (its value is the route's name).
pub(crate) static MIRROR_HEADER: HeaderName = HeaderName::from_static("x-weir-mirror");

/// What a route's mirror did, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct MirrorStats {
    pub(crate) sent: AtomicU64,
    /// Not sent: `max_in_flight` copies were already out.
    pub(crate) dropped_in_flight: AtomicU64,
    /// Not sent: the body was larger than `max_body`.
    pub(crate) dropped_body_too_large: AtomicU64,
    /// Not sent: the body did not arrive whole (cut short, or never read because the request
    /// failed first).
    pub(crate) dropped_body_incomplete: AtomicU64,
    /// Answers by status class (1xx … 5xx).
    pub(crate) classes: [AtomicU64; 5],
    /// Copies that got no answer: connection refused, reset, the upstream's own timeouts.
    pub(crate) failed: AtomicU64,
    /// Copies abandoned at the mirror's `timeout`.
    pub(crate) timed_out: AtomicU64,
    /// Time from sending the copy to the end of its answer.
    pub(crate) duration: Histogram,
    pub(crate) in_flight: AtomicU64,
}

/// A route's compiled mirror.
pub(crate) struct Mirror {
    pub(crate) route: Arc<str>,
    pub(crate) target: Arc<str>,
    upstream: Arc<Upstream>,
    /// The mirrored share of the line (parts of `PARTS`).
    share: u32,
    max_body: u64,
    timeout: Duration,
    slots: Arc<tokio::sync::Semaphore>,
    pub(crate) stats: Arc<MirrorStats>,
    route_value: HeaderValue,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("route", &self.route)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    pub(crate) fn new(
        route: Arc<str>,
        cfg: &weir_config::Mirror,
        upstream: Arc<Upstream>,
        stats: Arc<MirrorStats>,
    ) -> Self {
        Self {
            route_value: HeaderValue::from_str(&route)
                .unwrap_or_else(|_| HeaderValue::from_static("1")),
            route,
            target: upstream.name.clone(),
            upstream,
            share: (cfg.percent / 100.0 * f64::from(PARTS)).round() as u32,
            max_body: cfg.max_body.bytes(),
            timeout: cfg.timeout.get(),
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight)),
            stats,
        }
    }

    /// Perhaps copies this request (its head as it goes upstream, with `host` the Host the
    /// client sent): at once when it has no body, else when `body` has been read whole.
    pub(crate) fn copy(
        self: &Arc<Self>,
        parts: &Parts,
        added: &weir_core::added::AddedFields,
        body: &mut RequestBody,
        host: Option<HeaderValue>,
        client_ip: std::net::IpAddr,
    ) {
        if self.share < PARTS && fastrand::u32(..PARTS) >= self.share {
            return;
        }
        if weir_core::body::declared_length(&parts.headers).is_some_and(|n| n > self.max_body) {
            self.stats
                .dropped_body_too_large
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.stats.dropped_in_flight.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut head = http::Request::new(());
        *head.method_mut() = parts.method.clone();
        *head.uri_mut() = parts.uri.clone();
        *head.version_mut() = parts.version;
        *head.headers_mut() = parts.headers.clone();
        added.insert_into(head.headers_mut());
        let (mut head, ()) = head.into_parts();
        match self.upstream.host_header.clone().or(host) {
            Some(h) => {
                head.headers.insert(http::header::HOST, h);
            }
            None => {
                head.headers.remove(http::header::HOST);
            }
        }
        head.headers
            .insert(MIRROR_HEADER.clone(), self.route_value.clone());
        let mirror = self.clone();
        let limit = usize::try_from(self.max_body).unwrap_or(usize::MAX);
        body.copy_to(
            limit,
            Box::new(move |copied| {
                let dropped = match copied {
                    Copied::Whole(bytes) => {
                        tokio::spawn(mirror.send(head, bytes, client_ip, permit));
                        return;
                    }
                    Copied::TooLarge => &mirror.stats.dropped_body_too_large,
                    Copied::Incomplete => &mirror.stats.dropped_body_incomplete,
                };
                dropped.fetch_add(1, Ordering::Relaxed);
            }),
        );
    }

    async fn send(
        self: Arc<Self>,
        head: Parts,
        body: Bytes,
        client_ip: std::net::IpAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let stats = &self.stats;
        stats.sent.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let body_stats = Arc::new(BodyStats::default());
        let opts = CallOpts {
            client_ip,
            retry_non_idempotent: false,
            body_stats: body_stats.clone(),
            addrs: None,
            interim: None,
            added: &weir_core::added::NO_FIELDS,
        };
        let exchange = async {
            let mut info = CallInfo::default();
            let (resp, guard) = self
                .upstream
                .call(
                    head,
                    RequestBody::buffered(body, body_stats),
                    opts,
                    &mut info,
                )
                .await?;
            let status = resp.status().as_u16();
            // Read to the end, so the connection goes back to its pool.
            let read = resp.into_body().collect().await;
            drop(guard);
            Ok::<_, weir_core::ProxyError>(read.is_ok().then_some(status))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Some(status))) => {
                let class = usize::from((status / 100).clamp(1, 5)) - 1;
                stats.classes[class].fetch_add(1, Ordering::Relaxed);
                stats.duration.observe(started.elapsed());
            }
            Ok(Ok(None) | Err(_)) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(permit);
    }
}
