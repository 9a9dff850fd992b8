//! The datapath figures: ClusterIP throughput, connection rate and
//! request/response latency (direct, the real kube-proxy in iptables mode,
//! kube-proxy's nftables rules, skiff's socket LB), and NodePort packets
//! per second from the outside client (kube-proxy iptables, nftables,
//! skiff tc, skiff XDP to a local and to a remote backend, and the
//! XDP_DROP ceiling beside them). Variants
//! alternate within each round, so a noisy neighbour hits them all alike.

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use anyhow::Result;

use super::{
    catalog::{
        CRR_PORT, IPERF_PORT, Plane, RR_PORT, Svc, XDP_REMOTE_SINK_NODE_PORT, XDP_SINK_NODE_PORT,
    },
    load,
    plan::Plan,
    progress::Progress,
    results::{Figure, Samples},
    rig::{Rig, XdpSupport},
    rules::{Baseline, NodeRules},
    xdp_ceiling::DropCeiling,
};

/// The kube-proxy baselines' copies of the datapath Services.
pub struct BaselineServices {
    pub iptables: Vec<Svc>,
    pub nftables: Vec<Svc>,
}

impl BaselineServices {
    fn of(&self, baseline: Baseline) -> &[Svc] {
        match baseline {
            Baseline::Iptables => &self.iptables,
            Baseline::Nftables => &self.nftables,
        }
    }
}

/// A variant: its name, the baseline it needs loaded on node 1, and where
/// its traffic goes.
struct Variant {
    name: &'static str,
    baseline: Option<Baseline>,
    target: Target,
    unavailable: Option<String>,
}

#[derive(Clone, Copy)]
enum Target {
    /// The first backend pod itself.
    Direct,
    /// A plane's datapath Service (index 0 `rpc`, 1 `iperf`).
    ClusterIp(Plane),
    /// A NodePort on node `node`, delivered to the sink on node `sink`.
    NodePort { node: usize, port: u16, sink: usize },
    /// Node 1's skiff NodePort with every packet dropped at XDP.
    DropCeiling,
}

#[derive(Clone, Copy)]
enum Kind {
    Throughput,
    ConnectionRate,
    Latency,
}

