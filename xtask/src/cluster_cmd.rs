//! `cargo xtask up`, `down`, `exec`: a local skiff cluster in network
//! namespaces, built on the skiff-tests harness: etcd, skiff-control (API
//! server, scheduler, controllers) and one skiff-agent per node running
//! that node's pods, then `kubectl apply -f examples/`. It outlives the
//! command: a detached supervisor (`cargo xtask supervise`) runs the
//! daemons and restarts any that exits, until `down`. The data is kept in
//! /var/lib/skiff, so `up` after a reboot or a crash repairs the cluster
//! from it, and `up` on a healthy cluster changes nothing.

use std::{
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use skiff_tests::{
    CONTROL_PLANE_IP, Cluster, ClusterLock, ClusterSpec, Daemon, DaemonSpec, Pod, Prefix,
    echo_binary, kubectl, node_ip, sync_count, teardown_prefix, unmount_below, wait_for_api,
    wait_for_sync,
};

use crate::{
    build_cmd,
    cluster_files::{self, DATA_DIR, LOG_DIR, RUN_DIR, SUPERVISOR, agent_name, log_file, run_dir},
    ha_cluster, images_cmd, pods_ready, setup, sh,
    supervise_cmd::{API_PORT, kubeconfig},
    utc,
};

const EXAMPLES: &str = "examples";
const AGENT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// An HA control plane comes up one member after another.
const HA_API_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a daemon gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct UpArgs {
    /// Number of nodes, each a network namespace running its own
    /// skiff-agent [default: the kept cluster's, else 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub nodes: Option<u16>,
    /// Number of control-plane members. 1: etcd and skiff-control in the
    /// root netns. 3 (or 5, 7, 9): an HA control plane, each member a
    /// network namespace with an etcd member and a skiff-control
    /// [default: the kept cluster's, else 1].
    #[arg(long, value_parser = parse_members)]
    pub control_planes: Option<u16>,
    /// Use the binaries as they are: no setup, no build (for tests that
    /// built them already).
    #[arg(long, hide = true)]
    pub no_build: bool,
    /// Zones to label the nodes with (`topology.kubernetes.io/zone`),
    /// round-robin: `a,b` puts node1 in a, node2 in b, node3 in a...
    /// [default: the labels stay as they are].
    #[arg(long, value_delimiter = ',', value_parser = parse_zone)]
    pub zones: Vec<String>,
    /// IPv6 too: the nodes get IPv6 addresses and routes to each other's
    /// IPv6 pod CIDRs, pods an IPv6 address beside their IPv4 one, and
    /// Services IPv6 ClusterIPs (`ipFamilyPolicy`) from fd00:10:96::/112.
    /// Remembered with the cluster's data: later `up`s keep it dual-stack.
    /// Single control plane only.
    #[arg(long)]
    pub dual_stack: bool,
}

/// The Node label that holds its zone.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// A zone name, which must be a valid label value: at most 63 characters,
/// alphanumerics with `-`, `_` or `.` inside.
fn parse_zone(text: &str) -> Result<String, String> {
    let inner_ok = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ends_ok = text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if text.len() <= 63 && inner_ok && ends_ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: a zone is 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// The zone of each node, `node1` first: `zones` round-robin.
fn zone_labels(nodes: u16, zones: &[String]) -> Vec<(String, &str)> {
    (1..=nodes)
        .zip(zones.iter().cycle())
        .map(|(index, zone)| (format!("node{index}"), zone.as_str()))
        .collect()
}

/// 1, or an odd number up to [`skiff_tests::MAX_CONTROL_PLANES`]: etcd's
/// quorum is a majority, so an even member adds no fault tolerance.
fn parse_members(text: &str) -> Result<u16, String> {
    let members: u16 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    let max = skiff_tests::MAX_CONTROL_PLANES as u16;
    if members % 2 == 1 && members <= max {
        Ok(members)
    } else {
        Err(format!("{members}: use 1, or an odd number up to {max}"))
    }
}

#[derive(Args)]
pub struct DownArgs {
    /// Keep the cluster's data (/var/lib/skiff) and logs (/var/log/skiff),
    /// so the next `up` brings back every object.
    #[arg(long)]
    pub keep_data: bool,
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
    if !args.no_build {
        setup::setup()?;
        build_cmd::compile(false)?;
    }
    // The agents import them at start (--image-dir); up to date, this only
    // checks package versions.
    images_cmd::build(&skiff_tests::image_dir())?;
    let started = Instant::now();
    let started_at = utc::now_rfc3339();
    let nodes = cluster_files::node_count(args.nodes)?;
    let members = cluster_files::control_plane_count(args.control_planes)?;
    let dual_stack = cluster_files::dual_stack(args.dual_stack)?;
    if dual_stack && members > 1 {
        anyhow::bail!("--dual-stack runs with a single control plane, not {members}");
    }
    let prefix = Prefix::fixed();
    let supervisor = Daemon::running_pid(run_dir(), SUPERVISOR)?;
    let mut missing = Cluster::missing_parts(&prefix, usize::from(nodes))?;
    missing.extend(missing_members(&prefix, members)?);
    let outcome = match supervisor {
        Some(pid) if missing.is_empty() => {
            println!("up: cluster {prefix} is already up (supervisor pid {pid}); changing nothing");
            wait_until_serving(nodes)?;
            Outcome::AlreadyUp
        }
        None if missing.is_empty() => {
            println!("up: cluster {prefix}'s network is intact but its supervisor is gone");
            let mut cluster = Cluster::adopt(ClusterSpec {
                prefix: prefix.clone(),
                nodes: usize::from(nodes),
            })?;
            stop_daemons("up")?;
            add_members(&mut cluster, members)?;
            start_supervised(&cluster, nodes, members, dual_stack)?;
            cluster.persist();
            Outcome::DaemonsRestarted
        }
        _ => {
            let mut cluster = rebuild(nodes, supervisor, &missing)?;
            add_members(&mut cluster, members)?;
            start_supervised(&cluster, nodes, members, dual_stack)?;
            cluster.persist();
            Outcome::Rebuilt
        }
    };

    let kube = |args: &[&str]| -> Result<String> {
        let mut command = kubectl(&kubeconfig())?;
        command.args(args);
        sh::stdout(&mut command)
    };
    // Idempotent: on a cluster that has them, kubectl sends nothing and
    // says `unchanged`.
    let examples = sh::workspace_root().join(EXAMPLES);
    print!("{}", kube(&["apply", "-f", &examples.to_string_lossy()])?);
    // After a rebuild the API shows the pods as they were before until
    // their agents report them started again.
    let rebuilt = matches!(outcome, Outcome::Rebuilt);
    pods_ready::wait_until_ready(&kube, rebuilt.then_some(started_at.as_str()))?;
    // The nodes have registered: their pods run.
    for (node, zone) in zone_labels(nodes, &args.zones) {
        let label = format!("{ZONE_LABEL}={zone}");
        print!(
            "{}",
            kube(&["label", "node", &node, &label, "--overwrite"])?
        );
    }
    let ready_after = started.elapsed();

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
        matches!(outcome, Outcome::AlreadyUp),
        &cluster_ip("iperf3"),
        &cluster_ip("echo"),
        ready_after,
    );
    Ok(())
}

/// What `up` found and did.
enum Outcome {
    /// Supervisor and network were there: nothing done.
    AlreadyUp,
    /// The network and the pods were there: new supervisor and daemons.
    DaemonsRestarted,
    /// Network built anew; the pods came back from the kept data.
    Rebuilt,
}

/// Builds the cluster's network afresh, for a start with the kept data:
/// after a reboot nothing is left, after a crash or a stray `ip netns
/// delete` a part; either way the pods come back on the addresses their
/// agents recorded. The returned cluster tears itself down if dropped
/// before [`Cluster::persist`], leaving the data.
fn rebuild(nodes: u16, supervisor: Option<u32>, missing: &[String]) -> Result<Cluster> {
    if cluster_files::etcd_data_dir().exists() {
        println!("up: restoring the cluster from {DATA_DIR}");
    }
    // Held from the supervisor's death to the new cluster: a test waiting
    // for the lock must not find half a cluster.
    let lock = match supervisor {
        Some(pid) => {
            println!(
                "up: {} missing; stopping the supervisor (pid {pid}) to rebuild",
                missing.join(", ")
            );
            let lock = ClusterLock::take_over(pid)?;
            Daemon::stop(run_dir(), SUPERVISOR, STOP_GRACE)?;
            lock
        }
        None => ClusterLock::acquire()?,
    };
    stop_daemons("up")?;
    let leftovers = teardown_prefix(Prefix::fixed().as_str())?;
    if !leftovers.is_empty() {
        println!(
            "up: removed what was left of the old network ({} items) to build it anew",
            leftovers.len()
        );
    }
    println!("up: {nodes} nodes in network namespaces");
    let spec = ClusterSpec {
        prefix: Prefix::fixed(),
        nodes: usize::from(nodes),
    };
    Ok(Cluster::create_holding(spec, lock)?)
}

/// The HA members' namespaces that are gone (none for one member).
fn missing_members(prefix: &Prefix, members: u16) -> Result<Vec<String>> {
    if members == 1 {
        return Ok(Vec::new());
    }
    let present = Command::new("ip").args(["netns", "list"]).output()?;
    let present = String::from_utf8_lossy(&present.stdout);
    Ok(
        Cluster::persisted_control_planes(prefix, usize::from(members))
            .iter()
            .filter(|host| {
                !present
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(host.netns()))
            })
            .map(|host| format!("netns {}", host.netns()))
            .collect(),
    )
}

