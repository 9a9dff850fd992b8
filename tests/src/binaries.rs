//! Where skiff's binaries are. `cargo xtask build` (which `cargo xtask test`
//! runs first) puts them in the workspace's target directory.
use std::path::PathBuf;

use crate::error::{HarnessError, Result};

/// The target directory's debug profile, unless `SKIFF_BIN_DIR` says
/// otherwise (e.g. for a release build).
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SKIFF_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

fn find(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Environment(format!(
            "{} does not exist: run `cargo xtask build` first",
            path.display()
        )))
    }
}

pub fn agent_binary() -> Result<PathBuf> {
    find("skiff-agent")
}

pub fn echo_binary() -> Result<PathBuf> {
    find("skiff-echo")
}

pub fn load_binary() -> Result<PathBuf> {
    find("skiff-load")
}
