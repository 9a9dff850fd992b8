use super::*;
use crate::proxy::cluster::records::SERVICE_NAME_LABEL;
use serde_json::{Value, json};
use std::{collections::BTreeMap, net::SocketAddr};

fn web() -> ServiceRef {
    ServiceRef {
        namespace: "default".into(),
        name: "web".into(),
    }
}

/// The frontends of Service default/web.
fn desired_frontends(
    service: &ServiceRecord,
    slices: &[&SliceRecord],
    node: NodeRef<'_>,
) -> Vec<DesiredFrontend> {
    super::desired_frontends(&web(), service, slices, node)
}

fn service_object(object: Value) -> ServiceRecord {
    ServiceRecord::from_json(&web(), object.to_string().as_bytes()).unwrap()
}

fn service(spec: Value) -> ServiceRecord {
    service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": spec,
    }))
}

fn slice(name: &str, address_type: &str, ports: Value, endpoints: Value) -> SliceRecord {
    let object = json!({
        "metadata": {
            "namespace": "default",
            "name": name,
            "labels": { SERVICE_NAME_LABEL: "web" },
        },
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    });
    SliceRecord::from_json(&web(), object.to_string().as_bytes()).unwrap()
}

fn ready(addresses: &[&str]) -> Value {
    json!({ "addresses": addresses, "conditions": { "ready": true } })
}

fn backend(ip: &str, port: u16) -> BackendAddr {
    BackendAddr {
        ip: ip.parse().unwrap(),
        port,
    }
}

fn frontend(ip: &str, port: u16, protocol: Protocol, port_name: &str) -> Frontend {
    Frontend {
        ip: ip.parse().unwrap(),
        port,
        protocol,
        port_name: port_name.into(),
    }
}

fn unnamed_http() -> Value {
    json!({ "clusterIP": "10.96.0.10", "ports": [{ "port": 80, "targetPort": 8080 }] })
}

fn unnamed_slice(name: &str, endpoints: Value) -> SliceRecord {
    slice(
        name,
        "IPv4",
        json!([{ "port": 8080, "protocol": "TCP" }]),
        endpoints,
    )
}

fn node(name: &str) -> NodeRef<'_> {
    NodeRef {
        name,
        ip: None,
        ip6: None,
        local_dns: None,
        zone: None,
    }
}

#[test]
fn node_ports_are_served_on_the_node_address_with_every_endpoint() {
    let mut spec = unnamed_http();
    spec["type"] = json!("NodePort");
    spec["internalTrafficPolicy"] = json!("Local");
    spec["ports"][0]["nodePort"] = json!(30080);
    let svc = service(spec);
    let s = unnamed_slice(
        "web-a",
        json!([
            endpoint("10.244.1.2", "node1", json!({ "ready": true })),
            endpoint("10.244.2.2", "node2", json!({ "ready": true })),
        ]),
    );
    let here = NodeRef {
        name: "node1",
        ip: Some("172.30.0.11".parse().unwrap()),
        ip6: None,
        local_dns: None,
        zone: None,
    };
    let desired = desired_frontends(&svc, &[&s], here);
    assert_eq!(desired.len(), 2);
    assert_eq!(
        desired[1].frontend,
        frontend("172.30.0.11", 30080, Protocol::Tcp, "")
    );
    assert_eq!(desired[1].backends.len(), 2);
    // The ClusterIP keeps its internal policy.
    assert_eq!(backend_ips(&desired), ["10.244.1.2"]);
    // Without a node address, or for a ClusterIP Service, no NodePort.
    assert_eq!(desired_frontends(&svc, &[&s], node("node1")).len(), 1);
}

fn load_balancer_service(extra: Value) -> ServiceRecord {
    let mut spec = unnamed_http();
    spec["type"] = json!("LoadBalancer");
    spec["ports"][0]["nodePort"] = json!(30080);
    spec["externalIPs"] = json!(["172.18.0.10", "fd00::10"]);
    spec["loadBalancerSourceRanges"] = json!(["192.0.2.7/24", "2001:db8::/32", "bogus"]);
    for (field, value) in extra.as_object().unwrap() {
        spec[field] = value.clone();
    }
    service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": spec,
        "status": {
            "loadBalancer": { "ingress": [{ "ip": "172.18.255.10" }, { "hostname": "lb.example" }] }
        },
    }))
}

