//! Observability: every request ends in one [`RequestRecord`], which becomes one JSON line of
//! the access log (and, in later work, metrics and the span end). [`prometheus`] writes the
//! metrics exposition.

mod access_log;
pub mod metrics;
pub mod prometheus;
mod record;

pub use access_log::AccessLog;
pub use metrics::{MetricsRegistry, RouteMetrics};
pub use record::{rfc3339_millis, RequestRecord};
