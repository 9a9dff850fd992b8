//! The node's kubelet (`--run-pods`): registers this node and keeps its
//! Node object and Lease fresh (`node`), and runs the pods bound to it
//! (`pods`) with their volumes (`volumes`), measures what they use
//! (`stats`), writing through the API server as the node (pod status,
//! Events: `events`) and reading its pods and Services from etcd (`store`).
//! The node's image store (`images`) is managed from the command line.
pub mod events;
pub mod images;
mod missing;
pub mod node;
mod objects;
pub mod pods;
pub mod server;
pub mod stats;
pub mod store;
pub mod volumes;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use tracing::info;

use self::pods::{BridgeAddress, Plumbing, ipam::PodCidrs};
use crate::apiserver::Connection;

/// What the kubelet is started with (from the agent's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// The agent's `--cgroup`: pods' cgroups go below it.
    pub cgroup: PathBuf,
    /// The node's pod CIDRs (IPv6 too on a dual-stack node).
    pub pod_cidrs: PodCidrs,
    pub pod_bridge: String,
    pub pod_netns_prefix: String,
    /// Destinations pods route via the gateway.
    pub pod_routes: Vec<String>,
    /// Where the kubelet API is served.
    pub kubelet_bind: SocketAddr,
    /// The cluster CA the API server's client certificate is checked against.
    pub client_ca_file: PathBuf,
    /// Where pod address allocations, container logs, containers and
    /// the image store are kept.
    pub state_dir: PathBuf,
    pub crashloop_base: Duration,
    /// The cluster DNS server pods' resolv.conf names, if any.
    pub cluster_dns: Option<Ipv4Addr>,
    pub cluster_domain: String,
    /// Time between Node and Lease updates.
    pub heartbeat_interval: Duration,
    /// The node's client for the API server: everything the kubelet
    /// writes goes through it.
    pub api: Connection,
}

/// Registers the node and starts running its pods, in the background.
pub async fn start(config: Config) -> anyhow::Result<()> {
    let Config {
        node_name,
        node_ip,
        etcd,
        cgroup,
        pod_cidrs,
        pod_bridge,
        pod_netns_prefix,
        pod_routes,
        kubelet_bind,
        client_ca_file,
        state_dir,
        crashloop_base,
        cluster_dns,
        cluster_domain,
        heartbeat_interval,
        api,
    } = config;
    let ipam = pods::ipam::Ipam::new(pod_cidrs.ipv4, &state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let logs = pods::Logs::new(&state_dir);
    let listener = tokio::net::TcpListener::bind(kubelet_bind)
        .await
        .with_context(|| format!("serving the kubelet API on {kubelet_bind}"))?;
    let plumbing = Plumbing {
        bridge: pod_bridge.clone(),
        pod_cidrs,
        routes: pod_routes,
    };
    let bridge = &pod_bridge;
    match plumbing
        .fix_bridge_address(&state_dir)
        .with_context(|| format!("fixing the MAC address of --pod-bridge {bridge}"))?
    {
        BridgeAddress::Fixed(address) => {
            info!(%bridge, %address, "pod bridge MAC address fixed: pod veths joining or leaving no longer change the pods' gateway MAC")
        }
        BridgeAddress::AlreadyFixed(address) => {
            info!(%bridge, %address, "pod bridge MAC address was fixed before this restart; left as it is")
        }
    }
    let pods_config = pods::Config {
        node_name: node_name.clone(),
        node_ip,
        netns_prefix: pod_netns_prefix,
        cgroup,
        crashloop_base,
        state_dir: state_dir.clone(),
        dns: pods::Dns {
            server: cluster_dns,
            domain: cluster_domain,
        },
    };
    let stats = stats::Stats::new(
        node_name.clone(),
        pods::cgroup::pods_root(&pods_config.cgroup),
    );
    tokio::spawn(stats.clone().run());
    let served = server::Served {
        stats,
        logs: logs.clone(),
        containers: pods::exec::Containers::new(&pods_config),
        ports: pods::loopback::PodPorts::new(&pods_config),
    };
    let tls_dir = state_dir.clone();
    let (tls_node, tls_ca) = (node_name.clone(), client_ca_file.clone());
    let make_acceptor = move || server::tls::acceptor(&tls_dir, &tls_node, node_ip, &tls_ca);
    tokio::spawn(server::serve(
        listener,
        make_acceptor,
        client_ca_file,
        served,
    ));
    info!(%pod_cidrs, kubelet = %kubelet_bind, state = %state_dir.display(), "running this node's pods");
    let info = node::node_info(
        node_name,
        node_ip,
        pod_cidrs.spec_pod_cidrs(),
        kubelet_bind.port(),
    );
    // Like the service watch, wait for etcd and the API server rather than
    // fail: the node comes up whichever starts first.
    tokio::spawn(async move {
        let api = api.client().await;
        tokio::spawn(node::heartbeat(api.clone(), info, heartbeat_interval));
        let kv = skiff_etcd::kv::Kv::connect_retrying(&etcd).await;
        let store = store::Store::new(kv);
        let ctx = pods::Context::new(pods_config, store, api, ipam, logs, plumbing);
        pods::run(Arc::new(ctx), etcd).await;
    });
    Ok(())
}