pub fn run(
    rig: &mut Rig,
    plan: &Plan,
    services: &BaselineServices,
    rules: &mut NodeRules,
    drop_object: &Path,
    progress: &Progress,
) -> Vec<Figure> {
    let cluster_ip = [
        variant("direct", None, Target::Direct),
        variant(
            "kube-proxy-iptables",
            Some(Baseline::Iptables),
            Target::ClusterIp(Plane::Iptables),
        ),
        variant(
            "nftables",
            Some(Baseline::Nftables),
            Target::ClusterIp(Plane::Nftables),
        ),
        variant("skiff-socket", None, Target::ClusterIp(Plane::Skiff)),
    ];
    let mut figures = vec![
        figure(
            "clusterip_tcp_gbps",
            "ClusterIP TCP throughput (iperf3)",
            "Gbit/s",
            true,
            "direct",
            &cluster_ip,
        ),
        figure(
            "clusterip_conn_per_s",
            "ClusterIP new connections per second",
            "conn/s",
            true,
            "direct",
            &cluster_ip,
        ),
        figure(
            "clusterip_rr_p50_us",
            "ClusterIP request/response latency p50",
            "µs",
            false,
            "direct",
            &cluster_ip,
        ),
        figure(
            "clusterip_rr_p99_us",
            "ClusterIP request/response latency p99",
            "µs",
            false,
            "direct",
            &cluster_ip,
        ),
    ];
    for kind in [Kind::Throughput, Kind::ConnectionRate, Kind::Latency] {
        for round in 0..plan.rounds {
            for offset in 0..cluster_ip.len() {
                // Each round starts with a different variant.
                let variant = &cluster_ip[(round + offset) % cluster_ip.len()];
                let result = prepare(rules, services, variant)
                    .and_then(|()| measure_cluster_ip(rig, plan, kind, variant));
                record(
                    &mut figures,
                    kind,
                    variant.name,
                    round,
                    plan.rounds,
                    result,
                    progress,
                );
            }
        }
    }

    let xdp_unavailable = match &rig.xdp {
        XdpSupport::Native => None,
        XdpSupport::Unavailable(why) => Some(why.clone()),
    };
    let ceiling = DropCeiling::load(rig, drop_object);
    let node_port = [
        variant(
            "kube-proxy-iptables",
            Some(Baseline::Iptables),
            node1_port(Plane::Iptables),
        ),
        variant(
            "nftables",
            Some(Baseline::Nftables),
            node1_port(Plane::Nftables),
        ),
        variant("skiff-tc", None, node1_port(Plane::Skiff)),
        Variant {
            unavailable: xdp_unavailable.clone(),
            ..variant(
                "skiff-xdp",
                None,
                Target::NodePort {
                    node: 2,
                    port: XDP_SINK_NODE_PORT,
                    sink: 2,
                },
            )
        },
        // Sent back out of node 2's uplink (XDP_TX) to the sink on node 1.
        Variant {
            unavailable: xdp_unavailable,
            ..variant(
                "skiff-xdp-remote",
                None,
                Target::NodePort {
                    node: 2,
                    port: XDP_REMOTE_SINK_NODE_PORT,
                    sink: 1,
                },
            )
        },
        Variant {
            unavailable: ceiling.as_ref().err().map(|error| format!("{error:#}")),
            ..variant(CEILING, None, Target::DropCeiling)
        },
    ];
    let mut pps = figure(
        "nodeport_udp_pps",
        "NodePort UDP packets per second (outside client)",
        "pps",
        true,
        "kube-proxy-iptables",
        &node_port,
    );
    for round in 0..plan.rounds {
        for offset in 0..node_port.len() {
            let variant = &node_port[(round + offset) % node_port.len()];
            if variant.unavailable.is_some() {
                continue;
            }
            let result = prepare(rules, services, variant).and_then(|()| match variant.target {
                Target::NodePort { node, port, sink } => {
                    let target = SocketAddr::from((rig.node(node).ip(), port));
                    load::udp_pps(rig.ext(), &rig.sinks[sink - 1], target, plan.figure_time)
                }
                Target::DropCeiling => {
                    let port = Plane::Skiff.sink_node_port();
                    let target = SocketAddr::from((rig.node(1).ip(), port));
                    let ceiling = ceiling.as_ref().expect("an unavailable variant is skipped");
                    ceiling.measure(rig, target, plan.figure_time)
                }
                Target::Direct | Target::ClusterIp(_) => {
                    unreachable!("NodePort variants target NodePorts")
                }
            });
            let samples = pps
                .variants
                .get_mut(variant.name)
                .expect("every variant has samples");
            match result {
                Ok(value) => {
                    progress.step(format_args!(
                        "NodePort pps round {}/{} {}: {value:.0} pps",
                        round + 1,
                        plan.rounds,
                        variant.name
                    ));
                    samples.values.push(value);
                }
                Err(error) => {
                    progress.step(format_args!(
                        "NodePort pps {}: failed: {error:#}",
                        variant.name
                    ));
                    samples.errors.push(format!("{error:#}"));
                }
            }
        }
    }
    if let Err(error) = rules.clear() {
        progress.step(format_args!("clearing node1's rules failed: {error:#}"));
    }
    figures.push(pps);
    figures
}

fn variant(name: &'static str, baseline: Option<Baseline>, target: Target) -> Variant {
    Variant {
        name,
        baseline,
        target,
        unavailable: None,
    }
}

/// The NodePort figure's ceiling variant.
pub const CEILING: &str = "xdp-drop-ceiling";

fn node1_port(plane: Plane) -> Target {
    Target::NodePort {
        node: 1,
        port: plane.sink_node_port(),
        sink: 1,
    }
}

