//! The benchmark's cluster: two nodes, etcd, an agent per node, a client pod
//! on node 1, ten backend pods on node 2 (so every ClusterIP flow is routed
//! through node 1's forwarding path, where the baselines' rules sit), and a
//! UDP sink pod on each node for the NodePort figures. Dropping it (also on
//! a panic) tears all of it down through the harness's `Cluster`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_tests::{
    CONTROL_PLANE_IP, Cluster, ClusterSpec, DaemonSpec, Etcd, EtcdConfig, Host, Node, Pod, Prefix,
    ProcessGuard, agent_binary, agent_command, load_binary, sync_count, wait_for_sync,
};

use super::catalog::{CRR_PORT, Endpoint, RR_PORT, SKIFF_SERVICE_CIDR};
use crate::sh;

pub const BACKENDS: usize = 10;
const SERVER_READY: Duration = Duration::from_secs(10);
const METRICS_URL: &str = "http://127.0.0.1:10249/metrics";

/// How node 2's agent runs its NodePort programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdpSupport {
    /// `--xdp=native` is on; the XDP variant is measured on node 2.
    Native,
    /// Why the XDP variant cannot be measured.
    Unavailable(String),
}

pub struct Rig {
    pub client: Pod,
    pub backends: Vec<Pod>,
    /// UDP sinks: on node 1 (iptables, nftables, skiff tc) and node 2 (XDP).
    pub sinks: [Pod; 2],
    pub xdp: XdpSupport,
    pub etcd_endpoint: String,
    etcd_endpoints: Vec<String>,
    etcd_pid: u32,
    servers: Vec<ProcessGuard>,
    agents: [Option<ProcessGuard>; 2],
    agent_has_xdp_flag: bool,
    state_dir: PathBuf,
    // Last: the cluster's teardown kills what the guards above ran in.
    cluster: Cluster,
}

