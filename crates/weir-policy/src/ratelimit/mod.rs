//! Rate limiting: four algorithms over one compact per-key state, and a sharded, bounded
//! in-memory store of those states.
//!
//! ```
//! use std::time::Duration;
//! use weir_policy::ratelimit::{Algorithm, LocalLimiter, Rate};
//!
//! let rate = Rate::new(10, Duration::from_secs(1)).expect("a rate");
//! let limiter = LocalLimiter::new(Algorithm::Gcra, rate, 10, 1_000);
//! let now = 0;
//! let first = limiter.check(b"client-a", now, 1);
//! assert!(first.allowed);
//! assert_eq!(first.remaining, 9);
//! ```
//!
//! Every algorithm keeps two `u64`s per key, so a key costs the same whatever the algorithm;
//! [`LocalLimiter::BYTES_PER_KEY`] states the figure.

mod algorithm;
mod local;

pub use algorithm::{Algorithm, Decision, Rate, State};
pub use local::LocalLimiter;
