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
