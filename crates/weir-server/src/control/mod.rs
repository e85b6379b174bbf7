//! The running set of listeners, and hot reload: a new config is compiled beside the running
//! one (unchanged upstreams carried over, see `Runtime::compile_carrying`), listeners that
//! changed or are new are bound, and only then is anything swapped. If any step fails the
//! running config keeps serving untouched. Unchanged listeners keep their sockets and their
//! connections (idle keep-alives included); requests in flight finish on the snapshot they
//! started on; tunnels (WebSocket, CONNECT) are never touched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod report;

pub(crate) use report::ReloadStats;
pub use report::ReloadSummary;
use report::StartOnly;

use crate::edge::counters::ListenerCounters;
use crate::edge::listener;
use crate::edge::settings::ListenerSettings;
use crate::error::ServerError;
use crate::runtime::Runtime;
use crate::shared::Shared;

/// Serves the admin API on a bound socket until the token is cancelled. Given to
/// [`Control::new`] by the server, so the control plane starts and moves the admin listener
/// without depending on the admin code (which depends on it).
pub(crate) type AdminServer = fn(
    TcpListener,
    Arc<Shared>,
    Arc<Control>,
    CancellationToken,
) -> futures_util::future::BoxFuture<'static, ()>;

/// A listener that is serving.
struct Running {
    cfg: weir_config::Listener,
    addr: SocketAddr,
    /// Stops this listener's accept loop (its connections carry on).
    stop_accepting: CancellationToken,
    counters: Arc<ListenerCounters>,
    /// Its ACME-managed certificate.
    acme: Option<Arc<crate::acme::ManagedCert>>,
}

struct State {
    config: weir_config::Config,
    listeners: Vec<Running>,
}

/// The admin listener that is serving.
struct AdminRunning {
    /// The configured address (`admin.bind`), which a reload compares.
    bind: SocketAddr,
    /// The address bound (differs from `bind` with port 0).
    addr: SocketAddr,
    /// Stops its accept loop and, gracefully, its connections (an answer in progress, such
    /// as the one to the `POST /reload` that moved it, is still sent).
    stop: CancellationToken,
}

/// Owns the listeners and applies new configs.
pub(crate) struct Control {
    /// This control itself, handed to the admin API it starts.
    this: Weak<Control>,
    shared: Weak<Shared>,
    admin_server: AdminServer,
    /// When the server started (`/status` uptime).
    pub(crate) started_at: std::time::Instant,
    /// When the server started, seconds since the Unix epoch (`/status`, `process_start_time_seconds`).
    pub(crate) started_unix_time: u64,
    /// Fingerprint of the running config (changes with every applied reload).
    pub(crate) config_hash: AtomicU64,
    /// The dashboard's per-route timeline (sampled while the admin listener runs).
    pub(crate) timeline: std::sync::Mutex<weir_observe::Timeline>,
    tracker: TaskTracker,
    /// Server shutdown: stops every accept loop and drains every connection.
    shutdown: CancellationToken,
    config_path: Option<PathBuf>,
    state: tokio::sync::Mutex<State>,
    admin: std::sync::Mutex<Option<AdminRunning>>,
    pub(crate) stats: ReloadStats,
    /// What the process started with of the settings only a restart applies.
    started: std::sync::Mutex<StartOnly>,
    /// The running config's `shutdown_timeout` (a reload applies it).
    shutdown_timeout_ms: AtomicU64,
    /// Every listener's name and bound address, as they are now (published with the counters).
    addrs: arc_swap::ArcSwap<Vec<(String, SocketAddr)>>,
    /// Restart-only keys whose running value differs from the config file's.
    pub(crate) pending_restart: std::sync::Mutex<Vec<&'static str>>,
}

