//! Weir's own log (start, reloads, warnings) on stderr: text or JSON lines (`[log] format`),
//! filtered by `WEIR_LOG` when set, else `[log] level`, else `info`. Both are read once, when
//! the process starts (a reload that changes them says `needs_restart`).

use weir_config::{ProcessLog, ProcessLogFormat};

/// Installs the process log; the first call wins.
pub fn init(config: &ProcessLog) {
    let env = std::env::var("WEIR_LOG").ok();
    let directives = env
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .or(config.level.as_deref());
    let filter = log_filter(directives);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = match config.format {
        ProcessLogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // One object per line, the event's fields beside `message` (not nested), no colours.
        ProcessLogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .try_init(),
    };
}

/// Why `level` is not a filter `tracing` accepts, in its words; `None` when it is.
pub fn level_problem(level: &str) -> Option<String> {
    tracing_subscriber::EnvFilter::try_new(level)
        .err()
        .map(|e| format!("not a log filter: {e}"))
}

/// The filter for `directives` (default `info`), with rustls held to errors unless they name
/// it. rustls warns about what clients send (an IP address as SNI, as `wrk` and many health
/// checkers do): one line per handshake, a log any client could flood.
fn log_filter(directives: Option<&str>) -> tracing_subscriber::EnvFilter {
    let base = directives
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("info");
    let directives = if base.contains("rustls") {
        base.to_owned()
    } else {
        format!("{base},rustls=error")
    };
    tracing_subscriber::EnvFilter::try_new(&directives)
        .or_else(|_| tracing_subscriber::EnvFilter::try_new("info,rustls=error"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

#[cfg(test)]
mod tests {
    use super::{level_problem, log_filter};

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

    #[test]
    fn levels_are_checked() {
        assert_eq!(level_problem("info,weir_upstream=debug"), None);
        assert!(level_problem("loud=[").is_some());
    }
}
