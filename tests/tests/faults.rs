//! Fault injection against real processes: (b) the skiff-control holding
//! the leader lease is killed (SIGKILL) in the middle of a rollout, and
//! its standby finishes it with one actor at a time; (c) the whole control
//! plane (etcd and skiff-control) is stopped for 30 s while established
//! and new ClusterIP and NodePort connections keep working, and the agents
//! resync once it is back.
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod common;

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use common::{Web, call_from_outside, frontend_programmed};
use serde_json::{Value, json};
use skiff_tests::{
    CallResult, EndpointSpec, PortSpec, ProcessGuard, Testbed, endpoint_slice, endpoint_slice_key,
    iperf3::{self, StreamPlan},
    kubectl, service, service_key,
};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A short lease, so that the standby takes over within seconds.
const ELECTION: [&str; 2] = [
    "--leader-elect-lease-duration=4s",
    "--leader-elect-retry-period=500ms",
];

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

/// `kubectl <args>` with `input` on its stdin, against the member whose
/// kubeconfig is `kubeconfig`: its stdout; panics with its stderr.
fn kubectl_ok(kubeconfig: &Path, args: &[&str], input: &str) -> String {
    let mut child = kubectl(kubeconfig)
        .expect("kubectl is installed")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().expect("kubectl finishes");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&kubectl_ok(kubeconfig, &args, "")).expect("kubectl prints JSON")
}

/// The lease's holder and transitions, as etcd holds them.
fn lease(testbed: &Testbed) -> Option<(String, i64)> {
    let lease = testbed
        .store()
        .get("/registry/leases/kube-system/skiff-control")
        .ok()??;
    Some((
        lease["spec"]["holderIdentity"].as_str()?.to_owned(),
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
    ))
}

/// An instance's identity is `<hostname>_<pid>`.
fn holds(holder: &str, pid: u32) -> bool {
    holder.ends_with(&format!("_{pid}"))
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  minReadySeconds: 2
  strategy:
    rollingUpdate: { maxSurge: 1, maxUnavailable: 0 }
  selector:
    matchLabels: { app: web }
  template:
    metadata:
      labels: { app: web }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "sleep 3600"]
"#;

/// (b) The leader is killed mid-rollout; the standby finishes it. Every
/// event of the old leader is older (in etcd's revisions) than every event
/// of the new one: never two actors at once.
#[test]
fn leader_killed_during_a_rollout() {
    let mut testbed = Testbed::start_running_pods(2).expect("the testbed starts");
    // The kubelets' API server, which stays up: serving only, it never
    // leads.
    testbed
        .start_control(&["--controllers=false"])
        .expect("the kubelets' API server starts");
    let (first, first_config) = testbed
        .start_another_control("control-a", &ELECTION)
        .expect("the first member starts");
    let first_pid = first.pid();
    let (_, transitions) = eventually("the first member to lead", || {
        lease(&testbed).filter(|(holder, _)| holds(holder, first_pid))
    });
    let (second, second_config) = testbed
        .start_another_control("control-b", &ELECTION)
        .expect("the standby starts");
    kubectl_ok(&first_config, &["apply", "-f", "-"], DEPLOYMENT);
    kubectl_ok(
        &first_config,
        &["rollout", "status", "deploy/web", "--timeout=60s"],
        "",
    );

    kubectl_ok(
        &first_config,
        &["set", "env", "deploy/web", "ROLLOUT=2"],
        "",
    );
    eventually("the rollout to be under way", || {
        let deployment = kubectl_json(&first_config, &["get", "deploy", "web"]);
        let updated = deployment["status"]["updatedReplicas"]
            .as_i64()
            .unwrap_or(0);
        (deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"]
            && (1..4).contains(&updated))
        .then_some(())
    });
    // SIGKILL: the guard kills its process when dropped.
    drop(first);

    kubectl_ok(
        &second_config,
        &["rollout", "status", "deploy/web", "--timeout=90s"],
        "",
    );
    let (holder, after) = lease(&testbed).expect("the lease exists");
    assert!(holds(&holder, second.pid()), "{holder} leads");
    assert_eq!(after, transitions + 1, "one hand-over");

    let events = kubectl_json(&second_config, &["get", "events"]);
    let mut acts: Vec<(i64, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            let revision = event["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|version| version.parse().ok())
                .expect("events have a resourceVersion");
            let instance = event["reportingInstance"].as_str().unwrap_or_default();
            (revision, instance.to_owned())
        })
        .collect();
    acts.sort();
    let actors: Vec<&str> = acts.iter().map(|(_, actor)| actor.as_str()).collect();
    let mut runs = actors.clone();
    runs.dedup();
    assert_eq!(
        runs.len(),
        2,
        "the old leader, then the new one, each acting alone: {actors:?}"
    );
    assert!(
        holds(runs[0], first_pid) && holds(runs[1], second.pid()),
        "{runs:?}"
    );
    let pods = kubectl_json(&second_config, &["get", "pods", "-l", "app=web"]);
    let running: BTreeSet<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|pod| pod["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        running.len(),
        4,
        "exactly the Deployment's replicas: {running:?}"
    );
}

