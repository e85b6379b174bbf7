//! Actions: what a matched route does with a request. Proxy to an upstream (`proxy.rs`, with
//! WebSocket and other upgrades handed to `tunnel.rs`), the forward (egress) proxy of forward
//! listeners (`forward.rs`), static files (`static_files.rs`, with `ranges.rs` for byte
//! ranges), and fixed responses and redirects (`respond.rs`). Each returns an
//! [`Outcome`](crate::pipeline::outcome::Outcome) or a `ProxyError`.

pub(crate) mod forward;
pub(crate) mod proxy;
pub(crate) mod ranges;
pub(crate) mod respond;
pub(crate) mod static_files;
mod tunnel;
