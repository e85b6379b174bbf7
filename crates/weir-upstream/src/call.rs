//! One proxied request's life in the upstream: breaker admission, the concurrency cap, then
//! tries — pick an endpoint (a different one on each retry when one exists), connect, send,
//! classify — with backoff between tries and the retry budget over them all.
//!
//! What is retried: connect failures for any method (nothing was sent); resets, per-try
//! timeouts and configured statuses only when the request can be replayed: an idempotent
//! method (or a route that opted in) and a body that was empty or small enough to buffer.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use weir_core::{BodyStats, ErrorKind, ProxyError, RequestBody, Retry, Side, UpstreamBody};

use crate::breaker::{Admit, CircuitBreaker};
use crate::client::Outgoing;
use crate::hash::mix;
use crate::health::outlier::TryOutcome;
use crate::pool::Sender;
use crate::retry::{idempotent, retry_after};
use crate::{client, key, Member, PickCx, Upstream};
use weir_core::added::AddedFields;
use weir_core::h1_client;

/// What the caller knows about the request beyond its head.
#[derive(Debug, Clone)]
pub struct CallOpts<'a> {
    /// The client's address (for `ip_hash` and `consistent_hash` on the client IP).
    pub client_ip: IpAddr,
    /// The route allows retrying non-idempotent requests.
    pub retry_non_idempotent: bool,
    /// Request body accounting, shared with the log phase.
    pub body_stats: Arc<BodyStats>,
    /// The client's address and the address it connected to, for a PROXY protocol header.
    pub addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Where the upstream's interim (1xx) responses go (HTTP/1.1 upstreams: hyper's HTTP/2
    /// client does not report them).
    pub interim: Option<weir_core::InterimSink>,
    /// Fields the proxy adds to the request, sent after its own (see [`AddedFields`]);
    /// borrowed, so that the request's futures do not carry and move them.
    pub added: &'a AddedFields,
}

/// What happened, for the access log and the response.
#[derive(Debug, Default)]
pub struct CallInfo {
    /// The endpoint of the last try.
    pub endpoint: Option<Arc<str>>,
    /// Tries made (1 + retries).
    pub tries: u32,
    /// A sticky-session cookie to set on the response.
    pub set_cookie: Option<HeaderValue>,
    /// Time the last try spent choosing its endpoint and getting a connection (near zero when
    /// a pooled one was ready).
    pub connect: Option<std::time::Duration>,
    /// Time the last try waited from sending to the response head.
    pub first_byte: Option<std::time::Duration>,
}

/// Held until the response body is done: ends the request's in-flight count and frees its
/// concurrency slot. (An HTTP/1.1 connection goes back to its pool from the body itself.)
pub struct UpstreamGuard {
    _in_flight: InFlight,
    _slot: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for UpstreamGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamGuard").finish_non_exhaustive()
    }
}

/// Counts one try in its endpoint's in-flight gauge while alive, and keeps the endpoint (its
/// state and pool) alive while it drains after leaving the set.
struct InFlight {
    member: Arc<Member>,
}

impl InFlight {
    fn new(member: Arc<Member>) -> Self {
        // SeqCst (on x86 the same locked add as Relaxed): ordered before the `has_left` check
        // that follows, against the set change that stores `left` and the drain that reads
        // `in_flight` after it.
        member.state.in_flight.fetch_add(1, Ordering::SeqCst);
        Self { member }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.member.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A breaker admission not yet recorded.
struct Ticket<'a> {
    breaker: &'a CircuitBreaker,
    admit: Option<Admit>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(admit) = self.admit.take() {
            self.breaker.release(admit);
        }
    }
}

enum Phase {
    /// Failed before anything was written.
    Connect,
    /// Failed after the request may have been written.
    Send,
}