/// `default/iperf`: long-lived TCP streams, one iperf3 server per port in
/// web-b (a server runs one test at a time).
const IPERF_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const IPERF_CLUSTER_IP_PORT: u16 = 5201;
const IPERF_NODE_PORT_TARGET: u16 = 5202;
const IPERF_NODE_PORT: u16 = 30202;
const NODE_PORT: u16 = 30080;
const DNS_NODE_PORT: u16 = 30053;
const LATE_VIP: &str = "10.96.0.11";

/// Sends SIGSTOP or SIGCONT to each of `pids`.
fn signal(pids: &[u32], signal: &str) {
    for pid in pids {
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

/// Serves `default/iperf` from web-b: an iperf3 server on the ClusterIP's
/// port and one behind the NodePort. Returns once node1's agent has
/// programmed the Service.
fn serve_iperf(web: &Web) -> Vec<ProcessGuard> {
    let ports = [IPERF_CLUSTER_IP_PORT, IPERF_NODE_PORT_TARGET];
    let servers = ports
        .iter()
        .map(|port| {
            let mut command = web.b.command("iperf3");
            command
                .args(["--server", "--port", &port.to_string()])
                .stdout(Stdio::null());
            ProcessGuard::spawn(&mut command).expect("iperf3 server starts")
        })
        .collect();
    let ports: Vec<PortSpec> = [("cluster-ip", ports[0]), ("node-port", ports[1])]
        .into_iter()
        .map(|(name, port)| PortSpec {
            name,
            protocol: "TCP",
            port,
            target_port: port,
        })
        .collect();
    let mut object = service("default", "iperf", IPERF_VIP, &ports);
    object["spec"]["type"] = json!("NodePort");
    object["spec"]["ports"][1]["nodePort"] = json!(IPERF_NODE_PORT);
    let store = web.testbed.store();
    store
        .put(&service_key("default", "iperf"), &object)
        .expect("the iperf Service is written");
    store
        .put(
            &endpoint_slice_key("default", "iperf-1"),
            &endpoint_slice("default", "iperf-1", "iperf", &ports, &[web.ready(&web.b)]),
        )
        .expect("its EndpointSlice is written");
    eventually("node1 to program default/iperf and web-b to listen", || {
        let programmed =
            frontend_programmed(web, 1, &format!("{IPERF_VIP}:{IPERF_CLUSTER_IP_PORT}/TCP"));
        let listening = web
            .b
            .command("ss")
            .args(["-Hltn", "sport = :5201 or sport = :5202"])
            .output()
            .expect("ss runs");
        (programmed && String::from_utf8_lossy(&listening.stdout).lines().count() == 2)
            .then_some(())
    });
    servers
}

/// The streams held open across the stop: reported every second,
/// paced to stay cheap on a shared machine.
fn stream_plan(seconds: u32) -> StreamPlan {
    StreamPlan {
        seconds,
        interval: 1.0,
        bitrate: "10M",
    }
}

/// The stream ended without an error and carried bytes in every second.
fn assert_stream_flowed(name: &str, client: Child, seconds: u32) {
    let report = iperf3::finished_report(name, client, stream_plan(seconds));
    let intervals = report["intervals"].as_array().expect("intervals");
    let idle: Vec<usize> = (intervals.iter().enumerate())
        .filter(|(_, interval)| interval["sum"]["bytes"].as_u64() == Some(0))
        .map(|(second, _)| second)
        .collect();
    assert!(
        idle.is_empty(),
        "{name}: no byte through in seconds {idle:?}"
    );
}

fn failures(results: &[CallResult]) -> Vec<&CallResult> {
    results.iter().filter(|result| !result.is_ok()).collect()
}

/// (c) etcd and skiff-control stopped for 30 s: the datapath keeps
/// serving established and new connections (0 failures), and a Service
/// written once the control plane is back reaches the agents.
#[test]
fn control_plane_stopped_for_30_seconds() {
    let mut web = Web::start();
    web.testbed
        .start_control(&[])
        .expect("skiff-control starts");
    web.put_service(|service| {
        service["spec"]["type"] = json!("NodePort");
        service["spec"]["ports"][0]["nodePort"] = json!(NODE_PORT);
        service["spec"]["ports"][2]["nodePort"] = json!(DNS_NODE_PORT);
    });
    let node1 = web.testbed.cluster().node(1).ip();
    let node_port = format!("{node1}:{NODE_PORT}");
    let dns_node_port = format!("{node1}:{DNS_NODE_PORT}");
    eventually("the NodePort to answer", || {
        call_from_outside(&web, &["tcp", &node_port])[0]
            .is_ok()
            .then_some(())
    });

    let _servers = serve_iperf(&web);

    let stopped_for = Duration::from_secs(30);
    let stream_seconds = stopped_for.as_secs() as u32 + 4;
    let cluster_ip_stream = iperf3::start_stream(
        web.client.command("iperf3"),
        IPERF_VIP,
        IPERF_CLUSTER_IP_PORT,
        stream_plan(stream_seconds),
    );
    let node_port_stream = iperf3::start_stream(
        web.testbed.cluster().ext().command("iperf3"),
        node1,
        IPERF_NODE_PORT,
        stream_plan(stream_seconds),
    );
    let duration = (stopped_for + Duration::from_secs(4))
        .as_millis()
        .to_string();
    let during = ["--duration-ms", &duration, "--interval-ms", "100"];
    // Established: an iperf3 TCP stream to the ClusterIP from a pod and
    // one to the NodePort from outside, and one connected UDP socket kept
    // for the whole stop, to the
    // ClusterIP from a pod (socket LB) and to a NodePort from outside (per
    // packet); new: a TCP connection per attempt, to the ClusterIP from a
    // pod and to the NodePort from outside.
    let established = web
        .testbed
        .call_in_background(
            &web.client,
            &[
                &["udp", "10.96.0.10:53", "--connected", "--keep-socket"],
                &during[..],
            ]
            .concat(),
        )
        .expect("the established flow starts");
    let new = web
        .testbed
        .call_in_background(
            &web.client,
            &[&["tcp", "10.96.0.10:80"], &during[..]].concat(),
        )
        .expect("the ClusterIP loop starts");
    let (outside, outside_established) = thread::scope(|scope| {
        let outside = scope.spawn(|| {
            call_from_outside(&web, &[&["tcp", node_port.as_str()], &during[..]].concat())
        });
        let established = scope.spawn(|| {
            let flow = ["udp", &dns_node_port, "--connected", "--keep-socket"];
            call_from_outside(&web, &[&flow[..], &during[..]].concat())
        });
        let pids = web.testbed.control_plane_pids();
        assert_eq!(pids.len(), 2, "etcd and skiff-control");
        // Traffic flows for a moment before the stop: the scenario.
        thread::sleep(Duration::from_secs(2));
        signal(&pids, "-STOP");
        // The stop's length is the scenario, not a wait for a condition.
        thread::sleep(stopped_for);
        signal(&pids, "-CONT");
        (
            outside.join().expect("the outside loop finishes"),
            established.join().expect("the outside flow finishes"),
        )
    });
    assert_stream_flowed("ClusterIP TCP stream", cluster_ip_stream, stream_seconds);
    assert_stream_flowed("NodePort TCP stream", node_port_stream, stream_seconds);
    let established = established.finish().expect("the established flow ends");
    let new = new.finish().expect("the ClusterIP loop ends");
    for (what, results) in [
        ("established ClusterIP UDP flow", &established),
        ("established NodePort UDP flow", &outside_established),
        ("new ClusterIP connections", &new),
        ("new NodePort connections", &outside),
    ] {
        assert!(
            results.len() > 100,
            "{what}: only {} attempts",
            results.len()
        );
        assert_eq!(
            failures(results),
            Vec::<&CallResult>::new(),
            "{what} failed"
        );
    }

    // Back: a Service written now is programmed (the agents resynced).
    let ports = [PortSpec {
        name: "http",
        protocol: "TCP",
        port: 80,
        target_port: 8080,
    }];
    let store = web.testbed.store();
    store
        .put(
            &service_key("default", "late"),
            &service("default", "late", LATE_VIP.parse().unwrap(), &ports),
        )
        .expect("the late Service is written");
    store
        .put(
            &endpoint_slice_key("default", "late-1"),
            &endpoint_slice(
                "default",
                "late-1",
                "late",
                &ports,
                &[EndpointSpec::ready(web.a.ip(), web.a.node())],
            ),
        )
        .expect("its EndpointSlice is written");
    let target = format!("{LATE_VIP}:80");
    eventually("the late Service to answer", || {
        web.call(&["tcp", &target])[0].is_ok().then_some(())
    });
}
