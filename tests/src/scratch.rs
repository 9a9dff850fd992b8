//! A directory a test owns for its lifetime, such as a local-path
//! provisioner's root, removed when the test ends, also when it panics.

use std::path::{Path, PathBuf};

/// `<temp dir>/<name>-<pid>`, removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Names the directory; the test or the program under test creates it.
    pub fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("{name}-{}", std::process::id())))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