impl Rig {
    pub fn start(prefix: Prefix, state_dir: &Path, sync_timeout: Duration) -> Result<Self> {
        let mut cluster = Cluster::create(ClusterSpec { prefix, nodes: 2 })?;
        fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let config = EtcdConfig::on_free_ports(state_dir.join("etcd"), &[CONTROL_PLANE_IP])?;
        // In the cluster's cgroup: its teardown kills etcd too, on a panic
        // or an interrupt as well.
        let etcd_cgroup = cluster.cgroup_dir().join("etcd");
        let etcd = Etcd::start_detached(
            &config,
            DaemonSpec {
                name: "etcd",
                state_dir,
                cgroup: Some(&etcd_cgroup),
            },
        )
        .context("starting etcd")?;

        let client = cluster.add_pod(1, "client")?;
        let backends = (1..=BACKENDS)
            .map(|i| cluster.add_pod(2, &format!("rpc-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let sinks = [cluster.add_pod(1, "sink-1")?, cluster.add_pod(2, "sink-2")?];
        let mut servers = Vec::new();
        for pod in &backends {
            let mut serve = pod.command(load_binary()?);
            serve.args([
                "serve",
                "--crr",
                &CRR_PORT.to_string(),
                "--rr",
                &RR_PORT.to_string(),
            ]);
            servers.push(ProcessGuard::spawn_ready(
                &mut serve,
                "ready",
                SERVER_READY,
            )?);
        }
        let mut iperf = backends[0].command("iperf3");
        iperf
            .args(["-s", "-p", &super::catalog::IPERF_PORT.to_string()])
            .stdout(Stdio::null());
        servers.push(ProcessGuard::spawn(&mut iperf)?);
        // A process for the sinks' lifetime, as a real pod has: the agent
        // finds a pod's namespace through its processes, and maps it for
        // the XDP redirect only then, not afresh at each blast.
        for sink in &sinks {
            let mut hold = sink.command("sleep");
            hold.arg("infinity");
            servers.push(ProcessGuard::spawn(&mut hold)?);
        }

        let help = Command::new(agent_binary()?)
            .arg("--help")
            .output()
            .context("running skiff-agent --help")?;
        let agent_has_xdp_flag = String::from_utf8_lossy(&help.stdout).contains("--xdp");
        let mut rig = Rig {
            client,
            backends,
            sinks,
            xdp: XdpSupport::Unavailable(
                "this skiff-agent has no --xdp flag (the XDP datapath is not merged yet)".into(),
            ),
            etcd_endpoint: config.local_endpoint(),
            etcd_endpoints: config.endpoints(),
            etcd_pid: etcd.pid(),
            servers,
            agents: [None, None],
            agent_has_xdp_flag,
            state_dir: state_dir.to_owned(),
            cluster,
        };
        rig.start_agent(1, sync_timeout)?;
        if rig.agent_has_xdp_flag {
            match rig.start_agent(2, sync_timeout) {
                Ok(()) => rig.xdp = XdpSupport::Native,
                Err(error) => {
                    rig.xdp = XdpSupport::Unavailable(format!(
                        "skiff-agent --xdp=native did not start on node2: {error:#}"
                    ));
                    rig.agent_has_xdp_flag = false;
                    rig.start_agent(2, sync_timeout)?;
                }
            }
        } else {
            rig.start_agent(2, sync_timeout)?;
        }
        Ok(rig)
    }

    pub fn node(&self, index: usize) -> &Node {
        self.cluster.node(index)
    }

    /// The cluster's cgroup: processes in cgroups below it die with the
    /// cluster's teardown.
    pub fn cgroup_dir(&self) -> &Path {
        self.cluster.cgroup_dir()
    }

    pub fn ext(&self) -> &Host {
        self.cluster.ext()
    }

    pub fn backend_endpoints(&self) -> Vec<Endpoint> {
        self.backends.iter().map(endpoint).collect()
    }

    pub fn sink_endpoints(&self) -> [Endpoint; 2] {
        [endpoint(&self.sinks[0]), endpoint(&self.sinks[1])]
    }

    fn agent_log(&self, node: usize) -> PathBuf {
        self.state_dir.join(format!("agent-node{node}.log"))
    }

    /// Starts node `node`'s agent and waits for its first full sync. Node 1
    /// always runs tc (the NodePort programs the baselines share the node
    /// with); node 2 runs XDP when the agent has it.
    pub fn start_agent(&mut self, node: usize, sync_timeout: Duration) -> Result<()> {
        let log_path = self.agent_log(node);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let syncs_before = sync_count(&log_path);
        let mut command = agent_command(self.cluster.node(node), &self.etcd_endpoints)?;
        command.args(["--service-cidr", SKIFF_SERVICE_CIDR]);
        // On loopback, as its metrics: the real kube-proxy serves its own
        // health port on node 1's address in the same netns.
        command.args(["--healthz-bind", "127.0.0.1:10256"]);
        if self.agent_has_xdp_flag {
            command.arg(if node == 2 {
                "--xdp=native"
            } else {
                "--xdp=off"
            });
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let agent = self.agents[node - 1].insert(ProcessGuard::spawn(&mut command)?);
        wait_for_sync(&log_path, syncs_before, || agent.is_running(), sync_timeout)?;
        Ok(())
    }

    /// Kills node `node`'s agent. With `forget_maps`, also removes its pins,
    /// which detaches its programs and frees its maps: the next agent
    /// programs everything from scratch.
    pub fn stop_agent(&mut self, node: usize, forget_maps: bool) -> Result<()> {
        self.agents[node - 1] = None;
        if forget_maps {
            let pins = self.cluster.bpffs_dir(node);
            match fs::remove_dir_all(&pins) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("removing {}", pins.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits until skiff's programs are attached to node `node`'s cgroup or
    /// interfaces (`attached`), or none is: an agent hooks its programs
    /// only after its first full sync, and once an agent's pins are
    /// removed, the kernel releases its links from a work queue.
    pub fn wait_attachment(&self, node: usize, attached: bool, limit: Duration) -> Result<()> {
        let node = self.cluster.node(node);
        let deadline = Instant::now() + limit;
        loop {
            let cgroup = sh::stdout(
                Command::new("bpftool")
                    .args(["cgroup", "show"])
                    .arg(node.cgroup_dir()),
            )?;
            let interfaces = sh::stdout(node.command("bpftool").args(["net", "show"]))?;
            let found = [cgroup, interfaces]
                .iter()
                .any(|out| out.contains("skiff_"));
            if found == attached {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}'s programs were {} after {} s",
                    node.name(),
                    if attached {
                        "not attached"
                    } else {
                        "still attached"
                    },
                    limit.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn agent_pid(&self, node: usize) -> Option<u32> {
        self.agents[node - 1].as_ref().map(ProcessGuard::pid)
    }

    pub fn etcd_pid(&self) -> u32 {
        self.etcd_pid
    }

    /// Node `node`'s agent's /metrics.
    pub fn metrics(&self, node: usize) -> Result<String> {
        let output = self
            .cluster
            .node(node)
            .command("curl")
            .args(["-sf", "--max-time", "10", METRICS_URL])
            .output()
            .context("running curl")?;
        if !output.status.success() {
            bail!(
                "curl {METRICS_URL} in node{node} failed ({})",
                output.status
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The bench's own servers are still up (a dead one would make every
    /// later figure fail in a confusing way).
    pub fn check_servers(&mut self) -> Result<()> {
        if self.servers.iter_mut().all(ProcessGuard::is_running) {
            Ok(())
        } else {
            bail!("a backend server exited")
        }
    }
}

fn endpoint(pod: &Pod) -> Endpoint {
    Endpoint {
        ip: pod.ip(),
        node: pod.node_index(),
    }
}

/// Resident memory of process `pid`, in MB (10^6 bytes), from
/// /proc/PID/status.
pub fn rss_mb(pid: u32) -> Result<f64> {
    status_mb(pid, "VmRSS")
}

/// CPU seconds of every thread of `pid` (run time from
/// /proc/PID/task/*/schedstat, in nanoseconds).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let tasks = format!("/proc/{pid}/task");
    let mut nanos = 0u64;
    for task in fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let schedstat = task?.path().join("schedstat");
        // A thread that exited since the listing no longer counts.
        let Ok(text) = fs::read_to_string(&schedstat) else {
            continue;
        };
        nanos += text
            .split_whitespace()
            .next()
            .and_then(|field| field.parse::<u64>().ok())
            .with_context(|| format!("malformed {}: {text:?}", schedstat.display()))?;
    }
    Ok(nanos as f64 / 1e9)
}

/// A memory figure of /proc/PID/status (`VmRSS`, `VmHWM`...) in MB.
pub fn status_mb(pid: u32, field: &str) -> Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<f64>().ok())
        .map(|kib| kib * 1024.0 / 1e6)
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
