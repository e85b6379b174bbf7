//! Small checks every section uses: unique names, positive values, one-line messages.

use std::collections::HashMap;

use crate::diagnostic::{Diagnostic, KeyPath};

pub(crate) fn unique<'a>(
    section: &str,
    names: impl Iterator<Item = &'a str>,
    out: &mut Vec<Diagnostic>,
) -> Vec<&'a str> {
    let mut seen = HashMap::new();
    let mut all = Vec::new();
    for (i, name) in names.enumerate() {
        let path = KeyPath::root(section).index(i).key("name");
        if name.is_empty() {
            out.push(Diagnostic::at(path, "must not be empty"));
        } else if let Some(first) = seen.insert(name, i) {
            out.push(
                Diagnostic::at(path, format!("duplicate name `{name}`")).help(format!(
                    "{section}[{first}] already uses this name; names must be unique"
                )),
            );
        }
        all.push(name);
    }
    all
}

pub(super) fn positive(out: &mut Vec<Diagnostic>, key: KeyPath, zero: bool) {
    if zero {
        out.push(Diagnostic::at(key, "must be greater than zero"));
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