fn two_nodes_slice() -> SliceRecord {
    unnamed_slice(
        "web-a",
        json!([
            endpoint("10.244.1.2", "node1", json!({ "ready": true })),
            endpoint("10.244.2.2", "node2", json!({ "ready": true })),
        ]),
    )
}

fn here() -> NodeRef<'static> {
    NodeRef {
        name: "node1",
        ip: Some("172.30.0.11".parse().unwrap()),
        ip6: None,
        local_dns: None,
        zone: None,
    }
}

#[test]
fn load_balancer_ips_external_ips_and_node_ports_are_external_frontends() {
    let slice = two_nodes_slice();
    let desired = desired_frontends(&load_balancer_service(json!({})), &[&slice], here());
    let by_ip: BTreeMap<String, &DesiredFrontend> = desired
        .iter()
        .map(|d| (d.frontend.ip.to_string(), d))
        .collect();
    assert_eq!(
        by_ip.keys().map(String::as_str).collect::<Vec<_>>(),
        ["10.96.0.10", "172.18.0.10", "172.18.255.10", "172.30.0.11"]
    );
    assert!(!by_ip["10.96.0.10"].policy.external);
    let allowed = vec![SourceCidr {
        network: "192.0.2.0".parse().unwrap(),
        prefix_len: 24,
    }];
    for (ip, ranges) in [
        ("172.18.0.10", vec![]),
        ("172.18.255.10", allowed),
        ("172.30.0.11", vec![]),
    ] {
        let frontend = by_ip[ip];
        assert!(
            frontend.policy.external && !frontend.policy.local_only,
            "{ip}"
        );
        assert_eq!(frontend.policy.source_ranges, ranges, "{ip}");
        assert_eq!(frontend.backends.len(), 2, "{ip}");
    }
}

#[test]
fn external_traffic_policy_local_keeps_external_frontends_to_local_endpoints() {
    let slice = two_nodes_slice();
    let svc = load_balancer_service(json!({
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32000,
    }));
    for d in desired_frontends(&svc, &[&slice], here()) {
        let ips: Vec<String> = d.backends.iter().map(|b| b.ip.to_string()).collect();
        if d.policy.external {
            assert!(d.policy.local_only);
            assert_eq!(ips, ["10.244.1.2"], "{:?}", d.frontend);
        } else {
            assert_eq!(ips, ["10.244.1.2", "10.244.2.2"], "the ClusterIP keeps all");
        }
    }
    assert_eq!(
        health_check(&svc, &[&slice], here()),
        Some(HealthCheck {
            port: 32000,
            local_endpoints: 1
        })
    );
    let elsewhere = NodeRef {
        name: "node3",
        ..here()
    };
    assert_eq!(
        health_check(&svc, &[&slice], elsewhere).map(|check| check.local_endpoints),
        Some(0)
    );
    // No health check for the Cluster policy.
    let cluster = load_balancer_service(json!({ "healthCheckNodePort": 32000 }));
    assert_eq!(health_check(&cluster, &[&slice], here()), None);
}

fn endpoint(address: &str, node: &str, conditions: Value) -> Value {
    json!({ "addresses": [address], "nodeName": node, "conditions": conditions })
}

fn backend_ips(desired: &[DesiredFrontend]) -> Vec<String> {
    desired[0]
        .backends
        .iter()
        .map(|b| b.ip.to_string())
        .collect()
}

