//! Which config file a command reads: `-c`/`--config`, else a positional path (where a command
//! takes one), else `$WEIR_CONFIG`, else `/etc/weir/weir.toml`. When none is found the error
//! says every place it looked, and points at `weir demo` (the embedded quickstart), so a bare
//! `weir run` never serves a demo by surprise.

use std::path::{Path, PathBuf};

/// Where the Debian package and the container image put the config.
pub const DEFAULT_CONFIG: &str = "/etc/weir/weir.toml";

/// The config path a command uses, or why there is none.
pub fn config_path(flag: Option<PathBuf>, positional: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    config_path_in(
        flag,
        positional,
        std::env::var_os("WEIR_CONFIG").map(PathBuf::from),
        Path::new(DEFAULT_CONFIG),
    )
}

fn config_path_in(
    flag: Option<PathBuf>,
    positional: Option<PathBuf>,
    env: Option<PathBuf>,
    default: &Path,
) -> anyhow::Result<PathBuf> {
    match (flag, positional) {
        (Some(f), Some(p)) if f != p => anyhow::bail!(
            "two configs given: -c {} and {}; give one",
            f.display(),
            p.display()
        ),
        (Some(path), _) | (None, Some(path)) => return Ok(path),
        (None, None) => {}
    }
    // An explicit WEIR_CONFIG is used as given: a typo there is reported by the loader
    // ("cannot read config …") instead of silently falling through to the default.
    if let Some(path) = env.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path);
    }
    if default.exists() {
        return Ok(default.to_path_buf());
    }
    anyhow::bail!(
        "no config file: looked at -c (not given), $WEIR_CONFIG (not set) and {} (not found).\n\
         Give one with `-c FILE` (or set WEIR_CONFIG), or run `weir demo` to try the embedded demo config.",
        default.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn flag_then_positional_then_env_then_default() {
        let missing = Path::new("/nonexistent/weir.toml");
        let present = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let got = |f, pos, env, d: &Path| config_path_in(f, pos, env, d).map_err(|e| e.to_string());
        assert_eq!(got(p("a"), None, p("e"), &present), Ok(PathBuf::from("a")));
        assert_eq!(got(None, p("b"), p("e"), &present), Ok(PathBuf::from("b")));
        assert_eq!(got(p("a"), p("a"), None, missing), Ok(PathBuf::from("a")));
        assert_eq!(got(None, None, p("e"), &present), Ok(PathBuf::from("e")));
        assert_eq!(got(None, None, p(""), &present), Ok(present.clone()));
        assert_eq!(got(None, None, None, &present), Ok(present.clone()));
        let none = got(None, None, None, missing).expect_err("nothing found");
        assert!(
            none.contains("/nonexistent/weir.toml (not found)"),
            "{none}"
        );
        assert!(none.contains("weir demo"), "{none}");
        let two = got(p("a"), p("b"), None, missing).expect_err("two configs");
        assert!(two.contains("two configs given"), "{two}");
    }
}
