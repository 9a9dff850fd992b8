//! Running `skiff-agent` on a node of the harness's cluster, and knowing
//! when it has caught up with etcd.
use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{
    addressing::{
        CLUSTER_DNS_IP, FABRIC_CIDR, FABRIC_CIDR_V6, POD_BRIDGE, POD_SUPERNET, POD_SUPERNET_V6,
        SERVICE_CIDR, SERVICE_CIDR_V6, pod_cidr_v6,
    },
    binaries::agent_binary,
    error::{HarnessError, Result},
    hosts::Node,
    images::image_dir,
};

/// The line the agent logs after each full sync of etcd into its maps.
const SYNC_LINE: &str = "full sync done";

/// `skiff-agent` for `node`, in the node's netns (not in its cgroup: the
/// agent's own connections need no service translation), pinning under the
/// node's bpffs directory, hooking the node's cgroup and the node's `eth0`
/// (its veth onto skiff's fabric) for NodePort traffic, and its pod bridge
/// for pod traffic the socket hooks do not see.
pub fn agent_command(node: &Node, etcd_endpoints: &[String]) -> Result<Command> {
    let mut command = base_command(node)?;
    command.arg("--etcd").arg(etcd_endpoints.join(","));
    Ok(command)
}

/// Where the testbed's agents read the cluster from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentSource {
    /// etcd, straight (the default).
    Etcd,
    /// skiff-control, as `system:kube-proxy` (`--source kube-api`).
    KubeApi,
}

/// The variable that makes the testbed's agents read the API server:
/// `SKIFF_TEST_AGENT_SOURCE=kube-api` (`cargo xtask test` runs the
/// datapath tests once more with it).
pub const AGENT_SOURCE_ENV: &str = "SKIFF_TEST_AGENT_SOURCE";

impl AgentSource {
    /// The source [`AGENT_SOURCE_ENV`] names; panics on any other value
    /// than `etcd` and `kube-api`, so a typo cannot test the wrong one.
    pub fn from_env() -> AgentSource {
        match std::env::var(AGENT_SOURCE_ENV).as_deref() {
            Err(_) | Ok("etcd") => AgentSource::Etcd,
            Ok("kube-api") => AgentSource::KubeApi,
            Ok(other) => panic!("{AGENT_SOURCE_ENV}={other}: expected etcd or kube-api"),
        }
    }
}

/// As [`agent_command`], reading the cluster through the API server with
/// `kubeconfig` instead of etcd; the Ingress proxy (which reads etcd) off.
pub fn kube_api_agent_command(node: &Node, kubeconfig: &Path) -> Result<Command> {
    let mut command = base_command(node)?;
    command
        .args(["--source", "kube-api", "--ingress=false", "--kubeconfig"])
        .arg(kubeconfig);
    Ok(command)
}

fn base_command(node: &Node) -> Result<Command> {
    let mut command = node.command(agent_binary()?);
    command
        .args(["--node-name", node.name()])
        .arg("--cgroup")
        .arg(node.cgroup_dir())
        .arg("--bpffs")
        .arg(node.bpffs_dir())
        .args(["--uplink", "eth0"])
        .args(["--pod-interface", POD_BRIDGE])
        .env("RUST_LOG", "info");
    Ok(command)
}

/// The flags that make `node`'s agent run the pods bound to it: its pod
/// CIDR on `cbr0`, pod netns named `<prefix>-<node>-<namespace>.<name>` (so
/// the cluster's teardown finds them), routes to the other nodes' pods and
/// the fabric (no default route), state (addresses, logs, the image store)
/// in `state_dir`, the images of [`image_dir`] imported at start (build
/// them first: [`crate::images::ensure_built`]), pods' resolv.conf naming
/// the cluster DNS Service, the kubelet API served to
/// the API server's certificate from `cluster_ca`, and the short timings
/// tests need: 1 s heartbeats and a 1 s first
/// CrashLoopBackOff delay instead of the kubelet's 10 s.
///
/// On a dual-stack cluster the node's IPv6 pod CIDR follows its IPv4 one
/// and pods route the other nodes' IPv6 pods via `cbr0` too.
pub fn run_pods_args(
    node: &Node,
    state_dir: &Path,
    cluster_ca: &Path,
    dual_stack: bool,
) -> Vec<std::ffi::OsString> {
    let pod_cidrs = match dual_stack {
        true => format!("{},{}", node.pod_cidr(), pod_cidr_v6(node.index())),
        false => node.pod_cidr().to_string(),
    };
    let mut args: Vec<std::ffi::OsString> = [
        "--run-pods".to_owned(),
        format!("--pod-cidr={pod_cidrs}"),
        format!("--pod-bridge={POD_BRIDGE}"),
        format!("--pod-netns-prefix={}", node.netns()),
        format!("--node-ip={}", node.ip()),
        format!("--pod-route={POD_SUPERNET}"),
        format!("--pod-route={FABRIC_CIDR}"),
        format!("--cluster-dns={CLUSTER_DNS_IP}"),
        "--crashloop-base=1".to_owned(),
        "--heartbeat-interval=1".to_owned(),
    ]
    .map(Into::into)
    .into();
    if dual_stack {
        args.push(format!("--pod-route={POD_SUPERNET_V6}").into());
        args.push(format!("--pod-route={FABRIC_CIDR_V6}").into());
        args.push(format!("--service-cidr={SERVICE_CIDR},{SERVICE_CIDR_V6}").into());
    }
    args.push("--state-dir".into());
    args.push(state_dir.into());
    args.push("--image-dir".into());
    args.push(image_dir().into());
    args.push("--client-ca-file".into());
    args.push(cluster_ca.into());
    args
}

/// How many full syncs the agent logging to `log` has done so far.
pub fn sync_count(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .matches(SYNC_LINE)
        .count()
}

/// Waits until the agent logging to `log` has done more than `syncs_before`
/// full syncs. Fails at once, with the log, if `running` says it exited.
pub fn wait_for_sync(
    log: &Path,
    syncs_before: usize,
    mut running: impl FnMut() -> bool,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while sync_count(log) <= syncs_before {
        let log_text = || fs::read_to_string(log).unwrap_or_default();
        if !running() {
            return Err(HarnessError::Environment(format!(
                "skiff-agent exited; its log ({}):\n{}",
                log.display(),
                log_text()
            )));
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout {
                what: format!(
                    "skiff-agent to sync; its log ({}):\n{}",
                    log.display(),
                    log_text()
                ),
                timeout_ms: timeout.as_millis(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
