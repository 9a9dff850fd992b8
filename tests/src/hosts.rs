//! Handles on the machines of a cluster: nodes, pods and the outside client.
//! Each can build a `Command` that runs inside its netns.

use std::ffi::OsStr;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::addressing::Ipv4Cidr;
use crate::addressing::POD_BRIDGE;
use crate::cgroup::cgroup2_root;
use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::exec;
use crate::netns;
use crate::prefix::Prefix;

/// A netns with one address on the fabric: the outside client, and the network
/// side of every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: String,
}

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The netns name, as `ip netns list` shows it.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `program` run inside this netns, in the caller's cgroup.
    ///
    /// # Panics
    /// If the netns cannot be opened (the cluster is gone, or we are not root).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        exec::in_netns(program.as_ref(), &netns::path(&self.netns), None)
    }
}

/// One node: a netns with `eth0` on the fabric and a bridge `cbr0` for its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub(crate) index: usize,
    pub(crate) host: Host,
    pub(crate) pod_cidr: Ipv4Cidr,
    pub(crate) cgroup_dir: PathBuf,
    pub(crate) bpffs_dir: PathBuf,
}

impl Node {
    /// 1-based: `node1` has index 1.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `node<index>`, as the node is known to the cluster (and in etcd).
    pub fn name(&self) -> &str {
        self.host.name()
    }

    /// The node address on the fabric: `172.30.0.(10 + index)`.
    pub fn ip(&self) -> Ipv4Addr {
        self.host.ip()
    }

    pub fn netns(&self) -> &str {
        self.host.netns()
    }

    /// `10.244.<index>.0/24`.
    pub fn pod_cidr(&self) -> Ipv4Cidr {
        self.pod_cidr
    }

    /// The address of `cbr0`, the pods' gateway: `10.244.<index>.1`.
    pub fn pod_gateway(&self) -> Ipv4Addr {
        self.pod_cidr.host(1)
    }

    /// The MAC address of `cbr0`: the pods' neighbour entry for their
    /// gateway holds it, so it must not change while they run.
    pub fn pod_bridge_mac(&self) -> Result<String> {
        let shown = cmd::ip_in(self.netns(), &format!("-br link show dev {POD_BRIDGE}"))?;
        // `cbr0  UP  <mac> <flags>`
        Ok(shown
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned())
    }

    /// The cgroup v2 directory holding this node's pods: the node's agent
    /// attaches its socket hooks here.
    pub fn cgroup_dir(&self) -> &Path {
        &self.cgroup_dir
    }

    /// `/sys/fs/bpf/<prefix>/<node>`: where this node's agent pins. Not created
    /// by the harness.
    pub fn bpffs_dir(&self) -> &Path {
        &self.bpffs_dir
    }

    /// `program` run inside the node netns, in the caller's cgroup (so outside
    /// the node's socket hooks: an agent started this way is not translated).
    ///
    /// # Panics
    /// If the netns cannot be opened (the cluster is gone, or we are not root).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.host.command(program)
    }

    /// The value of one series (`name{labels}`) of this node's agent's
    /// `/metrics`, on its metrics port; `None` if it has no such series.
    ///
    /// # Panics
    /// If `curl` cannot run in the node's netns.
    pub fn agent_metric(&self, series: &str) -> Option<u64> {
        let output = self
            .command("curl")
            .args(["-s", "http://127.0.0.1:10249/metrics"])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }
}

/// A pod: its own netns with `eth0` on its node's `cbr0`, and its own cgroup
/// below the node's. Cheap to clone; stays valid as long as the cluster is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) node_index: usize,
    pub(crate) ip: Ipv4Addr,
    pub(crate) netns: String,
    pub(crate) cgroup_dir: PathBuf,
}

