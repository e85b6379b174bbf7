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
    #[error("listener `{name}`: cannot bind {addr}: {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}
