//! Resource usage for the kubelet's `/stats/summary` (what metrics-server,
//! and skiff-control's metrics API, read): the node's CPU and memory and
//! those of each pod and container, from their cgroups (`read`). CPU usage
//! as a rate (`usageNanoCores`) needs two readings, so a sampler reads
//! every cgroup every [`SAMPLE_EVERY`] and keeps the last reading of each
//! with the rate since the one before, as cAdvisor's housekeeping does.
pub mod read;

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

use self::read::{Hierarchies, Usage};
use crate::kubelet::store::now_rfc3339;

/// How often the cgroups are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// One reading of a cgroup (or the host).
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    time: String,
    usage: Usage,
    /// CPU used since the reading before, in nanocores.
    nano_cores: Option<u64>,
}

impl Sample {
    fn after(previous: Option<&Sample>, at: Instant, time: String, usage: Usage) -> Sample {
        let nano_cores = previous.and_then(|previous| {
            nano_cores(
                previous.usage.cpu_ns?,
                usage.cpu_ns?,
                at.duration_since(previous.at),
            )
        });
        Sample {
            at,
            time,
            usage,
            nano_cores,
        }
    }

    fn stats(&self) -> UsageStats {
        UsageStats {
            cpu: self.cpu(),
            memory: self.memory(),
        }
    }

    fn cpu(&self) -> Option<CpuStats> {
        Some(CpuStats {
            time: self.time.clone(),
            usage_nano_cores: self.nano_cores,
            usage_core_nano_seconds: Some(self.usage.cpu_ns?),
        })
    }

    fn memory(&self) -> Option<MemoryStats> {
        Some(MemoryStats {
            time: self.time.clone(),
            usage_bytes: Some(self.usage.memory_bytes?),
            working_set_bytes: self.usage.working_set_bytes,
        })
    }
}

/// The CPU rate between two cumulative readings `elapsed` apart, in
/// nanocores (nanoseconds of CPU per second); none across a counter that
/// went back (a cgroup made anew) or no time at all.
pub fn nano_cores(before_ns: u64, now_ns: u64, elapsed: Duration) -> Option<u64> {
    let used = now_ns.checked_sub(before_ns)?;
    let elapsed = elapsed.as_nanos();
    (elapsed > 0)
        .then(|| u64::try_from(u128::from(used) * 1_000_000_000 / elapsed).unwrap_or(u64::MAX))
}

#[derive(Default)]
struct Samples {
    node: Option<Sample>,
    /// By cgroup v2 directory: pods' and containers'.
    cgroups: HashMap<PathBuf, Sample>,
}

/// The sampler and what it has read.
pub struct Stats {
    node_name: String,
    /// `<--cgroup>/skiff-pods`: a directory per pod, one per container in it.
    pods_root: PathBuf,
    hierarchies: Hierarchies,
    samples: Mutex<Samples>,
}

