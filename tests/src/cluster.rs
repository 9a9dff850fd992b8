//! A cluster's lifecycle: create it (serialized, checked, isolated), add
//! pods, hand out handles, and tear it all down on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::addressing::{
    CONTROL_PLANE_IP, EXT_IP, MAX_CONTROL_PLANES, MAX_NODES, MAX_PODS_PER_NODE,
    control_plane_member_ip, node_ip, pod_cidr,
};
use crate::bpffs;
use crate::cgroup;
use crate::error::{HarnessError, Result};
use crate::hosts::{Host, Node, Pod};
use crate::lock::ClusterLock;
use crate::netns;
use crate::prefix::Prefix;
use crate::safety;
use crate::teardown;
use crate::wiring;

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub prefix: Prefix,
    /// Number of nodes, 1 ..= [`MAX_NODES`].
    pub nodes: usize,
}

impl ClusterSpec {
    /// A test cluster: fresh random prefix, `nodes` nodes.
    pub fn random(nodes: usize) -> ClusterSpec {
        ClusterSpec {
            prefix: Prefix::random(),
            nodes,
        }
    }
}

/// A running local cluster. Dropping it (also while unwinding from a panic)
/// kills its processes and removes everything it created; see
/// [`crate::teardown_prefix`]. Nodes are numbered from 1, as their names are.
#[derive(Debug)]
pub struct Cluster {
    prefix: Prefix,
    nodes: Vec<Node>,
    ext: Host,
    /// The control-plane members' hosts of an HA cluster, `cp1` first.
    control_planes: Vec<Host>,
    pods: Vec<Pod>,
    cgroup_dir: PathBuf,
    persist: bool,
    // Fields drop after `Drop::drop`: the lock is released once teardown is done.
    _lock: ClusterLock,
}

impl Cluster {
    /// Builds the topology of docs/ARCHITECTURE.md and checks its isolation before
    /// returning. Blocks while another cluster exists in any process; removes
    /// leftovers of test runs that died; refuses to start over a cluster from
    /// `cargo xtask up` or over routes that are not skiff's.
    pub fn create(spec: ClusterSpec) -> Result<Cluster> {
        check_node_count(spec.nodes)?;
        check_root()?;
        Cluster::create_holding(spec, ClusterLock::acquire()?)
    }

    /// [`Cluster::create`] with the cluster lock already held, e.g. taken
    /// over from the supervisor of a broken cluster that `cargo xtask up`
    /// rebuilds ([`ClusterLock::take_over`]), so that no waiting test takes
    /// the lock in between.
    pub fn create_holding(spec: ClusterSpec, lock: ClusterLock) -> Result<Cluster> {
        check_node_count(spec.nodes)?;
        check_root()?;
        // Holding the lock, every test run's leftovers are stale.
        for line in teardown::remove_stale_runs(&spec.prefix)? {
            eprintln!("skiff: removed stale {line}");
        }
        safety::check_root_free(&spec.prefix)?;
        bpffs::ensure_mounted()?;
        let cgroup_dir = cgroup::cgroup2_root()?.join(spec.prefix.as_str());
        let prefix = spec.prefix;
        let nodes = node_handles(&prefix, spec.nodes, &cgroup_dir);
        let ext = ext_host(&prefix);
        // From here on a failure drops `cluster`, which removes what was built.
        let cluster = Cluster {
            prefix,
            nodes,
            ext,
            control_planes: Vec::new(),
            pods: Vec::new(),
            cgroup_dir,
            persist: false,
            _lock: lock,
        };
        cluster.build()?;
        cluster.assert_isolated()?;
        Ok(cluster)
    }

    /// Takes charge of a cluster an earlier process created and persisted
    /// (`cargo xtask up` after its supervisor died): takes the cluster lock,
    /// checks that every part is there ([`Cluster::missing_parts`]) and
    /// isolated, and returns it as if just created, without its pods.
    /// Dropping it tears it down, as for a created one.
    pub fn adopt(spec: ClusterSpec) -> Result<Cluster> {
        check_node_count(spec.nodes)?;
        let lock = ClusterLock::acquire()?;
        let missing = Cluster::missing_parts(&spec.prefix, spec.nodes)?;
        if !missing.is_empty() {
            return Err(HarnessError::NotFound(format!(
                "cluster {} is incomplete: {} missing",
                spec.prefix,
                missing.join(", ")
            )));
        }
        bpffs::ensure_mounted()?;
        let cgroup_dir = cgroup::cgroup2_root()?.join(spec.prefix.as_str());
        let prefix = spec.prefix;
        let cluster = Cluster {
            nodes: node_handles(&prefix, spec.nodes, &cgroup_dir),
            ext: ext_host(&prefix),
            control_planes: Vec::new(),
            prefix,
            pods: Vec::new(),
            cgroup_dir,
            persist: false,
            _lock: lock,
        };
        cluster.assert_isolated()?;
        Ok(cluster)
    }

    /// The hosts of the `count` control-plane members of the HA cluster
    /// `prefix` that a process before this one created and persisted.
    pub fn persisted_control_planes(prefix: &Prefix, count: usize) -> Vec<Host> {
        (1..=count).map(|i| control_plane_host(prefix, i)).collect()
    }

