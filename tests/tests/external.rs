//! End to end: traffic from outside the cluster to load balancer IPs,
//! external IPs and NodePorts, through the per-packet programs (XDP and
//! TCX) on the nodes' uplinks: Maglev placement, externalTrafficPolicy
//! Local with its health check port, loadBalancerSourceRanges, per-packet
//! session affinity; and a pod reaching itself through its Service.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, SocketAddr},
    thread,
    time::Duration,
};

use common::{
    REACTION_BOUND, Web, answered, call_from_outside, metric, names, route_external_ips_via, vip,
};
use serde_json::{Value, json};
use skiff_tests::{CallResult, FailureKind, echo_binary, parse_call_output};

const LOAD_BALANCER_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 10);
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 10);
const HTTP_NODE_PORT: u16 = 30080;
const DNS_NODE_PORT: u16 = 30053;
const HEALTH_CHECK_PORT: u16 = 32000;
/// The outside client's address (`skiff-ext`).
const CLIENT_IP: &str = "172.30.0.100";

/// `default/web` as a LoadBalancer with an ingress IP and an external IP,
/// NodePorts on http and dns, then `edit`.
fn load_balancer(web: &Web, edit: impl FnOnce(&mut Value)) {
    web.put_service(|service| {
        service["spec"]["type"] = json!("LoadBalancer");
        service["spec"]["externalIPs"] = json!([EXTERNAL_IP.to_string()]);
        service["spec"]["ports"][0]["nodePort"] = json!(HTTP_NODE_PORT);
        service["spec"]["ports"][2]["nodePort"] = json!(DNS_NODE_PORT);
        service["status"] = json!({
            "loadBalancer": { "ingress": [{ "ip": LOAD_BALANCER_IP.to_string() }] }
        });
        edit(service);
    });
    thread::sleep(REACTION_BOUND);
}

fn node_port(web: &Web, node: usize, port: u16) -> String {
    SocketAddr::from((web.testbed.cluster().node(node).ip(), port)).to_string()
}

/// Which backend each UDP source port lands on at `target`.
fn placement(web: &Web, target: &str, source_ports: &[u16]) -> BTreeMap<u16, String> {
    source_ports
        .iter()
        .map(|port| {
            let results =
                call_from_outside(web, &["udp", target, "--source-port", &port.to_string()]);
            let backend = results[0]
                .backend()
                .unwrap_or_else(|| panic!("source port {port}: {results:?}"))
                .to_owned();
            (*port, backend)
        })
        .collect()
}

fn drops(web: &Web, node: usize, reason: &str) -> u64 {
    let series = format!("skiff_drops_total{{reason=\"{reason}\"}}");
    metric(web, node, &series).unwrap_or_else(|| panic!("no {series} in the metrics"))
}

