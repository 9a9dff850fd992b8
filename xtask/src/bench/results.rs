//! What a run measured, as written to `bench/results/<date>.json`, and the
//! check that every figure is there.

use std::collections::BTreeMap;

use serde::Serialize;

use super::watch_fanout::WatchFanout;

/// One variant's samples of one figure, taken in interleaved rounds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Samples {
    pub values: Vec<f64>,
    /// Why this variant could not be measured at all in this run (a
    /// feature the agent does not have); `None` when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Rounds that failed, with their error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Samples {
    pub fn median(&self) -> Option<f64> {
        median(&self.values)
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A datapath figure: every variant's samples and which one is the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub baseline: &'static str,
    pub variants: BTreeMap<&'static str, Samples>,
}

impl Figure {
    /// `variant` against the baseline. When both have a sample from every
    /// round, this is the median of the per-round ratios: each pairs two
    /// samples taken seconds apart, so the shared machine's drift between
    /// rounds cancels. A failed round breaks the pairing, and then it is
    /// the ratio of the medians.
    pub fn ratio(&self, variant: &str) -> Option<f64> {
        self.ratio_to(variant, self.baseline)
    }

    /// `variant` against `other`, paired by round as [`Figure::ratio`].
    pub fn ratio_to(&self, variant: &str, other: &str) -> Option<f64> {
        let value = &self.variants.get(variant)?.values;
        let baseline = &self.variants.get(other)?.values;
        if value.len() == baseline.len() && baseline.iter().all(|b| *b > 0.0) {
            let ratios: Vec<f64> = value.iter().zip(baseline).map(|(v, b)| v / b).collect();
            return median(&ratios);
        }
        let (value, baseline) = (median(value)?, median(baseline)?);
        (baseline > 0.0).then(|| value / baseline)
    }
}

/// How a kube-proxy baseline fared at one scale.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BaselineAtScale {
    /// Seconds the full sync took: the real kube-proxy's own measurement of
    /// its first sync (iptables), or the run of `nft -f` (nftables).
    pub sync_seconds: Option<f64>,
    /// Set when the sync had not finished at the run's timeout.
    pub timed_out_after_seconds: Option<f64>,
    /// What was still running then: `iptables-restore` (kube-proxy's sync
    /// was writing its rules) or `nft`; empty when kube-proxy ran nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_running: Vec<String>,
    /// Why it was not loaded at this N (too slow at a smaller one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub connect: Option<Connect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `, iptables-restore still running`, or nothing when nothing was.
pub fn still_running(commands: &[String]) -> String {
    match commands.is_empty() {
        true => String::new(),
        false => format!(", {} still running", commands.join(", ")),
    }
}

