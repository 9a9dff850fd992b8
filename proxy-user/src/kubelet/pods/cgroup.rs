//! A pod's cgroups: `<--cgroup>/skiff-pods/<namespace>.<name>/<container>`.
//! Below the agent's `--cgroup`, so the socket load balancer applies to the
//! pods; one leaf per container, which runc puts the container in (its
//! `cgroupsPath`).
//!
//! On a hybrid host (cgroup v2 at /sys/fs/cgroup/unified, cpu and memory
//! bound to v1) runc also makes the same path in each v1 hierarchy and
//! enforces the limits there; those mirrors go with the pod.
use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use tracing::warn;

use super::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, fs_type};

/// The directory below `--cgroup` holding every pod of this agent.
const PODS_DIR: &str = "skiff-pods";
/// Where a hybrid host mounts its cgroup hierarchies.
const CGROUP_MOUNTS: &str = "/sys/fs/cgroup";

pub fn pods_root(cgroup: &Path) -> PathBuf {
    cgroup.join(PODS_DIR)
}

/// Creates the container's cgroup (and its parents).
pub fn create_container(pods_root: &Path, pod_dir: &str, container: &str) -> io::Result<PathBuf> {
    let dir = pods_root.join(pod_dir).join(container);
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `dir` as a path from the root of the cgroup v2 mount it is in, which
/// is how runc's `cgroupsPath` names it.
pub fn v2_relative(dir: &Path) -> Option<PathBuf> {
    v2_root_of(dir).and_then(|root| dir.strip_prefix(root).ok().map(|r| Path::new("/").join(r)))
}

fn v2_root_of(dir: &Path) -> Option<&'static Path> {
    ["/sys/fs/cgroup/unified", CGROUP_MOUNTS]
        .into_iter()
        .map(Path::new)
        .filter(|root| dir.starts_with(root))
        .find(|root| fs_type(root) == Some(CGROUP2_SUPER_MAGIC))
}

/// The processes in a cgroup.
pub fn pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

pub fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|events| events.lines().any(|l| l == "populated 1"))
}

/// Sends `signal` to every process of the cgroup.
pub fn signal(dir: &Path, signal: i32) {
    for pid in pids(dir) {
        // SAFETY: kill(2) on a pid read from the container's own cgroup.
        unsafe { libc::kill(pid, signal) };
    }
}

/// SIGKILLs the whole subtree (cgroup.kill) and waits until it is empty.
pub async fn kill(dir: &Path) {
    if !dir.exists() {
        return;
    }
    if fs::write(dir.join("cgroup.kill"), "1").is_err() {
        signal(dir, libc::SIGKILL);
    }
    for _ in 0..500 {
        if !populated(dir) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    warn!(cgroup = %dir.display(), "processes survived SIGKILL for 5 s");
}

/// Kills what is left in the pod's cgroup and removes it, leaves first,
/// with the v1 mirrors runc made of it.
pub async fn remove_pod(pods_root: &Path, pod_dir: &str) {
    let pod = pods_root.join(pod_dir);
    kill(&pod).await;
    remove_tree(&pod);
    for mirror in v1_mirrors(&pod) {
        remove_tree(&mirror);
    }
}

/// The same cgroup in each v1 hierarchy of a hybrid host.
fn v1_mirrors(dir: &Path) -> Vec<PathBuf> {
    let Some(relative) = v2_root_of(dir).and_then(|root| dir.strip_prefix(root).ok()) else {
        return Vec::new();
    };
    fs::read_dir(CGROUP_MOUNTS)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|hierarchy| fs_type(hierarchy) == Some(CGROUP_SUPER_MAGIC))
        .map(|hierarchy| hierarchy.join(relative))
        .filter(|mirror| mirror.is_dir())
        .collect()
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    if let Err(error) = fs::remove_dir(dir)
        && error.kind() != io::ErrorKind::NotFound
    {
        warn!(cgroup = %dir.display(), %error, "removing a pod cgroup failed");
    }
}

/// Millicores of a Kubernetes CPU quantity (`500m`, `1`, `0.25`).
pub fn cpu_millis(quantity: &str) -> Option<u64> {
    match quantity.strip_suffix('m') {
        Some(millis) => millis.parse().ok(),
        None => quantity
            .parse::<f64>()
            .ok()
            .filter(|v| *v >= 0.0)
            .map(|v| (v * 1000.0).ceil() as u64),
    }
}

/// Bytes of a Kubernetes memory quantity (`128Mi`, `1G`, `512`, `1e6`).
pub fn memory_bytes(quantity: &str) -> Option<u64> {
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| quantity.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((quantity, 1.0));
    let value = number.parse::<f64>().ok().filter(|v| *v >= 0.0)?;
    Some((value * scale).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(memory_bytes("128Mi"), Some(128 << 20));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
        assert_eq!(memory_bytes("1e3"), Some(1000));
        assert_eq!(memory_bytes("x"), None);
    }
}
