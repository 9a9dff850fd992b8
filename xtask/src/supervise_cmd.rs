//! `cargo xtask supervise` (hidden; `up` starts it detached): the local
//! cluster's daemons under the harness's supervisor, each where `up` has
//! always run it: etcd and skiff-control in the root netns on the
//! control-plane address, each agent in its node's netns. Why a supervisor
//! of our own and not systemd: see `skiff_tests::supervise`.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::Result;
use clap::Args;
use skiff_tests::{
    CONTROL_PLANE_IP, Cluster, Component, EtcdConfig, Prefix, SupervisorDirs, agent_command,
    cluster_ca_path, control_command,
    control_planes::{
        agent_etcd_tls_args, control_etcd_tls_args, enable_etcd_auth, issue_etcd_certificates,
        member_tls,
    },
    dual_stack_control_args, kubeconfig_path, node_credentials, run_pods_args, supervise,
};

use crate::cluster_files::{
    self, CONTROL, ETCD, agent_name, agent_state_dir, control_data_dir, etcd_data_dir,
    kept_control_plane_count,
};
use crate::encryption_config;
use crate::ha_cluster;

/// skiff-control's API port on the control-plane address.
pub const API_PORT: u16 = 6443;

#[derive(Args)]
pub struct SuperviseArgs {
    /// The number of nodes `up` built.
    #[arg(long)]
    pub nodes: u16,
    /// The number of control-plane members (1: etcd and skiff-control in
    /// the root netns; more: the HA cluster's members).
    #[arg(long, default_value_t = 1)]
    pub control_planes: u16,
    /// IPv6 too: skiff-control's IPv6 service range and cluster CIDR, the
    /// agents' IPv6 pod CIDRs (`up --dual-stack` wired the nodes for it).
    #[arg(long)]
    pub dual_stack: bool,
}

/// The etcd of the local cluster: standard ports, data under /var/lib/skiff,
/// TLS with client certificates from skiff-control's PKI (as the HA
/// members'), so that its users are the certificates' (`root` for
/// skiff-control and the operator's tools, read-mostly `skiff-agent` for
/// the agents: `skiff_etcd::auth`).
pub fn etcd_config() -> EtcdConfig {
    EtcdConfig::standard(etcd_data_dir(), &[CONTROL_PLANE_IP])
        .with_tls(member_tls(&control_data_dir()))
}

pub fn api_addr() -> SocketAddr {
    SocketAddr::from((CONTROL_PLANE_IP, API_PORT))
}

/// The kubeconfig `up` hands out: skiff-control's, or in an HA cluster the
/// first member's.
pub fn kubeconfig() -> PathBuf {
    if kept_control_plane_count() > 1 {
        ha_cluster::kubeconfig()
    } else {
        kubeconfig_path(&control_data_dir())
    }
}

