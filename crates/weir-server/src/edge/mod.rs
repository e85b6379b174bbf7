//! The edge: everything between a client's socket and the pipeline. Listening sockets and the
//! accept loop (`listener.rs`), serving one connection with its watchdog (`conn.rs`), Weir's
//! HTTP/1.1 server with strict request framing and tunnel hand-over (`h1/`), Weir's HTTP/2
//! server on the `h2` crate with per-stream wire counts (`h2.rs`, `frames.rs`) and CONNECT
//! tunnels (`h2_tunnel.rs`), TLS with SNI and certificate reload (`tls.rs`), and the PROXY
//! protocol (`proxy_protocol.rs`).
//!
//! The types the rest of the server reads — a listener's settings and counters, a
//! connection's [`ConnInfo`](state::ConnInfo) and [`ConnState`](state::ConnState) — are in
//! leaf files (`settings.rs`, `counters.rs`, `state.rs`), so the pipeline can use them without
//! importing the code that serves connections.

pub(crate) mod certs;
pub(crate) mod conn;
pub(crate) mod counters;
mod frames;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod h2_tunnel;
mod io;
pub(crate) mod listener;
mod proxy_protocol;
pub(crate) mod settings;
pub(crate) mod state;
pub(crate) mod tls;

/// A future built straight into its heap slot. `Box::pin(handle(..))` builds the ~10 KB
/// request future on the stack and then copies it into the box, and so did setting a boxed
/// `Option` (the old value's drop reads the slot): callgrind counted that copy at ~10,000
/// instructions per HTTP/2 request, an eighth of one. Writing into uninitialised memory lets
/// the compiler build the future in place. Both servers build every request's future this way.
pub(super) fn in_place<F: std::future::Future>(make: impl FnOnce() -> F) -> std::pin::Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