impl Pod {
    /// Pod `name` of a running cluster, e.g. one `cargo xtask up` left
    /// running: found by its cgroup (`<cgroup2>/<prefix>/<node>/<name>`),
    /// its address read from its netns.
    pub fn find(prefix: &Prefix, name: &str) -> Result<Pod> {
        let cluster_dir = cgroup2_root()?.join(prefix.as_str());
        let mut known = Vec::new();
        let nodes = fs::read_dir(&cluster_dir).map_err(|e| {
            let what = format!(
                "no cluster {prefix} is up ({}); `cargo xtask up` starts one",
                cluster_dir.display()
            );
            HarnessError::io(what, e)
        })?;
        for node_dir in nodes.flatten() {
            let node = node_dir.file_name().to_string_lossy().into_owned();
            let Some(node_index) = node.strip_prefix("node").and_then(|i| i.parse().ok()) else {
                continue;
            };
            let pods = fs::read_dir(node_dir.path())
                .into_iter()
                .flatten()
                .flatten();
            for pod_dir in pods.filter(|entry| entry.path().is_dir()) {
                let pod_name = pod_dir.file_name().to_string_lossy().into_owned();
                if pod_name == AGENT_PODS {
                    if let Some(pod) = find_agent_pod(prefix, &node, node_index, name, &mut known)?
                    {
                        return Ok(pod);
                    }
                    continue;
                }
                if pod_name != name {
                    known.push(pod_name);
                    continue;
                }
                let netns = prefix.join(&format!("{node}-{name}"));
                let ip = pod_address(&netns)?;
                return Ok(Pod {
                    name: pod_name,
                    node,
                    node_index,
                    ip,
                    netns,
                    cgroup_dir: pod_dir.path(),
                });
            }
        }
        known.sort();
        Err(HarnessError::NotFound(format!(
            "cluster {prefix} has no pod {name:?} (its pods: {})",
            known.join(", ")
        )))
    }

    /// Pod `namespace/name` as node `node`'s agent runs it (`--run-pods`
    /// with the harness's netns prefix, see `run_pods_args`), entered as
    /// its container `container`: its netns, and that container's cgroup.
    pub fn run_by_agent(node: &Node, namespace: &str, name: &str, container: &str) -> Result<Pod> {
        let netns = format!("{}-{namespace}.{name}", node.netns());
        Ok(Pod {
            name: format!("{namespace}.{name}"),
            node: node.name().to_owned(),
            node_index: node.index(),
            ip: pod_address(&netns)?,
            cgroup_dir: node
                .cgroup_dir()
                .join(AGENT_PODS)
                .join(format!("{namespace}.{name}"))
                .join(container),
            netns,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the node the pod runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The 1-based index of the node the pod runs on.
    pub fn node_index(&self) -> usize {
        self.node_index
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn cgroup_dir(&self) -> &Path {
        &self.cgroup_dir
    }

    /// `program` run as this pod: in its cgroup (so the node's socket hooks
    /// see it) and in its netns.
    ///
    /// # Panics
    /// If the netns or the cgroup cannot be opened (the cluster is gone, or we
    /// are not root).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        exec::in_netns(
            program.as_ref(),
            &netns::path(&self.netns),
            Some(&self.cgroup_dir),
        )
    }

    /// `program` run in this pod's netns but outside its cgroup: the socket
    /// hooks do not see it (as a process a runtime started outside the
    /// node's cgroup subtree), so only the per-packet path on the node's
    /// pod interface can take its packets to a Service.
    ///
    /// # Panics
    /// As `command`.
    pub fn command_outside_cgroup(&self, program: impl AsRef<OsStr>) -> Command {
        exec::in_netns(program.as_ref(), &netns::path(&self.netns), None)
    }
}

/// The node cgroup's directory where its agent puts the pods it runs.
const AGENT_PODS: &str = "skiff-pods";

/// The agent-run pod of `node` that `wanted` names, as `namespace/name` or
/// just `name` (in any namespace), entered as its first container. Adds
/// the names it passes over to `known`.
fn find_agent_pod(
    prefix: &Prefix,
    node: &str,
    node_index: usize,
    wanted: &str,
    known: &mut Vec<String>,
) -> Result<Option<Pod>> {
    let dir = cgroup2_root()?
        .join(prefix.as_str())
        .join(node)
        .join(AGENT_PODS);
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        // `<namespace>.<name>`: namespaces hold no dot.
        let dir_name = entry.file_name().to_string_lossy().into_owned();
        let Some((namespace, name)) = dir_name.split_once('.') else {
            continue;
        };
        if wanted != name && wanted != format!("{namespace}/{name}") {
            known.push(format!("{namespace}/{name}"));
            continue;
        }
        let container = fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
            .find(|c| c.path().is_dir())
            .ok_or_else(|| {
                HarnessError::NotFound(format!("pod {namespace}/{name} has no container running"))
            })?;
        let netns = prefix.join(&format!("{node}-{dir_name}"));
        return Ok(Some(Pod {
            name: format!("{namespace}.{name}"),
            node: node.to_owned(),
            node_index,
            ip: pod_address(&netns)?,
            netns,
            cgroup_dir: container.path(),
        }));
    }
    Ok(None)
}

/// The IPv4 address of `eth0` in `netns`.
fn pod_address(netns: &str) -> Result<Ipv4Addr> {
    let output = cmd::ip_in(netns, "-4 -o addr show dev eth0")?;
    output
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| HarnessError::Environment(format!("{netns} has no IPv4 address on eth0")))
}
