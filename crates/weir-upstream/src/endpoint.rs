//! One upstream endpoint: where to connect.

use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::Authority;

/// An endpoint of an upstream (`host:port`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address as configured, used in logs.
    pub address: Arc<str>,
    /// The same, parsed.
    pub authority: Authority,
    /// The socket address when the endpoint is an IP literal (no DNS needed).
    pub socket_addr: Option<SocketAddr>,
}

impl Endpoint {
    /// Parses `host:port`; `None` if it is not a valid authority with a port.
    pub fn parse(s: &str) -> Option<Self> {
        let authority: Authority = s.parse().ok()?;
        authority.port_u16()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Self {
            address: s.into(),
            authority,
            socket_addr: crate::pool::literal_addr(s),
        })
    }
}
