//! Weir's shared vocabulary: the per-request context ([`RequestCtx`]), the one error type
//! ([`ProxyError`]) with the one place errors become responses, and the body types every
//! phase passes along.

pub mod added;
pub mod body;
pub mod boxed;
pub mod clock;
pub mod ctx;
pub mod error;
pub mod h1_client;
pub mod h1_wire;
pub mod histogram;
pub mod inbound;
pub mod interim;
pub mod outcome;
pub mod pass;
pub mod prometheus;
pub mod redact;
pub mod request_id;
pub mod tcp;
pub mod text;
pub mod trace_context;

pub use body::{BodyStats, BoxError, ClientBody, RequestBody, ResponseBody, UpstreamBody};
pub use ctx::{LoggedHeaderValues, RequestCtx, TlsSession};
pub use error::{ErrorKind, ProxyError, Retry, Side};
pub use histogram::Histogram;
pub use interim::{InterimSink, InterimTarget};
pub use outcome::{CacheOutcome, ForwardDecision, IdempotencyOutcome};
pub use trace_context::{TraceContext, Traceparent};