pub fn supervise_cmd(args: &SuperviseArgs) -> Result<()> {
    let prefix = Prefix::fixed();
    let cluster_cgroup = skiff_tests::cgroup2_root()?.join(prefix.as_str());
    if args.control_planes > 1 {
        return supervise_ha(args, &prefix, &cluster_cgroup);
    }
    let dual_stack = args.dual_stack;
    let etcd = etcd_config();
    let mut components = vec![
        Component {
            name: ETCD.to_owned(),
            // etcd makes its data directory itself; its certificates are
            // issued (the PKI made, on the first start) before every start.
            command: Box::new({
                let etcd = etcd.clone();
                move || {
                    issue_etcd_certificates(&control_data_dir(), CONTROL_PLANE_IP)?;
                    Ok(etcd.command())
                }
            }),
            cgroup: Some(cluster_cgroup.join(ETCD)),
            ready: Box::new({
                let port = etcd.client_port;
                move || answers((Ipv4Addr::LOCALHOST, port))
            }),
        },
        Component {
            name: CONTROL.to_owned(),
            command: Box::new({
                let endpoints = [etcd.local_endpoint()];
                move || {
                    let data_dir = control_data_dir();
                    // Before skiff-control serves: no agent reaches etcd
                    // with more than its role allows.
                    enable_etcd_auth(&data_dir, &endpoints, None)?;
                    let mut flags = node_credentials::control_args(&data_dir);
                    flags.extend(control_etcd_tls_args(&data_dir));
                    flags.extend(encryption_config::control_args(&data_dir)?);
                    if dual_stack {
                        flags.extend(dual_stack_control_args());
                    }
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    control_command(api_addr(), &endpoints, &data_dir, &flags)
                }
            }),
            cgroup: Some(cluster_cgroup.join(CONTROL)),
            ready: Box::new(|| answers(api_addr()) && kubeconfig().exists()),
        },
    ];
    for node in Cluster::persisted_nodes(&prefix, usize::from(args.nodes))? {
        let name = agent_name(node.name());
        let cgroup = cluster_cgroup.join(&name);
        let endpoints = etcd.endpoints();
        components.push(Component {
            name,
            command: Box::new(move || {
                let mut command = agent_command(&node, &endpoints)?;
                command.args(agent_etcd_tls_args(&control_data_dir()));
                let ca = cluster_ca_path(&control_data_dir());
                let state_dir = agent_state_dir(node.name());
                command.args(run_pods_args(&node, &state_dir, &ca, dual_stack));
                let token = node_credentials::token_file(&control_data_dir());
                let server = format!("https://{}", api_addr());
                node_credentials::write_bootstrap_kubeconfig(&state_dir, &token, &ca, &server)?;
                command.args(node_credentials::agent_args(&state_dir));
                Ok(command)
            }),
            // Its own, outside the node's: the agent's connections need no
            // service translation.
            cgroup: Some(cgroup),
            ready: Box::new(|| true),
        });
    }
    match supervise(
        components,
        SupervisorDirs {
            run_dir: cluster_files::run_dir(),
            log_dir: cluster_files::log_dir(),
        },
    )? {}
}

/// The HA cluster's daemons: each member's etcd and skiff-control, then
/// the agents, which reach every member's etcd over TLS.
fn supervise_ha(
    args: &SuperviseArgs,
    prefix: &Prefix,
    cluster_cgroup: &std::path::Path,
) -> Result<()> {
    let hosts = Cluster::persisted_control_planes(prefix, usize::from(args.control_planes));
    let nodes = Cluster::persisted_nodes(prefix, usize::from(args.nodes))?;
    let node_ips: Vec<Ipv4Addr> = nodes.iter().map(|node| node.ip()).collect();
    let mut components = ha_cluster::member_components(&hosts, &node_ips, cluster_cgroup);
    let endpoints = skiff_tests::control_planes::etcd_endpoints(&hosts);
    let server = ha_cluster::first_member_url(&hosts);
    for node in nodes {
        let name = agent_name(node.name());
        let cgroup = cluster_cgroup.join(&name);
        let endpoints = endpoints.clone();
        let server = server.clone();
        components.push(Component {
            name,
            command: Box::new(move || {
                let mut command = agent_command(&node, &endpoints)?;
                command.args(ha_cluster::agent_etcd_tls_args());
                let ca = ha_cluster::cluster_ca();
                let state_dir = agent_state_dir(node.name());
                command.args(run_pods_args(&node, &state_dir, &ca, false));
                node_credentials::write_bootstrap_kubeconfig(
                    &state_dir,
                    &ha_cluster::bootstrap_token_file(),
                    &ca,
                    &server,
                )?;
                command.args(node_credentials::agent_args(&state_dir));
                Ok(command)
            }),
            cgroup: Some(cgroup),
            ready: Box::new(|| true),
        });
    }
    match supervise(
        components,
        SupervisorDirs {
            run_dir: cluster_files::run_dir(),
            log_dir: cluster_files::log_dir(),
        },
    )? {}
}

/// Something accepts TCP connections on `addr`.
fn answers(addr: impl Into<SocketAddr>) -> bool {
    TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok()
}
