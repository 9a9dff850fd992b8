//! End to end: Services and EndpointSlices written as Kubernetes JSON to a
//! real etcd, a real skiff-agent on each of two nodes, and real connections
//! from a pod whose connects cross the eBPF socket hooks.
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod common;

use std::{net::SocketAddr, path::Path, process::Command, thread, time::Duration};

use common::{REACTION_BOUND, Web, answered, assert_fails_fast, names, vip};
use skiff_tests::{EndpointSpec, FailureKind, Testbed};

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

    web.set_endpoints(&[
        web.ready(&web.a),
        EndpointSpec::not_ready(web.b.ip(), web.b.node()),
    ]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "40"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-a"]));

    web.set_endpoints(&[web.ready(&web.b)]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "40"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-b"]));
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
    web.delete_all();
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

#[test]
fn a_refused_map_write_is_repaired_from_the_maps() {
    let web = Web::start();
    // Take slot 1 of every frontend away behind the agent's back: whichever
    // frontend it removes first fails on the kernel's ENOENT as on a real
    // fault, and the others must still go through the repair.
    let slots = web
        .testbed
        .cluster()
        .bpffs_dir(1)
        .join(proxy_common::MAPS_DIR)
        .join("skiff_slots");
    for entry in bpftool_json(&["map", "dump", "pinned"], &slots) {
        // BackendSlotKey: service id, then slot, both u32 in host order.
        let key: Vec<String> = entry["key"]
            .as_array()
            .expect("a key of bytes")
            .iter()
            .map(|byte| byte.as_str().expect("a hex byte").to_owned())
            .collect();
        if key[4..] != ["0x01", "0x00", "0x00", "0x00"] {
            continue;
        }
        let deleted = Command::new("bpftool")
            .args(["map", "delete", "pinned"])
            .arg(&slots)
            .arg("key")
            .args(&key)
            .status()
            .expect("bpftool runs");
        assert!(deleted.success());
    }
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_slots"), 3);

    web.delete_all();
    // One failed write, one retry a second later.
    thread::sleep(REACTION_BOUND * 3);
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_services"), 0);
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_slots"), 0);
    assert_eq!(pinned_entries(&web.testbed, 1, "skiff_backends"), 0);
    let results = web.call(&[
        "tcp",
        "10.96.0.10:80",
        "--count",
        "3",
        "--timeout-ms",
        "3000",
    ]);
    assert_fails_fast(&results, &[FailureKind::Refused]);
    let log = web.testbed.agent_log(1);
    assert!(log.contains("datapath repaired"), "{log}");
}

/// How many entries a pinned map of node `node` holds, read with bpftool.
fn pinned_entries(testbed: &Testbed, node: usize, map: &str) -> usize {
    let pin = testbed
        .cluster()
        .bpffs_dir(node)
        .join(proxy_common::MAPS_DIR)
        .join(map);
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
    // connect, sendmsg, recvmsg and getpeername for each family, and
    // sock_ops.
    assert_eq!(
        hooks_before.len(),
        9,
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
    web.set_endpoints(&[web.ready(&web.a)]);
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
        9,
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
