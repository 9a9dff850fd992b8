//! The cgroup v2 side of a cluster: `<cgroup2 root>/<prefix>/<node>/<pod>`.
//!
//! Only cgroup v2 directories are made: the machine also mounts v1 controllers
//! (hybrid layout), and skiff must not use net_cls/net_prio or touch v1 at all.
//! No controllers are enabled, so processes may live at any level.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};
use crate::mounts::{CGROUP_MAGIC, CGROUP2_MAGIC, fs_type};

/// Where cgroup v2 is mounted: `/sys/fs/cgroup/unified` on a hybrid
/// machine, `/sys/fs/cgroup` on a unified one.
pub fn cgroup2_root() -> Result<PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| fs_type(p).is_ok_and(|t| t == CGROUP2_MAGIC))
        .ok_or_else(|| {
            HarnessError::Environment(
                "no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup".into(),
            )
        })
}

/// `name` in each cgroup v1 hierarchy of a hybrid machine, where it
/// exists: runc makes a container's cgroup path there too.
pub(crate) fn v1_mirrors(name: &str) -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|hierarchy| fs_type(hierarchy).is_ok_and(|t| t == CGROUP_MAGIC))
        .map(|hierarchy| hierarchy.join(name))
        .filter(|mirror| mirror.is_dir())
        .collect()
}

pub(crate) fn create(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)
        .map_err(|e| HarnessError::io(format!("cannot create cgroup {}", dir.display()), e))
}

/// SIGKILLs every process in the subtree at `dir` (cgroup.kill, kernel ≥ 5.14)
/// and waits until the kernel reports it unpopulated, so the directories can
/// be removed right after.
pub(crate) fn kill_subtree(dir: &Path, timeout: Duration) -> Result<()> {
    let kill = dir.join("cgroup.kill");
    fs::write(&kill, "1")
        .map_err(|e| HarnessError::io(format!("cannot write 1 to {}", kill.display()), e))?;
    let events = dir.join("cgroup.events");
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(&events)
            .map_err(|e| HarnessError::io(format!("cannot read {}", events.display()), e))?;
        if text.lines().any(|l| l == "populated 0") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: format!("the processes in {} to die", dir.display()),
                timeout_ms: timeout.as_millis(),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Removes `dir` and every cgroup below it, children first (a cgroup with
/// children cannot be removed). Returns what was removed, and stops at the
/// first failure since the parents cannot go either.
pub(crate) fn remove_tree(dir: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir)
        .map_err(|e| HarnessError::io(format!("cannot list {}", dir.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| HarnessError::io(format!("cannot list {}", dir.display()), e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), removed)?;
        }
    }
    fs::remove_dir(dir)
        .map_err(|e| HarnessError::io(format!("cannot remove cgroup {}", dir.display()), e))?;
    removed.push(dir.to_owned());
    Ok(())
}
