//! What reloads report: the summary of one reload, the counts and last result kept for
//! `/metrics` and `/status`, and the settings only a restart applies.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use weir_core::prometheus::{Exposition, Kind};

/// Reload outcomes, for metrics and the admin API.
#[derive(Debug, Default)]
pub(crate) struct ReloadStats {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) last_ok: AtomicBool,
    /// Unix seconds of the last attempt; 0 = none yet.
    pub(crate) last_at: AtomicU64,
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
}

impl ReloadStats {
    /// Reload counts and the last reload's result.
    pub(crate) fn render(&self, e: &mut Exposition) {
        let stats = self;
        let none: &[(&str, &str)] = &[];
        e.family(
            "weir_config_reloads_total",
            Kind::Counter,
            "Config reloads applied.",
            [
                (
                    &[("result", "ok")][..],
                    stats.ok.load(Ordering::Relaxed) as f64,
                ),
                (
                    &[("result", "error")][..],
                    stats.failed.load(Ordering::Relaxed) as f64,
                ),
            ],
        );
        e.family(
        "weir_config_last_reload_success",
        Kind::Gauge,
        "1 when the last reload was applied, 0 when it was refused (the previous config serves).",
        [(
            none,
            if stats.last_ok.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )],
    );
        e.family(
            "weir_config_last_reload_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the last reload attempt (0: none yet).",
            [(none, stats.last_at.load(Ordering::Relaxed) as f64)],
        );
    }
}

/// The settings read once when the process starts: the worker threads, the access-log
/// writer, the admin listener's connection cap, the process log's format and filter.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StartOnly {
    pub(super) workers: Option<usize>,
    pub(super) access_log_enabled: bool,
    pub(super) access_log_path: Option<PathBuf>,
    pub(super) admin_max_connections: Option<usize>,
    pub(super) log: weir_config::ProcessLog,
}

impl StartOnly {
    pub(super) fn of(config: &weir_config::Config) -> Self {
        Self {
            workers: config.workers,
            access_log_enabled: config.access_log.enabled,
            access_log_path: config.access_log.path.clone(),
            admin_max_connections: config.admin.as_ref().map(|a| a.max_connections),
            log: config.log.clone(),
        }
    }

    /// The keys of `other` that differ from these, by name.
    pub(super) fn differences(&self, other: &Self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.workers != other.workers {
            out.push("workers");
        }
        if self.access_log_enabled != other.access_log_enabled {
            out.push("access_log.enabled");
        }
        if self.access_log_path != other.access_log_path {
            out.push("access_log.path");
        }
        if self.log.format != other.log.format {
            out.push("log.format");
        }
        if self.log.level != other.log.level {
            out.push("log.level");
        }
        // The admin listener reads its cap when it starts; a new address restarts it.
        if self.admin_max_connections != other.admin_max_connections
            && other.admin_max_connections.is_some()
        {
            out.push("admin.max_connections");
        }
        out
    }
}

/// What a successful reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Listeners opened.
    pub listeners_added: Vec<String>,
    /// Listeners closed (their open connections finish on their own).
    pub listeners_removed: Vec<String>,
    /// Listeners re-opened with new settings.
    pub listeners_changed: Vec<String>,
    /// Upstreams carried over with their state.
    pub upstreams_kept: usize,
    /// Upstreams built anew.
    pub upstreams_new: usize,
    /// The admin listener moved to a new address (or was opened or closed).
    pub admin_changed: bool,
    /// Keys the new config changes that apply only when Weir restarts (`workers`,
    /// `access_log.enabled`, `access_log.path`, `admin.max_connections`): kept at their
    /// running values meanwhile.
    pub needs_restart: Vec<&'static str>,
    /// Routes whose canary plan went on where it was (the plan, its split and `[redis]` are
    /// unchanged).
    pub canaries_kept: Vec<String>,
    /// Routes whose canary plan starts at its first step (new or changed).
    pub canaries_started: Vec<String>,
}

/// One line for the process log: `config reloaded: listeners +a -b ~c; upstreams 3 kept, 1 new`.
impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut listeners = Vec::new();
        for (sign, names) in [
            ('+', &self.listeners_added),
            ('-', &self.listeners_removed),
            ('~', &self.listeners_changed),
        ] {
            listeners.extend(names.iter().map(|n| format!("{sign}{n}")));
        }
        if listeners.is_empty() {
            f.write_str("listeners unchanged")?;
        } else {
            write!(f, "listeners {}", listeners.join(" "))?;
        }
        write!(
            f,
            "; upstreams {} kept, {} new",
            self.upstreams_kept, self.upstreams_new
        )?;
        if self.admin_changed {
            f.write_str("; admin listener moved")?;
        }
        if !self.needs_restart.is_empty() {
            write!(f, "; kept until restart: {}", self.needs_restart.join(", "))?;
        }
        if !self.canaries_kept.is_empty() {
            write!(f, "; canary plans kept: {}", self.canaries_kept.join(", "))?;
        }
        if !self.canaries_started.is_empty() {
            write!(
                f,
                "; canary plans started at their first step: {}",
                self.canaries_started.join(", ")
            )?;
        }
        Ok(())
    }
}
