//! A running skiff cluster for end-to-end tests: the netns cluster, a real
//! etcd on the control-plane address, and a real `skiff-agent` on every node.
//! Each agent's log is kept in a file and printed when a test fails.
use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    binaries::{agent_binary, echo_binary},
    cluster::{Cluster, ClusterSpec},
    cmd,
    echo::{CallResult, parse_call_output},
    error::{HarnessError, Result},
    etcd::Etcd,
    hosts::Pod,
    process::ProcessGuard,
};

const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Testbed {
    servers: Vec<ProcessGuard>,
    /// By node index - 1; `None` while that node's agent is stopped.
    agents: Vec<Option<ProcessGuard>>,
    etcd: Etcd,
    log_dir: PathBuf,
    // Last: dropping the cluster tears down what the guards above ran in.
    cluster: Cluster,
}

impl Testbed {
    /// A cluster of `nodes` nodes with etcd and an agent per node, each
    /// agent through its first full sync.
    pub fn start(nodes: usize) -> Result<Testbed> {
        let cluster = Cluster::create(ClusterSpec::random(nodes))?;
        let etcd = Etcd::start(&[cluster.control_plane_ip()])?;
        let log_dir = std::env::temp_dir().join(format!("{}-logs", cluster.prefix().as_str()));
        fs::create_dir_all(&log_dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log_dir.display()), e))?;
        let mut testbed = Testbed {
            servers: Vec::new(),
            agents: (0..nodes).map(|_| None).collect(),
            etcd,
            log_dir,
            cluster,
        };
        for node in 1..=nodes {
            testbed.start_agent(node)?;
        }
        Ok(testbed)
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn agent_log_path(&self, node: usize) -> PathBuf {
        self.log_dir.join(format!("agent-node{node}.log"))
    }

    /// Starts node `node`'s agent (1-based) and waits for its first full sync.
    pub fn start_agent(&mut self, node: usize) -> Result<()> {
        let log_path = self.agent_log_path(node);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError::io(format!("cannot open {}", log_path.display()), e))?;
        let already_synced = self.sync_count(node);
        let host = self.cluster.node(node);
        let mut command = host.command(agent_binary()?);
        command
            .args(["--node-name", host.name()])
            .arg("--etcd")
            .arg(self.etcd.endpoints().join(","))
            .arg("--cgroup")
            .arg(host.cgroup_dir())
            .arg("--bpffs")
            .arg(host.bpffs_dir())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.agents[node - 1] = Some(ProcessGuard::spawn(&mut command)?);

        let deadline = Instant::now() + AGENT_SYNC_TIMEOUT;
        while self.sync_count(node) == already_synced {
            let agent = self.agents[node - 1].as_mut().expect("just started");
            if !agent.is_running() {
                return Err(HarnessError::Environment(format!(
                    "skiff-agent on node{node} exited; its log:\n{}",
                    self.agent_log(node)
                )));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Timeout {
                    what: format!(
                        "node{node}'s agent to sync; its log:\n{}",
                        self.agent_log(node)
                    ),
                    timeout_ms: AGENT_SYNC_TIMEOUT.as_millis(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops node `node`'s agent with SIGKILL: no chance to clean up, as in
    /// a crash or an OOM kill.
    pub fn kill_agent(&mut self, node: usize) {
        self.agents[node - 1] = None;
    }

    pub fn agent_log(&self, node: usize) -> String {
        fs::read_to_string(self.agent_log_path(node)).unwrap_or_default()
    }

    /// How many full syncs node `node`'s agents have logged so far.
    fn sync_count(&self, node: usize) -> usize {
        self.agent_log(node).matches("full sync done").count()
    }

    fn etcdctl(&self) -> Command {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.etcd.local_endpoint());
        command
    }

    /// Writes `object`'s JSON at `key`, as the API server would.
    pub fn put(&self, key: &str, object: &Value) -> Result<()> {
        // JSON objects start with `{`, so etcdctl never takes one for a flag.
        cmd::run(self.etcdctl().args(["put", key, &object.to_string()])).map(drop)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        cmd::run(self.etcdctl().args(["del", key])).map(drop)
    }

    /// Adds a pod on node `node` running `skiff-echo serve --name <name>`
    /// on the given ports.
    pub fn serve(&mut self, node: usize, name: &str, tcp: &[u16], udp: &[u16]) -> Result<Pod> {
        let pod = self.cluster.add_pod(node, name)?;
        self.serve_in(&pod, name, tcp, udp)?;
        Ok(pod)
    }

    /// Runs one more `skiff-echo serve` in an existing pod.
    pub fn serve_in(&mut self, pod: &Pod, name: &str, tcp: &[u16], udp: &[u16]) -> Result<()> {
        let mut command = pod.command(echo_binary()?);
        command.args(["serve", "--name", name]);
        for port in tcp {
            command.arg("--tcp").arg(port.to_string());
        }
        for port in udp {
            command.arg("--udp").arg(port.to_string());
        }
        let server = ProcessGuard::spawn_ready(&mut command, "ready", SERVER_READY_TIMEOUT)?;
        self.servers.push(server);
        Ok(())
    }

    pub fn add_pod(&mut self, node: usize, name: &str) -> Result<Pod> {
        self.cluster.add_pod(node, name)
    }

    /// Runs `skiff-echo call <args>` in `pod` and returns its attempts.
    pub fn call(&self, pod: &Pod, args: &[&str]) -> Result<Vec<CallResult>> {
        let mut command = pod.command(echo_binary()?);
        command.arg("call").args(args);
        parse_call_output(&cmd::run(&mut command)?)
    }

    /// Starts `skiff-echo call <args>` in `pod` in the background; collect
    /// its attempts with [`RunningCall::finish`].
    pub fn call_in_background(&self, pod: &Pod, args: &[&str]) -> Result<RunningCall> {
        let mut command = pod.command(echo_binary()?);
        command.arg("call").args(args).stdout(Stdio::piped());
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            command: cmd::render(&command),
            source,
        })?;
        Ok(RunningCall { child })
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if thread::panicking() {
            for node in 1..=self.agents.len() {
                eprintln!(
                    "---- skiff-agent log, node{node} ----\n{}",
                    self.agent_log(node)
                );
            }
        }
        let _ = fs::remove_dir_all(&self.log_dir);
    }
}

/// A `skiff-echo call` running in the background.
pub struct RunningCall {
    child: std::process::Child,
}

impl RunningCall {
    pub fn finish(self) -> Result<Vec<CallResult>> {
        let output = self
            .child
            .wait_with_output()
            .map_err(|e| HarnessError::io("waiting for skiff-echo call", e))?;
        parse_call_output(&String::from_utf8_lossy(&output.stdout))
    }
}
