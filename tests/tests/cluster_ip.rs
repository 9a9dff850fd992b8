//! End to end: Services and EndpointSlices written as Kubernetes JSON to a
//! real etcd, a real skiff-agent on each of two nodes, and real connections
//! from a pod whose connects cross the eBPF socket hooks.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use skiff_tests::{
    CallResult, EndpointSpec, FailureKind, Pod, PortSpec, Testbed, endpoint_slice,
    endpoint_slice_key, service, service_key,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The agent must act on an etcd change within this long (issue #2).
const REACTION_BOUND: Duration = Duration::from_secs(1);

fn web_ports() -> Vec<PortSpec> {
    vec![
        PortSpec {
            name: "http",
            protocol: "TCP",
            port: 80,
            target_port: 8080,
        },
        PortSpec {
            name: "admin",
            protocol: "TCP",
            port: 81,
            target_port: 9090,
        },
        PortSpec {
            name: "dns",
            protocol: "UDP",
            port: 53,
            target_port: 5353,
        },
    ]
}

/// `default/web`: backends web-a (node1) and web-b (node2), each serving
/// http on 8080, admin on 9090 (as `<name>-admin`) and dns on UDP 5353; a
/// client pod on node1.
struct Web {
    testbed: Testbed,
    client: Pod,
    a: Pod,
    b: Pod,
}

impl Web {
    fn start() -> Web {
        let mut testbed = Testbed::start(2).expect("the testbed starts");
        let a = testbed
            .serve(1, "web-a", &[8080], &[5353])
            .expect("web-a serves");
        testbed
            .serve_in(&a, "web-a-admin", &[9090], &[])
            .expect("web-a-admin serves");
        let b = testbed
            .serve(2, "web-b", &[8080], &[5353])
            .expect("web-b serves");
        testbed
            .serve_in(&b, "web-b-admin", &[9090], &[])
            .expect("web-b-admin serves");
        let client = testbed.add_pod(1, "client").expect("client pod");
        let web = Web {
            testbed,
            client,
            a,
            b,
        };
        web.testbed
            .store()
            .put(
                &service_key("default", "web"),
                &service("default", "web", VIP, &web_ports()),
            )
            .expect("service written");
        web.set_endpoints(&[(web.a.ip(), true), (web.b.ip(), true)]);
        web.wait_until_answering();
        web
    }

    fn set_endpoints(&self, endpoints: &[(Ipv4Addr, bool)]) {
        let endpoints: Vec<EndpointSpec> = endpoints
            .iter()
            .map(|&(ip, ready)| EndpointSpec { ip, ready })
            .collect();
        self.testbed
            .store()
            .put(
                &endpoint_slice_key("default", "web-x7k2p"),
                &endpoint_slice("default", "web-x7k2p", "web", &web_ports(), &endpoints),
            )
            .expect("endpoint slice written");
    }

    fn call(&self, args: &[&str]) -> Vec<CallResult> {
        self.testbed
            .call(&self.client, args)
            .expect("skiff-echo call runs")
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.call(&["tcp", "10.96.0.10:80"])[0].is_ok() {
            assert!(Instant::now() < deadline, "the ClusterIP never answered");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::from((VIP, port))
}

/// The backends that answered; panics on any failed attempt or on a peer
/// address other than `peer`.
fn answered(results: &[CallResult], peer: SocketAddr) -> BTreeSet<String> {
    assert!(!results.is_empty(), "no attempt was made");
    results
        .iter()
        .map(|result| match result {
            CallResult::Ok {
                backend,
                peer: seen,
                ..
            } => {
                assert_eq!(*seen, peer, "the client saw the wrong peer address");
                backend.clone()
            }
            CallResult::Failed { error, .. } => panic!("an attempt failed: {error}"),
        })
        .collect()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[test]
fn tcp_to_the_cluster_ip_reaches_every_backend_and_shows_the_cluster_ip() {
    let web = Web::start();
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "50"]);
    assert_eq!(results.len(), 50);
    assert_eq!(answered(&results, vip(80)), names(&["web-a", "web-b"]));

    // A direct connection to a pod is left alone, and its peer is the pod.
    let direct = SocketAddr::from((web.a.ip(), 8080));
    let results = web.call(&["tcp", &direct.to_string(), "--count", "5"]);
    assert_eq!(answered(&results, direct), names(&["web-a"]));
}

#[test]
fn udp_replies_come_from_the_cluster_ip() {
    let web = Web::start();
    let results = web.call(&["udp", "10.96.0.10:53", "--count", "40"]);
    assert_eq!(answered(&results, vip(53)), names(&["web-a", "web-b"]));

    let results = web.call(&["udp", "10.96.0.10:53", "--count", "10", "--connected"]);
    let backends = answered(&results, vip(53));
    assert!(
        backends.is_subset(&names(&["web-a", "web-b"])),
        "{backends:?}"
    );
}

#[test]
fn each_service_port_routes_to_its_own_target_port() {
    let web = Web::start();
    let admin = answered(
        &web.call(&["tcp", "10.96.0.10:81", "--count", "30"]),
        vip(81),
    );
    assert_eq!(admin, names(&["web-a-admin", "web-b-admin"]));
    let http = answered(
        &web.call(&["tcp", "10.96.0.10:80", "--count", "30"]),
        vip(80),
    );
    assert_eq!(http, names(&["web-a", "web-b"]));
}

#[test]
fn an_endpoint_removed_or_not_ready_gets_no_new_connection_within_a_second() {
    let web = Web::start();

    web.set_endpoints(&[(web.a.ip(), true), (web.b.ip(), false)]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "40"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-a"]));

    web.set_endpoints(&[(web.b.ip(), true)]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "40"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-b"]));
}

/// Every attempt failed, with one of `kinds`, and quickly (well before the
/// attempt's own timeout).
fn assert_fails_fast(results: &[CallResult], kinds: &[FailureKind]) {
    assert!(!results.is_empty(), "no attempt was made");
    for result in results {
        match result {
            CallResult::Failed {
                kind, elapsed_ms, ..
            } => {
                assert!(
                    kinds.contains(kind),
                    "failed as {kind:?}, expected one of {kinds:?}"
                );
                assert!(*elapsed_ms < 1000, "took {elapsed_ms} ms to fail");
            }
            CallResult::Ok { backend, .. } => panic!("{backend} answered"),
        }
    }
}

#[test]
fn a_service_without_endpoints_refuses_at_once() {
    let web = Web::start();
    web.set_endpoints(&[]);
    thread::sleep(REACTION_BOUND);
    let tcp = web.call(&[
        "tcp",
        "10.96.0.10:80",
        "--count",
        "5",
        "--timeout-ms",
        "3000",
    ]);
    assert_fails_fast(&tcp, &[FailureKind::Refused]);
    let udp = web.call(&[
        "udp",
        "10.96.0.10:53",
        "--count",
        "5",
        "--timeout-ms",
        "3000",
    ]);
    assert_fails_fast(&udp, &[FailureKind::Refused]);
}

#[test]
fn a_deleted_service_fails_fast_and_nothing_leaves_the_cluster() {
    let web = Web::start();
    web.testbed
        .store()
        .delete(&service_key("default", "web"))
        .expect("service deleted");
    web.testbed
        .store()
        .delete(&endpoint_slice_key("default", "web-x7k2p"))
        .expect("slice deleted");
    thread::sleep(REACTION_BOUND);
    let results = web.call(&[
        "tcp",
        "10.96.0.10:80",
        "--count",
        "5",
        "--timeout-ms",
        "3000",
    ]);
    assert_fails_fast(&results, &[FailureKind::Refused, FailureKind::Unreachable]);
    web.testbed
        .cluster()
        .assert_isolated()
        .expect("no namespace can reach beyond the cluster");
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_services"), 0);
}

/// How many entries a pinned map of node `node` holds, read with bpftool.
fn pinned_entries(testbed: &Testbed, node: usize, map: &str) -> usize {
    let pin = testbed.cluster().bpffs_dir(node).join("maps-v1").join(map);
    bpftool_json(&["map", "dump", "pinned"], &pin).len()
}

fn bpftool_json(args: &[&str], path: &Path) -> Vec<serde_json::Value> {
    let output = Command::new("bpftool")
        .arg("--json")
        .args(args)
        .arg(path)
        .output()
        .expect("bpftool runs");
    assert!(
        output.status.success(),
        "bpftool {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("bpftool prints JSON")
}

#[test]
fn the_cluster_ip_keeps_answering_while_the_agent_is_killed_and_restarted() {
    let mut web = Web::start();
    let node1_cgroup = web.testbed.cluster().node(1).cgroup_dir().to_path_buf();
    let hooks_before = bpftool_json(&["cgroup", "show"], &node1_cgroup);
    assert_eq!(
        hooks_before.len(),
        4,
        "one program per hook: {hooks_before:?}"
    );

    let calls = web
        .testbed
        .call_in_background(
            &web.client,
            &[
                "tcp",
                "10.96.0.10:80",
                "--duration-ms",
                "3000",
                "--interval-ms",
                "10",
            ],
        )
        .expect("the client loop starts");
    thread::sleep(Duration::from_millis(500));
    web.testbed.kill_agent(1);
    // While the agent is down, the service loses web-b.
    web.set_endpoints(&[(web.a.ip(), true)]);
    thread::sleep(Duration::from_millis(500));
    web.testbed.start_agent(1).expect("the agent restarts");
    let results = calls.finish().expect("the client loop ends");
    assert!(results.len() > 50, "only {} attempts", results.len());
    let backends = answered(&results, vip(80));
    assert!(backends.contains("web-a"), "{backends:?}");

    // The restarted agent reused the pinned hooks and maps: still one
    // program per hook, one entry per service port, and it caught up with
    // the change it missed.
    let hooks_after = bpftool_json(&["cgroup", "show"], &node1_cgroup);
    assert_eq!(
        hooks_after.len(),
        4,
        "one program per hook: {hooks_after:?}"
    );
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_services"), 3);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "40"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-a"]));
}

#[test]
fn teardown_removes_the_agents_pins_hooks_and_processes() {
    let web = Web::start();
    let prefix = web.testbed.cluster().prefix().as_str().to_owned();
    let bpffs = web.testbed.cluster().bpffs_dir(1);
    let cgroup = web.testbed.cluster().cgroup_dir().to_path_buf();
    assert!(bpffs.join("links").join("skiff_connect4").exists());
    drop(web);
    assert!(!bpffs.exists(), "{} is left", bpffs.display());
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
    let agents = Command::new("pgrep")
        .args(["-f", &format!("skiff-agent.*{prefix}")])
        .output()
        .expect("pgrep runs");
    assert!(
        agents.stdout.is_empty(),
        "agents still run: {:?}",
        agents.stdout
    );
}
