//! Observability: every request ends in one [`RequestRecord`], which becomes one line of the
//! access log (JSON or a template), its route's [`metrics`], and — when sampled — the spans the
//! [`tracer`] exports over OTLP. [`prometheus`] writes the metrics exposition.

mod access_log;
pub mod headers;
pub mod metrics;
pub use weir_core::prometheus;
pub mod process;
mod record;
pub mod timeline;
pub mod tracer;

pub use access_log::{AccessLog, LogFormat};
pub use metrics::{MetricsRegistry, RouteMetrics, RouteTotals};
pub use record::{rfc3339_millis, RequestRecord, SpanValue};
pub use timeline::Timeline;
pub use tracer::{TraceStats, Tracer};
