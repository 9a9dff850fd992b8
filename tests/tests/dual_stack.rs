//! End to end on a dual-stack cluster (`Testbed::start_dual_stack`): the
//! nodes have IPv6 pod CIDRs beside their IPv4 ones, skiff-control has an
//! IPv6 service range and cluster CIDR beside the IPv4 ones. A
//! RequireDualStack Service gets a ClusterIP of each family, its pod gets
//! an address of each family (IPv4 first), and the EndpointSlice
//! controller writes an IPv4 and an IPv6 slice with the pod's address of
//! that family. A pod on another node reaches the pod's IPv6 address by
//! plain routing. (IPv6 ClusterIPs through the socket hooks:
//! `dual_stack_services.rs`.)
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod dual_stack_pods;

use std::net::{IpAddr, Ipv6Addr};

use serde_json::{Value, json};
use skiff_tests::{eventually, pod_cidr, pod_cidr_v6};

use dual_stack_pods::{TIMEOUT, apply, get, pod, run_client};

const NAMESPACE: &str = "dualstack";

/// Fetches `http://[<argv[1]>]:8080/` until it answers (the server may
/// still be starting), printing the status.
const CLIENT: &str = r#"
import sys, time, urllib.request
for attempt in range(60):
    try:
        with urllib.request.urlopen("http://[%s]:8080/" % sys.argv[1], timeout=2) as answer:
            print("STATUS", answer.status)
            break
    except OSError as error:
        print("RETRY", error, flush=True)
        time.sleep(0.5)
"#;

fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (network, len) = cidr.split_once('/').unwrap();
    let len: u32 = len.parse().unwrap();
    match (
        ip.parse::<IpAddr>().unwrap(),
        network.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX << (32 - len);
            u32::from(ip) & mask == u32::from(network)
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX << (128 - len);
            u128::from(ip) & mask == u128::from(network)
        }
        _ => false,
    }
}

#[test]
fn dual_stack_services_pods_and_endpoint_slices() {
    let testbed = dual_stack_pods::start(NAMESPACE);

    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web", "namespace": NAMESPACE },
        "spec": {
            "ipFamilyPolicy": "RequireDualStack",
            "selector": { "app": "web" },
            "ports": [{ "port": 80, "targetPort": 8080 }],
        },
    });
    apply(&testbed, &service);
    let service = get(
        &testbed,
        &["get", "svc", "web", "-n", NAMESPACE, "-o", "json"],
    )
    .unwrap();
    let spec = &service["spec"];
    assert_eq!(spec["ipFamilies"], json!(["IPv4", "IPv6"]), "{spec}");
    let cluster_ips: Vec<String> = serde_json::from_value(spec["clusterIPs"].clone()).unwrap();
    assert_eq!(cluster_ips.len(), 2, "{spec}");
    assert!(in_cidr(&cluster_ips[0], "10.96.0.0/12"), "{spec}");
    assert!(in_cidr(&cluster_ips[1], "fd00:10:96::/112"), "{spec}");

    let server = vec!["python3", "-m", "http.server", "8080", "--bind", "::"];
    apply(
        &testbed,
        &pod(NAMESPACE, "web", "node2", json!({ "app": "web" }), server),
    );
    let pod_ips = eventually("the web pod to run with two addresses", TIMEOUT, || {
        let pod = get(
            &testbed,
            &["get", "pod", "web", "-n", NAMESPACE, "-o", "json"],
        )?;
        let ips: Vec<String> = (pod["status"]["podIPs"].as_array()?.iter())
            .filter_map(|ip| ip["ip"].as_str().map(str::to_owned))
            .collect();
        (pod["status"]["phase"] == "Running" && ips.len() == 2).then_some((pod, ips))
    });
    let (web, ips) = pod_ips;
    assert!(in_cidr(&ips[0], &pod_cidr(2).to_string()), "{web}");
    assert!(in_cidr(&ips[1], &pod_cidr_v6(2)), "{web}");
    assert_eq!(web["status"]["podIP"], ips[0].as_str(), "IPv4 first");
    let node = get(&testbed, &["get", "node", "node2", "-o", "json"]).unwrap();
    assert_eq!(
        node["spec"]["podCIDRs"],
        json!([pod_cidr(2).to_string(), pod_cidr_v6(2)])
    );

    let slices = eventually("an IPv4 and an IPv6 EndpointSlice", TIMEOUT, || {
        let list = get(
            &testbed,
            &[
                "get",
                "endpointslices",
                "-n",
                NAMESPACE,
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "json",
            ],
        )?;
        let mut by_type: Vec<(String, Value)> = (list["items"].as_array()?.iter())
            .map(|slice| {
                let addresses = (slice["endpoints"].as_array().into_iter().flatten())
                    .flat_map(|endpoint| {
                        endpoint["addresses"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .collect();
                (
                    slice["addressType"].as_str().unwrap_or("").to_owned(),
                    Value::Array(addresses),
                )
            })
            .collect();
        by_type.sort_by(|a, b| a.0.cmp(&b.0));
        let wanted = vec![
            ("IPv4".to_owned(), json!([ips[0]])),
            ("IPv6".to_owned(), json!([ips[1]])),
        ];
        (by_type == wanted).then_some(by_type)
    });
    assert_eq!(slices.len(), 2);

    // Across nodes by plain IPv6 routing: node1's pod to node2's.
    let server_ip: Ipv6Addr = ips[1].parse().unwrap();
    let server_ip = server_ip.to_string();
    let client = vec!["python3", "-c", CLIENT, server_ip.as_str()];
    let (client, logs) = run_client(&testbed, NAMESPACE, "client", client);
    assert!(logs.contains("STATUS 200"), "{logs}");
    let client_ips = &client["status"]["podIPs"];
    assert!(
        in_cidr(client_ips[1]["ip"].as_str().unwrap(), &pod_cidr_v6(1)),
        "{client:#}"
    );

    // The agents take the IPv6 slice in their stride.
    for node in [1, 2] {
        let log = testbed.agent_log(node);
        assert!(!log.contains("panicked"), "agent {node}:\n{log}");
    }
}
