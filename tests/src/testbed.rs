//! A running skiff cluster for end-to-end tests: the netns cluster, a real
//! etcd on the control-plane address, and a real `skiff-agent` on every node.
//! Each agent's log is kept in a file and printed when a test fails.
use std::{
    fs,
    io::{self, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    agent::{
        AgentSource, agent_command, kube_api_agent_command, run_pods_args, sync_count,
        wait_for_sync,
    },
    binaries::{control_binary, echo_binary},
    cluster::{Cluster, ClusterSpec},
    cmd,
    control::{
        cluster_ca_path, control_command, free_bind, free_local_bind, kubeconfig_path, kubectl,
        wait_for_api,
    },
    echo::{self, CallResult, parse_call_output},
    error::{HarnessError, Result},
    etcd::{Etcd, EtcdConfig},
    hosts::Pod,
    mounts, node_credentials,
    objects::{self, endpoint_slice_key},
    process::ProcessGuard,
    store::Store,
};

const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(15);
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(5);
const CONTROL_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A kubelet's bootstrap: a CSR, its approval and signing, then the Node.
const NODES_REGISTERED_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Testbed {
    servers: Vec<ProcessGuard>,
    /// skiff-control, once [`Testbed::start_control`] ran.
    control: Option<ProcessGuard>,
    /// By node index - 1; `None` while that node's agent is stopped.
    agents: Vec<Option<ProcessGuard>>,
    etcd: Etcd,
    store: Store,
    log_dir: PathBuf,
    /// Whether the agents run their nodes' pods (`--run-pods`).
    run_pods: bool,
    /// Where the agents read the cluster.
    source: AgentSource,
    /// Whether the nodes and their pods have IPv6 addresses too
    /// ([`Testbed::start_dual_stack`]).
    dual_stack: bool,
    /// Where the agents reach skiff-control as their nodes: the
    /// control-plane address, a port chosen once so that a restarted
    /// skiff-control is where the agents' kubeconfigs say.
    agents_api: std::net::SocketAddr,
    // Last: dropping the cluster tears down what the guards above ran in.
    cluster: Cluster,
}

impl Testbed {
    /// A cluster of `nodes` nodes with etcd and an agent per node, each
    /// agent through its first full sync. The agents read etcd, or with
    /// `SKIFF_TEST_AGENT_SOURCE=kube-api` ([`AgentSource::from_env`]) the
    /// API server: see [`Testbed::start_sourced`].
    pub fn start(nodes: usize) -> Result<Testbed> {
        Self::start_sourced(nodes, AgentSource::from_env())
    }

    /// As [`Testbed::start`], the agents reading `source`. For
    /// [`AgentSource::KubeApi`], skiff-control runs first, without its
    /// controllers (they would rewrite the EndpointSlices tests write),
    /// and every agent reads it as `system:kube-proxy`; what a test writes
    /// to etcd ([`Testbed::store`]) reaches the agents through it.
    pub fn start_sourced(nodes: usize, source: AgentSource) -> Result<Testbed> {
        Self::start_from(nodes, false, &[], None, source, false)
    }

    /// As [`Testbed::start`], with agents that also register their nodes
    /// and run the pods bound to them (see [`run_pods_args`]). Their
    /// kubelets write through the API server only, and wait for it: a test
    /// starts it with [`Testbed::start_control`] and the flags it needs
    /// (started here, a second start with other flags would find the first
    /// one's objects). Pods for them are written to etcd
    /// ([`Testbed::store`]) or created through the API, not added with
    /// [`Testbed::add_pod`]: both would hand out the same addresses.
    pub fn start_running_pods(nodes: usize) -> Result<Testbed> {
        Self::start_with(nodes, true, &[])
    }

    /// As [`Testbed::start_running_pods`], without the agents of the nodes
    /// in `later` (1-based): a test starts them with
    /// [`Testbed::start_agent`], as nodes that join a running cluster.
    pub fn start_running_pods_except(nodes: usize, later: &[usize]) -> Result<Testbed> {
        Self::start_with(nodes, true, later)
    }

    /// As [`Testbed::start_running_pods`], on a cluster restored from
    /// `archive` (`skiff-control snapshot save`): etcd starts on the
    /// restored data and [`Testbed::start_control`] on the restored PKI.
    pub fn start_restored(nodes: usize, archive: &Path) -> Result<Testbed> {
        Self::start_from(nodes, true, &[], Some(archive), AgentSource::Etcd, false)
    }

    /// As [`Testbed::start_running_pods`], dual-stack: the nodes have
    /// IPv6 addresses and routes to each other's IPv6 pod CIDRs, and the
    /// agents give every pod an IPv6 address too (`addressing`'s IPv6
    /// plan). The test starts skiff-control with the IPv6 ranges it needs
    /// ([`crate::addressing::dual_stack_control_args`]).
    pub fn start_dual_stack(nodes: usize) -> Result<Testbed> {
        Self::start_from(nodes, true, &[], None, AgentSource::Etcd, true)
    }

    fn start_with(nodes: usize, run_pods: bool, later: &[usize]) -> Result<Testbed> {
        Self::start_from(nodes, run_pods, later, None, AgentSource::Etcd, false)
    }

    fn start_from(
        nodes: usize,
        run_pods: bool,
        later: &[usize],
        archive: Option<&Path>,
        source: AgentSource,
        dual_stack: bool,
    ) -> Result<Testbed> {
        if run_pods {
            crate::images::ensure_built().map_err(|err| {
                HarnessError::Environment(format!("building the images for the agents: {err:#}"))
            })?;
        }
        let cluster = Cluster::create(ClusterSpec::random(nodes))?;
        if dual_stack {
            cluster.wire_ipv6()?;
        }
        let log_dir = std::env::temp_dir().join(format!("{}-logs", cluster.prefix().as_str()));
        fs::create_dir_all(&log_dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log_dir.display()), e))?;
        let listen = [cluster.control_plane_ip()];
        let etcd = match archive {
            None => Etcd::start(&listen)?,
            Some(archive) => Etcd::start_restored(&listen, |config| {
                let report = restore(archive, &control_data_dir(&log_dir), config);
                report
                    .map(|report| eprint!("{report}"))
                    .map_err(io::Error::other)
            })?,
        };
        let mut testbed = Testbed {
            servers: Vec::new(),
            control: None,
            agents: (0..nodes).map(|_| None).collect(),
            store: Store::new(etcd.local_endpoint()),
            etcd,
            log_dir,
            run_pods,
            source,
            dual_stack,
            agents_api: free_bind(cluster.control_plane_ip())?,
            cluster,
        };
        if source == AgentSource::KubeApi {
            testbed.start_control(&["--controllers=false"])?;
        }
        for node in (1..=nodes).filter(|node| !later.contains(node)) {
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

    /// Node `node`'s agent's --state-dir (1-based), with --run-pods: pod
    /// addresses, container logs, the image store.
    pub fn agent_state_dir(&self, node: usize) -> PathBuf {
        self.log_dir.join(format!("state-node{node}"))
    }

    /// Starts node `node`'s agent (1-based) and waits for its first full sync.
    pub fn start_agent(&mut self, node: usize) -> Result<()> {
        self.start_agent_with(node, &[])
    }

    /// As [`Testbed::start_agent`], with `extra` flags after the usual ones.
    pub fn start_agent_with(&mut self, node: usize, extra: &[&str]) -> Result<()> {
        let log_path = self.agent_log_path(node);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError::io(format!("cannot open {}", log_path.display()), e))?;
        let syncs_before = sync_count(&log_path);
        let state = self.agent_state_dir(node);
        let mut command = match self.source {
            AgentSource::Etcd => {
                let mut command = agent_command(self.cluster.node(node), &self.etcd.endpoints())?;
                if self.run_pods {
                    let ca = cluster_ca_path(&self.control_data_dir());
                    command.args(run_pods_args(
                        self.cluster.node(node),
                        &state,
                        &ca,
                        self.dual_stack,
                    ));
                }
                // Written by start_control; until then the agent waits for it.
                command.args(node_credentials::agent_args(&state));
                command
            }
            AgentSource::KubeApi => {
                let kubeconfig = node_credentials::write_kube_proxy_kubeconfig(
                    &state,
                    &self.control_data_dir().join("pki"),
                    &format!("https://{}", self.agents_api),
                )?;
                kube_api_agent_command(self.cluster.node(node), &kubeconfig)?
            }
        };
        // A renewed Ingress certificate within a test's patience, not the
        // kubelet's minute.
        command.arg("--ingress-secret-ttl=1").args(extra);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let agent = self.agents[node - 1].insert(ProcessGuard::spawn(&mut command)?);
        wait_for_sync(
            &log_path,
            syncs_before,
            || agent.is_running(),
            AGENT_SYNC_TIMEOUT,
        )
    }

    /// Stops node `node`'s agent with SIGKILL: no chance to clean up, as in
    /// a crash or an OOM kill.
    pub fn kill_agent(&mut self, node: usize) {
        self.agents[node - 1] = None;
    }

    /// Runs `argv` in a running container of a pod on node `node`, with
    /// `runc exec` on the agent's runc state.
    pub fn exec_in_container(
        &self,
        node: usize,
        pod: (&str, &str),
        container: &str,
        argv: &[&str],
    ) -> Result<std::process::Output> {
        let (namespace, name) = pod;
        std::process::Command::new("runc")
            .arg("--root")
            .arg(self.agent_state_dir(node).join("runc"))
            .arg("exec")
            .arg(format!("{namespace}_{name}_{container}"))
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::io("running runc exec", e))
    }

    pub fn agent_log(&self, node: usize) -> String {
        fs::read_to_string(self.agent_log_path(node)).unwrap_or_default()
    }

    /// Starts skiff-control (API server, scheduler, controllers) on a free
    /// loopback port with `extra` flags, and waits until it serves; it also
    /// serves the agents on the control-plane address, and each node's
    /// agent gets a bootstrap kubeconfig for it (`node_credentials`).
    /// Returns the kubeconfig it wrote; [`Testbed::kubectl`] uses it.
    pub fn start_control(&mut self, extra: &[&str]) -> Result<PathBuf> {
        let agents = format!("--bind={}", self.agents_api);
        self.start_control_with(free_local_bind()?, &[&agents], extra)
    }

    /// As [`Testbed::start_control`], serving first on the agents' address
    /// and leasing it to the `kubernetes` Service's EndpointSlice
    /// (`--endpoint-reconciler-type=lease`), so that pods reach the API
    /// server at that Service's ClusterIP.
    pub fn start_control_for_pods(&mut self, extra: &[&str]) -> Result<PathBuf> {
        self.start_control_with(
            self.agents_api,
            &["--endpoint-reconciler-type=lease"],
            extra,
        )
    }

    fn start_control_with(
        &mut self,
        bind: std::net::SocketAddr,
        flags: &[&str],
        extra: &[&str],
    ) -> Result<PathBuf> {
        // One at a time: the agents' address is this one's.
        self.stop_control();
        let data_dir = self.control_data_dir();
        let mut all = node_credentials::control_args(&data_dir);
        all.extend(flags.iter().chain(extra).map(|flag| (*flag).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (control, kubeconfig) = self.spawn_control("control", bind, &all)?;
        self.control = Some(control);
        let token = node_credentials::token_file(&data_dir);
        let ca = cluster_ca_path(&data_dir);
        let server = format!("https://{}", self.agents_api);
        for node in 1..=self.agents.len() {
            let state = self.agent_state_dir(node);
            node_credentials::write_bootstrap_kubeconfig(&state, &token, &ca, &server)?;
        }
        if self.source == AgentSource::KubeApi {
            self.remove_control_services()?;
        }
        // Without controllers nothing approves the kubelets' certificates
        // until another member leads (`start_another_control`).
        let approves = !extra.contains(&"--controllers=false");
        if self.run_pods && approves {
            self.wait_for_registered_nodes()?;
        }
        Ok(kubeconfig)
    }

    /// Removes the Services skiff-control makes at its start
    /// (`default/kubernetes`, `kube-system/kube-dns` on the ClusterIP the
    /// tests' own Services use, `kube-system/skiff-ingress`), so that
    /// kube-api agents program what a test writes and nothing else, as etcd
    /// agents (with no skiff-control) do. Through the API, which frees
    /// their ClusterIPs for the next start to take again.
    fn remove_control_services(&self) -> Result<()> {
        self.run_kubectl(
            &[
                "delete",
                "service",
                "-n",
                "default",
                "kubernetes",
                "--ignore-not-found",
            ],
            "",
        )?;
        self.run_kubectl(
            &[
                "delete",
                "service",
                "-n",
                "kube-system",
                "kube-dns",
                "skiff-ingress",
                "--ignore-not-found",
            ],
            "",
        )?;
        self.store
            .delete(&endpoint_slice_key("default", "kubernetes"))
    }

    /// Waits until every running agent's Node exists: a kubelet registers
    /// only once it has its certificate from the API server, and tests
    /// address the nodes (labels, taints) as soon as it serves.
    fn wait_for_registered_nodes(&self) -> Result<()> {
        let running: Vec<String> = (1..=self.agents.len())
            .filter(|node| self.agents[node - 1].is_some())
            .map(|node| self.cluster.node(node).name().to_owned())
            .collect();
        let deadline = Instant::now() + NODES_REGISTERED_TIMEOUT;
        for name in &running {
            while self.run_kubectl(&["get", "node", name], "").is_err() {
                if Instant::now() > deadline {
                    return Err(HarnessError::Timeout {
                        what: format!("node {name} to register through the API server"),
                        timeout_ms: NODES_REGISTERED_TIMEOUT.as_millis(),
                    });
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Stops the skiff-control of [`Testbed::start_control`] (to start it
    /// again with other flags).
    pub fn stop_control(&mut self) {
        self.control = None;
    }

    /// Starts one more skiff-control on the same etcd (data directory and
    /// log `<name>` under the testbed's), as another control-plane member,
    /// and waits until it serves. The caller holds it (and may kill it);
    /// the kubeconfig it returns reaches this member. When
    /// [`Testbed::start_control`]'s PKI exists, the member shares its CA and
    /// ServiceAccount key, as members of one cluster do: the certificates
    /// it signs for kubelets are then good at the API server they call.
    pub fn start_another_control(
        &self,
        name: &str,
        extra: &[&str],
    ) -> Result<(ProcessGuard, PathBuf)> {
        let shared = self.control_data_dir().join("pki");
        if shared.exists() {
            let pki = self.log_dir.join(name).join("pki");
            fs::create_dir_all(&pki)
                .map_err(|e| HarnessError::io(format!("cannot create {}", pki.display()), e))?;
            for file in ["ca.crt", "ca.key", "sa.key", "sa.pub"] {
                fs::copy(shared.join(file), pki.join(file)).map_err(|e| {
                    HarnessError::io(format!("cannot copy {file} to {}", pki.display()), e)
                })?;
            }
        }
        self.spawn_control(name, free_local_bind()?, extra)
    }

    fn spawn_control(
        &self,
        name: &str,
        bind: std::net::SocketAddr,
        extra: &[&str],
    ) -> Result<(ProcessGuard, PathBuf)> {
        let log_path = self.log_dir.join(format!("{name}.log"));
        let log = fs::File::create(&log_path)
            .map_err(|e| HarnessError::io(format!("cannot create {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io(format!("cannot open {}", log_path.display()), e))?;
        let data_dir = self.log_dir.join(name);
        let mut command = control_command(bind, &[self.etcd.local_endpoint()], &data_dir, extra)?;
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let mut control = ProcessGuard::spawn(&mut command)?;
        let kubeconfig = kubeconfig_path(&data_dir);
        wait_for_api(&kubeconfig, || control.is_running(), CONTROL_READY_TIMEOUT)?;
        Ok((control, kubeconfig))
    }

    /// The process ids of etcd and of the skiff-control of
    /// [`Testbed::start_control`]: the control plane, for tests that stop it.
    pub fn control_plane_pids(&self) -> Vec<u32> {
        let control = self.control.as_ref().map(ProcessGuard::pid);
        std::iter::once(self.etcd.pid()).chain(control).collect()
    }

    /// `kubectl` against the skiff-control of [`Testbed::start_control`].
    pub fn kubectl(&self) -> Result<std::process::Command> {
        kubectl(&kubeconfig_path(&self.control_data_dir()))
    }

    /// The API server's client certificate and key for node agents' kubelet
    /// API (made by [`Testbed::start_control`]): what `curl --cert --key`
    /// needs to call an agent as the API server does.
    pub fn kubelet_client_identity(&self) -> [PathBuf; 2] {
        let pki = self.control_data_dir().join("pki");
        ["crt", "key"].map(|ext| pki.join(format!("apiserver-kubelet-client.{ext}")))
    }

    /// The nodes' bootstrap token, which [`Testbed::start_control`] has
    /// skiff-control keep.
    pub fn bootstrap_token_file(&self) -> PathBuf {
        node_credentials::token_file(&self.control_data_dir())
    }

    /// skiff-control's data directory (its PKI and kubeconfig).
    fn control_data_dir(&self) -> PathBuf {
        control_data_dir(&self.log_dir)
    }

    /// `skiff-control snapshot save <archive>` of this cluster's etcd and
    /// skiff-control's PKI; its report.
    pub fn save_snapshot(&self, archive: &Path) -> Result<String> {
        cmd::run(
            Command::new(control_binary()?)
                .args(["snapshot", "save"])
                .arg(archive)
                .arg("--etcd")
                .arg(self.etcd.local_endpoint())
                .arg("--data-dir")
                .arg(self.control_data_dir()),
        )
    }

    /// `skiff-control secrets re-encrypt` with `config` on this cluster's
    /// etcd; its report.
    pub fn reencrypt_secrets(&self, config: &Path) -> Result<String> {
        cmd::run(
            Command::new(control_binary()?)
                .args(["secrets", "re-encrypt", "--encryption-provider-config"])
                .arg(config)
                .arg("--etcd")
                .arg(self.etcd.local_endpoint()),
        )
    }

    /// Runs kubectl with `args` and `input` on its stdin; its stdout, or
    /// an error quoting its stderr.
    pub fn run_kubectl(&self, args: &[&str], input: &str) -> Result<String> {
        crate::cmd::run_with_input(self.kubectl()?.args(args), input)
    }

    /// [`Testbed::run_kubectl`] that must succeed: its stdout; panics
    /// with its stderr.
    pub fn kubectl_ok(&self, args: &[&str], input: &str) -> String {
        self.run_kubectl(args, input)
            .unwrap_or_else(|err| panic!("kubectl {args:?} failed: {err:#}"))
    }

    /// `kubectl <args> -o json`, parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&args, "")).expect("kubectl prints JSON")
    }

    /// The etcd the agents watch.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Polls the object at `key` until `test` passes; panics with the last
    /// version seen once `timeout` has passed (the agents' logs follow, from
    /// drop).
    pub fn wait_for_stored(
        &self,
        key: &str,
        what: &str,
        timeout: Duration,
        test: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let object = self.store.get(key).unwrap();
            if let Some(object) = object.as_ref().filter(|o| test(o)) {
                return object.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {key} is {object:#?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Registers node `node`'s Node in etcd, in `zone` (its
    /// `topology.kubernetes.io/zone` label) or in none.
    pub fn set_zone(&self, node: usize, zone: Option<&str>) -> Result<()> {
        let name = self.cluster.node(node).name();
        self.store
            .put(&objects::node_key(name), &objects::node(name, zone))
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
        echo::call(pod, args)
    }

    /// Starts `skiff-echo call <args>` in `pod` in the background; collect
    /// its attempts with [`RunningCall::finish`], or end it early with
    /// [`RunningCall::stop`].
    pub fn call_in_background(&self, pod: &Pod, args: &[&str]) -> Result<RunningCall> {
        let mut command = pod.command(echo_binary()?);
        command.arg("call").args(args).stdout(Stdio::piped());
        let mut child = command.spawn().map_err(|cause| HarnessError::Spawn {
            command: cmd::render(&command),
            cause,
        })?;
        // Read as it goes: a long loop would otherwise fill the pipe and
        // stall on its next line.
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let reader = thread::spawn(move || {
            let mut output = String::new();
            stdout.read_to_string(&mut output).map(|_| output)
        });
        Ok(RunningCall { child, reader })
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
            // Every skiff-control's log: control.log and those of
            // [`Testbed::start_another_control`].
            let logs = fs::read_dir(&self.log_dir).into_iter().flatten().flatten();
            for log in logs.filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.starts_with("control") && name.ends_with(".log")
            }) {
                let text = fs::read_to_string(log.path()).unwrap_or_default();
                eprintln!(
                    "---- skiff-control log {} ----\n{text}",
                    log.file_name().display()
                );
            }
        }
        // Agents first: a running one (its probes call runc) would make
        // its state directory again.
        self.agents.iter_mut().for_each(|agent| *agent = None);
        mounts::unmount_below(&self.log_dir);
        let _ = fs::remove_dir_all(&self.log_dir);
    }
}

fn control_data_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("control")
}

/// `skiff-control snapshot restore` of `archive` into skiff-control's
/// `data_dir` and the data directory of the etcd `config` describes.
fn restore(archive: &Path, data_dir: &Path, config: &EtcdConfig) -> Result<String> {
    cmd::run(
        Command::new(control_binary()?)
            .args(["snapshot", "restore"])
            .arg(archive)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--etcd-data-dir")
            .arg(&config.data_dir)
            .arg("--etcd-peer-url")
            .arg(config.peer_url()),
    )
}

/// A `skiff-echo call` running in the background.
pub struct RunningCall {
    child: std::process::Child,
    reader: thread::JoinHandle<std::io::Result<String>>,
}

impl RunningCall {
    /// Waits for the call to end and returns its attempts.
    pub fn finish(mut self) -> Result<Vec<CallResult>> {
        self.child
            .wait()
            .map_err(|e| HarnessError::io("waiting for skiff-echo call", e))?;
        parse_call_output(&self.output()?)
    }

    /// Kills the call and returns the attempts it finished: killed between
    /// two lines or within one, only whole lines count.
    pub fn stop(mut self) -> Result<Vec<CallResult>> {
        self.child
            .kill()
            .and_then(|()| self.child.wait())
            .map_err(|e| HarnessError::io("stopping skiff-echo call", e))?;
        let output = self.output()?;
        let whole = output.rfind('\n').map_or(0, |end| end + 1);
        parse_call_output(&output[..whole])
    }

    fn output(self) -> Result<String> {
        self.reader
            .join()
            .expect("the reader does not panic")
            .map_err(|e| HarnessError::io("reading skiff-echo call's output", e))
    }
}
