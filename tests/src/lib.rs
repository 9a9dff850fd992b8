//! skiff's local-cluster harness: network namespaces, veths, bridges, routes
//! and cgroups that make a small cluster on one machine (docs/ARCHITECTURE.md,
//! "The local cluster"), plus etcd, process guards and detached daemons to run on it.
//!
//! Safety first: every name starts with the cluster's [`Prefix`], no namespace
//! has a default route, [`Cluster::create`] checks isolation before returning,
//! and dropping a [`Cluster`] (also while a test panics) removes it all.
//!
//! ```no_run
//! use skiff_tests::{Cluster, ClusterSpec};
//! let mut cluster = Cluster::create(ClusterSpec::random(2))?;
//! let pod = cluster.add_pod(1, "web")?;
//! let out = pod.command("ip").args(["-4", "addr"]).output().expect("ip runs");
//! # Ok::<(), skiff_tests::HarnessError>(())
//! ```

mod addressing;
mod agent;
mod binaries;
mod bpffs;
mod cgroup;
mod cluster;
mod cmd;
mod control;
pub mod control_planes;
mod daemon;
mod echo;
mod error;
mod etcd;
mod exec;
mod hosts;
pub mod images;
pub mod iperf3;
mod leftovers;
mod lock;
mod mounts;
mod netns;
pub mod node_credentials;
mod objects;
mod prefix;
mod process;
mod python;
mod safety;
mod scratch;
mod store;
mod supervisor;
mod teardown;
mod testbed;
mod wait;
mod wiring;
mod xdp_peer;

pub use addressing::{
    CONTROL_PLANE_IP, EXT_IP, EXT_IPV6, FABRIC_CIDR, Ipv4Cidr, MAX_CONTROL_PLANES, MAX_NODES,
    MAX_PODS_PER_NODE, POD_SUPERNET, POD_SUPERNET_V6, SERVICE_CIDR, SERVICE_CIDR_V6,
    control_plane_member_ip, dual_stack_control_args, node_ip, node_ipv6, pod_cidr, pod_cidr_v6,
};
pub use agent::{
    AGENT_SOURCE_ENV, AgentSource, agent_command, run_pods_args, sync_count, wait_for_sync,
};
pub use binaries::{
    agent_binary, control_binary, echo_binary, etcd_tool_binary, kubectl_binary, load_binary,
};
pub use bpffs::BPFFS_ROOT;
pub use cgroup::cgroup2_root;
pub use cluster::{Cluster, ClusterSpec};
pub use cmd::output_with_input;
pub use control::{
    cluster_ca_path, control_command, free_local_bind, kubeconfig_path, kubectl, wait_for_api,
};
pub use control_planes::ControlPlanes;
pub use daemon::{Daemon, DaemonSpec};
pub use echo::{CallResult, FailureKind, call, parse_call_output};
pub use error::HarnessError;
pub use etcd::{Etcd, EtcdConfig};
pub use hosts::{Host, Node, Pod};
pub use images::image_dir;
pub use leftovers::{MachineCheck, check_machine};
pub use lock::ClusterLock;
pub use mounts::unmount_below;
pub use objects::{
    EndpointSpec, Hints, PortSpec, ZONE_LABEL, bound_pod, endpoint_slice, endpoint_slice_key, node,
    node_key, service, service_key,
};
pub use prefix::Prefix;
pub use process::ProcessGuard;
pub use python::run_python_script;
pub use scratch::ScratchDir;
pub use store::Store;
pub use supervisor::{CommandBuilder, Component, SupervisorDirs, supervise};
pub use teardown::teardown_prefix;
pub use testbed::{RunningCall, Testbed};
pub use wait::eventually;