/// `curl` from the outside client: the HTTP status and the body.
fn http_from_outside(web: &Web, url: &str) -> (u16, Value) {
    let output = web
        .testbed
        .cluster()
        .ext()
        .command("curl")
        .args(["-s", "-m", "2", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    (
        code.parse().expect("a status code"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn load_balancer_and_external_ips_reach_every_backend_through_either_node() {
    let web = Web::start();
    load_balancer(&web, |_| {});
    for node in [1, 2] {
        route_external_ips_via(&web, node);
        for ip in [LOAD_BALANCER_IP, EXTERNAL_IP] {
            let target = SocketAddr::from((ip, 80));
            let results = call_from_outside(&web, &["tcp", &target.to_string(), "--count", "30"]);
            assert_eq!(
                answered(&results, target),
                names(&["web-a", "web-b"]),
                "{ip} via node{node}"
            );
        }
    }
    // Inside the cluster, the socket hooks serve the same addresses.
    let target = SocketAddr::from((LOAD_BALANCER_IP, 80));
    let results = web.call(&["tcp", &target.to_string(), "--count", "20"]);
    assert_eq!(answered(&results, target), names(&["web-a", "web-b"]));
}

#[test]
fn maglev_sends_a_flow_to_the_same_backend_whichever_node_it_enters() {
    let web = Web::start();
    load_balancer(&web, |_| {});
    let ports: Vec<u16> = (41_000..41_016).collect();
    let via_node1 = placement(&web, &node_port(&web, 1, DNS_NODE_PORT), &ports);
    let via_node2 = placement(&web, &node_port(&web, 2, DNS_NODE_PORT), &ports);
    assert_eq!(via_node1, via_node2);
    let used: BTreeSet<&String> = via_node1.values().collect();
    assert_eq!(used.len(), 2, "16 flows all hashed to one backend");

    // The same holds for a load balancer IP an upstream router moves.
    let target = SocketAddr::from((LOAD_BALANCER_IP, 53)).to_string();
    route_external_ips_via(&web, 1);
    let lb_node1 = placement(&web, &target, &ports);
    route_external_ips_via(&web, 2);
    assert_eq!(lb_node1, placement(&web, &target, &ports));
}

#[test]
fn removing_a_backend_moves_only_its_own_flows() {
    let mut web = Web::start();
    let c = web
        .testbed
        .serve(1, "web-c", &[8080], &[5353])
        .expect("web-c serves");
    let endpoints = [web.ready(&web.a), web.ready(&web.b), web.ready(&c)];
    web.set_endpoints(&endpoints);
    load_balancer(&web, |_| {});
    let ports: Vec<u16> = (42_000..42_024).collect();
    let target = node_port(&web, 1, DNS_NODE_PORT);
    let before = placement(&web, &target, &ports);

    web.set_endpoints(&endpoints[..2]);
    thread::sleep(REACTION_BOUND);
    let after = placement(&web, &target, &ports);
    for port in &ports {
        if before[port] != "web-c" {
            assert_eq!(
                before[port], after[port],
                "a flow of {} moved",
                before[port]
            );
        }
    }
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address_and_drops_where_no_endpoint_is() {
    let web = Web::start();
    // Only web-a (node1) serves.
    web.set_endpoints(&[web.ready(&web.a)]);
    load_balancer(&web, |service| {
        service["spec"]["externalTrafficPolicy"] = json!("Local");
        service["spec"]["healthCheckNodePort"] = json!(HEALTH_CHECK_PORT);
    });

    // Node 1: served locally, and the backend sees the real client.
    let results = call_from_outside(
        &web,
        &["udp", &node_port(&web, 1, DNS_NODE_PORT), "--ask-source"],
    );
    let reply = results[0].backend().expect("node1 answers").to_owned();
    let (backend, source) = reply.split_once(' ').expect("name and source");
    assert_eq!(backend, "web-a");
    assert!(source.starts_with(&format!("{CLIENT_IP}:")), "{source}");

    // Node 2 has no local endpoint: its packets are dropped, not refused
    // and not sent to node 1.
    let before = drops(&web, 2, "no_local_endpoints");
    let results = call_from_outside(
        &web,
        &[
            "tcp",
            &node_port(&web, 2, HTTP_NODE_PORT),
            "--timeout-ms",
            "500",
        ],
    );
    assert!(
        matches!(
            results[0],
            CallResult::Failed {
                kind: FailureKind::Timeout,
                ..
            }
        ),
        "{results:?}"
    );
    assert!(drops(&web, 2, "no_local_endpoints") > before);

    // The health check port says which node to send traffic to.
    let url = |node: usize| {
        format!(
            "http://{}/healthz",
            node_port(&web, node, HEALTH_CHECK_PORT)
        )
    };
    let (status, body) = http_from_outside(&web, &url(1));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["localEndpoints"], 1);
    assert_eq!(body["service"]["name"], "web");
    let (status, body) = http_from_outside(&web, &url(2));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["localEndpoints"], 0);
}

#[test]
fn sources_outside_load_balancer_source_ranges_are_dropped() {
    let web = Web::start();
    route_external_ips_via(&web, 1);
    let target = SocketAddr::from((LOAD_BALANCER_IP, 80));
    load_balancer(&web, |service| {
        service["spec"]["loadBalancerSourceRanges"] = json!([format!("{CLIENT_IP}/32")]);
    });
    let results = call_from_outside(&web, &["tcp", &target.to_string(), "--count", "10"]);
    assert_eq!(answered(&results, target), names(&["web-a", "web-b"]));

    load_balancer(&web, |service| {
        service["spec"]["loadBalancerSourceRanges"] = json!(["192.0.2.0/24"]);
    });
    let before = drops(&web, 1, "source_range");
    let results = call_from_outside(&web, &["tcp", &target.to_string(), "--timeout-ms", "500"]);
    assert!(
        matches!(
            results[0],
            CallResult::Failed {
                kind: FailureKind::Timeout,
                ..
            }
        ),
        "{results:?}"
    );
    assert!(drops(&web, 1, "source_range") > before);
    // The ranges guard the load balancer IP only; the NodePort stays open.
    let results = call_from_outside(&web, &["tcp", &node_port(&web, 1, HTTP_NODE_PORT)]);
    assert!(results[0].is_ok(), "{results:?}");
}

#[test]
fn client_ip_affinity_holds_per_packet_for_its_timeout_and_ends_after_it() {
    let web = Web::start();
    load_balancer(&web, |_| {});
    let target = node_port(&web, 1, DNS_NODE_PORT);
    let ports: Vec<u16> = (43_000..43_016).collect();
    // Learnt through node 2, whose conntrack entries do not matter at
    // node 1: Maglev places a flow alike on both.
    let plain = placement(&web, &node_port(&web, 2, DNS_NODE_PORT), &ports);
    // Source ports whose flows Maglev places on web-a, and two on web-b.
    let to = |backend: &str| -> Vec<u16> {
        plain
            .iter()
            .filter(|(_, b)| *b == backend)
            .map(|(port, _)| *port)
            .collect()
    };
    let (to_a, to_b) = (to("web-a")[0], to("web-b"));
    assert!(to_b.len() >= 2, "{plain:?}");

    load_balancer(&web, |service| {
        service["spec"]["sessionAffinity"] = json!("ClientIP");
        service["spec"]["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 2 } });
    });
    // The first flow picks web-a; the client then sticks to it, even for a
    // new flow Maglev alone would send to web-b.
    assert_eq!(placement(&web, &target, &[to_a])[&to_a], "web-a");
    assert_eq!(placement(&web, &target, &[to_b[0]])[&to_b[0]], "web-a");
    thread::sleep(Duration::from_millis(2_500));
    // Idle past the timeout: the next new flow is placed afresh.
    assert_eq!(placement(&web, &target, &[to_b[1]])[&to_b[1]], "web-b");
}

#[test]
fn a_pod_reaches_itself_through_its_service() {
    let web = Web::start();
    web.set_endpoints(&[web.ready(&web.a)]);
    thread::sleep(REACTION_BOUND);
    for (protocol, port) in [("tcp", 80), ("udp", 53)] {
        let results = web.call_from(&web.a, &[protocol, &vip(port).to_string(), "--count", "3"]);
        assert_eq!(
            answered(&results, vip(port)),
            names(&["web-a"]),
            "{protocol}"
        );
    }
}

#[test]
fn pod_traffic_the_socket_hooks_do_not_see_is_balanced_per_packet() {
    let web = Web::start();
    let outside_cgroup = |protocol: &str, port: u16| -> Vec<CallResult> {
        let output = web
            .client
            .command_outside_cgroup(echo_binary().expect("skiff-echo is built"))
            .args(["call", protocol, &vip(port).to_string(), "--count", "30"])
            .output()
            .expect("skiff-echo runs");
        assert!(output.status.success(), "{output:?}");
        parse_call_output(&String::from_utf8_lossy(&output.stdout)).expect("call results")
    };
    // The local backend (web-a) and the remote one (web-b) both answer, and
    // the replies come from the ClusterIP: the pod bridge's ingress program
    // translated both ways.
    for (protocol, port) in [("tcp", 80), ("udp", 53)] {
        let results = outside_cgroup(protocol, port);
        assert_eq!(
            answered(&results, vip(port)),
            names(&["web-a", "web-b"]),
            "{protocol}"
        );
    }
}
