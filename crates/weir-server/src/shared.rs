//! The data-plane state every connection and request reads: the current runtime snapshot and
//! the sinks and counters that outlive reloads. The control plane (listeners, reloads, the
//! admin listener) is `control.rs`, beside this and not inside it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use weir_observe::AccessLog;

use crate::edge::counters::ListenerCounters;
use crate::runtime::Runtime;

/// State shared by every connection: the current runtime snapshot and the sinks that outlive
/// reloads.
pub(crate) struct Shared {
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) access_log: AccessLog,
    /// Each listener's counters, by name.
    pub(crate) listeners: ArcSwap<Vec<(Arc<str>, Arc<ListenerCounters>)>>,
    /// Shutdown has begun: `/readyz` says no.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    /// Request metrics by route, kept across reloads.
    pub(crate) metrics: weir_observe::MetricsRegistry,
    /// Requests being served now.
    pub(crate) in_flight: std::sync::atomic::AtomicU64,
    /// Responses compressed on the fly, and bytes in and out.
    pub(crate) compression: Arc<crate::compress::CompressionStats>,
    /// What requests in flight may hold, all listeners together.
    pub(crate) budget: Arc<crate::budget::Budget>,
    /// The listeners' ACME-managed certificates.
    pub(crate) acme: ArcSwap<Vec<Arc<crate::acme::ManagedCert>>>,
}

impl Shared {
    /// Every upstream's stats, from the running config.
    pub(crate) fn upstream_stats(&self) -> Vec<weir_upstream::UpstreamStats> {
        self.runtime
            .load()
            .upstreams()
            .iter()
            .map(|u| u.stats())
            .collect()
    }
}
