//! Named network namespaces (`/run/netns/NAME`, as iproute2 keeps them) and
//! the processes inside them.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{ip, ip_in, run};
use crate::error::{HarnessError, Result};

const NETNS_DIR: &str = "/run/netns";

pub(crate) fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// `ip netns add NAME`, then `lo` up: some tools assume 127.0.0.1 works.
pub(crate) fn add(name: &str) -> Result<()> {
    ip(&format!("netns add {name}"))?;
    ip_in(name, "link set lo up")?;
    Ok(())
}

pub(crate) fn delete(name: &str) -> Result<()> {
    // An argument list, not `ip()`: the name was read from /run/netns.
    run(Command::new("ip").args(["netns", "delete", name])).map(drop)
}

/// Names of all named network namespaces on the machine.
pub(crate) fn list() -> Result<Vec<String>> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HarnessError::io(format!("cannot list {NETNS_DIR}"), e)),
    };
    Ok(entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect())
}

/// SIGKILLs every process whose network namespace is `name` (what `ip netns
/// pids` finds: the same nsfs inode). Deleting a netns does not stop the
/// processes in it, and an agent started in a node netns stays in its
/// caller's cgroup, so cgroup.kill alone would miss it. Returns `pid (comm)`
/// of each process killed.
pub(crate) fn kill_processes(name: &str) -> Result<Vec<String>> {
    let ns = path(name);
    let target = fs::metadata(&ns)
        .map_err(|e| HarnessError::io(format!("cannot stat {}", ns.display()), e))?;
    let me = std::process::id();
    let procs = fs::read_dir("/proc").map_err(|e| HarnessError::io("cannot list /proc", e))?;
    let mut killed = Vec::new();
    for pid in procs.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        // Never ourselves: a thread of ours may have entered the netns.
        if pid == me || pid == 1 {
            continue;
        }
        let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue; // exited meanwhile, or a zombie
        };
        if meta.dev() == target.dev() && meta.ino() == target.ino() {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // SAFETY: plain kill(2) of a process inside a skiff netns.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                killed.push(format!("process {pid} ({}) in netns {name}", comm.trim()));
            }
        }
    }
    Ok(killed)
}
