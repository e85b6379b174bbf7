//! `${NAME}` in any string value of the config is replaced by the environment variable `NAME`
//! before the config is read, so ports, hosts, paths and tokens can come from the deployment
//! (`bind = "0.0.0.0:${PORT}"`). `$${NAME}` writes a literal `${NAME}`.
//!
//! `NAME` is an environment variable's conventional name: upper-case letters, digits and `_`,
//! not starting with a digit. Other `$` text is left to the value's own syntax — the access-log
//! and header templates' `$client_ip` and `${claim.sub}`, a rewrite's `$1` — so the two never
//! clash. An unset variable is a config error at the string's place; keys are never expanded.

use std::borrow::Cow;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, KeyPath};

/// Expands every string value of `table` in place; one diagnostic per unset variable.
pub(crate) fn expand_table(table: &mut DeTable<'_>, at: &KeyPath, out: &mut Vec<Diagnostic>) {
    for (key, value) in table.iter_mut() {
        let path = if at.0.is_empty() {
            KeyPath::root(key.get_ref())
        } else {
            at.key(key.get_ref())
        };
        let span = value.span();
        expand_value(value.get_mut(), span, &path, out);
    }
}

fn expand_value(
    value: &mut DeValue<'_>,
    span: Range<usize>,
    at: &KeyPath,
    out: &mut Vec<Diagnostic>,
) {
    match value {
        DeValue::String(s) => match expand(s) {
            Ok(Some(expanded)) => *s = Cow::Owned(expanded),
            Ok(None) => {}
            Err(name) => {
                let mut d = Diagnostic::at(
                    at.clone(),
                    format!("environment variable `{name}` is not set"),
                )
                .help(format!(
                    "set {name} in Weir's environment, or write `$${{{name}}}` for a literal `${{{name}}}`"
                ));
                d.span = Some(span);
                out.push(d);
            }
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let span = item.span();
                expand_value(item.get_mut(), span, &at.index(i), out);
            }
        }
        DeValue::Table(t) => expand_table(t, at, out),
        _ => {}
    }
}

/// `s` with its `${NAME}` references replaced, `None` when it has none, or the first unset
/// variable's name.
pub fn expand(s: &str) -> Result<Option<String>, String> {
    expand_with(s, |name| std::env::var(name).ok())
}

fn expand_with(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(at) = rest.find("${") {
        let name = reference(&rest[at + 2..]);
        // `$${NAME}`: the `$` before is an escape, and the reference stays literal.
        let escaped = at > 0 && rest.as_bytes()[at - 1] == b'$';
        match name {
            Some(name) if escaped => {
                out.push_str(&rest[..at - 1]);
                out.push_str("${");
                out.push_str(name);
                out.push('}');
                changed = true;
                rest = &rest[at + 3 + name.len()..];
            }
            Some(name) => {
                out.push_str(&rest[..at]);
                out.push_str(&lookup(name).ok_or_else(|| name.to_owned())?);
                changed = true;
                rest = &rest[at + 3 + name.len()..];
            }
            None => {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

/// The variable name at the start of `after` (the text after `${`) when it is one and is
/// closed by `}`: `[A-Z_][A-Z0-9_]*`.
fn reference(after: &str) -> Option<&str> {
    let end = after.find('}')?;
    let name = &after[..end];
    let mut bytes = name.bytes();
    let first = bytes.next()?;
    let ok = (first.is_ascii_uppercase() || first == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::expand_with;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            "A_1" => Some("x".into()),
            _ => None,
        }
    }

    #[test]
    fn references_literals_and_other_dollar_syntax() {
        let got = |s: &str| expand_with(s, env);
        assert_eq!(got("0.0.0.0:${PORT}"), Ok(Some("0.0.0.0:8080".into())));
        assert_eq!(got("${A_1}${A_1}-${EMPTY}."), Ok(Some("xx-.".into())));
        assert_eq!(
            got("$${PORT} is literal"),
            Ok(Some("${PORT} is literal".into()))
        );
        assert_eq!(got("no refs $1 $$ $x"), Ok(None));
        // Template variables of the value's own syntax are not environment references.
        assert_eq!(got("${claim.sub} ${method} ${1}"), Ok(None));
        assert_eq!(
            got("${claim.sub}:${PORT}"),
            Ok(Some("${claim.sub}:8080".into()))
        );
        assert_eq!(got("${OPEN"), Ok(None));
        assert_eq!(got("a ${UNSET_ONE} b"), Err("UNSET_ONE".into()));
        assert_eq!(got("$${UNSET_ONE}"), Ok(Some("${UNSET_ONE}".into())));
    }
}
