//! Secrets in the config: a string whose `${NAME}` parts come from the environment, or
//! `{ file = "…" }` (the file's text without its trailing newline). Never written back out:
//! a secret serializes as `"<redacted>"`, so `GET /config` and logs cannot leak it.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret of this value (tests, programmatic configs).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Replaces each `${NAME}` with the environment variable `NAME`; `$$` is a literal `$`.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in `{s}`"))?;
            let name = &r[..end];
            let value = std::env::var(name)
                .map_err(|_| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (`${ENV_VAR}` parts are expanded) or { file = \"…\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                expand_env(v).map(Secret).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let mut file: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "file" {
                        return Err(de::Error::unknown_field(&key, &["file"]));
                    }
                    file = Some(map.next_value()?);
                }
                let file = file.ok_or_else(|| de::Error::missing_field("file"))?;
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| de::Error::custom(format!("cannot read `{file}`: {e}")))?;
                Ok(Secret(text.trim_end_matches(['\n', '\r']).to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parts_are_expanded() {
        std::env::set_var("WEIR_SECRET_TEST", "s3cr3t");
        assert_eq!(
            expand_env("a-${WEIR_SECRET_TEST}-b").as_deref(),
            Ok("a-s3cr3t-b")
        );
        assert_eq!(expand_env("$$5 $x").as_deref(), Ok("$5 $x"));
        assert!(expand_env("${WEIR_SURELY_UNSET_VAR}").is_err());
        assert!(expand_env("${OPEN").is_err());
    }

    #[test]
    fn secrets_never_serialize() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<redacted>\"");
    }
}
