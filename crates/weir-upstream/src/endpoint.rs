//! One upstream endpoint: where to connect.

use std::sync::Arc;

use http::uri::Authority;

/// An endpoint of an upstream (`host:port`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address as configured, used in logs.
    pub address: Arc<str>,
    /// The same, parsed for building request URIs.
    pub authority: Authority,
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
        })
    }
}
