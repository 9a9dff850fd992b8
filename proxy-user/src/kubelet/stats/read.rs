//! Reading what a cgroup or the host has used: cumulative CPU time and the
//! memory working set (usage less the inactive page cache, which the kernel
//! can take back), as cAdvisor reads them. A controller bound to a cgroup v1
//! hierarchy is read there (`cpuacct.usage`, `memory.usage_in_bytes` and
//! `total_inactive_file`), otherwise from the cgroup v2 directory
//! (`cpu.stat` `usage_usec`, `memory.current` and `inactive_file`): on a
//! hybrid host runc keeps the same relative path in each v1 hierarchy.
use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::kubelet::pods::cgroup::v2_relative;

/// Usage at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used so far, in nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
}

/// Where the cpuacct and memory controllers are mounted as cgroup v1, if
/// they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
}

impl Hierarchies {
    /// From the host's mount table.
    pub fn of_host() -> Self {
        Self::parse(&fs::read_to_string("/proc/self/mounts").unwrap_or_default())
    }

    /// From `/proc/mounts` text: `cgroup` mounts whose options name the
    /// controller.
    pub fn parse(mounts: &str) -> Self {
        let mut found = Self::default();
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, target, "cgroup", options, ..] = fields.as_slice() else {
                continue;
            };
            for option in options.split(',') {
                match option {
                    "cpuacct" => found.cpuacct = Some(PathBuf::from(target)),
                    "memory" => found.memory = Some(PathBuf::from(target)),
                    _ => {}
                }
            }
        }
        found
    }
}

/// The usage of the cgroup v2 directory `dir` (a pod's or a container's).
pub fn cgroup_usage(dir: &Path, hierarchies: &Hierarchies) -> Usage {
    let v1 = |hierarchy: &Option<PathBuf>| {
        let relative = v2_relative(dir)?;
        let relative = relative.strip_prefix("/").ok()?.to_owned();
        Some(hierarchy.as_ref()?.join(relative))
    };
    let cpu_ns = match v1(&hierarchies.cpuacct) {
        Some(v1_dir) => read_number(&v1_dir.join("cpuacct.usage")),
        None => stat_field(&dir.join("cpu.stat"), "usage_usec").map(|usec| usec * 1000),
    };
    let (memory_bytes, inactive) = match v1(&hierarchies.memory) {
        Some(v1_dir) => (
            read_number(&v1_dir.join("memory.usage_in_bytes")),
            stat_field(&v1_dir.join("memory.stat"), "total_inactive_file"),
        ),
        None => (
            read_number(&dir.join("memory.current")),
            stat_field(&dir.join("memory.stat"), "inactive_file"),
        ),
    };
    Usage {
        cpu_ns,
        memory_bytes,
        working_set_bytes: memory_bytes.map(|usage| working_set(usage, inactive)),
    }
}

/// What the whole host has used (`/proc/stat`, `/proc/meminfo`): every
/// node of a local cluster shares it.
pub fn host_usage() -> Usage {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let (memory_bytes, working_set_bytes) = match host_memory(&meminfo) {
        Some((usage, working)) => (Some(usage), Some(working)),
        None => (None, None),
    };
    Usage {
        cpu_ns: host_cpu_ns(&stat, u64::try_from(ticks_per_second).unwrap_or(100)),
        memory_bytes,
        working_set_bytes,
    }
}

/// The CPU time of `/proc/stat`'s `cpu` line that was not idle (user, nice,
/// system, irq, softirq, steal), in nanoseconds.
pub fn host_cpu_ns(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(busy * (1_000_000_000 / ticks_per_second.max(1)))
}

/// Memory in use (total less free) and its working set (less the inactive
/// page cache), in bytes, from `/proc/meminfo`.
pub fn host_memory(meminfo: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    let used = kib("MemTotal")?.saturating_sub(kib("MemFree")?);
    let inactive = kib("Inactive(file)");
    Some((used, working_set(used, inactive)))
}

fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `key value` line of a cgroup stat file.
fn stat_field(path: &Path, key: &str) -> Option<u64> {
    parse_stat_field(&fs::read_to_string(path).ok()?, key)
}

pub fn parse_stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_controllers_of_a_hybrid_host() {
        let mounts = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
        assert_eq!(
            Hierarchies::parse(mounts),
            Hierarchies {
                cpuacct: Some("/sys/fs/cgroup/cpu,cpuacct".into()),
                memory: Some("/sys/fs/cgroup/memory".into()),
            }
        );
        let pure_v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(Hierarchies::parse(pure_v2), Hierarchies::default());
    }

    #[test]
    fn reads_stat_files() {
        let v2_cpu = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(parse_stat_field(v2_cpu, "usage_usec"), Some(1500));
        assert_eq!(parse_stat_field(v2_cpu, "usage"), None);
        let v1_memory = "cache 4096\ninactive_file 100\ntotal_inactive_file 8192\n";
        assert_eq!(
            parse_stat_field(v1_memory, "total_inactive_file"),
            Some(8192)
        );
        assert_eq!(parse_stat_field(v1_memory, "inactive_file"), Some(100));
        assert_eq!(working_set(10_000, Some(8192)), 1808);
        assert_eq!(working_set(100, Some(8192)), 0);
    }

    #[test]
    fn reads_a_v2_cgroup_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cpu.stat"), "usage_usec 2000\n").unwrap();
        fs::write(dir.path().join("memory.current"), "10000\n").unwrap();
        fs::write(dir.path().join("memory.stat"), "inactive_file 1000\n").unwrap();
        let usage = cgroup_usage(dir.path(), &Hierarchies::default());
        assert_eq!(
            usage,
            Usage {
                cpu_ns: Some(2_000_000),
                memory_bytes: Some(10_000),
                working_set_bytes: Some(9_000),
            }
        );
    }

    #[test]
    fn reads_the_host() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        // user + nice + system + irq + softirq + steal, at 100 ticks a second.
        assert_eq!(host_cpu_ns(stat, 100), Some(171 * 10_000_000));
        let meminfo =
            "MemTotal:        1000 kB\nMemFree:          200 kB\nInactive(file):   300 kB\n";
        assert_eq!(host_memory(meminfo), Some((800 * 1024, 500 * 1024)));
    }
}
