//! `cargo xtask up`, `down`, `exec`: a local skiff cluster in network
//! namespaces, built on the skiff-tests harness: etcd, skiff-control (API
//! server, scheduler, controllers) and one skiff-agent per node running
//! that node's pods, then `kubectl apply -f examples/`. It outlives the
//! command: everything runs detached, with pid files and logs in
//! /run/skiff, until `down`.

use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use skiff_tests::{
    CONTROL_PLANE_IP, Cluster, ClusterSpec, Daemon, DaemonSpec, Etcd, EtcdConfig, Pod, Prefix,
    agent_command, control_command, echo_binary, kubeconfig_path, kubectl, node_ip, run_pods_args,
    teardown_prefix, wait_for_api, wait_for_sync,
};

use crate::{build_cmd, setup, sh};

const STATE_DIR: &str = "/run/skiff";
/// Where the examples' `command` finds skiff-echo, whatever the checkout.
const BIN_DIR: &str = "/run/skiff/bin";
const EXAMPLES: &str = "examples";
const API_PORT: u16 = 6443;
const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const API_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Args)]
pub struct UpArgs {
    /// Number of nodes, each a network namespace running its own skiff-agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub nodes: u16,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The pod to run in: `name` or `namespace/name` (`up` makes `client`).
    pub pod: String,
    /// The command and its arguments. skiff's own binaries (skiff-echo) are
    /// on its PATH.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn up(args: &UpArgs) -> Result<()> {
    setup::setup()?;
    build_cmd::compile(false)?;
    let started = Instant::now();
    let nodes = usize::from(args.nodes);
    let state_dir = Path::new(STATE_DIR);

    println!("up: {nodes} nodes in network namespaces");
    let cluster = Cluster::create(ClusterSpec {
        prefix: Prefix::fixed(),
        nodes,
    })?;
    // From here on, an error drops `cluster`, which tears down all of it.
    match fs::remove_dir_all(state_dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("clearing {STATE_DIR}"));
        }
        _ => {}
    }
    fs::create_dir_all(BIN_DIR).with_context(|| format!("creating {BIN_DIR}"))?;
    fs::copy(echo_binary()?, Path::new(BIN_DIR).join("skiff-echo"))
        .with_context(|| format!("copying skiff-echo to {BIN_DIR}"))?;

    let etcd = EtcdConfig::standard(state_dir.join("etcd"), &[CONTROL_PLANE_IP]);
    let etcd_cgroup = cluster.cgroup_dir().join("etcd");
    Etcd::start_detached(
        &etcd,
        DaemonSpec {
            name: "etcd",
            state_dir,
            cgroup: Some(&etcd_cgroup),
        },
    )
    .context("starting etcd")?;
    println!("up: etcd serving {}", etcd.endpoints().join(", "));

    // On the control-plane address, which exists only while the cluster
    // is up; in the cluster's cgroup, so teardown stops it.
    let data_dir = state_dir.join("control");
    let control = Daemon::spawn(
        control_command(
            SocketAddr::from((CONTROL_PLANE_IP, API_PORT)),
            &[etcd.local_endpoint()],
            &data_dir,
            &[],
        )?,
        DaemonSpec {
            name: "control",
            state_dir,
            cgroup: Some(&cluster.cgroup_dir().join("control")),
        },
    )?;
    let kubeconfig = kubeconfig_path(&data_dir);
    wait_for_api(&kubeconfig, || control.is_running(), API_TIMEOUT)
        .with_context(|| format!("see {}", control.log_file().display()))?;
    println!(
        "up: skiff-control serving https://{CONTROL_PLANE_IP}:{API_PORT} (log {})",
        control.log_file().display()
    );

    for node in cluster.nodes() {
        let name = format!("agent-{}", node.name());
        let mut command = agent_command(node, &etcd.endpoints())?;
        command.args(run_pods_args(node, &state_dir.join(&name)));
        let daemon = Daemon::spawn(
            command,
            DaemonSpec {
                name: &name,
                state_dir,
                cgroup: None,
            },
        )?;
        wait_for_sync(
            daemon.log_file(),
            0,
            || daemon.is_running(),
            AGENT_SYNC_TIMEOUT,
        )?;
        println!(
            "up: skiff-agent on {} running its pods (log {})",
            node.name(),
            daemon.log_file().display()
        );
    }

    let kube = |args: &[&str]| -> Result<String> {
        let mut command = kubectl(&kubeconfig)?;
        command.args(args);
        sh::stdout(&mut command)
    };
    let examples = sh::workspace_root().join(EXAMPLES);
    print!("{}", kube(&["apply", "-f", &examples.to_string_lossy()])?);
    wait_until_ready(&kube)?;
    let ready_after = started.elapsed();
    cluster.persist();

    let services = kube(&["get", "services", "-o", "json"])?;
    let services: Value = serde_json::from_str(&services).context("parsing services")?;
    let cluster_ip = |name: &str| -> String {
        services["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["metadata"]["name"] == name)
            .and_then(|s| s["spec"]["clusterIP"].as_str())
            .unwrap_or("?")
            .to_owned()
    };
    print_summary(
        nodes,
        &kubeconfig,
        &cluster_ip("iperf3"),
        &cluster_ip("echo"),
        ready_after,
    );
    Ok(())
}

