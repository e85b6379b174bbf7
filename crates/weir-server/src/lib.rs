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

mod acme;
mod action;
mod admin;
mod budget;
mod cache;
mod compress;
mod control;
mod deploy;
mod edge;
mod error;
pub mod explain;
mod headers;
mod pipeline;
mod runtime;
mod shared;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_observe::AccessLog;

pub use admin::{set_build_info, BuildInfo};
pub use control::ReloadSummary;
pub use error::ServerError;
pub use runtime::{CompileError, Runtime};
use shared::Shared;

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    control: Arc<control::Control>,
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
            compression: Arc::default(),
            budget: Arc::default(),
            runtime: ArcSwap::from_pointee(runtime),
            access_log,
            listeners: ArcSwap::from_pointee(Vec::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            acme: ArcSwap::from_pointee(Vec::new()),
        });
        shared
            .budget
            .set_limit(config.server.request_memory_budget.0);
        let stop_accepting = CancellationToken::new();
        let tracker = TaskTracker::new();
        let admin_bind = config.admin.as_ref().map(|a| a.bind.0);
        let control = control::Control::new(
            &shared,
            admin::serve,
            tracker.clone(),
            stop_accepting.clone(),
            config_path,
            config,
        );
        // Bind everything before serving anything, so a failure leaves nothing half-started.
        let admin = admin_bind.map(control::bind_admin).transpose()?;
        control.start_listeners().await?;
        tokio::spawn(control.clone().watch_file());
        // The admin API outlives the drain (orchestrators poll `/readyz` during it), so it is
        // stopped separately, after the traffic listeners' connections are done.
        if let (Some(socket), Some(bind)) = (admin, admin_bind) {
            control.start_admin(&shared, socket, bind);
        }
        Ok(Self {
            shared,
            control,
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

    /// The address a listener is bound to now (useful with port 0; a reload may move it).
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.control
            .addrs()
            .into_iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| a)
    }

    /// The admin listener's bound address, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.control.admin_addr()
    }

    /// Every listener's name and bound address, as they are now (after reloads).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.control.addrs()
    }

    /// Health and counters of every upstream of the current runtime.
    pub fn upstream_stats(&self) -> Vec<weir_upstream::UpstreamStats> {
        self.shared.upstream_stats()
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
