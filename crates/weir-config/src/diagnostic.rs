//! Config errors that point at the exact spot: `file:line:col`, the key path, the problem, and
//! a hint where one exists.

use std::fmt;
use std::ops::Range;

/// One segment of a key path such as `routes[2].proxy.upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Where in the config a value lives, e.g. `routes[2].proxy.upstream`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The path with one more table key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_owned()));
        Self(v)
    }

    /// The path with one more array index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }

    /// Starts a path at a top-level key.
    pub fn root(k: &str) -> Self {
        Self::default().key(k)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Whether a diagnostic points at a key itself or at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The key (e.g. an unknown key).
    Key,
    /// The value (e.g. a wrong value).
    Value,
}

/// One problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Key path of the offending key or value, when known.
    pub path: Option<KeyPath>,
    /// Byte range in the source, when known.
    pub span: Option<Range<usize>>,
    /// Whether `path` names the key or its value.
    pub target: Target,
    /// What is wrong, including what was expected.
    pub message: String,
    /// How to fix it, when we can tell.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem with the value at `path`.
    pub fn at(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            path: Some(path),
            span: None,
            target: Target::Value,
            message: message.into(),
            help: None,
        }
    }

    /// A problem with the key at `path` itself.
    pub fn at_key(path: KeyPath, message: impl Into<String>) -> Self {
        Self {
            target: Target::Key,
            ..Self::at(path, message)
        }
    }

    /// Adds a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean `x`?" when a close candidate exists.
    pub fn suggest<'a>(self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(word, candidates) {
            Some(s) => self.help(format!("did you mean `{s}`?")),
            None => self,
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {error}")]
    Io {
        /// The path given.
        file: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{}", render(file, source_text, diagnostics))]
    Invalid {
        /// The path given (or a label for an embedded config).
        file: String,
        /// The config text.
        source_text: String,
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The problems found (empty for an I/O error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn render(file: &str, src: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_one(&mut out, file, src, d);
    }
    let n = diags.len();
    out.push_str(&format!(
        "\n{n} error{} in {file}",
        if n == 1 { "" } else { "s" }
    ));
    out
}

fn render_one(out: &mut String, file: &str, src: &str, d: &Diagnostic) {
    use std::fmt::Write as _;
    let path = d.path.as_ref().map(|p| p.to_string()).unwrap_or_default();
    let path_part = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    match &d.span {
        Some(span) => {
            let (line, col) = line_col(src, span.start);
            let _ = writeln!(out, "{file}:{line}:{col}: error: {path_part}{}", d.message);
            let line_text = src.lines().nth(line - 1).unwrap_or("");
            let width = line.to_string().len();
            let span_chars = src
                .get(span.clone())
                .map(|s| s.lines().next().unwrap_or("").chars().count())
                .unwrap_or(1)
                .max(1);
            let _ = writeln!(out, "{:width$} |", "");
            let _ = writeln!(out, "{line} | {line_text}");
            let _ = writeln!(
                out,
                "{:width$} | {}{}",
                "",
                " ".repeat(col - 1),
                "^".repeat(span_chars)
            );
        }
        None => {
            let _ = writeln!(out, "{file}: error: {path_part}{}", d.message);
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  = help: {help}");
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("apis", ["api", "web"]), Some("api"));
        assert_eq!(
            did_you_mean("upstreem", ["upstream", "name"]),
            Some("upstream")
        );
        assert_eq!(did_you_mean("zzz", ["api", "web"]), None);
    }

    #[test]
    fn positions() {
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
