//! `cargo xtask up`, `down`, `exec`: a local skiff cluster in network
//! namespaces, built on the skiff-tests harness. It outlives the command:
//! etcd, the agents and the example backends run detached, with their pid
//! files and logs in /run/skiff, until `down`.

use std::{
    collections::BTreeMap,
    fs,
    net::Ipv4Addr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use skiff_tests::{
    CONTROL_PLANE_IP, CallResult, Cluster, ClusterSpec, Daemon, DaemonSpec, EndpointSpec, Etcd,
    EtcdConfig, Pod, PortSpec, Prefix, Store, agent_command, call, echo_binary, endpoint_slice,
    endpoint_slice_key, node_ip, service, service_key, teardown_prefix, wait_for_sync,
};

use crate::{build_cmd, setup};

const STATE_DIR: &str = "/run/skiff";
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_PORT: u16 = 30080;
const BACKENDS: usize = 3;
const CLIENT_POD: &str = "client";
const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args)]
pub struct UpArgs {
    /// Number of nodes, each a network namespace running its own skiff-agent.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub nodes: u16,
}

#[derive(Args)]
pub struct ExecArgs {
    /// The pod to run in, by name (`up` makes `client`, `web-1`, …).
    pub pod: String,
    /// The command and its arguments. skiff's own binaries (skiff-echo) are
    /// on its PATH.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn web_ports() -> Vec<PortSpec> {
    vec![
        PortSpec {
            name: "http",
            protocol: "TCP",
            port: 80,
            target_port: 8080,
        },
        PortSpec {
            name: "dns",
            protocol: "UDP",
            port: 53,
            target_port: 5353,
        },
    ]
}

pub fn up(args: &UpArgs) -> Result<()> {
    setup::setup()?;
    build_cmd::compile(false)?;
    let started = Instant::now();
    let nodes = usize::from(args.nodes);
    let state_dir = Path::new(STATE_DIR);

    println!("up: {nodes} nodes in network namespaces");
    let mut cluster = Cluster::create(ClusterSpec {
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

    for node in cluster.nodes() {
        let name = format!("agent-{}", node.name());
        let daemon = Daemon::spawn(
            agent_command(node, &etcd.endpoints())?,
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
            "up: skiff-agent on {} synced (log {})",
            node.name(),
            daemon.log_file().display()
        );
    }

    let mut backends = Vec::with_capacity(BACKENDS);
    for i in 0..BACKENDS {
        let pod = cluster.add_pod(i % nodes + 1, &format!("web-{}", i + 1))?;
        let mut server = pod.command(echo_binary()?);
        server.args([
            "serve",
            "--name",
            pod.name(),
            "--tcp",
            "8080",
            "--udp",
            "5353",
        ]);
        let name = format!("pod-{}", pod.name());
        Daemon::spawn(
            server,
            DaemonSpec {
                name: &name,
                state_dir,
                cgroup: None,
            },
        )?;
        backends.push(pod);
    }
    let client = cluster.add_pod(1, CLIENT_POD)?;

    let store = Store::new(etcd.local_endpoint());
    let mut web = service("default", "web", CLUSTER_IP, &web_ports());
    web["spec"]["type"] = "NodePort".into();
    web["spec"]["ports"][0]["nodePort"] = NODE_PORT.into();
    store.put(&service_key("default", "web"), &web)?;
    let endpoints: Vec<EndpointSpec> = backends
        .iter()
        .map(|pod| EndpointSpec::ready(pod.ip(), pod.node()))
        .collect();
    store.put(
        &endpoint_slice_key("default", "web-7f9c2"),
        &endpoint_slice("default", "web-7f9c2", "web", &web_ports(), &endpoints),
    )?;
    println!("up: Service default/web and its EndpointSlice written to etcd");

    let answers = answers_from(&client)?;
    cluster.persist();

    let tally: Vec<String> = answers
        .iter()
        .map(|(backend, count)| format!("{backend} ×{count}"))
        .collect();
    println!(
        "up: {} connections from pod {CLIENT_POD} to {CLUSTER_IP}:80 answered by {}",
        answers.values().sum::<usize>(),
        tally.join(", ")
    );
    print_summary(nodes, &etcd, &backends, started.elapsed());
    Ok(())
}

/// Connects from `client` to the ClusterIP until every attempt of a round
/// succeeds, and counts which backend answered each.
fn answers_from(client: &Pod) -> Result<BTreeMap<String, usize>> {
    let target = format!("{CLUSTER_IP}:80");
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let results = call(client, &["tcp", &target, "--count", "12"])?;
        if results.iter().all(CallResult::is_ok) {
            let mut answers = BTreeMap::new();
            for backend in results.iter().filter_map(CallResult::backend) {
                *answers.entry(backend.to_owned()).or_insert(0) += 1;
            }
            return Ok(answers);
        }
        if Instant::now() > deadline {
            bail!(
                "{target} did not answer from pod {CLIENT_POD} within {ANSWER_TIMEOUT:?}: {results:?}; \
                 agent logs are in {STATE_DIR}"
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn print_summary(nodes: usize, etcd: &EtcdConfig, backends: &[Pod], elapsed: Duration) {
    let backends: Vec<String> = backends
        .iter()
        .map(|pod| format!("{} {} ({})", pod.name(), pod.ip(), pod.node()))
        .collect();
    println!(
        "
skiff is up: {nodes} node(s), in {:.1} s.

  Service default/web   ClusterIP {CLUSTER_IP}   80/TCP -> 8080, 53/UDP -> 5353
                        NodePort {NODE_PORT} on every node (e.g. {}:{NODE_PORT})
  backends              {}

Try it from a pod (run in its netns and cgroup, so the eBPF load balancer applies):

  cargo xtask exec {CLIENT_POD} -- curl -s http://{CLUSTER_IP}/
  cargo xtask exec {CLIENT_POD} -- skiff-echo call tcp {CLUSTER_IP}:80 --count 6
  cargo xtask exec {CLIENT_POD} -- skiff-echo call udp {CLUSTER_IP}:53 --count 6

And from outside the cluster, through the NodePort (per-packet NAT on the node):

  ip netns exec skiff-ext curl -s http://{}:{NODE_PORT}/

Services live in etcd at {}; logs and pid files in {STATE_DIR}.
Remove everything with: cargo xtask down",
        elapsed.as_secs_f64(),
        node_ip(1),
        backends.join(", "),
        node_ip(1),
        etcd.local_endpoint(),
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
