//! `weir demo`: the embedded quickstart (`examples/quickstart.toml`), runnable from any
//! directory. Its static route serves `examples/site`; when that directory is not where Weir
//! was started (an installed binary, not a checkout), the site's files, embedded too, are
//! written to a private temporary directory and the route points there.

use std::path::PathBuf;

const SITE: &[(&str, &str)] = &[
    (
        "index.html",
        include_str!("../../../examples/site/index.html"),
    ),
    (
        "style.css",
        include_str!("../../../examples/site/style.css"),
    ),
];

/// The demo config, parsed, with its static root made absolute when needed, and the
/// directory its site was written to (removed when the returned guard is dropped, so a demo
/// that ends leaves nothing in the temporary directory).
pub fn config() -> anyhow::Result<(weir_config::Config, Option<SiteDir>)> {
    let mut text = weir_config::QUICKSTART.to_owned();
    let mut site = None;
    if !std::path::Path::new("examples/site").is_dir() {
        let dir = write_site()?;
        let root = dir
            .0
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", dir.0.display()))?;
        text = text.replace("root = \"examples/site\"", &format!("root = {root:?}"));
        site = Some(dir);
    }
    Ok((
        weir_config::parse(&text, "<embedded quickstart.toml>")?,
        site,
    ))
}

/// The demo site written out for this process; removed on drop.
pub struct SiteDir(PathBuf);

impl Drop for SiteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_site() -> anyhow::Result<SiteDir> {
    use anyhow::Context as _;
    let dir = SiteDir(std::env::temp_dir().join(format!("weir-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    for (name, body) in SITE {
        let path = dir.0.join(name);
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    /// Unit tests run in `crates/weir`, where `examples/site` is not: the demo still loads
    /// (the config check refuses a static root that does not exist), serving the embedded site.
    #[test]
    fn demo_loads_away_from_a_checkout() {
        assert!(!std::path::Path::new("examples/site").exists());
        let (config, site) = super::config().expect("the demo config loads");
        assert_eq!(config.routes.len(), 6);
        let dir = site.as_ref().expect("the site was written").0.clone();
        let index = std::fs::read_to_string(dir.join("index.html")).expect("index.html");
        assert!(index.contains("Weir is running"));
        drop(site);
        assert!(!dir.exists(), "the demo's site is removed when it ends");
    }
}