#[test]
fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
    let svc = service(unnamed_http());
    let terminating = json!({ "ready": false, "serving": true, "terminating": true });
    let gone = json!({ "ready": false, "serving": false, "terminating": true });
    let only_terminating = unnamed_slice(
        "web-a",
        json!([
            endpoint("10.244.1.2", "node1", terminating.clone()),
            endpoint("10.244.1.3", "node1", gone.clone()),
        ]),
    );
    let desired = desired_frontends(&svc, &[&only_terminating], node("node1"));
    assert_eq!(backend_ips(&desired), ["10.244.1.2"]);

    let with_ready = unnamed_slice(
        "web-a",
        json!([
            endpoint("10.244.1.2", "node1", terminating),
            endpoint("10.244.1.3", "node1", gone),
            endpoint("10.244.2.2", "node2", json!({ "ready": true })),
        ]),
    );
    let desired = desired_frontends(&svc, &[&with_ready], node("node1"));
    assert_eq!(backend_ips(&desired), ["10.244.2.2"]);
}

#[test]
fn internal_traffic_policy_local_keeps_only_this_nodes_endpoints() {
    let mut spec = unnamed_http();
    spec["internalTrafficPolicy"] = json!("Local");
    let svc = service(spec);
    let s = unnamed_slice(
        "web-a",
        json!([
            endpoint("10.244.1.2", "node1", json!({ "ready": true })),
            endpoint("10.244.2.2", "node2", json!({ "ready": true })),
            // A ready endpoint elsewhere does not stop the local
            // terminating one from serving.
            endpoint("10.244.2.3", "node2", json!({ "ready": true })),
            endpoint(
                "10.244.3.2",
                "node3",
                json!({ "ready": false, "serving": true, "terminating": true }),
            ),
        ]),
    );
    assert_eq!(
        backend_ips(&desired_frontends(&svc, &[&s], node("node1"))),
        ["10.244.1.2"]
    );
    assert_eq!(
        backend_ips(&desired_frontends(&svc, &[&s], node("node2"))),
        ["10.244.2.2", "10.244.2.3"]
    );
    assert_eq!(
        backend_ips(&desired_frontends(&svc, &[&s], node("node3"))),
        ["10.244.3.2"]
    );
    // No local endpoint: the frontend stays, with nothing to send to.
    assert!(
        desired_frontends(&svc, &[&s], node("node4"))[0]
            .backends
            .is_empty()
    );
}

