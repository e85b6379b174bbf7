//! The `weir` command. `run` serves a config file (`-c`, `$WEIR_CONFIG`, or
//! `/etc/weir/weir.toml`), `demo` serves the embedded quickstart, `check` validates a config
//! without binding anything, `explain` says what Weir would do with a request, `healthcheck`
//! probes a URL for images without curl, and `version`, `completions`, `manpage` describe the
//! binary itself.

mod demo;
mod healthcheck;
mod locate;
mod log;
mod notify;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Reverse proxy, load balancer, HTTP cache and API gateway in one binary",
    after_help = "The config file is -c FILE, else $WEIR_CONFIG, else /etc/weir/weir.toml. \
                  WEIR_LOG sets the process log's filter (e.g. `info,weir_server=debug`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How every command that reads a config takes it: `-c FILE`, else `$WEIR_CONFIG`, else
/// `/etc/weir/weir.toml`.
#[derive(clap::Args)]
struct ConfigArg {
    /// Config file [default: $WEIR_CONFIG, else /etc/weir/weir.toml].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with a config file (SIGHUP reloads it, SIGTERM drains and exits).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// The config file, as an alternative to -c.
        #[arg(value_name = "FILE")]
        path: Option<PathBuf>,
    },
    /// Serve the embedded demo config (examples/quickstart.toml) on 127.0.0.1:8080, with its
    /// two demo backends and the admin dashboard on 127.0.0.1:9901.
    Demo,
    /// Validate a config file without binding any socket; exit status 0 when valid.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// The config file, as an alternative to -c.
        #[arg(value_name = "FILE")]
        path: Option<PathBuf>,
    },
    /// Say which route a request would take (and why the routes before it did not match) and
    /// what that route would do, without sending anything.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// Listener the request arrives on; default the first.
        #[arg(short, long)]
        listener: Option<String>,
        /// A request header, `Name: value`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Method, e.g. GET.
        method: String,
        /// URL (`http://host/path?query`) or path.
        url: String,
    },
    /// GET a plain-HTTP URL and exit 0 when it answers 2xx: a health check for images that
    /// have no curl (the Dockerfile's HEALTHCHECK uses the admin listener's `/healthz`).
    Healthcheck {
        /// `http://HOST:PORT/path`, e.g. http://127.0.0.1:9901/healthz.
        url: String,
        /// A request header, `Name: value` (e.g. the admin token); repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Print the version, commit, build date, rustc version and what is compiled in.
    Version {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `weir completions bash > /etc/bash_completion.d/weir`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `weir manpage | man -l -`.
    Manpage,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` and `demo` start the process log from the config's `[log]`; the rest log as text.
    if !matches!(cli.command, Command::Run { .. } | Command::Demo) {
        log::init(&weir_config::ProcessLog::default());
    }
    let result = match cli.command {
        Command::Check { config, path } => {
            locate::config_path(config.config, path).and_then(|p| check(&p))
        }
        Command::Run { config, path } => locate::config_path(config.config, path)
            .and_then(|p| Ok((weir_config::load(&p)?, p)))
            .and_then(|(c, p)| run(c, Some(p))),
        Command::Demo => {
            eprintln!(
                "*** weir demo: serving the embedded demo config (examples/quickstart.toml), not a \
                 config of yours. ***\n*** Try http://127.0.0.1:8080/ and the dashboard at \
                 http://127.0.0.1:9901/ ; serve your own with `weir run -c FILE`. ***"
            );
            // `_site` lives until the demo has stopped serving, then removes its directory.
            demo::config().and_then(|(c, _site)| run(c, None))
        }
        Command::Healthcheck {
            url,
            headers,
            timeout,
        } => healthcheck::healthcheck(&url, &headers, std::time::Duration::from_secs(timeout)),
        Command::Explain {
            config,
            listener,
            headers,
            json,
            method,
            url,
        } => locate::config_path(config.config, None)
            .and_then(|p| explain(&p, listener.as_deref(), &headers, json, &method, &url)),
        Command::Version { json } => {
            if json {
                println!("{:#}", version::json());
            } else {
                print!("{}", version::text());
            }
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            Ok(())
        }
        Command::Manpage => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("writing the man page"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn explain(
    path: &std::path::Path,
    listener: Option<&str>,
    headers: &[String],
    json: bool,
    method: &str,
    url: &str,
) -> anyhow::Result<()> {
    let config = weir_config::load(path)?;
    let runtime = weir_server::Runtime::compile(&config)
        .context("config is valid but could not be compiled")?;
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header `{h}` is not `Name: value`"))?;
        map.append(
            http::HeaderName::from_bytes(name.trim().as_bytes())
                .with_context(|| format!("`{name}` is not a header name"))?,
            http::HeaderValue::from_str(value.trim())
                .with_context(|| format!("`{value}` is not a header value"))?,
        );
    }
    let explanation = weir_server::explain::explain(&runtime, listener, method, url, &map)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{explanation}");
    }
    Ok(())
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let config = weir_config::load(path)?;
    if let Some(problem) = config.log.level.as_deref().and_then(log::level_problem) {
        let text = std::fs::read_to_string(path)?;
        let at = weir_config::KeyPath::root("log").key("level");
        let d = weir_config::Diagnostic::at(at, problem)
            .help("e.g. level = \"info\" or \"warn,weir_upstream=debug\"");
        return Err(weir_config::error_at(&text, &path.display().to_string(), vec![d]).into());
    }
    weir_server::Runtime::compile(&config).context("config is valid but could not be compiled")?;
    println!(
        "{}: ok ({} listeners, {} upstreams, {} routes)",
        path.display(),
        config.listeners.len(),
        config.upstreams.len(),
        config.routes.len()
    );
    Ok(())
}

/// Serves `config`; `path` is the file SIGHUP re-reads (none for the demo).
fn run(config: weir_config::Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    log::init(&config.log);
    weir_server::set_build_info(weir_server::BuildInfo {
        commit: version::COMMIT,
        rustc: version::RUSTC,
    });
    let notifier = notify::Notifier::from_env();
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // One worker: a current-thread runtime avoids work-stealing overhead entirely.
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let access_log = match (&config.access_log.path, config.access_log.enabled) {
            (_, false) => weir_observe::AccessLog::disabled(),
            (Some(file), true) => weir_observe::AccessLog::to_file(file)
                .with_context(|| format!("opening the access log {}", file.display()))?,
            (None, true) => weir_observe::AccessLog::stdout(),
        };
        let tls: std::collections::HashSet<String> = config
            .listeners
            .iter()
            .filter(|l| l.tls.is_some())
            .map(|l| l.name.clone())
            .collect();
        let listeners: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let binds: std::collections::HashMap<String, weir_config::Addr> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.bind))
            .collect();
        let server =
            match weir_server::Server::start_with_file(config, path.clone(), access_log).await {
                Ok(server) => server,
                Err(e) => return Err(place_bind_error(e, path.as_deref(), &listeners)),
            };
        for (name, addr) in server.local_addrs() {
            let scheme = if tls.contains(&name) { "https" } else { "http" };
            // `localhost:PORT` and `:PORT` also listen on IPv6.
            match binds.get(&name).and_then(|b| b.companions(addr.port())) {
                Some(v6) => {
                    tracing::info!("listener {name} on {scheme}://{addr} and {scheme}://{v6}")
                }
                None => tracing::info!("listener {name} on {scheme}://{addr}"),
            }
        }
        if let Some(admin) = server.admin_addr() {
            tracing::info!("admin API and dashboard on http://{admin}/");
        }
        // Handlers first: a SIGHUP (systemd's reload) right after READY=1 must reload, not
        // end the process by the signal's default action.
        let signals = Signals::install()?;
        tracing::info!(workers, "weir {} ready", env!("CARGO_PKG_VERSION"));
        notifier.ready(&format!("serving {} listeners", server.local_addrs().len()));
        let signal = wait_for_signal(signals, &server, &notifier).await?;
        tracing::info!("{signal} received: draining connections");
        notifier.stopping();
        if server.shutdown().await {
            tracing::info!("all connections drained; bye");
        }
        Ok(())
    })
}

/// A listener that cannot bind, reported once at its `bind` key (`file:line:col`) with what to
/// do about it; other start errors as they are.
fn place_bind_error(
    e: weir_server::ServerError,
    path: Option<&std::path::Path>,
    listeners: &[String],
) -> anyhow::Error {
    let weir_server::ServerError::Bind { name, addr, error } = &e else {
        return e.into();
    };
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return e.into();
    };
    let key = match listeners.iter().position(|l| l == name) {
        Some(i) => weir_config::KeyPath::root("listeners").index(i).key("bind"),
        None => weir_config::KeyPath::root("admin").key("bind"),
    };
    let diagnostic = weir_config::Diagnostic::at(key, format!("cannot bind {addr}: {error}"))
        .help(weir_server::ServerError::bind_help(*addr, error));
    let file = path.map(|p| p.display().to_string()).unwrap_or_default();
    weir_config::error_at(&text, &file, vec![diagnostic]).into()
}

/// The signals Weir acts on, their handlers installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
            usr1: signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?,
        })
    }
}

/// Waits for SIGTERM or SIGINT (returned), reloading the config file on every SIGHUP and
/// reopening the access log on every SIGUSR1.
async fn wait_for_signal(
    signals: Signals,
    server: &weir_server::Server,
    notifier: &notify::Notifier,
) -> anyhow::Result<&'static str> {
    let Signals {
        mut term,
        mut int,
        mut hup,
        mut usr1,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok("SIGTERM"),
            _ = int.recv() => return Ok("SIGINT"),
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1 received: reopening the access log");
                server.reopen_access_log();
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading the config");
                notifier.reloading();
                // Success and failure are both logged by the server; failure keeps the
                // running config (and systemd hears READY either way: Weir is serving).
                let status = match server.reload_from_file().await {
                    Ok(_) => "serving; last reload applied".to_owned(),
                    Err(e) => format!("serving the previous config; last reload refused: {e}"),
                };
                notifier.ready(&status);
            }
        }
    }
}
