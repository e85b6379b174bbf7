//! The `weir` command. `run` serves a config file (`-c`, `$WEIR_CONFIG`, or
//! `/etc/weir/weir.toml`), `demo` serves the embedded quickstart, `check` validates a config
//! without binding anything, `explain` says what Weir would do with a request, `healthcheck`
//! probes a URL for images without curl, and `version`, `completions`, `manpage` describe the
//! binary itself.

mod demo;
mod healthcheck;
mod locate;
mod notify;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The process log's filter: `WEIR_LOG` (default `info`), with rustls held to errors unless
/// `WEIR_LOG` names it. rustls warns about what clients send (an IP address as SNI, as `wrk`
/// and many health checkers do): one line per handshake, a log any client could flood.
fn log_filter(weir_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let base = weir_log.filter(|v| !v.trim().is_empty()).unwrap_or("info");
    let directives = if base.contains("rustls") {
        base.to_owned()
    } else {
        format!("{base},rustls=error")
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .or_else(|_| tracing_subscriber::EnvFilter::try_new("info,rustls=error"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter(std::env::var("WEIR_LOG").ok().as_deref()))
        .init();
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
            demo::config().and_then(|c| run(c, None))
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
        let server = weir_server::Server::start_with_file(config, path, access_log).await?;
        for (name, addr) in server.local_addrs() {
            let scheme = if tls.contains(&name) { "https" } else { "http" };
            tracing::info!("listener {name} on {scheme}://{addr}");
        }
        if let Some(admin) = server.admin_addr() {
            tracing::info!("admin API and dashboard on http://{admin}/");
        }
        tracing::info!(workers, "weir {} ready", env!("CARGO_PKG_VERSION"));
        notifier.ready(&format!("serving {} listeners", server.local_addrs().len()));
        let signal = wait_for_signal(&server, &notifier).await?;
        tracing::info!("{signal} received: draining connections");
        notifier.stopping();
        if server.shutdown().await {
            tracing::info!("all connections drained; bye");
        }
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT (returned), reloading the config file on every SIGHUP and
/// reopening the access log on every SIGUSR1.
async fn wait_for_signal(
    server: &weir_server::Server,
    notifier: &notify::Notifier,
) -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing SIGUSR1 handler")?;
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

#[cfg(test)]
mod log_filter_tests {
    use super::log_filter;

    #[test]
    fn rustls_is_held_to_errors_unless_named() {
        for given in [None, Some(""), Some("warn"), Some("weir_server=debug")] {
            let filter = log_filter(given).to_string();
            assert!(filter.contains("rustls=error"), "{given:?} gave {filter}");
        }
        let named = log_filter(Some("info,rustls=debug")).to_string();
        assert!(named.contains("rustls=debug") && !named.contains("rustls=error"));
        // A filter that does not parse falls back to info (and still quiets rustls).
        assert!(log_filter(Some("=[")).to_string().contains("rustls=error"));
    }
}
