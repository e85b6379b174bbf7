//! Weir's server: binds the listeners, serves each connection (HTTP/1.1 and h2c through
//! hyper's auto builder), runs every request through the pipeline of `docs/architecture.md`
//! §1, and drains gracefully on shutdown.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_server::ServerError> {
//! let config = weir_config::load("weir.toml".as_ref())?;
//! let server = weir_server::Server::start(config, weir_observe::AccessLog::stdout()).await?;
//! println!("listening on {:?}", server.local_addr("main"));
//! server.shutdown().await;
//! # Ok(()) }
//! ```

/// `AsyncWrite` for a pin-projected wrapper whose `inner` stream takes every write as is (the
/// read-side wrappers: `WatchedIo`, `Prefixed`).
macro_rules! write_through {
    ($ty:ident) => {
        impl<S: tokio::io::AsyncWrite> tokio::io::AsyncWrite for $ty<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write(cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.project().inner.poll_shutdown(cx)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.project().inner.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
pub(crate) use write_through;

mod admin;
mod budget;
mod cache;
mod compress;
mod conn;
mod control;
mod dashboard;
pub mod explain;
mod forward;
mod framing;
mod headers;
mod listener;
mod log_phase;
mod pipeline;
mod proxy;
mod proxy_protocol;
mod ranges;
mod runtime;
mod static_files;
mod tls;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_observe::AccessLog;

pub use control::ReloadSummary;
pub use runtime::{CompileError, Runtime};

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
        source: tls::TlsError,
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

/// State shared by every connection: the current runtime snapshot and the sinks that outlive
/// reloads.
pub(crate) struct Shared {
    pub(crate) runtime: ArcSwap<Runtime>,
    pub(crate) access_log: AccessLog,
    /// Each listener's counters, by name.
    pub(crate) listeners: ArcSwap<Vec<(Arc<str>, Arc<listener::ListenerCounters>)>>,
    /// Listeners and reloads (set once at start).
    pub(crate) control: std::sync::OnceLock<Arc<control::Control>>,
    /// Shutdown has begun: `/readyz` says no.
    pub(crate) draining: std::sync::atomic::AtomicBool,
    pub(crate) started: std::time::Instant,
    /// Fingerprint of the running config (changes with every applied reload).
    pub(crate) config_hash: std::sync::atomic::AtomicU64,
    /// Request metrics by route, kept across reloads.
    pub(crate) metrics: weir_observe::MetricsRegistry,
    /// Requests being served now.
    pub(crate) in_flight: std::sync::atomic::AtomicU64,
    /// The dashboard's per-route timeline (sampled while the admin listener runs).
    pub(crate) timeline: std::sync::Mutex<weir_observe::Timeline>,
    /// Responses compressed on the fly, and bytes in and out.
    pub(crate) compression: Arc<compress::CompressionStats>,
    /// What requests in flight may hold, all listeners together.
    pub(crate) budget: Arc<budget::Budget>,
}

/// A fingerprint of a config (FNV-1a over its debug form; secrets are hashed, never shown).
pub(crate) fn config_hash(config: &weir_config::Config) -> u64 {
    weir_upstream::hash::hash_bytes(format!("{config:?}").as_bytes())
}

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    control: Arc<control::Control>,
    addrs: Vec<(String, SocketAddr)>,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    /// Compiles `config`, binds every listener and starts serving on the current tokio runtime.
    pub async fn start(
        config: weir_config::Config,
        access_log: AccessLog,
    ) -> Result<Self, ServerError> {
        Self::start_with_file(config, None, access_log).await
    }

    /// Like [`Server::start`], remembering the file the config came from so a reload (SIGHUP,
    /// `POST /reload`) can read it again.
    pub async fn start_with_file(
        config: weir_config::Config,
        config_path: Option<std::path::PathBuf>,
        access_log: AccessLog,
    ) -> Result<Self, ServerError> {
        let metrics = weir_observe::MetricsRegistry::default();
        let runtime = Runtime::compile_carrying(&config, None, &metrics)?;
        runtime.start_background();
        let shared = Arc::new(Shared {
            metrics,
            in_flight: std::sync::atomic::AtomicU64::new(0),
            timeline: std::sync::Mutex::default(),
            compression: Arc::default(),
            budget: Arc::default(),
            runtime: ArcSwap::from_pointee(runtime),
            access_log,
            listeners: ArcSwap::from_pointee(Vec::new()),
            control: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
            config_hash: std::sync::atomic::AtomicU64::new(config_hash(&config)),
        });
        shared
            .budget
            .set_limit(config.server.request_memory_budget.0);
        let stop_accepting = CancellationToken::new();
        let tracker = TaskTracker::new();
        let admin_bind = config.admin.as_ref().map(|a| a.bind.0);
        let control = Arc::new(control::Control::new(
            &shared,
            tracker.clone(),
            stop_accepting.clone(),
            config_path,
            config,
        ));
        let _ = shared.control.set(control.clone());
        // Bind everything before serving anything, so a failure leaves nothing half-started.
        let admin = admin_bind.map(control::bind_admin).transpose()?;
        let addrs = control.start_listeners().await?;
        tokio::spawn(control.clone().watch_file());
        // The admin API outlives the drain (orchestrators poll `/readyz` during it), so it is
        // stopped separately, after the traffic listeners' connections are done.
        if let (Some(socket), Some(bind)) = (admin, admin_bind) {
            control.start_admin(&shared, socket, bind);
        }
        Ok(Self {
            shared,
            control,
            addrs,
            stop_accepting,
            tracker,
        })
    }

    /// Applies a new, validated config without dropping anything (see `control.rs`). On error
    /// the running config keeps serving and the error says why.
    pub async fn reload(&self, config: weir_config::Config) -> Result<ReloadSummary, ServerError> {
        self.control.apply(config).await
    }

    /// Reads the config file again and applies it (SIGHUP).
    pub async fn reload_from_file(&self) -> Result<ReloadSummary, ServerError> {
        self.control.reload_from_file().await
    }

    /// Every listener's name and bound address, as they are now (after reloads).
    pub async fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.control.addrs().await
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// The admin listener's bound address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.control.admin_addr()
    }

    /// Every listener's name and bound address.
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Health and counters of every upstream of the current runtime.
    pub fn upstream_stats(&self) -> Vec<weir_upstream::UpstreamStats> {
        self.shared
            .runtime
            .load()
            .upstreams()
            .iter()
            .map(|u| u.stats())
            .collect()
    }

    /// Reopens the access log file by name (log rotation).
    pub fn reopen_access_log(&self) {
        self.shared.access_log.reopen();
    }

    /// Writes out every access-log line queued so far.
    pub fn flush_access_log(&self) {
        self.shared.access_log.flush();
    }

    /// Exports every finished span queued so far (waits at most `timeout`).
    pub async fn flush_traces(&self, timeout: Duration) {
        let tracer = self.shared.runtime.load().tracer.clone();
        if let Some(t) = tracer {
            t.flush(timeout).await;
        }
    }

    /// Graceful shutdown: stop accepting, ask every connection to finish (h2 GOAWAY, h1 close
    /// after the current response), wait up to `shutdown_timeout`, then flush the access log and
    /// the spans not yet exported.
    /// Returns true when every connection finished in time.
    pub async fn shutdown(self) -> bool {
        self.shared
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stop_accepting.cancel();
        self.tracker.close();
        // The running config's timeout (a reload may have changed it since start).
        let timeout = self.control.shutdown_timeout();
        let drained = tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                ?timeout,
                "shutdown timeout reached with connections still open; closing them"
            );
        }
        self.control.stop_admin();
        self.shared.access_log.flush();
        self.flush_traces(Duration::from_secs(5)).await;
        drained
    }
}
