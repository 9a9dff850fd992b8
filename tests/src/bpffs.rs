//! bpffs: agents pin their maps and links under `/sys/fs/bpf/<prefix>/<node>`.
//! The harness creates nothing there; it only makes sure bpffs is mounted and
//! removes the prefix's directory on teardown.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::run;
use crate::error::{HarnessError, Result};
use crate::mounts::{BPF_FS_MAGIC, fs_type};
use crate::prefix::Prefix;

pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Mounts bpffs at /sys/fs/bpf unless it already is: without it, pins would
/// fail (or, with a bare path, land in sysfs and fail confusingly).
pub(crate) fn ensure_mounted() -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    let mounted =
        fs_type(root).map_err(|e| HarnessError::io(format!("cannot statfs {BPFFS_ROOT}"), e))?;
    if mounted != BPF_FS_MAGIC {
        run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS_ROOT]))?;
    }
    Ok(())
}

/// `/sys/fs/bpf/<prefix>`: everything the cluster's agents pin lives below.
pub fn prefix_dir(prefix: &Prefix) -> PathBuf {
    Path::new(BPFFS_ROOT).join(prefix.as_str())
}
