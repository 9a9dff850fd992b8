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
    target_dir().join("debug")
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn find(name: &str) -> Result<PathBuf> {
    existing(bin_dir().join(name), "cargo xtask build")
}

/// `path` if it is a file; otherwise an error saying to run `command`.
fn existing(path: PathBuf, command: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::Environment(format!(
            "{} does not exist: run `{command}` first",
            path.display()
        )))
    }
}

pub fn agent_binary() -> Result<PathBuf> {
    find("skiff-agent")
}

pub fn control_binary() -> Result<PathBuf> {
    find("skiff-control")
}

/// The `kubectl` that `cargo xtask setup` installs.
pub fn kubectl_binary() -> Result<PathBuf> {
    existing(
        target_dir().join("kubectl-venv/bin/kubectl"),
        "cargo xtask setup",
    )
}

pub fn echo_binary() -> Result<PathBuf> {
    find("skiff-echo")
}

pub fn load_binary() -> Result<PathBuf> {
    find("skiff-load")
}

/// `skiff-etcd`, for bulk writes from tools built without an etcd client.
pub fn etcd_tool_binary() -> Result<PathBuf> {
    find("skiff-etcd")
}

/// `skiff-xdp-pass`, the eBPF object the agent's build script builds beside
/// the agent's programs (in its `OUT_DIR`, under the profile's `build/`):
/// the newest one there, or one placed beside the binaries.
pub(crate) fn xdp_pass_object() -> Result<PathBuf> {
    const NAME: &str = "skiff-xdp-pass";
    let beside = bin_dir().join(NAME);
    if beside.is_file() {
        return Ok(beside);
    }
    let built = std::fs::read_dir(bin_dir().join("build"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("proxy-user-")
        })
        .map(|entry| entry.path().join("out").join(NAME))
        .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
        .max();
    match built {
        Some((_, path)) => Ok(path),
        None => existing(beside, "cargo build -p proxy-user"),
    }
}
