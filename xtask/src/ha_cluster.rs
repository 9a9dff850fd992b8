//! The HA local cluster of `cargo xtask up --control-planes N`: what the
//! supervisor runs for each control-plane member (`cp<i>`, a netns on the
//! fabric): its etcd member, readied first (the PKI created or joined with
//! the token, the member added to etcd; `skiff_tests::control_planes`),
//! then its skiff-control; and the agents' etcd flags for every member.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    time::Duration,
};

use skiff_tests::{
    Component, Host,
    control_planes::{
        API_NODE_PORT, API_PORT, control_command, enable_etcd_auth, etcd_endpoints, in_host,
        member_dir, member_tls, prepare_member, write_front_kubeconfig,
    },
    kubeconfig_path,
};

use crate::cluster_files::{control_planes_dir, member_control_name, member_etcd_name};
use skiff_tests::node_credentials;

/// The kubeconfig `up` writes, naming the one address
/// ([`write_kubeconfig`]).
pub fn kubeconfig() -> PathBuf {
    kubeconfig_path(&control_planes_dir())
}

/// The kubeconfig of member `cp1`, which names its own API server.
pub fn first_member_kubeconfig() -> PathBuf {
    kubeconfig_path(&member_dir(&control_planes_dir(), 1))
}

/// Writes [`kubeconfig`]: the first member's, naming the NodePort in
/// front of the API servers on node1.
pub fn write_kubeconfig() -> anyhow::Result<PathBuf> {
    let front = SocketAddr::from((skiff_tests::node_ip(1), API_NODE_PORT));
    Ok(write_front_kubeconfig(&control_planes_dir(), front)?)
}

/// The cluster CA the members share, for the agents' kubelet API.
pub fn cluster_ca() -> PathBuf {
    skiff_tests::cluster_ca_path(&member_dir(&control_planes_dir(), 1))
}

/// The nodes' bootstrap token, which the first member keeps.
pub fn bootstrap_token_file() -> PathBuf {
    node_credentials::token_file(&member_dir(&control_planes_dir(), 1))
}

/// The first member's API server, where the agents bootstrap and then
/// write their Node and Lease.
pub fn first_member_url(hosts: &[Host]) -> String {
    format!("https://{}:{API_PORT}", hosts[0].ip())
}

/// Each member's etcd, then its skiff-control, `cp1` first: a member
/// joins through the API server of the first, and its etcd joins the
/// members before it.
pub fn member_components(
    hosts: &[Host],
    node_ips: &[Ipv4Addr],
    cluster_cgroup: &Path,
) -> Vec<Component> {
    let dir = control_planes_dir();
    let mut components = Vec::new();
    for (at, host) in hosts.iter().enumerate() {
        let member = member_dir(&dir, at + 1);
        let earlier = hosts[..at].to_vec();
        let etcd_name = member_etcd_name(host.name());
        components.push(Component {
            cgroup: Some(cluster_cgroup.join(&etcd_name)),
            name: etcd_name,
            command: Box::new({
                let (host, member, dir) = (host.clone(), member.clone(), dir.clone());
                let node_ips = node_ips.to_vec();
                move || {
                    let config = prepare_member(&host, &member, &earlier, &dir, &node_ips)?;
                    Ok(in_host(&host, &config.command()))
                }
            }),
            ready: Box::new({
                let addr = SocketAddr::from((host.ip(), 2379));
                move || answers(addr)
            }),
        });
        let control_name = member_control_name(host.name());
        components.push(Component {
            cgroup: Some(cluster_cgroup.join(&control_name)),
            name: control_name,
            command: Box::new({
                let (host, member, all) = (host.clone(), member.clone(), hosts.to_vec());
                let node_ips = node_ips.to_vec();
                let flags = if at == 0 {
                    node_credentials::control_args(&member)
                } else {
                    Vec::new()
                };
                move || {
                    // The first member's etcd runs alone on the first
                    // start: authentication goes on before any server or
                    // agent uses it (again on each start: idempotent).
                    if at == 0 {
                        let own = etcd_endpoints(std::slice::from_ref(&host));
                        enable_etcd_auth(&member, &own, Some(&host))?;
                    }
                    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                    control_command(&host, &member, &all, &node_ips, &flags)
                }
            }),
            // The next member's etcd waits for this server (it joins
            // through it), unless every member has joined before: then
            // this server waits for the next members' etcd (quorum).
            ready: Box::new({
                let addr = SocketAddr::from((host.ip(), API_PORT));
                let last = member_dir(&dir, hosts.len());
                move || {
                    answers(addr) && kubeconfig_path(&member).exists()
                        || member_tls(&last).cert_file.exists()
                }
            }),
        });
    }
    components
}

/// The agents' client identity towards the members' etcd (TLS): etcd
/// user `skiff-agent`'s certificate of the first member's PKI.
pub fn agent_etcd_tls_args() -> Vec<String> {
    skiff_tests::control_planes::agent_etcd_tls_args(&member_dir(&control_planes_dir(), 1))
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
