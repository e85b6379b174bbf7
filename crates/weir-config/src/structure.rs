//! Every structural problem of a file at once (wrong types, unknown keys, missing keys), in
//! file order, not only the first one serde stops at. Deserialization is retried on a working
//! copy of the parsed table: after each error the offending key is taken out (or, where a value
//! must exist — a missing required key, a wrong array element — a stand-in value is put in, its
//! own complaints ignored), until the copy deserializes or nothing more can be got past.
//! Spans always come from the original table, so every place is where the user wrote it.

use std::borrow::Cow;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{Diagnostic, KeyPath, Seg};
use crate::Config;

/// Enough for any file a person writes; each pass is one deserialization.
const MAX_PASSES: usize = 64;
/// Stand-in values, tried in turn until one is accepted where it stands.
const STAND_INS: usize = 5;

/// The config, or every structural problem found.
pub(crate) fn deserialize(table: &Spanned<DeTable<'_>>) -> Result<Config, Vec<Diagnostic>> {
    let mut work = table.clone();
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut stand_ins: Vec<(KeyPath, usize)> = Vec::new();
    let mut removed: Vec<KeyPath> = Vec::new();
    for _ in 0..MAX_PASSES {
        let de = toml::de::Deserializer::from(work.clone());
        let e = match serde_path_to_error::deserialize::<_, Config>(de) {
            Ok(config) if diags.is_empty() => return Ok(config),
            Ok(_) => return Err(diags),
            Err(e) => e,
        };
        let path = crate::convert_path(e.path());
        let message = e.inner().message().trim_end().to_owned();
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
            .map(str::to_owned);
        let mut diag = crate::from_serde_message(path, &message);
        let at = diag.path.clone().unwrap_or_default();
        // A complaint about a stand-in: try the next kind of value there.
        if let Some((p, kind)) = stand_ins.iter_mut().find(|(p, _)| starts_with(&at, p)) {
            *kind += 1;
            if *kind >= STAND_INS || !set(work.get_mut(), p, stand_in(*kind)) {
                break;
            }
            continue;
        }
        let fixed = match &missing {
            Some(key) => {
                let p = at.key(key);
                // A key taken out for a wrong value is not also "missing", nor is the key an
                // unknown one beside it was already suggested as (`upstreem` → `upstream`).
                let suggested = format!("`{key}`");
                let already = removed.contains(&p)
                    || diags.iter().any(|d| {
                        d.path
                            .as_ref()
                            .is_some_and(|dp| dp.0.len() == p.0.len() && starts_with(dp, &at))
                            && d.help.as_deref().is_some_and(|h| h.contains(&suggested))
                    });
                if !already {
                    diag.span = crate::locate::locate(table, &at, diag.target);
                    diags.push(diag);
                }
                stand_ins.push((p.clone(), 0));
                set(work.get_mut(), &p, stand_in(0))
            }
            None => {
                diag.span = crate::locate::locate(table, &at, diag.target)
                    .filter(|s| !s.is_empty())
                    .or_else(|| e.inner().span());
                diags.push(diag);
                match at.0.last() {
                    Some(Seg::Key(_)) => {
                        removed.push(at.clone());
                        remove(work.get_mut(), &at)
                    }
                    Some(Seg::Index(_)) => {
                        stand_ins.push((at.clone(), 0));
                        set(work.get_mut(), &at, stand_in(0))
                    }
                    None => false,
                }
            }
        };
        if !fixed {
            break;
        }
    }
    Err(diags)
}

fn starts_with(path: &KeyPath, prefix: &KeyPath) -> bool {
    path.0.len() >= prefix.0.len() && path.0[..prefix.0.len()] == prefix.0[..]
}

fn stand_in(kind: usize) -> DeValue<'static> {
    match kind {
        0 => DeValue::String(Cow::Borrowed("")),
        1 => DeValue::Table(DeTable::new()),
        2 => DeValue::Array(Default::default()),
        3 => DeValue::Integer(Default::default()),
        _ => DeValue::Boolean(false),
    }
}

/// The value at `path` (a table or an array element), if the path leads to one.
fn node<'a, 'i>(root: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeValue<'i>> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut value = root.get_mut(k.as_str())?.get_mut();
    for seg in rest {
        value = match (seg, value) {
            (Seg::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str())?.get_mut(),
            (Seg::Index(i), DeValue::Array(a)) => a.get_mut(*i)?.get_mut(),
            _ => return None,
        };
    }
    Some(value)
}

/// The table at `path` (the root for an empty path).
fn table_at<'a, 'i>(root: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    if path.is_empty() {
        return Some(root);
    }
    match node(root, path) {
        Some(DeValue::Table(t)) => Some(t),
        _ => None,
    }
}

/// Takes the key at `path` out of its table.
fn remove(root: &mut DeTable<'_>, path: &KeyPath) -> bool {
    let Some((Seg::Key(key), parent)) = path.0.split_last() else {
        return false;
    };
    table_at(root, parent).is_some_and(|t| t.remove(key.as_str()).is_some())
}

/// Puts `value` at `path`: a key of a table (added or replaced) or an array element.
fn set(root: &mut DeTable<'_>, path: &KeyPath, value: DeValue<'static>) -> bool {
    let Some((last, parent)) = path.0.split_last() else {
        return false;
    };
    match last {
        Seg::Key(key) => {
            let Some(t) = table_at(root, parent) else {
                return false;
            };
            t.insert(
                Spanned::new(0..0, Cow::Owned(key.clone())),
                Spanned::new(0..0, value),
            );
            true
        }
        Seg::Index(i) => match node(root, parent) {
            Some(DeValue::Array(a)) => match a.get_mut(*i) {
                Some(slot) => {
                    *slot = Spanned::new(0..0, value);
                    true
                }
                None => false,
            },
            _ => false,
        },
    }
}

/// serde's "invalid type: integer `5`, expected a string" in Weir's words, with an example of
/// a valid value; `None` for other messages.
pub(crate) fn type_error(message: &str, key: Option<&str>) -> Option<(String, Option<String>)> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.split_once(", expected ")?;
    let found = match found.split_once(' ') {
        Some(("integer" | "floating point" | "boolean", v)) => v.trim_matches('`').to_owned(),
        Some(("string", v)) => format!("the string {v}"),
        _ => match found {
            "sequence" => "a list".to_owned(),
            "map" => "a table".to_owned(),
            other => other.to_owned(),
        },
    };
    // A number's example fits the key where one is known.
    let number = match key {
        Some("status") => "200",
        Some(k) if k.contains("port") => "8080",
        Some("workers") => "4",
        Some("weight") => "10",
        _ => "100",
    };
    let (expected, example) = match expected {
        "usize" | "u64" | "u32" => ("a whole number, 0 or more", Some(number)),
        "u16" => ("a whole number from 0 to 65535", Some(number)),
        "u8" => ("a whole number from 0 to 255", Some("3")),
        "i64" | "i32" => ("a whole number", Some(number)),
        "f64" | "f32" => ("a number", Some("0.5")),
        "a boolean" => ("true or false", Some("true")),
        "a string" => ("a string", Some("\"…\" (in quotes)")),
        "a sequence" => ("a list", Some("[\"a\", \"b\"]")),
        e if e == "a map" || e.starts_with("struct ") => ("a table", Some("{ key = \"value\" }")),
        e => (e, None),
    };
    Some((
        format!("expected {expected}, found {found}"),
        example.map(|x| format!("for example: {x}")),
    ))
}
