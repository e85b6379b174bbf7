//! Secrets in the config: a string (its `${NAME}` parts already replaced from the environment,
//! as in every string value: [`crate::interpolate`]; `$$` is a literal `$`), or
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

/// A secret string as written: `$$` is a literal `$` (as it always was in secrets), and any
/// `${NAME}` left is a literal, written `$${NAME}` in the file.
fn unescape(s: &str) -> String {
    s.replace("$$", "$")
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
                Ok(Secret(unescape(v)))
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
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(unescape("pa$$word ${X} $x"), "pa$word ${X} $x");
    }

    #[test]
    fn secrets_never_serialize() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<redacted>\"");
    }
}