/// The HA members' namespaces on the fabric (kept ones are taken as
/// they are).
fn add_members(cluster: &mut Cluster, members: u16) -> Result<()> {
    if members > 1 {
        println!("up: {members} control-plane members in network namespaces");
        for i in 1..=usize::from(members) {
            cluster.add_control_plane(i)?;
        }
    }
    Ok(())
}

/// Stops every daemon with a pid file but the supervisor, saying so.
fn stop_daemons(command: &str) -> Result<()> {
    for name in cluster_files::recorded_daemons()? {
        if Daemon::stop(run_dir(), &name, STOP_GRACE)? {
            println!("{command}: stopped {name}");
        }
    }
    Ok(())
}

/// Starts the supervisor, sharing `cluster`'s lock with it, and waits
/// until skiff-control serves and every agent has synced. An error drops
/// `cluster` in the caller, which tears down all of it (the supervisor and
/// its daemons too) but not the data.
fn start_supervised(cluster: &Cluster, nodes: u16, members: u16, dual_stack: bool) -> Result<()> {
    if dual_stack {
        cluster.wire_ipv6()?;
    }
    cluster_files::record_node_count(nodes)?;
    cluster_files::record_control_plane_count(members)?;
    cluster_files::record_dual_stack(dual_stack)?;
    let syncs_before: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| sync_count(&log_file(&agent_name(n.name()))))
        .collect();
    // This very binary, even if the build above has just replaced the file.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("skiff-supervisor")
        .args(["supervise", "--nodes", &nodes.to_string()])
        .args(["--control-planes", &members.to_string()]);
    if dual_stack {
        command.arg("--dual-stack");
    }
    cluster.share_lock_with(&mut command);
    let supervisor = Daemon::spawn_logging_to(
        command,
        DaemonSpec {
            name: SUPERVISOR,
            state_dir: run_dir(),
            cgroup: Some(&cluster.cgroup_dir().join(SUPERVISOR)),
        },
        log_file(SUPERVISOR),
    )?;
    println!(
        "up: supervisor pid {} starting etcd, skiff-control and the agents (log {})",
        supervisor.pid(),
        supervisor.log_file().display()
    );
    if members > 1 {
        // The one address needs the agents' NodePort: first the member,
        // which waits for a quorum of etcd members.
        wait_for_api(
            &ha_cluster::first_member_kubeconfig(),
            || supervisor.is_running(),
            HA_API_TIMEOUT,
        )
        .with_context(|| format!("see the logs in {LOG_DIR}"))?;
        ha_cluster::write_kubeconfig()?;
    }
    wait_for_api(&kubeconfig(), || supervisor.is_running(), API_TIMEOUT)
        .with_context(|| format!("see the logs in {LOG_DIR}"))?;
    if members > 1 {
        for host in cluster.control_planes() {
            println!(
                "up: {} serving https://{}:{API_PORT}",
                host.name(),
                host.ip()
            );
        }
    } else {
        println!("up: skiff-control serving https://{CONTROL_PLANE_IP}:{API_PORT}");
    }
    for (node, before) in cluster.nodes().iter().zip(syncs_before) {
        let log = log_file(&agent_name(node.name()));
        wait_for_sync(&log, before, || supervisor.is_running(), AGENT_SYNC_TIMEOUT)?;
        println!(
            "up: skiff-agent on {} running its pods (log {})",
            node.name(),
            log.display()
        );
    }
    Ok(())
}

