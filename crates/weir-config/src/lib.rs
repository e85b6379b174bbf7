//! Weir's config: the typed schema ([`schema`]), loading from TOML, and validation that
//! reports every problem as `file:line:col`, the key path, what was expected and a hint.
//!
//! ```
//! let src = r#"
//! [[listeners]]
//! name = "main"
//! bind = "127.0.0.1:8080"
//!
//! [[routes]]
//! respond = { status = 200, body = "hi" }
//! "#;
//! let config = weir_config::parse(src, "weir.toml").expect("valid");
//! assert_eq!(config.listeners[0].name, "main");
//! ```

pub mod diagnostic;
pub mod interpolate;
mod locate;
pub mod log_format;
pub mod pem;
pub mod schema;
pub mod secret;
mod structure;
pub mod template;
pub mod units;
mod validate;
pub use validate::policies as validate_policy;

use std::path::Path;

pub use diagnostic::{ConfigError, Diagnostic, KeyPath};
pub use schema::*;
pub use secret::Secret;
pub use units::{ByteSize, Duration};

use diagnostic::{Seg, Target};

/// The quickstart config, embedded so `weir run` works with no file at all.
pub const QUICKSTART: &str = include_str!("../../../examples/quickstart.toml");

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
        file: file.clone(),
        error,
    })?;
    parse(&text, &file)
}

/// Parses and validates config text; `file` labels the diagnostics.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let invalid = |diagnostics: Vec<Diagnostic>| ConfigError::Invalid {
        file: file.to_owned(),
        source_text: text.to_owned(),
        diagnostics,
    };
    let mut table = toml::de::DeTable::parse(text).map_err(|e| {
        invalid(vec![Diagnostic {
            path: None,
            span: e.span(),
            target: Target::Value,
            message: format!("invalid TOML: {}", e.message().trim_end()),
            help: None,
        }])
    })?;
    let mut unset = Vec::new();
    interpolate::expand_table(table.get_mut(), &KeyPath::default(), &mut unset);
    if !unset.is_empty() {
        return Err(invalid(unset));
    }
    let config = structure::deserialize(&table).map_err(|mut diags| {
        diags.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
        invalid(diags)
    })?;
    let mut diags = validate::validate(&config);
    if diags.is_empty() {
        return Ok(config);
    }
    for d in &mut diags {
        if let Some(path) = &d.path {
            d.span = locate::locate(&table, path, d.target);
        }
    }
    diags.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    Err(invalid(diags))
}

/// A config error found after loading (a listener that cannot bind, …), placed at its key in
/// `text` and rendered like every other: `file:line:col`, the line, a caret, the help.
pub fn error_at(text: &str, file: &str, mut diagnostics: Vec<Diagnostic>) -> ConfigError {
    if let Ok(table) = toml::de::DeTable::parse(text) {
        for d in &mut diagnostics {
            if let Some(path) = &d.path {
                d.span = locate::locate(&table, path, d.target);
            }
        }
    }
    ConfigError::Invalid {
        file: file.to_owned(),
        source_text: text.to_owned(),
        diagnostics,
    }
}

fn convert_path(p: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    KeyPath(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    Some(Seg::Key(key.clone()))
                }
                Segment::Unknown => None,
            })
            .collect(),
    )
}

/// Turns serde's message into a diagnostic: unknown keys and variants get a "did you mean".
fn from_serde_message(path: KeyPath, message: &str) -> Diagnostic {
    let message = message.trim_end();
    if let Some((word, expected)) = parse_unknown(message, "unknown field `") {
        // serde_path_to_error already records the unknown key as the last segment.
        let key_path = match path.0.last() {
            Some(Seg::Key(k)) if *k == word => path,
            _ => path.key(&word),
        };
        let d = Diagnostic::at_key(key_path, format!("unknown key `{word}`"));
        let d = d.suggest(&word, expected.iter().map(String::as_str));
        return if d.help.is_some() {
            d
        } else {
            d.help(format!("expected one of: {}", expected.join(", ")))
        };
    }
    if let Some((word, expected)) = parse_unknown(message, "unknown variant `") {
        let d = Diagnostic::at(path, format!("unknown value `{word}`"));
        let d = d.suggest(&word, expected.iter().map(String::as_str));
        return if d.help.is_some() {
            d
        } else {
            d.help(format!("expected one of: {}", expected.join(", ")))
        };
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return Diagnostic::at(path, format!("missing required key `{field}`"));
    }
    let key = match path.0.last() {
        Some(Seg::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    match structure::type_error(message, key) {
        Some((words, Some(example))) => Diagnostic::at(path, words).help(example),
        Some((words, None)) => Diagnostic::at(path, words),
        None => Diagnostic::at(path, message.to_owned()),
    }
}

/// Splits "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown(message: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix(prefix)?;
    let (word, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect();
    Some((word.to_owned(), expected))
}