/// One pod's state as the progress display shows it.
fn pod_state(pod: &Value) -> String {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str();
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let state = match (ready, waiting) {
        (true, _) => "Ready".to_owned(),
        (false, Some(reason)) => reason.to_owned(),
        (false, None) => phase.to_owned(),
    };
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("unscheduled");
    let ip = pod["status"]["podIP"].as_str().unwrap_or("-");
    format!("{state} on {node} ({ip})")
}

/// Polls the default namespace, printing a line per pod state change,
/// until every Deployment has all its replicas ready and every pod is.
fn wait_until_ready(kubectl: &dyn Fn(&[&str]) -> Result<String>) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let pods: Value = serde_json::from_str(&kubectl(&["get", "pods", "-o", "json"])?)
            .context("parsing pods")?;
        let deployments: Value =
            serde_json::from_str(&kubectl(&["get", "deployments", "-o", "json"])?)
                .context("parsing deployments")?;
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            let state = pod_state(pod);
            if seen.get(&name) != Some(&state) {
                println!("up: pod {name}: {state}");
                seen.insert(name, state);
            }
        }
        let deployments_ready = deployments["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .all(|d| d["status"]["readyReplicas"] == d["spec"]["replicas"])
        });
        let pods_ready = !pods.is_empty()
            && pods.iter().all(|p| {
                pod_state(p).starts_with("Ready") && p["metadata"]["deletionTimestamp"].is_null()
            });
        if deployments_ready && pods_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not everything was Ready within {READY_TIMEOUT:?}; see the logs in {STATE_DIR}");
        }
        thread::sleep(Duration::from_millis(250));
    }
}

fn print_summary(
    nodes: usize,
    kubeconfig: &Path,
    iperf3_ip: &str,
    echo_ip: &str,
    ready_after: Duration,
) {
    let node1: Ipv4Addr = node_ip(1);
    println!(
        "
skiff is up: {nodes} node(s), every pod Ready {:.1} s after the build.

  kubeconfig  {kubeconfig}
  iperf3      ClusterIP {iperf3_ip}:5201, NodePort 30201
  echo        ClusterIP {echo_ip}:80, NodePort 30080

Try:

  KUBECONFIG={kubeconfig} {kubectl} get pods -o wide
  cargo xtask exec client -- iperf3 -c {iperf3_ip} -t 3
  ip netns exec skiff-ext curl -s http://{node1}:30080/

`cargo xtask exec <pod> -- <command>` runs in the pod's netns and cgroup,
so the eBPF load balancer applies. Logs and pid files are in {STATE_DIR}.
Remove everything with: cargo xtask down",
        ready_after.as_secs_f64(),
        kubeconfig = kubeconfig.display(),
        // `setup` installs kubectl into the workspace, not on PATH.
        kubectl = sh::workspace_root()
            .join("target/kubectl-venv/bin/kubectl")
            .display(),
    );
}

pub fn down() -> Result<()> {
    let removed = teardown_prefix(Prefix::fixed().as_str())?;
    match fs::remove_dir_all(STATE_DIR) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("removing {STATE_DIR}"));
        }
        _ => {}
    }
    if removed.is_empty() {
        println!("down: no skiff cluster was up; nothing to remove");
    }
    for item in removed {
        println!("down: removed {item}");
    }
    Ok(())
}

pub fn exec(args: &ExecArgs) -> Result<()> {
    let pod = Pod::find(&Prefix::fixed(), &args.pod)?;
    let bin_dir = echo_binary()?
        .parent()
        .expect("a binary's path has a directory")
        .to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .context("building PATH")?;
    let (program, arguments) = args.command.split_first().expect("clap requires a command");
    let status = pod
        .command(program)
        .args(arguments)
        .env("PATH", path)
        .status()
        .with_context(|| format!("running {program} in pod {}", args.pod))?;
    // The pod's command speaks for itself; pass its exit code on.
    std::process::exit(status.code().unwrap_or(1));
}
