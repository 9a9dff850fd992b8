//! What every pod worker on this node shares: the node's settings, and
//! the etcd reader, the node's API client, address pool, logs, network
//! plumbing and container runtime pods are run with.
use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use super::{cgroup, ipam::Ipam, logs::Logs, netns::Plumbing, oci, resolv::Dns};
use crate::kubelet::store::Store;

/// How this node runs pods (from the agent's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    /// Names of the pods' netns start with this (and then
    /// `-<namespace>.<name>`).
    pub netns_prefix: String,
    /// The agent's `--cgroup`: pods' cgroups go below it.
    pub cgroup: PathBuf,
    pub crashloop_base: Duration,
    /// Where containers' bundles, runc's state, the image store and pods'
    /// volumes are.
    pub state_dir: PathBuf,
    pub dns: Dns,
}

pub struct Context {
    pub config: Config,
    pub store: Store,
    /// The API server as this node: pod status, deletions, Events, the
    /// Secrets, ConfigMaps and claims the pods name, and their
    /// ServiceAccount tokens.
    pub api: kube::Client,
    pub ipam: Ipam,
    pub logs: Logs,
    pub plumbing: Plumbing,
    pub pods_root: PathBuf,
    pub containers: oci::Runtime,
}

impl Context {
    pub fn new(
        config: Config,
        store: Store,
        api: kube::Client,
        ipam: Ipam,
        logs: Logs,
        plumbing: Plumbing,
    ) -> Context {
        Context {
            pods_root: cgroup::pods_root(&config.cgroup),
            containers: oci::Runtime::new(&config.state_dir),
            config,
            store,
            api,
            ipam,
            logs,
            plumbing,
        }
    }
}
