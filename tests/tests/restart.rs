//! End to end: an agent killed with SIGKILL and started again in the middle
//! of long TCP streams, one through a ClusterIP (socket LB) and one through
//! a NodePort from outside (per-packet NAT), interrupts neither; the
//! restarted agent finds its maps as it left them.
mod common;

use std::{
    net::Ipv4Addr,
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{REACTION_BOUND, Web};
use serde_json::json;
use skiff_tests::{
    EndpointSpec, Pod, PortSpec, ProcessGuard, agent_binary, endpoint_slice, endpoint_slice_key,
    iperf3::{self, StreamPlan},
    service, service_key,
};

const IPERF_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const CLUSTER_IP_PORT: u16 = 5201;
const NODE_PORT_TARGET: u16 = 5202;
const NODE_PORT: u16 = 30202;
/// Long enough to kill and restart the agent with traffic on both sides.
const STREAM_SECONDS: u32 = 10;
const INTERVAL_SECONDS: f64 = 0.25;
/// The longest stretch without a byte through that still counts as
/// uninterrupted.
const MAX_STALL: Duration = Duration::from_secs(1);

fn iperf_ports() -> Vec<PortSpec> {
    vec![
        PortSpec {
            name: "cluster-ip",
            protocol: "TCP",
            port: CLUSTER_IP_PORT,
            target_port: CLUSTER_IP_PORT,
        },
        PortSpec {
            name: "node-port",
            protocol: "TCP",
            port: NODE_PORT_TARGET,
            target_port: NODE_PORT_TARGET,
        },
    ]
}

/// `default/iperf`: one iperf3 server per port in `backend` (an iperf3
/// server runs one test at a time, and every connection of a test must
/// reach the same server, so the Service has this one endpoint).
fn serve_iperf(web: &Web, backend: &Pod) -> Vec<ProcessGuard> {
    let servers = [CLUSTER_IP_PORT, NODE_PORT_TARGET]
        .into_iter()
        .map(|port| {
            let mut command = backend.command("iperf3");
            command
                .args(["--server", "--port", &port.to_string()])
                .stdout(Stdio::null());
            ProcessGuard::spawn(&mut command).expect("iperf3 server starts")
        })
        .collect();
    let mut object = service("default", "iperf", IPERF_VIP, &iperf_ports());
    object["spec"]["type"] = json!("NodePort");
    object["spec"]["ports"][1]["nodePort"] = json!(NODE_PORT);
    let store = web.testbed.store();
    store
        .put(&service_key("default", "iperf"), &object)
        .expect("service written");
    let endpoints = [EndpointSpec::ready(backend.ip(), backend.node())];
    store
        .put(
            &endpoint_slice_key("default", "iperf-1"),
            &endpoint_slice("default", "iperf-1", "iperf", &iperf_ports(), &endpoints),
        )
        .expect("endpoint slice written");
    wait_until_listening(backend);
    thread::sleep(REACTION_BOUND);
    servers
}

fn wait_until_listening(pod: &Pod) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let output = run(pod
            .command("ss")
            .args(["-Hltn", "sport = :5201 or sport = :5202"]));
        if String::from_utf8_lossy(&output.stdout).lines().count() == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "iperf3 never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(output.status.success(), "{command:?}: {output:?}");
    output
}

/// The streams held open across the restart, paced so the test stays
/// cheap on a shared machine.
const STREAM: StreamPlan = StreamPlan {
    seconds: STREAM_SECONDS,
    interval: INTERVAL_SECONDS,
    bitrate: "100M",
};

/// The stream ended without an error, and the longest run of intervals
/// without a byte sent; returns that stall and the slowest interval's rate.
fn check_stream(name: &str, client: Child) -> (Duration, f64) {
    let report = iperf3::finished_report(name, client, STREAM);
    let intervals = report["intervals"].as_array().expect("intervals");
    let mut stall = Duration::ZERO;
    let mut longest = Duration::ZERO;
    let mut slowest = f64::INFINITY;
    for interval in intervals {
        let sum = &interval["sum"];
        let seconds = sum["seconds"].as_f64().expect("seconds");
        if sum["bytes"].as_u64().expect("bytes") == 0 {
            stall += Duration::from_secs_f64(seconds);
            longest = longest.max(stall);
        } else {
            stall = Duration::ZERO;
        }
        slowest = slowest.min(sum["bits_per_second"].as_f64().expect("rate"));
    }
    let received = report["end"]["sum_received"]["bytes"]
        .as_u64()
        .expect("bytes received");
    assert!(received > 0, "{name}: nothing arrived");
    (longest, slowest)
}

/// What `skiff-agent status` shows of node 1's frontends and backends,
/// without the counters (which traffic moves on).
fn programmed(web: &Web) -> Vec<String> {
    let output = run(Command::new(agent_binary().expect("skiff-agent is built"))
        .arg("status")
        .arg("--bpffs")
        .arg(web.testbed.cluster().bpffs_dir(1)));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("drops:"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[..fields.len().min(4)].join(" ")
        })
        .collect()
}

#[test]
fn streams_through_cluster_ip_and_node_port_survive_an_agent_kill_and_restart() {
    let mut web = Web::start();
    let _servers = serve_iperf(&web, &web.b.clone());
    let before = programmed(&web);
    assert!(
        before
            .iter()
            .any(|line| line.starts_with("10.96.0.20:5201/TCP")),
        "{before:?}"
    );

    // Client pod on node1 to web-b on node2; outside client through node1.
    let cluster_ip = iperf3::start_stream(
        web.client.command("iperf3"),
        IPERF_VIP,
        CLUSTER_IP_PORT,
        STREAM,
    );
    let node1 = web.testbed.cluster().node(1).ip();
    let node_port = iperf3::start_stream(
        web.testbed.cluster().ext().command("iperf3"),
        node1,
        NODE_PORT,
        STREAM,
    );
    thread::sleep(Duration::from_secs(3));
    web.testbed.kill_agent(1);
    thread::sleep(Duration::from_secs(1));
    let log_before = web.testbed.agent_log(1).len();
    web.testbed.start_agent(1).expect("the agent restarts");

    let (stall, slowest) = check_stream("ClusterIP", cluster_ip);
    eprintln!("ClusterIP stream: longest stall {stall:?}, slowest interval {slowest:.0} bit/s");
    assert!(stall < MAX_STALL, "the ClusterIP stream stalled {stall:?}");
    let (stall, slowest) = check_stream("NodePort", node_port);
    eprintln!("NodePort stream: longest stall {stall:?}, slowest interval {slowest:.0} bit/s");
    assert!(stall < MAX_STALL, "the NodePort stream stalled {stall:?}");

    // The restarted agent adopted the maps as they were: same frontends,
    // ids and backends, and its full sync had nothing to write.
    assert_eq!(programmed(&web), before);
    let log = web.testbed.agent_log(1);
    // Its first run wrote each frontend's backends and slots as batches.
    let first_run = &log[..log_before];
    assert!(
        first_run.contains("frontend added") && !first_run.contains("batched map write failed"),
        "{first_run}"
    );
    let restarted = &log[log_before..];
    assert!(
        restarted.contains("repairs=0") && restarted.contains("full sync done"),
        "{restarted}"
    );
    for write in ["frontend added", "frontend changed", "frontend removed"] {
        assert!(!restarted.contains(write), "the restart wrote: {restarted}");
    }
}
