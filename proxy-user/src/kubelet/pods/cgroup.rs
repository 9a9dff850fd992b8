//! A pod's cgroups: `<--cgroup>/skiff-pods/<namespace>.<name>/<container>`.
//! Below the agent's `--cgroup`, so the socket load balancer applies to the
//! pods; one leaf per container so each gets its own limits and the agent
//! can find (and adopt) a container's processes after a restart.
//!
//! Limits go to `cpu.max` and `memory.max` where cgroup v2 has those
//! controllers. On a hybrid host (cpu and memory bound to cgroup v1) they
//! are not there: the limits are then logged as not enforced, and v1 is
//! never touched.
use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use tracing::warn;

/// The directory below `--cgroup` holding every pod of this agent.
const PODS_DIR: &str = "skiff-pods";
const CFS_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Millicores.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl Limits {
    /// `cpu.max`'s value: quota and period in microseconds.
    fn cpu_max(&self) -> Option<String> {
        self.cpu_millis
            .map(|m| format!("{} {CFS_PERIOD_US}", (m * CFS_PERIOD_US / 1000).max(1000)))
    }
}

pub fn pods_root(cgroup: &Path) -> PathBuf {
    cgroup.join(PODS_DIR)
}

/// Creates the container's cgroup (and its parents) and writes its limits.
pub fn create_container(
    pods_root: &Path,
    pod_dir: &str,
    container: &str,
    limits: &Limits,
) -> io::Result<PathBuf> {
    let pod = pods_root.join(pod_dir);
    let dir = pod.join(container);
    fs::create_dir_all(&dir)?;
    if *limits == Limits::default() {
        return Ok(dir);
    }
    let parent = pods_root.parent().unwrap_or(pods_root);
    let mut enforced = true;
    for (controller, value, file) in [
        ("cpu", limits.cpu_max(), "cpu.max"),
        (
            "memory",
            limits.memory_bytes.map(|b| b.to_string()),
            "memory.max",
        ),
    ] {
        let Some(value) = value else { continue };
        // Each level delegates the controller to the next; --cgroup's own
        // parent must already offer it (as systemd's Delegate= does).
        let delegated = [parent, pods_root, &pod]
            .iter()
            .all(|level| enable(level, controller));
        enforced &= delegated && fs::write(dir.join(file), &value).is_ok();
    }
    if !enforced {
        warn!(cgroup = %dir.display(), ?limits, "cgroup v2 does not offer the cpu/memory controllers here: limits recorded, not enforced");
    }
    Ok(dir)
}

fn enable(dir: &Path, controller: &str) -> bool {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    if !offered.split_whitespace().any(|c| c == controller) {
        return false;
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    enabled.split_whitespace().any(|c| c == controller)
        || fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")).is_ok()
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

/// Kills what is left in the pod's cgroup and removes it, leaves first.
pub async fn remove_pod(pods_root: &Path, pod_dir: &str) {
    let pod = pods_root.join(pod_dir);
    kill(&pod).await;
    remove_tree(&pod);
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

    #[test]
    fn cpu_max_is_quota_over_a_100ms_period() {
        let limits = Limits {
            cpu_millis: Some(500),
            memory_bytes: None,
        };
        assert_eq!(limits.cpu_max().unwrap(), "50000 100000");
    }
}
