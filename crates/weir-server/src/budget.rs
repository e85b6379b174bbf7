//! The process-wide request memory budget (`server.request_memory_budget`): what every request
//! in flight holds, counted from the moment its head is parsed until its response has been sent
//! or abandoned. Past the budget a new HTTP/2 stream is refused with `REFUSED_STREAM` (the
//! client may retry it elsewhere, RFC 9113 §8.7), a new HTTP/1.1 request gets a 503 and its
//! connection is closed, and the listeners stop accepting connections until requests finish.
//!
//! It bounds what a client can pin by opening streams whose responses it never reads (the
//! HTTP/2 "bomb": many streams, header blocks of one-byte HPACK references, a zero window): each
//! request is charged a fixed cost for what Weir keeps per request (its task, context and
//! response state) plus twice its decoded header bytes (the header map's own overhead included),
//! and whatever is charged stays charged however long the client stalls.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use tokio::sync::Notify;
use weir_observe::prometheus::{Exposition, Kind};

/// What Weir holds for one request beyond its headers: its task and future, context, log
/// record and response state. An estimate, of the order of the request future (9,064 bytes
/// measured); it does not include an upstream connection a forwarded request opens
/// (~36 KiB in hyper's client, see `docs/benchmarks.md`).
pub(crate) const REQUEST_COST: usize = 8 * 1024;

/// The budget, shared by every listener; its limit follows reloads.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: AtomicUsize,
    /// Zero: no limit.
    limit: AtomicUsize,
    refused: AtomicU64,
    paused_accepts: AtomicU64,
    below: Notify,
}

/// One request's share; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub(crate) fn set_limit(&self, limit: u64) {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.limit.store(limit, Ordering::Relaxed);
        self.below.notify_waiters();
    }

    fn over(&self, used: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        limit != 0 && used > limit
    }

    /// Charges a request with these headers, or refuses it (counted) when the budget would be
    /// exceeded.
    pub(crate) fn charge(self: &Arc<Self>, headers: &HeaderMap) -> Option<Charge> {
        let bytes = REQUEST_COST + 2 * header_bytes(headers);
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.over(used) {
            self.release(bytes);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Charge {
            budget: self.clone(),
            bytes,
        })
    }

    /// No room left for one more request without headers.
    fn full(&self, used: usize) -> bool {
        self.over(used + REQUEST_COST)
    }

    fn release(&self, bytes: usize) {
        let before = self.used.fetch_sub(bytes, Ordering::Relaxed);
        if self.full(before) && !self.full(before - bytes) {
            self.below.notify_waiters();
        }
    }

    /// Waits, before the next accept, while there is no room for another request (counted
    /// once per pause).
    pub(crate) async fn wait_for_room(&self) {
        if !self.full(self.used.load(Ordering::Relaxed)) {
            return;
        }
        self.paused_accepts.fetch_add(1, Ordering::Relaxed);
        loop {
            let below = self.below.notified();
            tokio::pin!(below);
            below.as_mut().enable();
            if !self.full(self.used.load(Ordering::Relaxed)) {
                return;
            }
            below.await;
        }
    }

    /// Its samples: bytes charged and the limit, refusals, accept pauses.
    pub(crate) fn render(&self, e: &mut Exposition) {
        let none: &[(&str, &str)] = &[];
        e.family(
            "weir_request_memory_budget_bytes",
            Kind::Gauge,
            "Memory charged to requests in flight, and the budget (server.request_memory_budget; 0 = none).",
            [
                (&[("state", "used")][..], self.used.load(Ordering::Relaxed) as f64),
                (&[("state", "limit")][..], self.limit.load(Ordering::Relaxed) as f64),
            ],
        );
        e.family(
            "weir_request_memory_budget_refused_total",
            Kind::Counter,
            "Requests refused because the request memory budget was spent (HTTP/2 REFUSED_STREAM, HTTP/1.1 503).",
            [(none, self.refused.load(Ordering::Relaxed) as f64)],
        );
        e.family(
            "weir_request_memory_budget_accept_pauses_total",
            Kind::Counter,
            "Times the listeners stopped accepting connections until requests in flight gave memory back.",
            [(none, self.paused_accepts.load(Ordering::Relaxed) as f64)],
        );
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Decoded header bytes as RFC 9113 §6.5.2 counts them: name, value and 32 octets per field.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_refuses_and_gives_back() {
        let budget = Arc::new(Budget::default());
        budget.set_limit(3 * REQUEST_COST as u64);
        let headers = HeaderMap::new();
        let a = budget.charge(&headers).expect("room for one");
        let b = budget.charge(&headers).expect("room for two");
        let c = budget.charge(&headers).expect("room for three");
        assert!(budget.charge(&headers).is_none(), "a fourth is over");
        assert_eq!(budget.refused.load(Ordering::Relaxed), 1);
        drop((a, b));
        assert!(budget.charge(&headers).is_some(), "room again");
        drop(c);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn headers_count_with_their_overhead() {
        let budget = Arc::new(Budget::default());
        let mut headers = HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("12345"));
        let charge = budget.charge(&headers).expect("no limit");
        assert_eq!(charge.bytes, REQUEST_COST + 2 * (3 + 5 + 32));
    }

    #[tokio::test]
    async fn accepts_wait_until_memory_is_given_back() {
        let budget = Arc::new(Budget::default());
        budget.set_limit(2 * REQUEST_COST as u64 + 100);
        let first = budget.charge(&HeaderMap::new()).expect("room");
        budget.wait_for_room().await;
        let second = budget.charge(&HeaderMap::new()).expect("room");
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no room for a third: accepts wait");
        drop(second);
        waiter.await.expect("woken once there is room");
        assert_eq!(budget.paused_accepts.load(Ordering::Relaxed), 1);
        drop(first);
    }
}
