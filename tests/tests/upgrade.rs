//! End to end: an agent upgrade that changes the map layout. The new agent
//! finds the previous version's pinned maps in another directory, fills its
//! own, carries the per-flow state over and swaps its programs into the
//! pinned links; traffic through the ClusterIP and the NodePort never stops.
mod common;

use std::{fs, net::SocketAddr, process::Stdio, thread, time::Duration};

use common::{REACTION_BOUND, Web, answered, names, vip};
use serde_json::json;
use skiff_tests::{CallResult, echo_binary, parse_call_output};

const HTTP_NODE_PORT: u16 = 30080;

#[test]
fn a_map_layout_change_switches_over_without_a_window() {
    let mut web = Web::start();
    web.put_service(|service| {
        service["spec"]["type"] = json!("NodePort");
        service["spec"]["ports"][0]["nodePort"] = json!(HTTP_NODE_PORT);
    });
    thread::sleep(REACTION_BOUND);
    let bpffs = web.testbed.cluster().bpffs_dir(1);
    let current = bpffs.join(proxy_common::MAPS_DIR);
    let previous = bpffs.join("maps-v1");

    let loop_args = [
        "--duration-ms",
        "4000",
        "--interval-ms",
        "10",
        "--timeout-ms",
        "500",
    ];
    let in_cluster = web
        .testbed
        .call_in_background(
            &web.client,
            &[&["tcp", &vip(80).to_string()][..], &loop_args].concat(),
        )
        .expect("the client loop starts");
    let node_port = SocketAddr::from((web.testbed.cluster().node(1).ip(), HTTP_NODE_PORT));
    let from_outside = web
        .testbed
        .cluster()
        .ext()
        .command(echo_binary().expect("skiff-echo is built"))
        .args(["call", "tcp", &node_port.to_string()])
        .args(loop_args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the outside loop starts");
    thread::sleep(Duration::from_millis(700));

    // The "old" agent goes; its maps stay pinned and its programs keep
    // serving from them. Renamed, they are what an older version left.
    web.testbed.kill_agent(1);
    fs::rename(&current, &previous).expect("the maps directory is renamed");
    thread::sleep(Duration::from_millis(300));
    web.testbed.start_agent(1).expect("the new agent starts");

    let results = in_cluster.finish().expect("the client loop ends");
    assert!(results.len() > 100, "only {} attempts", results.len());
    assert_eq!(answered(&results, vip(80)), names(&["web-a", "web-b"]));
    let output = from_outside
        .wait_with_output()
        .expect("the outside loop ends");
    let results: Vec<CallResult> =
        parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results");
    assert!(results.len() > 100, "only {} attempts", results.len());
    assert_eq!(answered(&results, node_port), names(&["web-a", "web-b"]));

    // The switch-over happened: the old maps are gone, the flows' state was
    // carried over, and the new maps serve changes.
    assert!(current.exists() && !previous.exists());
    let log = web.testbed.agent_log(1);
    let carried = log
        .lines()
        .find(|line| line.contains("per-flow state carried over") && line.contains("skiff_ct"))
        .unwrap_or_else(|| panic!("no conntrack carry-over in:\n{log}"));
    assert!(!carried.contains("entries=0"), "{carried}");
    web.set_endpoints(&[web.ready(&web.b)]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", &vip(80).to_string(), "--count", "20"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-b"]));
}
