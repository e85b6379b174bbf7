//! What ACME keeps on disk under `state_dir`: the account's credentials (one file per
//! directory URL) and each certificate's chain and key (named by its first domain). The
//! directory is created 0700, every file is written 0600 to a temporary name and renamed into
//! place, so a crash never leaves half a key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

/// One state directory.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The account for `directory` (its URL's digest names the file: one account per CA).
    pub(crate) fn account_path(&self, directory: &str) -> PathBuf {
        let digest = sha2::Sha256::digest(directory.as_bytes());
        let name = weir_core::trace_context::hex(&digest[..8]);
        self.dir.join(format!("account-{name}.json"))
    }

    /// The chain and key files of the certificate named `name`.
    pub(crate) fn cert_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        (
            self.dir.join(format!("{safe}.crt.pem")),
            self.dir.join(format!("{safe}.key.pem")),
        )
    }

    /// Writes `bytes` to `path` atomically with mode 0600 (creating the directory 0700).
    pub(crate) fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }
}