fn figure(
    key: &'static str,
    title: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    baseline: &'static str,
    variants: &[Variant],
) -> Figure {
    let variants: BTreeMap<&'static str, Samples> = variants
        .iter()
        .map(|variant| {
            let samples = Samples {
                unavailable: variant.unavailable.clone(),
                ..Samples::default()
            };
            (variant.name, samples)
        })
        .collect();
    Figure {
        key,
        title,
        unit,
        higher_is_better,
        baseline,
        variants,
    }
}

/// Loads the variant's baseline on node 1, or empties node 1's ruleset.
fn prepare(rules: &mut NodeRules, services: &BaselineServices, variant: &Variant) -> Result<()> {
    match variant.baseline {
        Some(baseline) if rules.loaded() == Some(baseline) => Ok(()),
        Some(baseline) => rules
            .load(
                baseline,
                services.of(baseline),
                std::time::Duration::from_secs(60),
            )
            .map(drop),
        None => rules.clear(),
    }
}

/// The samples of one ClusterIP measurement: (figure key, value).
fn measure_cluster_ip(
    rig: &Rig,
    plan: &Plan,
    kind: Kind,
    variant: &Variant,
) -> Result<Vec<(&'static str, f64)>> {
    let address = |port: u16, service: u32| match variant.target {
        Target::Direct => SocketAddr::from((rig.backends[0].ip(), port)),
        Target::ClusterIp(plane) => {
            let vip = super::catalog::datapath_vip(plane, service);
            let service_port = match port {
                CRR_PORT => 80,
                RR_PORT => 81,
                other => other,
            };
            SocketAddr::from((vip, service_port))
        }
        Target::NodePort { .. } | Target::DropCeiling => {
            unreachable!("ClusterIP variants have no NodePort")
        }
    };
    let time = plan.figure_time;
    Ok(match kind {
        Kind::Throughput => vec![(
            "clusterip_tcp_gbps",
            load::iperf(&rig.client, address(IPERF_PORT, 1), time)?,
        )],
        Kind::ConnectionRate => vec![(
            "clusterip_conn_per_s",
            load::crr(&rig.client, address(CRR_PORT, 0), time)?.per_second,
        )],
        Kind::Latency => {
            let rr = load::rr(&rig.client, address(RR_PORT, 0), time)?;
            vec![
                ("clusterip_rr_p50_us", rr.p50_us),
                ("clusterip_rr_p99_us", rr.p99_us),
            ]
        }
    })
}

fn record(
    figures: &mut [Figure],
    kind: Kind,
    variant: &'static str,
    round: usize,
    rounds: usize,
    result: Result<Vec<(&'static str, f64)>>,
    progress: &Progress,
) {
    let keys: &[&str] = match kind {
        Kind::Throughput => &["clusterip_tcp_gbps"],
        Kind::ConnectionRate => &["clusterip_conn_per_s"],
        Kind::Latency => &["clusterip_rr_p50_us", "clusterip_rr_p99_us"],
    };
    match result {
        Ok(values) => {
            let mut shown = Vec::new();
            for (key, value) in values {
                let figure = figures
                    .iter_mut()
                    .find(|f| f.key == key)
                    .expect("known figure");
                shown.push(format!("{value:.2} {}", figure.unit));
                figure
                    .variants
                    .entry(variant)
                    .or_default()
                    .values
                    .push(value);
            }
            progress.step(format_args!(
                "{} round {}/{rounds} {variant}: {}",
                keys[0],
                round + 1,
                shown.join(", ")
            ));
        }
        Err(error) => {
            progress.step(format_args!("{} {variant}: failed: {error:#}", keys[0]));
            for key in keys {
                let figure = figures
                    .iter_mut()
                    .find(|f| f.key == *key)
                    .expect("known figure");
                figure
                    .variants
                    .entry(variant)
                    .or_default()
                    .errors
                    .push(format!("{error:#}"));
            }
        }
    }
}
