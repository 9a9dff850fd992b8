//! End to end: NodePort traffic from the outside client, through the
//! per-packet NAT programs on each node's uplink, to local and remote
//! backends and back.
mod common;

use std::{net::SocketAddr, thread};

use common::{REACTION_BOUND, Web, answered, call_from_outside, metric, names};
use serde_json::json;
use skiff_tests::{CallResult, FailureKind};

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
            let series = format!(
                "{counter}{{namespace=\"default\",service=\"web\",port_name=\"http\",frontend=\"{target}/TCP\"}}"
            );
            let value = metric(&web, node, &series);
            assert!(value > Some(0), "{series} is {value:?}");
        }
    }
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
        metric(&web, 1, "skiff_drops_total{reason=\"no_endpoints\"}")
            .expect("the no_endpoints drops are exported")
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