    /// The nodes of the cluster `prefix` with `count` nodes that a process
    /// before this one created and persisted ([`Cluster::persist`]), e.g. for
    /// the supervisor of `cargo xtask up` to start their agents.
    pub fn persisted_nodes(prefix: &Prefix, count: usize) -> Result<Vec<Node>> {
        let cgroup_dir = cgroup::cgroup2_root()?.join(prefix.as_str());
        Ok(node_handles(prefix, count, &cgroup_dir))
    }

    /// What of the topology [`Cluster::create`] builds for `prefix` with
    /// `count` nodes is gone (a netns, the root link, the cgroup), e.g.
    /// after a reboot or a stray `ip netns delete`; empty when it is all
    /// there.
    pub fn missing_parts(prefix: &Prefix, count: usize) -> Result<Vec<String>> {
        let namespaces = netns::list()?;
        let mut missing: Vec<String> = [FABRIC.to_owned(), EXT.to_owned()]
            .into_iter()
            .chain((1..=count).map(node_name))
            .map(|name| prefix.join(&name))
            .filter(|ns| !namespaces.contains(ns))
            .map(|ns| format!("netns {ns}"))
            .collect();
        let root_link = prefix.join(CONTROL_PLANE_LINK);
        if !Path::new("/sys/class/net").join(&root_link).exists() {
            missing.push(format!("link {root_link}"));
        }
        let cgroup_dir = cgroup::cgroup2_root()?.join(prefix.as_str());
        if !cgroup_dir.exists() {
            missing.push(format!("cgroup {}", cgroup_dir.display()));
        }
        Ok(missing)
    }

    fn build(&self) -> Result<()> {
        let fabric = self.prefix.join(FABRIC);
        wiring::fabric(&fabric)?;
        wiring::control_plane(&self.prefix.join(CONTROL_PLANE_LINK), &fabric, &self.nodes)?;
        wiring::host_on_fabric(&fabric, &self.ext, EXT)?;
        cgroup::create(&self.cgroup_dir)?;
        for node in &self.nodes {
            wiring::node(&fabric, node, &self.nodes)?;
            cgroup::create(&node.cgroup_dir)?;
        }
        wiring::service_blackhole()
    }

    /// Adds pod `name` on node `node` (1-based): its own netns with `eth0` on
    /// the node's `cbr0`, the next free address of the node's pod CIDR (from
    /// .2 up), and its cgroup below the node's.
    pub fn add_pod(&mut self, node: usize, name: &str) -> Result<Pod> {
        validate_pod_name(name)?;
        let node = self.node(node).clone();
        let on_node: Vec<&Pod> = self
            .pods
            .iter()
            .filter(|p| p.node_index == node.index)
            .collect();
        if on_node.iter().any(|p| p.name == name) {
            let message = format!("{} already has a pod {name}", node.name());
            return Err(HarnessError::InvalidSpec(message));
        }
        if on_node.len() >= MAX_PODS_PER_NODE {
            return Err(HarnessError::InvalidSpec(format!(
                "{} is full",
                node.name()
            )));
        }
        let host_number = on_node.len() as u32 + 2;
        let pod = Pod {
            name: name.to_owned(),
            node: node.name().to_owned(),
            node_index: node.index,
            ip: node.pod_cidr.host(host_number),
            netns: self.prefix.join(&format!("{}-{name}", node.name())),
            cgroup_dir: node.cgroup_dir.join(name),
        };
        wiring::pod(&node, &pod, host_number)?;
        cgroup::create(&pod.cgroup_dir)?;
        self.pods.push(pod.clone());
        Ok(pod)
    }

    /// Adds the host of control-plane member `i` (1-based) of an HA
    /// cluster: netns `<prefix>-cp<i>` on the fabric at
    /// [`control_plane_member_ip`], or returns it when it is there (a
    /// cluster `cargo xtask up` adopts).
    pub fn add_control_plane(&mut self, i: usize) -> Result<Host> {
        if !(1..=MAX_CONTROL_PLANES).contains(&i) {
            return Err(HarnessError::InvalidSpec(format!(
                "control plane {i}: an HA cluster has 1 ..= {MAX_CONTROL_PLANES}"
            )));
        }
        let host = control_plane_host(&self.prefix, i);
        if !netns::list()?.contains(&host.netns) {
            wiring::host_on_fabric(&self.prefix.join(FABRIC), &host, &host.name)?;
        }
        if !self.control_planes.contains(&host) {
            self.control_planes.push(host.clone());
        }
        Ok(host)
    }

    /// The control-plane members' hosts added so far, `cp1` first.
    pub fn control_planes(&self) -> &[Host] {
        &self.control_planes
    }

