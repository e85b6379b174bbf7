//! The `weir` command: `run` serves a config (the embedded quickstart when none is given),
//! `check` validates one without binding anything, `explain` says what Weir would do with a
//! request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

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
    about = "Reverse proxy, load balancer, HTTP cache and API gateway in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic. Without -c, runs the embedded quickstart (examples/quickstart.toml).
    Run {
        /// Config file.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file without binding any socket; exit status 0 when valid.
    Check {
        /// Config file.
        config: PathBuf,
    },
    /// Say which route a request would take (and why the routes before it did not match) and
    /// what that route would do, without sending anything.
    Explain {
        /// Config file.
        #[arg(short, long)]
        config: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter(std::env::var("WEIR_LOG").ok().as_deref()))
        .init();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(config),
        Command::Healthcheck {
            url,
            headers,
            timeout,
        } => healthcheck(&url, &headers, std::time::Duration::from_secs(timeout)),
        Command::Explain {
            config,
            listener,
            headers,
            json,
            method,
            url,
        } => explain(&config, listener.as_deref(), &headers, json, &method, &url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<weir_config::Config> {
    Ok(match path {
        Some(p) => weir_config::load(p)?,
        None => weir_config::parse(weir_config::QUICKSTART, "<embedded quickstart.toml>")?,
    })
}

fn explain(
    path: &PathBuf,
    listener: Option<&str>,
    headers: &[String],
    json: bool,
    method: &str,
    url: &str,
) -> anyhow::Result<()> {
    let config = load(Some(path))?;
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

fn check(path: &PathBuf) -> anyhow::Result<()> {
    let config = load(Some(path))?;
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

fn healthcheck(url: &str, headers: &[String], timeout: std::time::Duration) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "{url}: only http:// URLs are checked (point it at a plaintext or admin listener)"
    );
    let authority = uri
        .authority()
        .with_context(|| format!("{url} has no host"))?
        .clone();
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: weir-healthcheck\r\n");
    for h in headers {
        anyhow::ensure!(
            h.contains(':') && !h.contains('\r') && !h.contains('\n'),
            "header {h:?} is not `Name: value`"
        );
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status_line = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::time::timeout(timeout, async {
            let mut stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.write_all(head.as_bytes()).await?;
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.contains(&b'\n') && got.len() < 4096 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(got)
        })
        .await
    });
    let got = match status_line {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => anyhow::bail!("{url}: {e}"),
        Err(_) => anyhow::bail!("{url}: no answer within {}s", timeout.as_secs()),
    };
    let line = String::from_utf8_lossy(got.split(|&b| b == b'\n').next().unwrap_or_default());
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("{url}: not an HTTP answer: {:?}", line.trim_end()))?;
    anyhow::ensure!((200..300).contains(&status), "{url}: answered {status}");
    println!("{url}: {status}");
    Ok(())
}

fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path.as_ref())?;
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
        let server = weir_server::Server::start_with_file(config, path, access_log).await?;
        for (name, addr) in server.local_addrs() {
            tracing::info!("listener {name} on http://{addr}");
        }
        tracing::info!(workers, "weir {} ready", env!("CARGO_PKG_VERSION"));
        let signal = wait_for_signal(&server).await?;
        tracing::info!("{signal} received: draining connections");
        if server.shutdown().await {
            tracing::info!("all connections drained; bye");
        }
        Ok(())
    })
}

/// Waits for SIGTERM or SIGINT (returned), reloading the config file on every SIGHUP and
/// reopening the access log on every SIGUSR1.
async fn wait_for_signal(server: &weir_server::Server) -> anyhow::Result<&'static str> {
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
                // Success and failure are both logged by the server; failure keeps the
                // running config.
                let _ = server.reload_from_file().await;
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