/// Waits until the API answers and every daemon runs, on a cluster that
/// was up already (its supervisor may be restarting one).
fn wait_until_serving(nodes: u16) -> Result<()> {
    let supervised = || Daemon::running_pid(run_dir(), SUPERVISOR).is_ok_and(|p| p.is_some());
    wait_for_api(&kubeconfig(), supervised, API_TIMEOUT)
        .with_context(|| format!("see the logs in {LOG_DIR}"))?;
    let members = cluster_files::kept_control_plane_count();
    let mut daemons = if members > 1 {
        (1..=members)
            .flat_map(|i| {
                let member = format!("cp{i}");
                [
                    cluster_files::member_etcd_name(&member),
                    cluster_files::member_control_name(&member),
                ]
            })
            .collect()
    } else {
        vec![
            cluster_files::ETCD.to_owned(),
            cluster_files::CONTROL.to_owned(),
        ]
    };
    daemons.extend((1..=nodes).map(|i| agent_name(&format!("node{i}"))));
    let deadline = Instant::now() + AGENT_SYNC_TIMEOUT;
    for name in daemons {
        while Daemon::running_pid(run_dir(), &name)?.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "{name} is not running; see {} and {}",
                    log_file(&name).display(),
                    log_file(SUPERVISOR).display()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn print_summary(nodes: u16, was_up: bool, iperf3_ip: &str, echo_ip: &str, ready_after: Duration) {
    let node1: Ipv4Addr = node_ip(1);
    let headline = if was_up {
        format!("skiff was already up: {nodes} node(s), nothing restarted, every pod Ready.")
    } else {
        format!(
            "skiff is up: {nodes} node(s), every pod Ready {:.1} s after the build.",
            ready_after.as_secs_f64()
        )
    };
    println!(
        "
{headline}

  kubeconfig  {kubeconfig}
  data        {DATA_DIR} (kept across reboots; `cargo xtask up` restores it)
  logs        {LOG_DIR} (supervisor.log says what it restarted)
  iperf3      ClusterIP {iperf3_ip}:5201, NodePort 30201
  echo        ClusterIP {echo_ip}:80, NodePort 30080

Try:

  export KUBECONFIG={kubeconfig}
  {kubectl} get pods -o wide
  {kubectl} exec client -- iperf3 -c {iperf3_ip} -t 3
  {kubectl} exec -it client -- sh
  ip netns exec skiff-ext curl -s http://{node1}:30080/
  ip netns exec skiff-ext curl -s -H 'Host: echo.example.com' http://{node1}/
  {kubectl} exec client -- nslookup echo.default.svc.cluster.local

Pods run as runc containers from the images in target/skiff-images
(`cargo xtask images`). `cargo xtask exec <pod> -- <command>` runs a
program of this machine's (skiff-echo, iperf3) in a pod's netns and
cgroup instead. A supervisor restarts any daemon that exits. Remove
everything with `cargo xtask down`, or keep the data with
`cargo xtask down --keep-data`.",
        kubeconfig = kubeconfig().display(),
        // `setup` installs kubectl into the workspace, not on PATH.
        kubectl = sh::workspace_root()
            .join("target/kubectl-venv/bin/kubectl")
            .display(),
    );
}

/// Stops the supervisor first (so it restarts nothing), then its daemons,
/// then removes the network by the prefix `skiff`, and the data unless
/// asked to keep it.
pub fn down(args: &DownArgs) -> Result<()> {
    // Held until the network is gone: a test waiting for the lock must not
    // find half a cluster.
    let _lock = match Daemon::running_pid(run_dir(), SUPERVISOR)? {
        Some(pid) => ClusterLock::take_over(pid)?,
        None => ClusterLock::acquire()?,
    };
    if Daemon::stop(run_dir(), SUPERVISOR, STOP_GRACE)? {
        println!("down: stopped the supervisor");
    }
    stop_daemons("down")?;
    let removed = teardown_prefix(Prefix::fixed().as_str())?;
    // The containers died with their cgroups; what the agents mounted for
    // them (root filesystems, volumes, pinned namespaces) goes too, kept
    // data or not, or the data directory could not be removed.
    unmount_below(Path::new(DATA_DIR));
    cluster_files::remove_tree(RUN_DIR)?;
    if removed.is_empty() {
        println!("down: no skiff network was up; nothing to remove");
    }
    for item in removed {
        println!("down: removed {item}");
    }
    if args.keep_data {
        if Path::new(DATA_DIR).exists() {
            println!(
                "down: kept the cluster's data in {DATA_DIR} and its logs in {LOG_DIR}; \
                 `cargo xtask up` brings the cluster back"
            );
        } else {
            println!("down: there was no cluster data in {DATA_DIR} to keep");
        }
        return Ok(());
    }
    let data = cluster_files::remove_tree(DATA_DIR)?;
    let logs = cluster_files::remove_tree(LOG_DIR)?;
    if data || logs {
        println!("down: removed the cluster's data ({DATA_DIR}) and logs ({LOG_DIR})");
    } else {
        println!("down: there was no cluster data in {DATA_DIR}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_go_round_robin_and_must_be_label_values() {
        let zones = ["a".to_owned(), "b".to_owned()];
        assert_eq!(
            zone_labels(3, &zones),
            [
                ("node1".to_owned(), "a"),
                ("node2".to_owned(), "b"),
                ("node3".to_owned(), "a"),
            ]
        );
        assert!(zone_labels(2, &[]).is_empty());
        assert_eq!(parse_zone("eu-west-1a"), Ok("eu-west-1a".to_owned()));
        for bad in ["", "-a", "a b", "a/b", &"z".repeat(64)] {
            assert!(parse_zone(bad).is_err(), "{bad:?}");
        }
    }
}
