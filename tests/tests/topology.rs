//! End to end: topology-aware routing and LoadBalancer `ipMode`, with real
//! agents and a real etcd. The API server checks `trafficDistribution` and
//! the EndpointSlice controller hints endpoints for it; a client's
//! ClusterIP traffic goes to endpoints hinted for its node, else for its
//! node's zone, else to all of them; a load balancer IP in `Proxy` mode is
//! left to the load balancer.
mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::{VIP, Web, call_from_outside, names, route_external_ips_via};
use serde_json::{Value, json};
use skiff_tests::{
    EndpointSpec, Hints, Pod, PortSpec, Testbed, ZONE_LABEL, endpoint_slice, endpoint_slice_key,
    eventually, service, service_key,
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

/// Service `zoned` (with `distribution`, if any) in front of DaemonSet
/// `zoned`'s busybox pods, one a node.
fn zoned_objects(distribution: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: zoned
spec:
  selector:
    app: zoned
  ports:
  - port: 80
{distribution}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: zoned
spec:
  selector:
    matchLabels:
      app: zoned
  template:
    metadata:
      labels:
        app: zoned
    spec:
      containers:
      - name: main
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

/// Each ready endpoint of Service `zoned` as (node, zone, hints), once
/// there is one for each of `nodes`.
fn hinted_endpoints(testbed: &Testbed, nodes: usize) -> Option<Vec<(Value, Value, Value)>> {
    let slices = testbed.kubectl_json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=zoned",
    ]);
    let mut endpoints: Vec<(Value, Value, Value)> = slices["items"]
        .as_array()?
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|endpoint| endpoint["conditions"]["ready"] == true)
        .map(|endpoint| {
            (
                endpoint["nodeName"].clone(),
                endpoint["zone"].clone(),
                endpoint["hints"].clone(),
            )
        })
        .collect();
    endpoints.sort_by_key(|(node, _, _)| node.to_string());
    (endpoints.len() == nodes).then_some(endpoints)
}

#[test]
fn traffic_distribution_is_validated_and_hinted_for_by_the_endpointslice_controller() {
    let mut testbed = Testbed::start_running_pods(2).expect("the testbed starts");
    testbed
        .start_control(&["--leader-elect=false"])
        .expect("skiff-control starts");
    for (node, zone) in [("node1", "a"), ("node2", "b")] {
        let label = format!("{ZONE_LABEL}={zone}");
        testbed.kubectl_ok(&["label", "node", node, &label, "--overwrite"], "");
    }

    let refused = testbed
        .run_kubectl(
            &["create", "-f", "-"],
            &zoned_objects("  trafficDistribution: PreferSameRack"),
        )
        .expect_err("an unknown trafficDistribution is refused");
    assert!(
        format!("{refused:#}").contains(
            "spec.trafficDistribution: Unsupported value: \"PreferSameRack\": supported values: \"PreferClose\", \"PreferSameZone\", \"PreferSameNode\""
        ),
        "{refused:#}"
    );

    testbed.kubectl_ok(
        &["apply", "-f", "-"],
        &zoned_objects("  trafficDistribution: PreferSameNode"),
    );
    let hinted = |node: &str, zone: &str| {
        (
            json!(node),
            json!(zone),
            json!({ "forZones": [{ "name": zone }], "forNodes": [{ "name": node }] }),
        )
    };
    let wanted = vec![hinted("node1", "a"), hinted("node2", "b")];
    eventually(
        "endpoints hinted for their node and zone",
        FOLLOW * 6,
        || hinted_endpoints(&testbed, 2).filter(|endpoints| *endpoints == wanted),
    );

    // Without the field, the hints go; the zones stay.
    testbed.kubectl_ok(
        &[
            "patch",
            "service",
            "zoned",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/spec/trafficDistribution"}]"#,
        ],
        "",
    );
    let plain = vec![
        (json!("node1"), json!("a"), Value::Null),
        (json!("node2"), json!("b"), Value::Null),
    ];
    eventually("the hints to be removed", FOLLOW * 3, || {
        hinted_endpoints(&testbed, 2).filter(|endpoints| *endpoints == plain)
    });
}
