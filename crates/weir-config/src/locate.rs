//! Finds the source span of a key path in the TOML text, so any error about a parsed value can
//! point at `file:line:col`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{KeyPath, Seg, Target};

/// The span of the key or value at `path`; when the path only partly exists, the span of its
/// deepest existing part.
pub fn locate(root: &Spanned<DeTable<'_>>, path: &KeyPath, target: Target) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut cur: Option<&Spanned<DeValue<'_>>> = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let last = path.0.len().saturating_sub(1);
    for (i, seg) in path.0.iter().enumerate() {
        match seg {
            Seg::Key(k) => {
                let Some((key, value)) = table.and_then(|t| t.get_key_value(k.as_str())) else {
                    return best;
                };
                best = Some(if i == last && target == Target::Key {
                    key.span()
                } else {
                    value.span()
                });
                cur = Some(value);
            }
            Seg::Index(n) => {
                let arr = match cur.map(|v| v.get_ref()) {
                    Some(DeValue::Array(a)) => a,
                    _ => return best,
                };
                let Some(value) = arr.get(*n) else {
                    return best;
                };
                best = Some(value.span());
                cur = Some(value);
            }
        }
        table = match cur.map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
    }
    best
}