impl Control {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        admin_server: AdminServer,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        config_path: Option<PathBuf>,
        config: weir_config::Config,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            this: this.clone(),
            shared: Arc::downgrade(shared),
            admin_server,
            started_at: std::time::Instant::now(),
            started_unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            config_hash: AtomicU64::new(config_hash(&config)),
            timeline: std::sync::Mutex::default(),
            addrs: arc_swap::ArcSwap::from_pointee(Vec::new()),
            tracker,
            shutdown,
            config_path,
            started: std::sync::Mutex::new(StartOnly::of(&config)),
            shutdown_timeout_ms: AtomicU64::new(millis(config.shutdown_timeout.get())),
            pending_restart: std::sync::Mutex::new(Vec::new()),
            state: tokio::sync::Mutex::new(State {
                config,
                listeners: Vec::new(),
            }),
            admin: std::sync::Mutex::new(None),
            stats: ReloadStats {
                last_ok: AtomicBool::new(true),
                ..ReloadStats::default()
            },
        })
    }

    /// Serves the admin API on `socket` (bound for `admin.bind` = `bind`), replacing (and
    /// stopping) the admin listener running before, if any.
    pub(crate) fn start_admin(&self, shared: &Arc<Shared>, socket: TcpListener, bind: SocketAddr) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let addr = socket.local_addr().unwrap_or(bind);
        let stop = CancellationToken::new();
        tokio::spawn((self.admin_server)(
            socket,
            shared.clone(),
            this,
            stop.clone(),
        ));
        let old = self
            .admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(AdminRunning { bind, addr, stop });
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// Stops the admin listener (at the end of a shutdown, or when a reload removes it).
    pub(crate) fn stop_admin(&self) {
        if let Some(old) = self.admin.lock().unwrap_or_else(|p| p.into_inner()).take() {
            old.stop.cancel();
        }
    }

    /// The admin listener serving now: its configured address and the address bound.
    fn admin(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.admin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|a| (a.bind, a.addr))
    }

    /// The admin listener's bound address, when one is serving.
    pub(crate) fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin().map(|(_, addr)| addr)
    }

    /// Binds and starts every listener of the initial config; nothing serves if one fails.
    pub(crate) async fn start_listeners(&self) -> Result<(), ServerError> {
        let mut state = self.state.lock().await;
        let config = state.config.clone();
        let mut bound = Vec::new();
        for l in &config.listeners {
            bound.push(bind(&config, l)?);
        }
        for (l, (sockets, settings)) in config.listeners.iter().zip(bound) {
            state.listeners.push(self.spawn(l, sockets, settings));
        }
        self.publish_counters(&state);
        Ok(())
    }

    /// The running config with defaults filled in and secrets replaced by `"<redacted>"`.
    pub(crate) async fn effective_config(&self) -> serde_json::Value {
        let state = self.state.lock().await;
        let mut v = serde_json::to_value(&state.config).unwrap_or_default();
        redact(&mut v);
        v
    }

    /// Every listener's name and bound address, now.
    pub(crate) fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.addrs.load().as_ref().clone()
    }

    fn spawn(
        &self,
        l: &weir_config::Listener,
        sockets: Vec<TcpListener>,
        settings: ListenerSettings,
    ) -> Running {
        let stop_accepting = self.shutdown.child_token();
        let (addr, counters) = (settings.local, settings.counters.clone());
        let mut acme = None;
        if let (Some(tls), Some(cfg)) = (&settings.tls, &l.tls) {
            self.tracker.spawn(tls.clone().watch(
                settings.name.clone(),
                cfg.reload_interval.get(),
                stop_accepting.clone(),
            ));
            if let Some(managed) = tls.acme() {
                acme = Some(managed.clone());
                self.tracker.spawn(
                    managed
                        .clone()
                        .run(tls.provider.clone(), stop_accepting.clone()),
                );
            }
        }
        if let Some(shared) = self.shared.upgrade() {
            let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
            let settings = Arc::new(settings);
            for socket in sockets {
                self.tracker.spawn(listener::accept_loop(
                    socket,
                    settings.clone(),
                    slots.clone(),
                    shared.clone(),
                    stop_accepting.clone(),
                    self.shutdown.clone(),
                    self.tracker.clone(),
                ));
            }
        }
        Running {
            cfg: l.clone(),
            addr,
            stop_accepting,
            counters,
            acme,
        }
    }

    /// Publishes the listeners' counters (for `/metrics`) and addresses (for the server API).
    fn publish_counters(&self, state: &State) {
        self.addrs.store(Arc::new(
            state
                .listeners
                .iter()
                .map(|r| (r.cfg.name.clone(), r.addr))
                .collect(),
        ));
        if let Some(shared) = self.shared.upgrade() {
            shared.listeners.store(Arc::new(
                state
                    .listeners
                    .iter()
                    .map(|r| (Arc::from(r.cfg.name.as_str()), r.counters.clone()))
                    .collect(),
            ));
            shared.acme.store(Arc::new(
                state
                    .listeners
                    .iter()
                    .filter_map(|r| r.acme.clone())
                    .collect(),
            ));
        }
    }

    /// With `watch = true`, reloads when the config file changes: its modification time, size
    /// or inode (a rename over it) — polled every second, then given a moment to settle.
    pub(crate) async fn watch_file(self: Arc<Self>) {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = self.config_path.clone() else {
            return;
        };
        let fingerprint = |p: &PathBuf| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().ok(), m.len(), m.ino()))
        };
        let mut seen = fingerprint(&path);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
            let now = fingerprint(&path);
            if now == seen {
                continue;
            }
            seen = now;
            if !self.state.lock().await.config.watch {
                continue;
            }
            // Let an editor finish writing before reading.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            seen = fingerprint(&path);
            tracing::info!(file = %path.display(), "config file changed: reloading");
            let _ = self.reload_from_file().await;
        }
    }

    /// Reads the config file again and applies it.
    pub(crate) async fn reload_from_file(&self) -> Result<ReloadSummary, ServerError> {
        let Some(path) = &self.config_path else {
            return Err(self.failed(ServerError::NoConfigFile));
        };
        match weir_config::load(path) {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(self.failed(ServerError::Config(e))),
        }
    }

    /// Applies a validated config: everything is prepared first; only if all of it succeeds is
    /// the new runtime swapped in and the listener set changed.
    pub(crate) async fn apply(
        &self,
        config: weir_config::Config,
    ) -> Result<ReloadSummary, ServerError> {
        let result = self.prepare_and_swap(config).await;
        match result {
            Ok(summary) => {
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                self.stats.last_ok.store(true, Ordering::Relaxed);
                self.stats.last_at.store(unix_now(), Ordering::Relaxed);
                *self
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                tracing::info!("config reloaded: {summary}");
                Ok(summary)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn failed(&self, e: ServerError) -> ServerError {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.stats.last_ok.store(false, Ordering::Relaxed);
        self.stats.last_at.store(unix_now(), Ordering::Relaxed);
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        tracing::error!("config reload refused; the running config keeps serving:\n{e}");
        e
    }

    async fn prepare_and_swap(
        &self,
        config: weir_config::Config,
    ) -> Result<ReloadSummary, ServerError> {
        let shared = self.shared.upgrade().ok_or(ServerError::ShuttingDown)?;
        let mut state = self.state.lock().await;
        let current = shared.runtime.load_full();
        let runtime =
            Runtime::compile_carrying(&config, Some((&current, &state.config)), &shared.metrics)?;
        let mut summary = ReloadSummary::default();
        for u in runtime.upstreams() {
            if current.upstreams().iter().any(|c| Arc::ptr_eq(c, u)) {
                summary.upstreams_kept += 1;
            } else {
                summary.upstreams_new += 1;
            }
        }
        for plan in runtime.canary_plans() {
            let kept = current.canary_plans().any(|p| Arc::ptr_eq(p, plan));
            let list = if kept {
                &mut summary.canaries_kept
            } else {
                &mut summary.canaries_started
            };
            list.push(plan.route.to_string());
        }
        // Listener plan: keep what is identical (and under identical server limits), bind the
        // rest now — before anything changes — so a failure leaves everything as it was.
        let limits_same = state.config.server == config.server;
        let mut keep = Vec::new();
        let mut fresh = Vec::new();
        for l in &config.listeners {
            let old = state.listeners.iter().position(|r| r.cfg.name == l.name);
            match old {
                Some(i) if limits_same && state.listeners[i].cfg == *l => keep.push(i),
                Some(_) => {
                    summary.listeners_changed.push(l.name.clone());
                    fresh.push((l.clone(), bind(&config, l)?));
                }
                None => {
                    summary.listeners_added.push(l.name.clone());
                    fresh.push((l.clone(), bind(&config, l)?));
                }
            }
        }
        // The admin listener: bound anew when its address changed, before the commit too.
        let admin_bind = config.admin.as_ref().map(|a| a.bind.0);
        let admin_changed = admin_bind != self.admin().map(|(bind, _)| bind);
        let admin_socket = match admin_bind {
            Some(b) if admin_changed => Some((b, bind_admin(b)?)),
            _ => None,
        };
        // Commit.
        runtime.start_background();
        shared.runtime.store(Arc::new(runtime));
        shared
            .budget
            .set_limit(config.server.request_memory_budget.0);
        let old = std::mem::take(&mut state.listeners);
        for (i, r) in old.into_iter().enumerate() {
            if keep.contains(&i) {
                state.listeners.push(r);
            } else {
                if !config.listeners.iter().any(|l| l.name == r.cfg.name) {
                    summary.listeners_removed.push(r.cfg.name.clone());
                }
                r.stop_accepting.cancel();
            }
        }
        for (l, (sockets, settings)) in fresh {
            let running = self.spawn(&l, sockets, settings);
            state.listeners.push(running);
        }
        if admin_changed {
            summary.admin_changed = true;
            match admin_socket {
                Some((b, socket)) => self.start_admin(&shared, socket, b),
                None => self.stop_admin(),
            }
        }
        // Applied with the swap: the drain of a later shutdown uses the new timeout.
        self.shutdown_timeout_ms
            .store(millis(config.shutdown_timeout.get()), Ordering::Relaxed);
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if admin_changed {
            // A new admin listener read the new cap.
            started.admin_max_connections = config.admin.as_ref().map(|a| a.max_connections);
        }
        summary.needs_restart = started.differences(&StartOnly::of(&config));
        drop(started);
        for key in &summary.needs_restart {
            tracing::warn!(
                key,
                "config key changed but needs a restart to apply; the running value is kept"
            );
        }
        *self
            .pending_restart
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = summary.needs_restart.clone();
        self.config_hash
            .store(config_hash(&config), Ordering::Relaxed);
        state.config = config;
        self.publish_counters(&state);
        Ok(summary)
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Control {
    /// The running config's `shutdown_timeout`.
    pub(crate) fn shutdown_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.shutdown_timeout_ms.load(Ordering::Relaxed))
    }
}

/// Binds the admin listener's address.
pub(crate) fn bind_admin(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    listener::bind(addr).map_err(|error| ServerError::Bind {
        name: "admin".to_owned(),
        addr,
        error,
    })
}

/// Replaces every secret in a serialized config: the admin token and sticky-cookie keys.
fn redact(v: &mut serde_json::Value) {
    const SECRET_KEYS: [&str; 2] = ["token", "secret"];
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && !val.is_null() {
                    *val = serde_json::Value::String("<redacted>".to_owned());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Binds a listener and builds its settings (TLS files loaded now).
fn bind(
    config: &weir_config::Config,
    l: &weir_config::Listener,
) -> Result<(Vec<TcpListener>, ListenerSettings), ServerError> {
    let sockets = listener::bind_all(&l.bind).map_err(|(addr, error)| ServerError::Bind {
        name: l.name.clone(),
        addr,
        error,
    })?;
    let local = sockets
        .first()
        .and_then(|s| s.local_addr().ok())
        .unwrap_or(l.bind.0);
    let settings = ListenerSettings::new(config, l, local).map_err(|source| ServerError::Tls {
        name: l.name.clone(),
        source,
    })?;
    Ok((sockets, settings))
}

/// A fingerprint of a config (FNV-1a over its debug form; secrets are hashed, never shown).
fn config_hash(config: &weir_config::Config) -> u64 {
    weir_upstream::hash::hash_bytes(format!("{config:?}").as_bytes())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
