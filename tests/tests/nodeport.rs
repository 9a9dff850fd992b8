//! End to end: NodePort traffic from the outside client, through the
//! per-packet NAT programs on each node's uplink, to local and remote
//! backends and back.
mod common;

use std::{net::SocketAddr, thread};

use common::{REACTION_BOUND, Web, answered, names};
use serde_json::json;
use skiff_tests::{CallResult, FailureKind, echo_binary, parse_call_output};

const HTTP_NODE_PORT: u16 = 30080;
const DNS_NODE_PORT: u16 = 30053;

fn with_node_ports(web: &Web) {
    web.put_service(|service| {
        service["spec"]["type"] = json!("NodePort");
        service["spec"]["ports"][0]["nodePort"] = json!(HTTP_NODE_PORT);
        service["spec"]["ports"][2]["nodePort"] = json!(DNS_NODE_PORT);
    });
    thread::sleep(REACTION_BOUND);
}

/// `skiff-echo call <args>` from the outside client, which no socket hook
/// sees: only the uplink programs can take its packets to a backend.
fn call_from_outside(web: &Web, args: &[&str]) -> Vec<CallResult> {
    let output = web
        .testbed
        .cluster()
        .ext()
        .command(echo_binary().expect("skiff-echo is built"))
        .arg("call")
        .args(args)
        .output()
        .expect("skiff-echo runs");
    assert!(output.status.success(), "{output:?}");
    parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
}

#[test]
fn node_port_reaches_local_and_remote_backends_from_outside_through_both_nodes() {
    let web = Web::start();
    with_node_ports(&web);
    for node in [1, 2] {
        let target = SocketAddr::from((web.testbed.cluster().node(node).ip(), HTTP_NODE_PORT));
        let results = call_from_outside(&web, &["tcp", &target.to_string(), "--count", "40"]);
        // The reply comes back from the address the client called, whichever
        // node the backend runs on.
        assert_eq!(
            answered(&results, target),
            names(&["web-a", "web-b"]),
            "via node{node}"
        );
        // The per-packet path counts the frontend's packets and bytes.
        for counter in ["skiff_frontend_packets_total", "skiff_frontend_bytes_total"] {
            let value = metric(&web, node, counter, &format!("{target}/TCP"));
            assert!(value > 0, "{counter} for {target} is {value}");
        }
    }
}

/// The value of `counter` for frontend `frontend` in node `node`'s metrics.
fn metric(web: &Web, node: usize, counter: &str, frontend: &str) -> u64 {
    let output = web
        .testbed
        .cluster()
        .node(node)
        .command("curl")
        .args(["-s", "http://127.0.0.1:10249/metrics"])
        .output()
        .expect("curl runs");
    let metrics = String::from_utf8_lossy(&output.stdout).into_owned();
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{counter}{{")))
        .find(|line| line.contains(&format!("\"{frontend}\"")))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {counter} for {frontend} in:\n{metrics}"))
}

#[test]
fn node_port_udp_replies_come_from_the_node_port() {
    let web = Web::start();
    with_node_ports(&web);
    let target = SocketAddr::from((web.testbed.cluster().node(1).ip(), DNS_NODE_PORT));
    let results = call_from_outside(&web, &["udp", &target.to_string(), "--count", "40"]);
    assert_eq!(answered(&results, target), names(&["web-a", "web-b"]));
}

#[test]
fn a_node_port_without_endpoints_is_refused_at_once_and_counted_by_the_datapath() {
    let web = Web::start();
    with_node_ports(&web);
    web.set_endpoints(&[]);
    thread::sleep(REACTION_BOUND);
    let node1 = web.testbed.cluster().node(1);
    let drops = || {
        let output = node1
            .command("curl")
            .args(["-s", "http://127.0.0.1:10249/metrics"])
            .output()
            .expect("curl runs");
        let metrics = String::from_utf8_lossy(&output.stdout).into_owned();
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("skiff_drops_total{reason=\"no_endpoints\"}")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no no_endpoints drops in:\n{metrics}"))
    };
    let before = drops();
    let target = SocketAddr::from((node1.ip(), HTTP_NODE_PORT));
    let results = call_from_outside(
        &web,
        &[
            "tcp",
            &target.to_string(),
            "--count",
            "2",
            "--timeout-ms",
            "500",
        ],
    );
    // The uplink program answers each SYN with an ICMP port unreachable:
    // the connect is refused at once, long before the client's timeout.
    // Without it the SYN would reach the node's own stack, where nothing
    // listens on the NodePort (a RST, also "refused") - hence the counter.
    for result in &results {
        match result {
            CallResult::Failed { kind, .. } => assert_eq!(*kind, FailureKind::Refused),
            CallResult::Ok { backend, .. } => panic!("{backend} answered"),
        }
    }
    assert!(drops() >= before + 2, "the refusals were not counted");

    // UDP too: the client's connected socket gets ECONNREFUSED, not silence.
    let target = SocketAddr::from((node1.ip(), DNS_NODE_PORT));
    let results = call_from_outside(
        &web,
        &[
            "udp",
            &target.to_string(),
            "--connected",
            "--timeout-ms",
            "500",
        ],
    );
    assert!(
        matches!(
            results[0],
            CallResult::Failed {
                kind: FailureKind::Refused,
                ..
            }
        ),
        "{results:?}"
    );

    // Traffic to the node itself still flows: NAT touches NodePorts only.
    let target = SocketAddr::from((node1.ip(), 1));
    let results = call_from_outside(&web, &["tcp", &target.to_string(), "--timeout-ms", "500"]);
    assert!(
        matches!(
            results[0],
            CallResult::Failed {
                kind: FailureKind::Refused,
                ..
            }
        ),
        "{results:?}"
    );
}