#[test]
fn client_ip_affinity_carries_its_timeout() {
    let mut spec = unnamed_http();
    assert_eq!(
        desired_frontends(&service(spec.clone()), &[], node("node1"))[0]
            .policy
            .affinity_timeout,
        None
    );
    spec["sessionAffinity"] = json!("ClientIP");
    assert_eq!(
        desired_frontends(&service(spec.clone()), &[], node("node1"))[0]
            .policy
            .affinity_timeout,
        Some(10_800)
    );
    spec["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 5 } });
    assert_eq!(
        desired_frontends(&service(spec), &[], node("node1"))[0]
            .policy
            .affinity_timeout,
        Some(5)
    );
}

#[test]
fn cluster_ip_service_merges_two_slices_sorted_and_deduplicated() {
    let svc = service(unnamed_http());
    let a = unnamed_slice(
        "web-a",
        json!([ready(&["10.244.2.5"]), ready(&["10.244.1.7"])]),
    );
    // The same endpoint in two slices (a moment during a slice split)
    // must give one backend.
    let b = unnamed_slice(
        "web-b",
        json!([ready(&["10.244.1.3"]), ready(&["10.244.2.5"])]),
    );
    let desired = desired_frontends(&svc, &[&a, &b], node("node1"));
    assert_eq!(
        desired,
        vec![DesiredFrontend {
            frontend: frontend("10.96.0.10", 80, Protocol::Tcp, ""),
            backends: vec![
                backend("10.244.1.3", 8080),
                backend("10.244.1.7", 8080),
                backend("10.244.2.5", 8080),
            ],
            policy: Policy::default(),
        }]
    );
}

#[test]
fn named_ports_each_use_their_own_slice_port() {
    let svc = service(json!({
        "clusterIP": "10.96.0.20",
        "ports": [
            { "name": "https", "port": 443, "targetPort": "tls" },
            { "name": "http", "port": 80, "targetPort": 8080 },
        ],
    }));
    let s = slice(
        "web-a",
        "IPv4",
        json!([{ "name": "http", "port": 8080 }, { "name": "https", "port": 8443 }]),
        json!([ready(&["10.244.1.3"])]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(
        desired,
        vec![
            DesiredFrontend {
                frontend: frontend("10.96.0.20", 80, Protocol::Tcp, "http"),
                backends: vec![backend("10.244.1.3", 8080)],
                policy: Policy::default(),
            },
            DesiredFrontend {
                frontend: frontend("10.96.0.20", 443, Protocol::Tcp, "https"),
                backends: vec![backend("10.244.1.3", 8443)],
                policy: Policy::default(),
            },
        ]
    );
}

#[test]
fn unnamed_single_port_matches_unnamed_slice_port() {
    let svc = service(unnamed_http());
    // `name: ""` and an absent name are the same unnamed port.
    let s = slice(
        "web-a",
        "IPv4",
        json!([{ "name": "", "port": 9090 }]),
        json!([ready(&["10.244.1.3"])]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].backends, vec![backend("10.244.1.3", 9090)]);
}

#[test]
fn not_ready_endpoint_is_excluded_and_absent_ready_included() {
    let svc = service(unnamed_http());
    let s = unnamed_slice(
        "web-a",
        json!([
            { "addresses": ["10.244.1.1"], "conditions": { "ready": false, "serving": true, "terminating": true } },
            { "addresses": ["10.244.1.2"], "conditions": {} },
            { "addresses": ["10.244.1.3"] },
            ready(&["10.244.1.4"]),
        ]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(
        desired[0].backends,
        vec![
            backend("10.244.1.2", 8080),
            backend("10.244.1.3", 8080),
            backend("10.244.1.4", 8080),
        ]
    );
}

#[test]
fn every_address_of_an_endpoint_is_a_backend_and_bad_ones_are_skipped() {
    let svc = service(unnamed_http());
    let s = unnamed_slice(
        "web-a",
        json!([ready(&["10.244.1.9", "not-an-ip", "10.244.1.8"])]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(
        desired[0].backends,
        vec![backend("10.244.1.8", 8080), backend("10.244.1.9", 8080)]
    );
}

#[test]
fn headless_and_external_name_have_no_frontends() {
    let headless = service(json!({
        "clusterIP": "None",
        "clusterIPs": ["None"],
        "ports": [{ "port": 80 }],
    }));
    let external = service(json!({
        "type": "ExternalName",
        "externalName": "example.invalid",
        "ports": [{ "port": 80 }],
    }));
    let unallocated = service(json!({ "clusterIP": "", "ports": [{ "port": 80 }] }));
    let s = unnamed_slice("web-a", json!([ready(&["10.244.1.3"])]));
    for svc in [headless, external, unallocated] {
        assert_eq!(desired_frontends(&svc, &[&s], node("node1")), vec![]);
    }
}

#[test]
fn service_without_spec_has_no_frontends() {
    let svc = service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
    }));
    assert_eq!(desired_frontends(&svc, &[], node("node1")), vec![]);
}

#[test]
fn udp_port_matches_only_udp_slice_port() {
    let svc = service(json!({
        "clusterIP": "10.96.0.53",
        "ports": [
            { "name": "dns", "port": 53, "protocol": "UDP" },
            { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
        ],
    }));
    let s = slice(
        "dns-a",
        "IPv4",
        json!([
            { "name": "dns", "port": 5353, "protocol": "UDP" },
            { "name": "dns-tcp", "port": 5354, "protocol": "TCP" },
        ]),
        json!([ready(&["10.244.1.3"])]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(
        desired,
        vec![
            DesiredFrontend {
                frontend: frontend("10.96.0.53", 53, Protocol::Tcp, "dns-tcp"),
                backends: vec![backend("10.244.1.3", 5354)],
                policy: Policy::default(),
            },
            DesiredFrontend {
                frontend: frontend("10.96.0.53", 53, Protocol::Udp, "dns"),
                backends: vec![backend("10.244.1.3", 5353)],
                policy: Policy::default(),
            },
        ]
    );
}

#[test]
fn slice_port_with_other_protocol_does_not_match() {
    let svc = service(json!({
        "clusterIP": "10.96.0.53",
        "ports": [{ "name": "dns", "port": 53, "protocol": "UDP" }],
    }));
    let s = slice(
        "dns-a",
        "IPv4",
        json!([{ "name": "dns", "port": 5353 }]),
        json!([ready(&["10.244.1.3"])]),
    );
    let desired = desired_frontends(&svc, &[&s], node("node1"));
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].backends, vec![]);
}

#[test]
fn sctp_port_is_skipped_other_ports_kept() {
    let svc = service(json!({
        "clusterIP": "10.96.0.30",
        "ports": [
            { "name": "sig", "port": 3868, "protocol": "SCTP" },
            { "name": "http", "port": 80 },
        ],
    }));
    let desired = desired_frontends(&svc, &[], node("node1"));
    assert_eq!(desired.len(), 1);
    assert_eq!(
        desired[0].frontend,
        frontend("10.96.0.30", 80, Protocol::Tcp, "http")
    );
}

#[test]
fn each_cluster_ip_balances_over_the_slices_of_its_own_family() {
    let svc = service(json!({
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
        "ipFamilies": ["IPv4", "IPv6"],
        "ports": [{ "port": 80 }],
    }));
    let v6 = slice(
        "web-v6",
        "IPv6",
        json!([{ "port": 8080 }]),
        json!([ready(&["fd00:10:244::3"])]),
    );
    let v4 = unnamed_slice("web-v4", json!([ready(&["10.244.1.3"])]));
    let desired = desired_frontends(&svc, &[&v6, &v4], node("node1"));
    assert_eq!(
        desired,
        vec![
            DesiredFrontend {
                frontend: frontend("10.96.0.10", 80, Protocol::Tcp, ""),
                backends: vec![backend("10.244.1.3", 8080)],
                policy: Policy::default(),
            },
            DesiredFrontend {
                frontend: frontend("fd00:10:96::a", 80, Protocol::Tcp, ""),
                backends: vec![backend("fd00:10:244::3", 8080)],
                policy: Policy::default(),
            },
        ]
    );
}

#[test]
fn an_ipv6_single_stack_service_without_ipv6_endpoints_refuses() {
    let svc = service(json!({
        "clusterIP": "fd00:10:96::b",
        "clusterIPs": ["fd00:10:96::b"],
        "ipFamilies": ["IPv6"],
        "ports": [{ "port": 80 }],
    }));
    // An IPv4 slice serves no IPv6 frontend.
    let v4 = unnamed_slice("web-v4", json!([ready(&["10.244.1.3"])]));
    let desired = desired_frontends(&svc, &[&v4], node("node1"));
    assert_eq!(
        desired,
        vec![DesiredFrontend {
            frontend: frontend("fd00:10:96::b", 80, Protocol::Tcp, ""),
            backends: vec![],
            policy: Policy::default(),
        }]
    );
}

/// Each external frontend as "address:port" with its backends' addresses.
fn external_view(desired: Vec<DesiredFrontend>) -> Vec<(String, Vec<String>)> {
    desired
        .into_iter()
        .map(|d| {
            (
                SocketAddr::new(d.frontend.ip, d.frontend.port).to_string(),
                d.backends.iter().map(|b| b.ip.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn each_family_gets_node_ports_and_external_addresses_over_its_own_endpoints() {
    let svc = service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
            "ipFamilies": ["IPv4", "IPv6"],
            "externalIPs": ["fd00:1::5"],
            "loadBalancerSourceRanges": ["192.0.2.0/24"],
            "ports": [{ "port": 80, "nodePort": 30080 }],
        },
        "status": { "loadBalancer": { "ingress": [{ "ip": "fd00:2::7" }] } },
    }));
    let v6 = slice(
        "web-v6",
        "IPv6",
        json!([{ "port": 8080 }]),
        json!([ready(&["fd00:10:244::3"])]),
    );
    let v4 = unnamed_slice("web-v4", json!([ready(&["10.244.1.3"])]));
    let node = NodeRef {
        ip: Some("192.168.0.1".parse().unwrap()),
        ip6: Some("fd00:192::1".parse().unwrap()),
        ..node("node1")
    };
    let desired = desired_frontends(&svc, &[&v6, &v4], node);
    // The IPv4 source ranges guard no IPv6 frontend: without IPv6 ranges
    // the IPv6 load balancer IP admits every source, as kube-proxy's IPv6
    // proxier, which takes only IPv6 ranges, does.
    assert!(
        desired
            .iter()
            .all(|d| d.frontend.ip.is_ipv4() || d.policy.source_ranges.is_empty())
    );
    let v4_backends = vec!["10.244.1.3".to_owned()];
    let v6_backends = vec!["fd00:10:244::3".to_owned()];
    assert_eq!(
        external_view(desired),
        [
            ("10.96.0.10:80".to_owned(), v4_backends.clone()),
            ("192.168.0.1:30080".to_owned(), v4_backends),
            ("[fd00:1::5]:80".to_owned(), v6_backends.clone()),
            ("[fd00:2::7]:80".to_owned(), v6_backends.clone()),
            ("[fd00:10:96::a]:80".to_owned(), v6_backends.clone()),
            ("[fd00:192::1]:30080".to_owned(), v6_backends),
        ]
    );
}

#[test]
fn a_single_stack_service_gets_node_ports_of_its_own_family_only() {
    let node = NodeRef {
        ip: Some("192.168.0.1".parse().unwrap()),
        ip6: Some("fd00:192::1".parse().unwrap()),
        ..node("node1")
    };
    let v4_only = service(json!({
        "type": "NodePort",
        "clusterIP": "10.96.0.10",
        "externalIPs": ["fd00:1::5"],
        "ports": [{ "port": 80, "nodePort": 30080 }],
    }));
    let frontends = external_view(desired_frontends(&v4_only, &[], node));
    let addresses: Vec<&str> = frontends.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(addresses, ["10.96.0.10:80", "192.168.0.1:30080"]);

    let v6_only = service(json!({
        "type": "NodePort",
        "clusterIP": "fd00:10:96::a",
        "clusterIPs": ["fd00:10:96::a"],
        "ipFamilies": ["IPv6"],
        "ports": [{ "port": 80, "nodePort": 30080 }],
    }));
    let frontends = external_view(desired_frontends(&v6_only, &[], node));
    let addresses: Vec<&str> = frontends.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(addresses, ["[fd00:10:96::a]:80", "[fd00:192::1]:30080"]);
}

#[test]
fn every_ipv4_cluster_ip_gets_every_port() {
    let svc = service(json!({
        "clusterIP": "10.96.0.11",
        "clusterIPs": ["10.96.0.11", "10.96.0.12"],
        "ports": [{ "port": 80 }],
    }));
    let s = unnamed_slice("web-a", json!([ready(&["10.244.1.3"])]));
    let ips: Vec<_> = desired_frontends(&svc, &[&s], node("node1"))
        .into_iter()
        .map(|d| (d.frontend.ip, d.backends.len()))
        .collect();
    assert_eq!(
        ips,
        vec![
            ("10.96.0.11".parse().unwrap(), 1),
            ("10.96.0.12".parse().unwrap(), 1)
        ]
    );
}

#[test]
fn cluster_ip_alone_is_used_when_cluster_ips_is_absent() {
    let desired = desired_frontends(&service(unnamed_http()), &[], node("node1"));
    assert_eq!(desired[0].frontend.ip, Ipv4Addr::new(10, 96, 0, 10));
}

#[test]
fn port_name_mismatch_leaves_frontend_with_no_backends() {
    let svc = service(json!({
        "clusterIP": "10.96.0.10",
        "ports": [{ "name": "http", "port": 80 }],
    }));
    let s = slice(
        "web-a",
        "IPv4",
        json!([{ "name": "metrics", "port": 9100 }]),
        json!([ready(&["10.244.1.3"])]),
    );
    assert_eq!(
        desired_frontends(&svc, &[&s], node("node1")),
        vec![DesiredFrontend {
            frontend: frontend("10.96.0.10", 80, Protocol::Tcp, "http"),
            backends: vec![],
            policy: Policy::default(),
        }]
    );
}

#[test]
fn service_without_slices_has_frontend_with_no_backends() {
    let desired = desired_frontends(&service(unnamed_http()), &[], node("node1"));
    assert_eq!(desired.len(), 1);
    assert!(desired[0].backends.is_empty());
}

#[test]
fn slice_port_without_number_gives_no_backends() {
    let svc = service(unnamed_http());
    let s = slice(
        "web-a",
        "IPv4",
        json!([{ "protocol": "TCP" }]),
        json!([ready(&["10.244.1.3"])]),
    );
    assert!(
        desired_frontends(&svc, &[&s], node("node1"))[0]
            .backends
            .is_empty()
    );
}

#[test]
fn repeated_port_and_protocol_is_programmed_once() {
    let svc = service(json!({
        "clusterIP": "10.96.0.10",
        "ports": [{ "name": "b", "port": 80 }, { "name": "a", "port": 80 }],
    }));
    let desired = desired_frontends(&svc, &[], node("node1"));
    assert_eq!(desired.len(), 1);
    assert_eq!(&*desired[0].frontend.port_name, "a");
}

#[test]
fn service_ref_display_and_slice_owner() {
    let s = unnamed_slice("web-a", json!([]));
    assert_eq!(s.service.as_deref(), Some("web"));
    assert_eq!(web().to_string(), "default/web");
    let unlabelled = SliceRecord::from_json(
        &web(),
        json!({
            "metadata": { "namespace": "default", "name": "manual" },
            "addressType": "IPv4",
            "endpoints": [],
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(unlabelled.service, None);
}

/// A ready endpoint on `node` in `zone`, hinted as PreferSameNode hints it.
fn hinted(address: &str, node: &str, zone: &str) -> Value {
    let mut endpoint = endpoint(address, node, json!({ "ready": true }));
    endpoint["zone"] = json!(zone);
    endpoint["hints"] = json!({ "forZones": [{ "name": zone }], "forNodes": [{ "name": node }] });
    endpoint
}

fn in_zone<'a>(name: &'a str, zone: &'a str) -> NodeRef<'a> {
    NodeRef {
        zone: Some(zone),
        ..node(name)
    }
}

#[test]
fn cluster_traffic_prefers_this_nodes_then_this_zones_endpoints() {
    let svc = service(unnamed_http());
    let s = unnamed_slice(
        "web-a",
        json!([
            hinted("10.244.1.2", "node1", "a"),
            hinted("10.244.2.2", "node2", "a"),
            hinted("10.244.3.2", "node3", "b"),
            // Not ready: its missing hints do not count.
            endpoint("10.244.4.2", "node4", json!({ "ready": false })),
        ]),
    );
    let ips = |node| backend_ips(&desired_frontends(&svc, &[&s], node));
    assert_eq!(ips(in_zone("node1", "a")), ["10.244.1.2"]);
    assert_eq!(ips(in_zone("node5", "a")), ["10.244.1.2", "10.244.2.2"]);
    assert_eq!(ips(in_zone("node5", "b")), ["10.244.3.2"]);
    assert_eq!(
        ips(in_zone("node5", "c")),
        ["10.244.1.2", "10.244.2.2", "10.244.3.2"]
    );
    assert_eq!(
        ips(node("node5")),
        ["10.244.1.2", "10.244.2.2", "10.244.3.2"]
    );
}

#[test]
fn one_ready_endpoint_without_hints_turns_topology_off() {
    let svc = service(unnamed_http());
    let s = unnamed_slice(
        "web-a",
        json!([
            hinted("10.244.1.2", "node1", "a"),
            endpoint("10.244.2.2", "node2", json!({ "ready": true })),
        ]),
    );
    assert_eq!(
        backend_ips(&desired_frontends(&svc, &[&s], in_zone("node1", "a"))),
        ["10.244.1.2", "10.244.2.2"]
    );
}

#[test]
fn hints_apply_to_external_cluster_traffic_but_not_to_local_policies() {
    let s = unnamed_slice(
        "web-a",
        json!([
            hinted("10.244.1.2", "node1", "a"),
            hinted("10.244.2.2", "node2", "b"),
        ]),
    );
    let here = NodeRef {
        zone: Some("b"),
        ..here()
    };
    for d in desired_frontends(&load_balancer_service(json!({})), &[&s], here) {
        let ips: Vec<String> = d.backends.iter().map(|b| b.ip.to_string()).collect();
        assert_eq!(ips, ["10.244.1.2"], "{:?}", d.frontend);
    }
    // externalTrafficPolicy Local keeps to this node, hints or not; the
    // ClusterIP still follows them.
    let local = load_balancer_service(json!({ "externalTrafficPolicy": "Local" }));
    let node3 = NodeRef {
        name: "node3",
        ..here
    };
    for d in desired_frontends(&local, &[&s], node3) {
        let ips: Vec<String> = d.backends.iter().map(|b| b.ip.to_string()).collect();
        let expected: &[&str] = if d.policy.external {
            &[]
        } else {
            &["10.244.2.2"]
        };
        assert_eq!(ips, expected, "{:?}", d.frontend);
    }
}

#[test]
fn a_proxy_mode_ingress_ip_gets_no_frontend() {
    let svc = service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": { "type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{ "port": 80, "nodePort": 30080 }] },
        "status": { "loadBalancer": { "ingress": [
            { "ip": "172.18.255.10", "ipMode": "Proxy" },
            { "ip": "172.18.255.11", "ipMode": "VIP" },
            { "ip": "172.18.255.12" },
        ] } },
    }));
    let ips: Vec<String> = svc
        .load_balancer_ips
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(ips, ["172.18.255.11", "172.18.255.12"]);
    let frontends: Vec<String> = desired_frontends(&svc, &[], here())
        .iter()
        .map(|d| d.frontend.ip.to_string())
        .collect();
    assert!(
        !frontends.contains(&"172.18.255.10".to_owned()),
        "{frontends:?}"
    );
}

#[test]
fn each_familys_load_balancer_ips_are_guarded_by_that_familys_source_ranges() {
    let svc = service_object(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
            "ipFamilies": ["IPv4", "IPv6"],
            "externalIPs": ["fd00:1::5"],
            "loadBalancerSourceRanges": [
                "2001:db8:1::/48", " 2001:db8::1/32 ", "192.0.2.0/24", "2001:db8::/129",
            ],
            "ports": [{ "port": 80, "nodePort": 30080 }],
        },
        "status": { "loadBalancer": { "ingress": [{ "ip": "172.18.0.5" }, { "ip": "fd00:2::7" }] } },
    }));
    let cidr = |network: &str, prefix_len| SourceCidr {
        network: network.parse().unwrap(),
        prefix_len,
    };
    let v4_ranges = vec![cidr("192.0.2.0", 24)];
    // Host bits cleared, sorted; the /129 is malformed and skipped.
    let v6_ranges = vec![cidr("2001:db8::", 32), cidr("2001:db8:1::", 48)];
    assert_eq!(svc.source_ranges_of(IpFamily::V4), v4_ranges);
    assert_eq!(svc.source_ranges_of(IpFamily::V6), v6_ranges);
    let node = NodeRef {
        ip: Some("192.168.0.1".parse().unwrap()),
        ip6: Some("fd00:192::1".parse().unwrap()),
        ..node("node1")
    };
    let desired = desired_frontends(&svc, &[], node);
    let ranges: BTreeMap<String, Vec<SourceCidr>> = desired
        .iter()
        .filter(|d| d.policy.external)
        .map(|d| (d.frontend.ip.to_string(), d.policy.source_ranges.clone()))
        .collect();
    assert_eq!(
        ranges,
        BTreeMap::from([
            ("172.18.0.5".to_owned(), v4_ranges),
            ("192.168.0.1".to_owned(), vec![]),
            ("fd00:192::1".to_owned(), vec![]),
            ("fd00:1::5".to_owned(), vec![]),
            ("fd00:2::7".to_owned(), v6_ranges),
        ])
    );
}