/// Connections to the last Service of a scale point, against direct
/// connections to its backends measured in the same rounds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Connect {
    pub per_second: f64,
    pub direct_per_second: f64,
    pub connect_p50_us: f64,
    pub connect_p99_us: f64,
    pub direct_connect_p50_us: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SkiffAtScale {
    /// The agent's own `skiff_last_full_sync_seconds`, programming every
    /// Service from empty maps.
    pub full_sync_seconds: Option<f64>,
    /// p99 of `skiff_change_to_datapath_seconds` over single-Service changes.
    pub change_p99_seconds: Option<f64>,
    pub changes: usize,
    pub agent_rss_mb: Option<f64>,
    /// The anonymous part of the RSS (`RssAnon`): the agent's heap and
    /// stacks, without its binary's text mapped from the page cache, so a
    /// change in either shows apart.
    pub agent_rss_anon_mb: Option<f64>,
    pub connect: Option<Connect>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ScalePoint {
    pub services: usize,
    pub endpoints: usize,
    /// Writing the new Services and EndpointSlices to etcd.
    pub etcd_write_seconds: f64,
    pub etcd_rss_mb: Option<f64>,
    pub skiff: SkiffAtScale,
    pub iptables: BaselineAtScale,
    pub nftables: BaselineAtScale,
}

/// New connections to a pod's address (no Service) from a pod on node 1
/// while skiff holds the sweep's largest N Services, against the same
/// connections on node 1 with skiff's programs detached and its maps freed
/// (a pristine node), alternating round by round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct NoServiceConnects {
    pub services: usize,
    /// Connections per second, one value per round.
    pub loaded_per_second: Vec<f64>,
    pub pristine_per_second: Vec<f64>,
    pub loaded_connect_p50_us: Vec<f64>,
    pub pristine_connect_p50_us: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NoServiceConnects {
    /// Loaded against pristine: the median of the per-round ratios.
    pub fn ratio(&self) -> Option<f64> {
        let ratios: Vec<f64> = self
            .loaded_per_second
            .iter()
            .zip(&self.pristine_per_second)
            .filter(|(_, pristine)| **pristine > 0.0)
            .map(|(loaded, pristine)| loaded / pristine)
            .collect();
        median(&ratios)
    }
}

/// The API's error windows while one control-plane process is killed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HaWindows {
    pub etcd_leader: Option<HaWindow>,
    pub api_server: Option<HaWindow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct HaWindow {
    /// From the first failed call's start to the last one's end.
    pub window_ms: f64,
    pub failed_calls: usize,
    /// etcd's own leader election, or the endpoint lease's TTL.
    pub baseline_ms: Option<f64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct ControlPlane {
    /// The bench cluster's etcd, holding the datapath Services.
    pub etcd_idle_rss_mb: Option<f64>,
    /// skiff-control idle, and the empty etcd beside it, as
    /// skiff-control-bench measures them.
    pub skiff_control_idle_rss_mb: Option<f64>,
    pub skiff_control_etcd_idle_rss_mb: Option<f64>,
    /// Why skiff-control's figure is missing, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skiff_control_unavailable: Option<String>,
}

/// What a packet to no Service costs node 2's uplink programs: nanoseconds
/// per run from the kernel's BPF statistics, one sample per round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PacketCost {
    pub tc_ns: Vec<f64>,
    pub xdp_ns: Vec<f64>,
    /// Why node 2 has no XDP program, if it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_unavailable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Milliseconds, one sample per event timed one at a time (a pod from its
/// creation to Ready, a Service from its creation to its name resolving).
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples_ms: Vec<f64>,
}

impl Latency {
    /// Nearest-rank percentiles of `samples`; `None` without any.
    pub fn of(samples: Vec<f64>) -> Option<Latency> {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p * sorted.len() as f64).ceil() as usize).max(1) - 1;
            sorted.get(index).copied()
        };
        Some(Latency {
            p50_ms: rank(0.50)?,
            p99_ms: rank(0.99)?,
            samples_ms: samples,
        })
    }
}

/// Pod start latency: the agent's runner beside the process runner it
/// replaces, each measured or with why not.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PodStart {
    pub pods: usize,
    pub runner: Measured,
    pub baseline: Measured,
}

/// Leader kill → controllers acting again: milliseconds from the leader's
/// SIGKILL to the standby's first ReplicaSet, against the lease.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LeaderFailover {
    pub lease_ms: f64,
    pub rounds: usize,
    pub takeover: Measured,
}

/// Backup and restore at `services` Services: medians of whole process
/// runs, skiff-control's against etcdctl's alone on the same etcd.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SnapshotTimes {
    pub services: usize,
    /// The etcd snapshot's size.
    pub etcd_mb: Option<f64>,
    pub save_ms: Option<f64>,
    pub save_baseline_ms: Option<f64>,
    pub restore_ms: Option<f64>,
    pub restore_baseline_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Measured {
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Services created through the API one at a time: milliseconds from the
/// create until the name resolves at the agent, and until the ClusterIP
/// accepts a connection, both seen from a pod.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Propagation {
    pub changes: usize,
    pub dns: Measured,
    pub datapath: Measured,
    /// Why the name half cannot be measured in this run (the agent serves
    /// no DNS); `None` when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub date: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub iptables: String,
    /// `kube-proxy --version` of the real kube-proxy run as the iptables
    /// baseline.
    pub kube_proxy: String,
    pub nft: String,
    /// The DNS and Ingress baselines and the HTTP load generator.
    pub dnsmasq: String,
    pub nginx: String,
    pub wrk: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub command: String,
    pub quick: bool,
    pub profile: &'static str,
    pub machine: Machine,
    pub figures: Vec<Figure>,
    pub scale: Vec<ScalePoint>,
    /// Connects to no Service at the sweep's largest N, against a pristine
    /// node.
    pub no_service_connects: Option<NoServiceConnects>,
    /// The parts of the benchmark this run measured (`--only`).
    pub parts: Vec<&'static str>,
    pub control_plane: Option<ControlPlane>,
    /// The no-Service packet cost (`--only packet-cost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_cost: Option<PacketCost>,
    pub pod_start: Option<PodStart>,
    pub leader_failover: Option<LeaderFailover>,
    pub snapshot: Option<SnapshotTimes>,
    /// The API's error windows on the HA cluster (`--only ha`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaWindows>,
    /// skiff's agent against dnsmasq: queries/s, p50, p99.
    pub dns: Vec<Figure>,
    pub dns_propagation: Option<Propagation>,
    /// skiff's Ingress against nginx: requests/s, p50, p99.
    pub ingress: Vec<Figure>,
    pub watch_fanout: Option<WatchFanout>,
    pub notes: Vec<String>,
}

