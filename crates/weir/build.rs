//! Build facts for `weir version`: the commit (from git, or `WEIR_BUILD_COMMIT` when building
//! from a tarball), the build time (`SOURCE_DATE_EPOCH` when set, for reproducible builds) and
//! the rustc that compiled it.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // A new commit or checkout changes HEAD (or the ref it names): rebuild the facts then.
    for git_file in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(git_file).exists() {
            println!("cargo:rerun-if-changed={git_file}");
        }
    }
    let commit = std::env::var("WEIR_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let sha = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            if !out.status.success() || sha.is_empty() {
                return None;
            }
            let dirty = Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            Some(if dirty { format!("{sha}-dirty") } else { sha })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WEIR_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=WEIR_BUILD_EPOCH={epoch}");
    println!("cargo:rustc-env=WEIR_BUILD_RUSTC={rustc_version}");
    println!(
        "cargo:rustc-env=WEIR_BUILD_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=WEIR_BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    symbol_order();
}

/// A release build for x86_64 Linux, where Rust links with LLD, lays the functions a running
/// Weir uses out together at the start of its text, in the order `symbol-order.txt` lists
/// them (written by bench/symbol-order.sh). The kernel maps 64 KiB of a binary around each
/// page first touched: the same functions scattered over 15 MiB of text kept ~5.5 MiB of it
/// resident (docs/benchmarks.md, "Memory: …, text laid out by use"). Names the binary no
/// longer has are skipped by the linker. `WEIR_SYMBOL_ORDER=off` keeps the linker's own order
/// (a linker other than LLD does not know the option).
fn symbol_order() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=WEIR_SYMBOL_ORDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("WEIR_SYMBOL_ORDER") == "off"
    {
        return;
    }
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    if order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
