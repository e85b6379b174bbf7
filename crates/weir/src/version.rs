//! `weir version`: what this binary is, for bug reports and fleet inventories (the same facts
//! are exported as the `weir_build_info` metric's labels).

use serde_json::json;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("WEIR_BUILD_COMMIT");
pub const RUSTC: &str = env!("WEIR_BUILD_RUSTC");

/// What is compiled in. Weir has no optional cargo features: every capability is in every
/// build, so this names the parts a user may ask about.
pub const FEATURES: &[&str] = &[
    "http1",
    "http2",
    "h2c",
    "tls-rustls-aws-lc-rs",
    "websocket",
    "grpc",
    "cache-memory",
    "cache-disk",
    "redis",
    "discovery-dns",
    "discovery-etcd",
    "discovery-file",
    "otlp",
    "allocator-mimalloc",
];

/// The build date, `YYYY-MM-DD` (UTC): from `SOURCE_DATE_EPOCH` when the build set it.
pub fn build_date() -> String {
    let epoch: u64 = env!("WEIR_BUILD_EPOCH").parse().unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let mut stamp = weir_observe::rfc3339_millis(time);
    stamp.truncate(10);
    stamp
}

pub fn text() -> String {
    format!(
        "weir {VERSION}\ncommit: {COMMIT}\nbuilt: {} ({} build for {})\nrustc: {RUSTC}\nfeatures: {}\n",
        build_date(),
        env!("WEIR_BUILD_PROFILE"),
        env!("WEIR_BUILD_TARGET"),
        FEATURES.join(" ")
    )
}

pub fn json() -> serde_json::Value {
    json!({
        "version": VERSION,
        "commit": COMMIT,
        "build_date": build_date(),
        "profile": env!("WEIR_BUILD_PROFILE"),
        "target": env!("WEIR_BUILD_TARGET"),
        "rustc": RUSTC,
        "features": FEATURES,
    })
}
