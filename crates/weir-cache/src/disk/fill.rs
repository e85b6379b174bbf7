//! A variant written to disk as its body arrives, moved into place only when complete.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderName;

use super::DiskStore;
use crate::variant::Variant;

/// A variant being written to disk as its body arrives (see [`DiskStore::begin`]).
#[derive(Debug)]
pub struct DiskFill {
    pub(super) store: Arc<DiskStore>,
    pub(super) file: Option<std::io::BufWriter<File>>,
    pub(super) tmp: PathBuf,
    pub(super) body_offset: u64,
    pub(super) written: u64,
    pub(super) primary: Vec<u8>,
    pub(super) uri: String,
    pub(super) vary: Vec<HeaderName>,
    pub(super) tags: Vec<String>,
    pub(super) meta: Variant,
}

impl DiskFill {
    /// Appends body bytes (blocking).
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("fill already ended"))?;
        f.write_all(chunk)?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Body bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the file, moves it into place and indexes it (blocking).
    pub fn commit(mut self) -> std::io::Result<()> {
        let f = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("fill already ended"))?;
        f.into_inner().map_err(|e| e.into_error())?;
        let path = self
            .store
            .dir
            .join((self.store.name)(&self.primary, &self.meta.secondary));
        std::fs::rename(&self.tmp, &path)?;
        self.store.index_committed(&self, path);
        Ok(())
    }
}

impl Drop for DiskFill {
    fn drop(&mut self) {
        // Not committed (abandoned, failed, or a rename that failed): nothing may remain.
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Deletes files the index no longer knows (blocking).
pub fn remove_files(paths: Vec<PathBuf>) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}
