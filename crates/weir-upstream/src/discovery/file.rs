//! File discovery (Prometheus `file_sd` style): a JSON or TOML list of endpoints, checked
//! every `interval` and re-read when its size, modification time or inode changed. A file
//! that is missing, unreadable or invalid keeps the last good set; writers should replace it
//! atomically (write a temporary file, then rename), as consul-template does.

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use weir_config::FileDiscovery;

use super::{earliest, entry, wait, Feed};
use crate::member::{Source, Wanted};

/// What identifies one version of the file without reading it.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Version {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn version(meta: &std::fs::Metadata) -> Version {
    use std::os::unix::fs::MetadataExt;
    Version {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    }
}

pub(super) async fn run(cfg: FileDiscovery, mut feed: Feed, token: CancellationToken) {
    let mut seen: Option<Version> = None;
    let mut recheck: Option<Instant> = None;
    // A missing file is reported once, not at every check.
    let mut missing = false;
    loop {
        if !feed.alive() {
            return;
        }
        match tokio::fs::metadata(&cfg.path).await {
            Err(e) => {
                if !missing {
                    feed.failure("unreadable", format!("{}: {e}", cfg.path.display()));
                }
                missing = true;
                seen = None;
            }
            Ok(meta) => {
                missing = false;
                let v = version(&meta);
                let grace_over = recheck.is_some_and(|at| at <= Instant::now());
                if seen != Some(v) || grace_over {
                    seen = Some(v);
                    recheck = None;
                    match read(&cfg.path).await {
                        Ok(endpoints) => recheck = feed.answer(endpoints),
                        Err((reason, message)) => feed.failure(reason, message),
                    }
                }
            }
        }
        let next = Instant::now() + cfg.interval.get();
        if !wait(&token, earliest(Some(next), recheck)).await {
            return;
        }
    }
}

/// Reads and parses the file.
async fn read(path: &std::path::Path) -> Result<Vec<Wanted>, (&'static str, String)> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ("unreadable", format!("{}: {e}", path.display())))?;
    parse(path, &text).map_err(|e| ("invalid", format!("{}: {e}", path.display())))
}

/// `.toml`: `endpoints = [...]`. Anything else is JSON: an array of endpoints, or an object
/// with an `endpoints` array.
pub(crate) fn parse(path: &std::path::Path, text: &str) -> Result<Vec<Wanted>, String> {
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "toml") {
        let t: toml::Value = toml::from_str(text).map_err(|e| e.to_string())?;
        serde_json::to_value(t).map_err(|e| e.to_string())?
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    };
    let list = match &value {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => o
            .get("endpoints")
            .and_then(|e| e.as_array())
            .ok_or("expected an `endpoints` array")?,
        _ => return Err("expected an array of endpoints".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| entry(v, Source::File).map_err(|e| format!("endpoint {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_forms() {
        let json = parse(
            "e.json".as_ref(),
            r#"[ "10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 3} ]"#,
        )
        .map(|v| {
            v.into_iter()
                .map(|w| (w.address, w.weight))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            json,
            Ok(vec![("10.0.0.1:80".into(), 1), ("10.0.0.2:80".into(), 3)])
        );
        let toml = parse(
            "e.toml".as_ref(),
            "endpoints = [\"10.0.0.1:80\", { address = \"10.0.0.2:80\", weight = 2 }]",
        );
        assert_eq!(toml.map(|v| v.len()), Ok(2));
        let bad = parse("e.json".as_ref(), r#"{"endpoints": ["x"]}"#);
        assert!(bad.expect_err("invalid").contains("endpoint 1"));
    }
}