    /// Makes the cluster dual-stack: the nodes' IPv6 sides
    /// (`wiring::node_ipv6_side`), again on a cluster that has them, the
    /// outside client's IPv6 address and the root netns's blackhole for the
    /// IPv6 service range.
    pub fn wire_ipv6(&self) -> Result<()> {
        for node in &self.nodes {
            wiring::node_ipv6_side(node, &self.nodes)?;
        }
        wiring::ext_ipv6_side(&self.ext)?;
        wiring::service_blackhole_v6()
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// Node `i`, 1-based (`node(1)` is `node1`).
    ///
    /// # Panics
    /// If there is no such node.
    pub fn node(&self, i: usize) -> &Node {
        let count = self.nodes.len();
        i.checked_sub(1)
            .and_then(|k| self.nodes.get(k))
            .unwrap_or_else(|| panic!("no node {i}: the cluster has nodes 1 ..= {count}"))
    }

    /// All nodes, `node1` first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Pods in the order they were added.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The outside client, 172.30.0.100.
    pub fn ext(&self) -> &Host {
        &self.ext
    }

    /// 172.30.0.254: the root netns end of the control-plane veth.
    pub fn control_plane_ip(&self) -> Ipv4Addr {
        CONTROL_PLANE_IP
    }

    /// `/sys/fs/bpf/<prefix>/node<i>` (1-based).
    pub fn bpffs_dir(&self, node: usize) -> PathBuf {
        self.node(node).bpffs_dir.clone()
    }

    /// `<cgroup2 root>/<prefix>`: every node's and pod's cgroup is below it.
    /// Teardown kills every process in this subtree, so a daemon that should
    /// die with the cluster (e.g. etcd for `cargo xtask up`) can be put in a
    /// cgroup here, outside any node's directory.
    pub fn cgroup_dir(&self) -> &Path {
        &self.cgroup_dir
    }

    /// Checks, with `ip route` (which sends nothing), that no netns of this
    /// cluster can reach an address outside it and that the root netns
    /// blackholes the service CIDR. Runs at the end of [`Cluster::create`] too.
    pub fn assert_isolated(&self) -> Result<()> {
        let mut namespaces = vec![self.prefix.join(FABRIC), self.ext.netns().to_owned()];
        namespaces.extend(self.nodes.iter().map(|n| n.netns().to_owned()));
        namespaces.extend(self.control_planes.iter().map(|h| h.netns().to_owned()));
        namespaces.extend(self.pods.iter().map(|p| p.netns().to_owned()));
        safety::assert_isolated(&namespaces)
    }

    /// Leaves the cluster up after this value and this process are gone (for
    /// `cargo xtask up`); `cargo xtask down`, i.e. [`crate::teardown_prefix`],
    /// removes it. Releases the cluster lock.
    pub fn persist(mut self) {
        self.persist = true;
    }

    /// Makes `cmd`'s child hold the cluster lock too, from its start until
    /// it exits: a persisted cluster's supervisor keeps other clusters
    /// (tests) waiting for as long as this one is up.
    pub fn share_lock_with(&self, cmd: &mut Command) {
        self._lock.share_with(cmd);
    }
}

/// Names (after the prefix) of the netns and root link every cluster has.
const FABRIC: &str = "fabric";
const EXT: &str = "ext";
const CONTROL_PLANE_LINK: &str = "cp";

fn node_name(index: usize) -> String {
    format!("node{index}")
}

fn check_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HarnessError::Environment(
            "creating namespaces, links and cgroups needs root".into(),
        ));
    }
    Ok(())
}

fn check_node_count(nodes: usize) -> Result<()> {
    if (1..=MAX_NODES).contains(&nodes) {
        Ok(())
    } else {
        Err(HarnessError::InvalidSpec(format!(
            "{nodes} nodes: a cluster has 1 ..= {MAX_NODES}"
        )))
    }
}

fn ext_host(prefix: &Prefix) -> Host {
    Host {
        name: EXT.into(),
        ip: EXT_IP,
        netns: prefix.join(EXT),
    }
}

fn control_plane_host(prefix: &Prefix, i: usize) -> Host {
    let name = format!("cp{i}");
    Host {
        ip: control_plane_member_ip(i),
        netns: prefix.join(&name),
        name,
    }
}

fn node_handles(prefix: &Prefix, count: usize, cgroup_dir: &Path) -> Vec<Node> {
    (1..=count)
        .map(|i| {
            let name = node_name(i);
            Node {
                index: i,
                host: Host {
                    ip: node_ip(i),
                    netns: prefix.join(&name),
                    name: name.clone(),
                },
                pod_cidr: pod_cidr(i),
                cgroup_dir: cgroup_dir.join(&name),
                bpffs_dir: bpffs::prefix_dir(prefix).join(&name),
            }
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.persist {
            return;
        }
        // Never panic here: this may run while unwinding from a test's panic.
        if let Err(e) = teardown::teardown(&self.prefix) {
            eprintln!("skiff: tearing down {}: {e}", self.prefix);
        }
    }
}

/// Pod names become netns and cgroup names: keep them to DNS-label-like text.
fn validate_pod_name(name: &str) -> Result<()> {
    let ok = (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(HarnessError::InvalidSpec(format!(
            "pod name {name:?}: use 1-40 of a-z, 0-9 and '-', not at either end"
        )))
    }
}
