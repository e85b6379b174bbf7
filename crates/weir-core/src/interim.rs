//! Interim (1xx) responses an upstream sends before its final one — 103 Early Hints, 102
//! Processing — relayed to the client as they arrive (RFC 9110 §15.2: a proxy forwards them).
//! The upstream side hands each to an [`InterimSink`]; the client's connection decides how
//! it goes out (an HTTP/1.1 status line written ahead of the final response, an HTTP/2
//! HEADERS frame on the request's stream). They are never stored: the cache keeps final
//! responses only.

use std::sync::Arc;

/// Where a request's interim responses go: its client connection (HTTP/1.1) or stream
/// (HTTP/2).
pub trait InterimTarget: Send + Sync {
    /// An interim response to send now, if the client can still get it (it may be dropped:
    /// interim responses are advisory).
    fn interim(&self, status: http::StatusCode, fields: &http::HeaderMap);
}

/// A request's way back to its client for interim responses. Cloning shares the target.
#[derive(Clone)]
pub struct InterimSink(Arc<dyn InterimTarget>);

impl InterimSink {
    pub fn new(target: Arc<dyn InterimTarget>) -> Self {
        Self(target)
    }

    /// Relays an interim response when it is one to relay: 1xx other than `100 Continue`
    /// (answered hop by hop: Weir's server sends its own to the client) and `101` (a final
    /// answer).
    pub fn send(&self, status: http::StatusCode, fields: &http::HeaderMap) {
        if status.is_informational()
            && status != http::StatusCode::CONTINUE
            && status != http::StatusCode::SWITCHING_PROTOCOLS
        {
            self.0.interim(status, fields);
        }
    }
}

impl std::fmt::Debug for InterimSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterimSink")
    }
}