impl Upstream {
    /// Sends the request (head already prepared for the hop) to an endpoint of this upstream,
    /// retrying as configured, and returns the response head with the guard to hold until its
    /// body is done.
    #[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
    pub fn call<'a>(
        self: &'a Arc<Self>,
        parts: Parts,
        body: RequestBody,
        opts: CallOpts<'a>,
        info: &'a mut CallInfo,
    ) -> impl std::future::Future<Output = Result<(Response<UpstreamBody>, UpstreamGuard), ProxyError>>
           + 'a {
        async move {
            let now = self.clock.now_ms();
            self.metrics.requests.fetch_add(1, Ordering::Relaxed);
            self.retry.budget().request(now);
            let Some(breaker) = &self.breaker else {
                return self.tries(Some(parts), Some(body), &opts, info).await;
            };
            let admit = breaker
                .admit(now)
                .map_err(|wait| ProxyError::new(ErrorKind::CircuitOpen).retry_after(wait))?;
            // If this future is dropped mid-way (the client left), the probe slot is given back.
            let mut ticket = Ticket {
                breaker,
                admit: Some(admit),
            };
            let result = self.tries(Some(parts), Some(body), &opts, info).await;
            let failed = match &result {
                Ok((resp, _)) => resp.status().is_server_error(),
                Err(e) => e.side != Side::Client,
            };
            ticket.admit = None;
            breaker.record(admit, failed, self.clock.now_ms());
            result
        }
    }

    /// `parts` and `body` come as `Option`s (always `Some`) because they are taken out in
    /// place: rebinding them would hold each twice in the future.
    #[allow(clippy::manual_async_fn)] // not an `async fn`: architecture.md, "Small request futures"
    fn tries<'a>(
        self: &'a Arc<Self>,
        mut parts: Option<Parts>,
        mut body: Option<RequestBody>,
        opts: &'a CallOpts<'a>,
        info: &'a mut CallInfo,
    ) -> impl std::future::Future<Output = Result<(Response<UpstreamBody>, UpstreamGuard), ProxyError>>
           + 'a {
        async move {
            let slot = match &self.limit {
                Some(limit) => Some(limit.acquire().await?),
                None => None,
            };
            let policy = &self.retry;
            let may_resend = policy.attempts > 0
                && (parts.as_ref().is_some_and(|p| idempotent(&p.method))
                    || opts.retry_non_idempotent);
            // A body that can be replayed: empty, or small enough to buffer when a resend is possible.
            let mut replay: Option<Bytes> = None;
            if body.as_ref().is_some_and(|b| b.is_end_stream()) {
                replay = Some(Bytes::new());
                body = None;
            } else if may_resend {
                let small = body
                    .as_ref()
                    .and_then(|b| b.size_hint().exact())
                    .is_some_and(|n| n <= policy.max_body);
                if small {
                    if let Some(b) = body.take() {
                        replay = Some(buffer(b, &opts.body_stats).await?);
                    }
                }
            }
            let resend_possible = may_resend
                && replay.is_some()
                && (policy.on_reset || policy.on_timeout || policy.has_statuses());
            let hash = self
                .hash_key
                .as_ref()
                .zip(parts.as_ref())
                .and_then(|(k, p)| key::hash_of(k, p, opts.added, opts.client_ip));
            let sticky = self
                .sticky
                .as_ref()
                .zip(parts.as_ref())
                .and_then(|(s, p)| s.endpoint_id(&p.headers));

            let proxy_header = match (self.proxy_protocol, opts.addrs) {
                (Some(version), Some((client, local))) => {
                    Some(crate::proxy_protocol::header(version, client, local))
                }
                _ => None,
            };
            let mut h1_head: Option<h1_client::Head> = None;
            // Endpoints of failed tries, to pick another for the next (pushed only when one
            // follows: most requests have a single try and allocate nothing here).
            let mut tried: Vec<u64> = Vec::new();
            let mut retries = 0u32;
            loop {
                // One clock reading starts the try: the balancer's `now` and the checkout's start.
                let started = weir_core::clock::now();
                let now = self.clock.ms_at(started);
                let preferred = sticky
                    .filter(|_| tried.is_empty())
                    .and_then(|id| self.in_service(id));
                let Some(member) = preferred.or_else(|| self.pick(hash, &tried, now)) else {
                    return Err(ProxyError::new(ErrorKind::NoEndpoint));
                };
                let in_flight = InFlight::new(member);
                if in_flight.member.has_left() {
                    // Picked from a set replaced meanwhile: not a try; pick from the new set.
                    continue;
                }
                in_flight
                    .member
                    .state
                    .requests
                    .fetch_add(1, Ordering::Relaxed);
                info.tries += 1;
                let member = &*in_flight.member;
                let endpoint = &member.endpoint;
                info.endpoint = Some(endpoint.address.clone());
                let pool = &member.pool;

                let checked_out = pool.checkout(endpoint, proxy_header.as_deref()).await;
                // One clock reading ends the checkout and starts the send.
                let sent = weir_core::clock::now();
                info.connect = Some(sent.saturating_duration_since(started));
                info.first_byte = None;
                let outcome = match checked_out {
                    Err(e) => Err((e, Phase::Connect)),
                    Ok(mut conn) => {
                        let body = match &replay {
                            Some(bytes) => {
                                RequestBody::buffered(bytes.clone(), opts.body_stats.clone())
                            }
                            None => body
                                .take()
                                .ok_or_else(|| ProxyError::new(ErrorKind::Internal))?,
                        };
                        // Keep the head for another try only when one could follow a send.
                        let another_try = resend_possible && retries < policy.attempts;
                        let out = match (&mut conn.0, parts.take()) {
                            // HTTP/1.1: the head is encoded once, and every try sends those bytes;
                            // the header map then serves the response's fields.
                            (Sender::H1(c), Some(head)) => {
                                let encoded = h1_client::Head::new(&head, opts.added, &body);
                                h1_head = another_try.then(|| encoded.clone());
                                c.recycle_headers(head.headers);
                                Outgoing::H1(encoded, body)
                            }
                            (Sender::H1(_), None) => match h1_head.take() {
                                Some(encoded) => {
                                    h1_head = another_try.then(|| encoded.clone());
                                    Outgoing::H1(encoded, body)
                                }
                                None => return Err(ProxyError::new(ErrorKind::Internal)),
                            },
                            (Sender::H2(_), Some(head)) if another_try => {
                                // Into the copy sent: the head kept for another try stays
                                // without them, as an HTTP/1.1 try writes them after it.
                                let mut req = request_from(&head, body);
                                opts.added.insert_into(req.headers_mut());
                                parts = Some(head);
                                Outgoing::H2(req)
                            }
                            (Sender::H2(_), Some(mut head)) => {
                                opts.added.insert_into(&mut head.headers);
                                Outgoing::H2(Request::from_parts(head, body))
                            }
                            (Sender::H2(_), None) => {
                                return Err(ProxyError::new(ErrorKind::Internal))
                            }
                        };
                        let r = client::exchange(
                            pool,
                            endpoint,
                            conn,
                            out,
                            opts,
                            deadline_after(sent, policy.per_try_timeout),
                            proxy_header.is_some(),
                        )
                        .await
                        .unwrap_or_else(|_| Err(client::timed_out()));
                        // Failures count too: a timing-out endpoint must look slow to `ewma`.
                        let took = weir_core::clock::elapsed(sent);
                        info.first_byte = Some(took);
                        // The time of this sample, from readings already taken (no
                        // extra clock read on the hot path).
                        let at = now
                            + crate::clock::ms(info.connect.unwrap_or_default())
                            + crate::clock::ms(took);
                        // In f64 from seconds and nanoseconds (no 128-bit conversion).
                        member.state.observe_latency(took.as_secs_f64() * 1e9, at);
                        member.state.attempts.observe(took);
                        r.map_err(|e| (e, Phase::Send))
                    }
                };

                // Another try needs the head: the parts (HTTP/2) or the encoded bytes (HTTP/1.1).
                let can_retry = retries < policy.attempts && (parts.is_some() || h1_head.is_some());
                match outcome {
                    Ok(resp) => {
                        let status = resp.status();
                        self.observe(
                            member,
                            if status.is_server_error() {
                                TryOutcome::ServerError
                            } else {
                                TryOutcome::Success
                            },
                        );
                        if can_retry && resend_possible && policy.on_status(status) {
                            let after = (status == http::StatusCode::SERVICE_UNAVAILABLE)
                                .then(|| retry_after(resp.headers()))
                                .flatten();
                            let honourable = after.is_none_or(|d| d <= policy.max_retry_after);
                            if honourable && policy.budget().try_retry(self.clock.now_ms()) {
                                retries += 1;
                                tried.push(endpoint.id);
                                drop((resp, in_flight));
                                let wait = policy.backoff(retries).max(after.unwrap_or_default());
                                tokio::time::sleep(wait).await;
                                continue;
                            }
                        }
                        if let Some(cookies) = &self.sticky {
                            if sticky != Some(endpoint.id) {
                                info.set_cookie = cookies.set_cookie(endpoint.id);
                            }
                        }
                        return Ok((
                            resp,
                            UpstreamGuard {
                                _in_flight: in_flight,
                                _slot: slot,
                            },
                        ));
                    }
                    Err((e, phase)) => {
                        if e.side == Side::Client {
                            return Err(e);
                        }
                        self.observe(member, TryOutcome::TransportError);
                        let retryable = match phase {
                            Phase::Connect => policy.on_connect,
                            // A fresh connection for a request the pool could not send: nothing
                            // was written.
                            Phase::Send if e.kind == ErrorKind::UpstreamConnect => {
                                policy.on_connect
                            }
                            Phase::Send => {
                                resend_possible
                                    && match e.kind {
                                        ErrorKind::UpstreamTimeout => policy.on_timeout,
                                        _ => policy.on_reset || e.retry == Retry::Yes,
                                    }
                            }
                        };
                        if !(can_retry
                            && retryable
                            && policy.budget().try_retry(self.clock.now_ms()))
                        {
                            return Err(e);
                        }
                        retries += 1;
                        tried.push(endpoint.id);
                        tracing::debug!(upstream = %self.name, endpoint = %endpoint.address, error = %e, "retrying");
                        drop(in_flight);
                        tokio::time::sleep(policy.backoff(retries)).await;
                    }
                }
            }
        }
    }

    /// The member with endpoint id `id`, if it is in the current view.
    fn in_service(&self, id: u64) -> Option<Arc<Member>> {
        let current = self.current.load();
        let i = current.set.position(id)?;
        current
            .view
            .in_service
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| current.set.members[i].clone())
    }

    /// Picks an endpoint; on retries, one not tried yet (by endpoint id) when one exists.
    pub fn pick(&self, hash: Option<u64>, tried: &[u64], now_ms: u64) -> Option<Arc<Member>> {
        let current = self.current.load();
        let members = &current.set.members;
        let mut cx = PickCx {
            view: &current.view,
            states: members,
            hash,
            now_ms,
        };
        let fresh = |i: &usize| {
            members
                .get(*i)
                .is_some_and(|m| !tried.contains(&m.endpoint.id))
        };
        let index = if tried.is_empty() {
            current.pick.pick(&cx)
        } else {
            // Ask the balancer again (hashing balancers with a stirred key), then walk the
            // members.
            let mut found = None;
            for k in 0..3u64 {
                cx.hash = hash.map(|h| mix(h ^ (k + tried.len() as u64)));
                match current.pick.pick(&cx) {
                    Some(e) if fresh(&e) => {
                        found = Some(e);
                        break;
                    }
                    None => return None,
                    _ => {}
                }
            }
            let view = &current.view.members;
            found.or_else(|| {
                if view.is_empty() {
                    return None;
                }
                let start = fastrand::usize(..view.len());
                (0..view.len())
                    .map(|k| view[(start + k) % view.len()])
                    .find(fresh)
                    .or_else(|| current.pick.pick(&cx))
            })
        };
        index.and_then(|i| members.get(i).cloned())
    }
}

/// A request with a copy of `head`.
fn request_from(head: &Parts, body: RequestBody) -> Request<RequestBody> {
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req
}

/// Reads a small body whole so it can be sent again.
/// `at + d`, or about 30 years on for a timeout too long to add (as `tokio::time::timeout`).
fn deadline_after(at: tokio::time::Instant, d: std::time::Duration) -> tokio::time::Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + std::time::Duration::from_secs(86_400 * 365 * 30))
}

async fn buffer(body: RequestBody, stats: &BodyStats) -> Result<Bytes, ProxyError> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let kind = if stats.too_large() {
                ErrorKind::BodyTooLarge
            } else {
                ErrorKind::ClientBody
            };
            Err(ProxyError::new(kind).with_source(e))
        }
    }
}