impl Results {
    /// Figures that were not produced: a variant with neither a value nor a
    /// reason it is unavailable, a scale point missing a measurement, a
    /// baseline with neither a time nor a timeout. Values are never judged.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for figure in self.figures.iter().chain(&self.dns).chain(&self.ingress) {
            for (variant, samples) in &figure.variants {
                if samples.values.is_empty() && samples.unavailable.is_none() {
                    missing.push(format!("{} / {variant}: {:?}", figure.key, samples.errors));
                }
            }
        }
        for point in &self.scale {
            let n = point.services;
            let skiff = &point.skiff;
            let checks = [
                ("skiff full sync", skiff.full_sync_seconds.is_some()),
                ("skiff change p99", skiff.change_p99_seconds.is_some()),
                ("skiff agent RSS", skiff.agent_rss_mb.is_some()),
                ("skiff connect", skiff.connect.is_some()),
                ("etcd RSS", point.etcd_rss_mb.is_some()),
            ];
            for (what, present) in checks {
                if !present {
                    missing.push(format!("N={n} {what}: {:?}", skiff.errors));
                }
            }
            for (name, baseline) in [("iptables", &point.iptables), ("nftables", &point.nftables)] {
                let loaded = baseline.sync_seconds.is_some() && baseline.connect.is_some();
                let explained =
                    baseline.timed_out_after_seconds.is_some() || baseline.skipped.is_some();
                if !loaded && !explained {
                    missing.push(format!("N={n} {name}: {:?}", baseline.error));
                }
            }
        }
        if let Some(no_service) = &self.no_service_connects
            && no_service.ratio().is_none()
        {
            missing.push(format!(
                "connects to no Service: {}",
                no_service.error.as_deref().unwrap_or("no round measured")
            ));
        }
        if let Some(control_plane) = &self.control_plane {
            if control_plane.etcd_idle_rss_mb.is_none() {
                missing.push("control plane: etcd idle RSS".into());
            }
            if control_plane.skiff_control_idle_rss_mb.is_none()
                && control_plane.skiff_control_unavailable.is_none()
            {
                missing.push("control plane: skiff-control idle RSS".into());
            }
        }
        if let Some(cost) = &self.packet_cost {
            let xdp_missing = cost.xdp_ns.is_empty() && cost.xdp_unavailable.is_none();
            if cost.tc_ns.is_empty() || xdp_missing {
                missing.push(format!(
                    "no-Service packet cost: {}",
                    cost.error.as_deref().unwrap_or("no sample")
                ));
            }
        }
        if let Some(ha) = &self.ha
            && (ha.etcd_leader.is_none() || ha.api_server.is_none())
        {
            missing.push(format!(
                "ha: {}",
                ha.error.as_deref().unwrap_or("no window")
            ));
        }
        if let Some(pod_start) = &self.pod_start {
            for (name, measured) in [
                ("runner", &pod_start.runner),
                ("baseline", &pod_start.baseline),
            ] {
                if measured.latency.is_none() {
                    missing.push(format!("pod start latency, {name}: {:?}", measured.error));
                }
            }
        }
        if let Some(failover) = &self.leader_failover
            && failover.takeover.latency.is_none()
        {
            missing.push(format!(
                "leader kill → controllers acting: {:?}",
                failover.takeover.error
            ));
        }
        if let Some(snapshot) = &self.snapshot {
            let times = [
                snapshot.save_ms,
                snapshot.save_baseline_ms,
                snapshot.restore_ms,
                snapshot.restore_baseline_ms,
            ];
            if times.iter().any(Option::is_none) {
                missing.push(format!("snapshot save and restore: {:?}", snapshot.error));
            }
        }
        if let Some(propagation) = &self.dns_propagation {
            for (name, measured) in [
                ("name resolves", &propagation.dns),
                ("ClusterIP accepts", &propagation.datapath),
            ] {
                let unavailable = name == "name resolves" && propagation.dns_unavailable.is_some();
                if measured.latency.is_none() && !unavailable {
                    missing.push(format!("Service create → {name}: {:?}", measured.error));
                }
            }
        }
        if let Some(fanout) = &self.watch_fanout {
            missing.extend(fanout.missing());
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_take_the_nearest_rank() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        let latency = Latency::of(samples).unwrap();
        assert_eq!((latency.p50_ms, latency.p99_ms), (10.0, 20.0));
        assert!(Latency::of(Vec::new()).is_none());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_pair_rounds_unless_a_round_failed() {
        let figure = |values: [Vec<f64>; 2]| {
            let [direct, skiff] = values.map(|values| Samples {
                values,
                ..Samples::default()
            });
            Figure {
                key: "tcp",
                title: "",
                unit: "",
                higher_is_better: true,
                baseline: "direct",
                variants: BTreeMap::from([("direct", direct), ("skiff", skiff)]),
            }
        };
        // Round 2 ran slow for both: paired, it reads 1.0 every round.
        let paired = figure([vec![3.0, 2.0, 3.0], vec![3.0, 2.0, 3.0]]);
        assert_eq!(paired.ratio("skiff"), Some(1.0));
        let unpaired = figure([vec![3.0, 2.0, 3.0], vec![3.0, 1.5]]);
        assert_eq!(unpaired.ratio("skiff"), Some(2.25 / 3.0));
    }

    #[test]
    fn a_variant_without_values_or_reason_is_missing() {
        let mut variants = BTreeMap::new();
        variants.insert(
            "direct",
            Samples {
                values: vec![1.0],
                ..Samples::default()
            },
        );
        variants.insert(
            "skiff-xdp",
            Samples {
                unavailable: Some("not merged".into()),
                ..Samples::default()
            },
        );
        variants.insert("skiff-tc", Samples::default());
        let figure = Figure {
            key: "pps",
            title: "",
            unit: "",
            higher_is_better: true,
            baseline: "direct",
            variants,
        };
        assert_eq!(figure.ratio("direct"), Some(1.0));
        let results = Results {
            command: String::new(),
            quick: true,
            profile: "dev",
            machine: Machine {
                date: String::new(),
                kernel: String::new(),
                cpu: String::new(),
                cpus: 2,
                iptables: String::new(),
                kube_proxy: String::new(),
                nft: String::new(),
                dnsmasq: String::new(),
                nginx: String::new(),
                wrk: String::new(),
            },
            figures: vec![figure],
            scale: Vec::new(),
            no_service_connects: None,
            parts: vec!["datapath"],
            control_plane: Some(ControlPlane {
                etcd_idle_rss_mb: Some(20.0),
                skiff_control_unavailable: Some("not built".into()),
                ..ControlPlane::default()
            }),
            packet_cost: None,
            ha: None,
            pod_start: Some(PodStart {
                pods: 1,
                runner: Measured {
                    latency: Latency::of(vec![900.0]),
                    error: None,
                },
                baseline: Measured {
                    latency: Latency::of(vec![40.0]),
                    error: None,
                },
            }),
            leader_failover: None,
            snapshot: Some(SnapshotTimes {
                services: 10,
                save_ms: Some(30.0),
                save_baseline_ms: Some(20.0),
                restore_ms: Some(40.0),
                ..SnapshotTimes::default()
            }),
            dns: Vec::new(),
            dns_propagation: None,
            ingress: Vec::new(),
            watch_fanout: None,
            notes: Vec::new(),
        };
        let missing = results.missing();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[1].starts_with("snapshot save and restore"));
        assert!(missing[0].starts_with("pps / skiff-tc"));
    }
}