impl Stats {
    pub fn new(node_name: String, pods_root: PathBuf) -> Arc<Stats> {
        Arc::new(Stats {
            node_name,
            pods_root,
            hierarchies: Hierarchies::of_host(),
            samples: Mutex::default(),
        })
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every cgroup every [`SAMPLE_EVERY`], for as long as it runs.
    pub async fn run(self: Arc<Self>) {
        loop {
            let stats = self.clone();
            let _ = tokio::task::spawn_blocking(move || stats.sample()).await;
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    fn sample(&self) {
        let at = Instant::now();
        let time = now_rfc3339();
        let host = read::host_usage();
        let usages: Vec<(PathBuf, Usage)> = pod_cgroups(&self.pods_root)
            .into_iter()
            .flat_map(|(_, pod, containers)| {
                std::iter::once(pod).chain(containers.into_iter().map(|(_, dir)| dir))
            })
            .map(|dir| {
                let usage = read::cgroup_usage(&dir, &self.hierarchies);
                (dir, usage)
            })
            .collect();
        let mut samples = self.samples();
        let node = Sample::after(samples.node.as_ref(), at, time.clone(), host);
        samples.node = Some(node);
        let cgroups = usages
            .into_iter()
            .map(|(dir, usage)| {
                let sample = Sample::after(samples.cgroups.get(&dir), at, time.clone(), usage);
                (dir, sample)
            })
            .collect();
        samples.cgroups = cgroups;
    }

    /// The kubelet's `/stats/summary` from the last readings.
    pub fn summary(&self) -> Summary {
        let samples = self.samples();
        let node = samples.node.as_ref();
        let pods = pod_cgroups(&self.pods_root)
            .into_iter()
            .filter_map(|((namespace, name), pod, containers)| {
                let sample = samples.cgroups.get(&pod)?;
                let containers = containers
                    .into_iter()
                    .filter_map(|(container, dir)| {
                        let sample = samples.cgroups.get(&dir)?;
                        Some(ContainerStats {
                            name: container,
                            usage: sample.stats(),
                        })
                    })
                    .collect();
                Some(PodStats {
                    pod_ref: PodReference { name, namespace },
                    containers,
                    usage: sample.stats(),
                })
            })
            .collect();
        Summary {
            node: NodeStats {
                node_name: self.node_name.clone(),
                usage: UsageStats {
                    cpu: node.and_then(Sample::cpu),
                    memory: node.and_then(Sample::memory),
                },
            },
            pods,
        }
    }
}

type PodCgroup = ((String, String), PathBuf, Vec<(String, PathBuf)>);

/// Each pod's cgroup below `pods_root` (named `<namespace>.<name>`) with
/// its containers', in name order.
fn pod_cgroups(pods_root: &Path) -> Vec<PodCgroup> {
    let directories = |dir: &Path| -> BTreeMap<String, PathBuf> {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| Some((entry.file_name().into_string().ok()?, entry.path())))
            .collect()
    };
    directories(pods_root)
        .into_iter()
        .filter_map(|(slug, pod)| {
            let (namespace, name) = slug.split_once('.')?;
            let containers = directories(&pod).into_iter().collect();
            Some(((namespace.to_owned(), name.to_owned()), pod, containers))
        })
        .collect()
}

/// The kubelet's `stats/v1alpha1` Summary, the fields metrics-server reads.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(flatten)]
    pub usage: UsageStats,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub containers: Vec<ContainerStats>,
    #[serde(flatten)]
    pub usage: UsageStats,
}

#[derive(Debug, Serialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
}

#[derive(Debug, Serialize)]
pub struct ContainerStats {
    pub name: String,
    #[serde(flatten)]
    pub usage: UsageStats,
}

/// The `cpu` and `memory` of a node, pod or container.
#[derive(Debug, Serialize)]
pub struct UsageStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_cpu_time_over_wall_time() {
        // Half a second of CPU in a second: half a core.
        assert_eq!(
            nano_cores(1_000_000_000, 1_500_000_000, Duration::from_secs(1)),
            Some(500_000_000)
        );
        // Two cores busy for 2 s.
        assert_eq!(
            nano_cores(0, 4_000_000_000, Duration::from_secs(2)),
            Some(2_000_000_000)
        );
        assert_eq!(nano_cores(5, 4, Duration::from_secs(1)), None);
        assert_eq!(nano_cores(0, 4, Duration::ZERO), None);
    }

    #[test]
    fn a_sample_needs_one_before_it_for_a_rate() {
        let at = Instant::now();
        let usage = |cpu_ns| Usage {
            cpu_ns: Some(cpu_ns),
            ..Usage::default()
        };
        let first = Sample::after(None, at, "t0".into(), usage(1_000));
        assert_eq!(first.nano_cores, None);
        assert_eq!(first.cpu().unwrap().usage_core_nano_seconds, Some(1_000));
        let second = Sample::after(
            Some(&first),
            at + Duration::from_millis(500),
            "t1".into(),
            usage(250_001_000),
        );
        assert_eq!(second.nano_cores, Some(500_000_000));
        assert!(second.memory().is_none());
    }

    #[test]
    fn summarises_the_pods_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let container = root.path().join("default.web-1").join("app");
        fs::create_dir_all(&container).unwrap();
        fs::write(container.join("cpu.stat"), "usage_usec 10\n").unwrap();
        fs::write(container.join("memory.current"), "4096\n").unwrap();
        fs::create_dir_all(root.path().join("not-a-pod")).unwrap();
        let stats = Stats {
            node_name: "node1".into(),
            pods_root: root.path().to_owned(),
            hierarchies: Hierarchies::default(),
            samples: Mutex::default(),
        };
        stats.sample();
        let summary = serde_json::to_value(stats.summary()).unwrap();
        assert_eq!(summary["node"]["nodeName"], "node1");
        let pods = summary["pods"].as_array().unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods[0]["podRef"],
            serde_json::json!({ "name": "web-1", "namespace": "default" })
        );
        let app = &pods[0]["containers"][0];
        assert_eq!(app["name"], "app");
        assert_eq!(app["cpu"]["usageCoreNanoSeconds"], 10_000);
        assert!(app["cpu"]["usageNanoCores"].is_null());
        assert_eq!(app["memory"]["workingSetBytes"], 4096);
    }
}
