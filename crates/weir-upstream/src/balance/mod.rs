//! Load balancing: the [`Balancer`] trait and its algorithms, one file each.

mod round_robin;

pub use round_robin::RoundRobin;

use crate::Endpoint;

/// Chooses an endpoint for each request. Implementations must be cheap and lock-free on the
/// hot path: `pick` runs for every proxied request.
pub trait Balancer: Send + Sync {
    /// Index into `endpoints` of the one to use, or `None` when none can be used.
    fn pick(&self, endpoints: &[Endpoint]) -> Option<usize>;
}
