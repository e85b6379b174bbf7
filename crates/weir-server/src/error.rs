//! Why the server could not start or reload.

use std::net::SocketAddr;

use crate::runtime::CompileError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] weir_config::ConfigError),
    /// The config could not be compiled into a runtime.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A listener's TLS could not be set up.
    #[error("listener `{name}`: {source}")]
    Tls {
        /// Listener name.
        name: String,
        /// What went wrong.
        source: crate::edge::tls::TlsError,
    },
    /// A reload was asked for but the config did not come from a file.
    #[error("no config file to reload (Weir was started without -c)")]
    NoConfigFile,
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// A listener could not bind.
    // The OS error is in the message and deliberately not a `source`: a chain printer
    // (anyhow's `{:#}`) would print it twice.
    #[error("listener `{name}`: cannot bind {addr}: {error}")]
    Bind {
        /// Listener name (`admin` for the admin listener).
        name: String,
        /// Address.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
}

impl ServerError {
    /// What to do about a bind error, in words an operator can act on.
    pub fn bind_help(addr: SocketAddr, error: &std::io::Error) -> String {
        match error.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another process listens on {addr}: `ss -ltnp 'sport = :{}'` shows which",
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "port {} is below 1024: run Weir with CAP_NET_BIND_SERVICE (the systemd unit grants it) or pick a port ≥ 1024",
                addr.port()
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                format!("{} is not an address of this machine", addr.ip())
            }
            _ => "check the address".to_owned(),
        }
    }
}
