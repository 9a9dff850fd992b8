//! End to end: topology-aware routing and LoadBalancer `ipMode`, with real
//! agents and a real etcd. A client's ClusterIP traffic goes to endpoints
//! hinted for its node, else for its node's zone, else to all of them; a
//! load balancer IP in `Proxy` mode is left to the load balancer.
mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{VIP, Web, call_from_outside, names, route_external_ips_via};
use serde_json::json;
use skiff_tests::{
    EndpointSpec, Hints, Pod, PortSpec, Testbed, endpoint_slice, endpoint_slice_key, eventually,
    service, service_key,
};

const LOAD_BALANCER_IP: Ipv4Addr = Ipv4Addr::new(172, 18, 255, 10);
/// How long the agents get to follow a change.
const FOLLOW: Duration = Duration::from_secs(10);

fn http() -> [PortSpec; 1] {
    [PortSpec {
        name: "http",
        protocol: "TCP",
        port: 80,
        target_port: 8080,
    }]
}

/// `default/web` with a backend on each of three nodes (web-a on node1,
/// web-b on node2, web-c on node3) and a client on node1.
struct Zoned {
    testbed: Testbed,
    client: Pod,
    backends: Vec<Pod>,
}

impl Zoned {
    fn start() -> Zoned {
        let mut testbed = Testbed::start(3).expect("the testbed starts");
        let backends = ["web-a", "web-b", "web-c"]
            .iter()
            .enumerate()
            .map(|(index, name)| testbed.serve(index + 1, name, &[8080], &[]).expect(name))
            .collect();
        let client = testbed.add_pod(1, "client").expect("client pod");
        let mut object = service("default", "web", VIP, &http());
        object["spec"]["trafficDistribution"] = json!("PreferSameNode");
        testbed
            .store()
            .put(&service_key("default", "web"), &object)
            .expect("service written");
        Zoned {
            testbed,
            client,
            backends,
        }
    }

    /// Places node `node` in `zone`.
    fn zone(&self, node: usize, zone: &str) {
        self.testbed
            .set_zone(node, Some(zone))
            .expect("node written");
    }

    /// The endpoints: backend `index` (0 for web-a) in `zones[index]` with
    /// `hints`, for each `(index, hints)`.
    fn endpoints(&self, zones: [&str; 3], endpoints: &[(usize, Hints)]) {
        let specs: Vec<EndpointSpec> = endpoints
            .iter()
            .map(|&(index, hints)| {
                let pod = &self.backends[index];
                EndpointSpec::ready(pod.ip(), pod.node()).in_zone(zones[index], hints)
            })
            .collect();
        self.testbed
            .store()
            .put(
                &endpoint_slice_key("default", "web-1"),
                &endpoint_slice("default", "web-1", "web", &http(), &specs),
            )
            .expect("endpoint slice written");
    }

    /// Waits until 30 connects from the client to the ClusterIP all
    /// succeed and reach exactly `expected`.
    fn reaches(&self, expected: &[&str]) {
        let expected = names(expected);
        let target = SocketAddr::from((VIP, 80)).to_string();
        eventually(&format!("the client to reach {expected:?}"), FOLLOW, || {
            let results = self
                .testbed
                .call(&self.client, &["tcp", &target, "--count", "30"])
                .expect("skiff-echo call runs");
            let reached: Option<BTreeSet<String>> = results
                .iter()
                .map(|result| result.backend().map(str::to_owned))
                .collect();
            (reached.as_ref() == Some(&expected)).then_some(())
        });
    }
}

#[test]
fn cluster_traffic_prefers_the_nodes_then_the_zones_endpoints_then_all() {
    let zoned = Zoned::start();
    let zones = ["a", "a", "b"];
    for (node, zone) in zones.iter().enumerate() {
        zoned.zone(node + 1, zone);
    }
    let same_node = Hints::ZoneAndNode;
    zoned.endpoints(zones, &[(0, same_node), (1, same_node), (2, same_node)]);
    zoned.reaches(&["web-a"]);

    // node1's own backend goes: its zone's.
    zoned.endpoints(zones, &[(1, same_node), (2, same_node)]);
    zoned.reaches(&["web-b"]);

    // PreferSameZone: the zone's backends, node1's among them.
    let same_zone = Hints::Zone;
    zoned.endpoints(zones, &[(0, same_zone), (1, same_zone), (2, same_zone)]);
    zoned.reaches(&["web-a", "web-b"]);

    // node1 moves to a zone no endpoint is hinted for: every backend.
    zoned.zone(1, "c");
    zoned.reaches(&["web-a", "web-b", "web-c"]);

    // Back in zone a, but one ready endpoint lacks hints: every backend.
    zoned.zone(1, "a");
    zoned.endpoints(zones, &[(0, same_zone), (1, same_zone), (2, Hints::None)]);
    zoned.reaches(&["web-a", "web-b", "web-c"]);
    zoned.endpoints(zones, &[(0, same_zone), (1, same_zone), (2, same_zone)]);
    zoned.reaches(&["web-a", "web-b"]);
}

#[test]
fn a_proxy_mode_load_balancer_ip_is_left_to_the_load_balancer() {
    let web = Web::start();
    route_external_ips_via(&web, 1);
    let target = SocketAddr::from((LOAD_BALANCER_IP, 80)).to_string();
    for (mode, translated) in [("VIP", true), ("Proxy", false), ("VIP", true)] {
        web.put_service(|service| {
            service["spec"]["type"] = json!("LoadBalancer");
            service["status"] = json!({ "loadBalancer": { "ingress": [
                { "ip": LOAD_BALANCER_IP.to_string(), "ipMode": mode },
            ] } });
        });
        eventually(&format!("ipMode {mode} to take effect"), FOLLOW, || {
            let results = call_from_outside(&web, &["tcp", &target, "--timeout-ms", "500"]);
            (results[0].is_ok() == translated).then_some(())
        });
        // The ClusterIP is served either way.
        let results = web.call(&["tcp", "10.96.0.10:80"]);
        assert!(results[0].is_ok(), "ipMode {mode}: {results:?}");
    }
}
