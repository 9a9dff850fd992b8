//! End to end on a dual-stack cluster (`Testbed::start_dual_stack`): IPv6
//! ClusterIPs through the socket hooks. Pods run by the agents' kubelets
//! (so their connects cross `connect6`, `sendmsg6`, `recvmsg6` and
//! `getpeername6` on the nodes' cgroups) reach a RequireDualStack Service
//! on both its ClusterIPs over TCP, unconnected and connected UDP, see the
//! ClusterIP as their peer and as the source of UDP replies, and are
//! balanced over backends on both nodes. An IPv6 SingleStack Service
//! works; one without endpoints, and an address of the IPv6 service range
//! that no Service has, are refused at once. An IPv6 socket reaches the
//! IPv4 ClusterIP by its IPv4-mapped address.
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod dual_stack_pods;
mod dual_stack_web;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skiff_tests::Testbed;

use dual_stack_pods::{apply, get, run_client};
use dual_stack_web::serve_web;

const NAMESPACE: &str = "v6svc";
/// An address of the IPv6 service range (`SERVICE_CIDR_V6`) that no
/// Service is given (checked below).
const UNALLOCATED_V6: &str = "fd00:10:96::fffe";

/// Calls every target and prints one JSON object of the results:
/// argv = v4 ClusterIP, v6 ClusterIP, IPv6-only ClusterIP, empty IPv6
/// ClusterIP, unallocated IPv6 address.
const CLIENT: &str = r#"
import json, socket, sys, time
v4, v6, only6, empty6, unknown6 = sys.argv[1:6]
def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET
def failure(error, start):
    return {"ok": False, "errno": error.errno, "seconds": time.monotonic() - start}
def tcp(host, port=80):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(3)
    start = time.monotonic()
    try:
        s.connect((host, port))
        peer = s.getpeername()[:2]
        return {"ok": True, "peer": "%s/%d" % peer, "name": s.recv(100).decode()}
    except OSError as error:
        return failure(error, start)
    finally:
        s.close()
def udp(host, connected, port=53):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(3)
    start = time.monotonic()
    try:
        if connected:
            s.connect((host, port))
            s.send(b"hi")
            data = s.recv(100)
            peer = s.getpeername()[:2]
        else:
            s.sendto(b"hi", (host, port))
            data, peer = s.recvfrom(100)
            peer = peer[:2]
        return {"ok": True, "peer": "%s/%d" % peer, "name": data.decode()}
    except OSError as error:
        return failure(error, start)
    finally:
        s.close()
for attempt in range(120):
    if tcp(v6)["ok"] and tcp(only6)["ok"]:
        break
    time.sleep(0.25)
results = {}
for label, host in [("v4", v4), ("v6", v6), ("only6", only6), ("mapped", "::ffff:" + v4)]:
    results[label] = {
        "tcp": [tcp(host) for _ in range(30)],
        "udp": [udp(host, False) for _ in range(20)],
        "udp_connected": [udp(host, True) for _ in range(10)],
    }
results["empty6"] = {"tcp": [tcp(empty6)], "udp": [udp(empty6, False)]}
results["unknown6"] = {"tcp": [tcp(unknown6)]}
print(json.dumps(results))
"#;

fn service(name: &str, families: Value, policy: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "ipFamilyPolicy": policy,
            "ipFamilies": families,
            "selector": { "app": app },
            "ports": [
                { "name": "http", "port": 80, "targetPort": 8080 },
                { "name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP" },
            ],
        },
    })
}

fn cluster_ips(testbed: &Testbed, name: &str) -> Vec<String> {
    let service = get(
        testbed,
        &["get", "svc", name, "-n", NAMESPACE, "-o", "json"],
    )
    .unwrap();
    serde_json::from_value(service["spec"]["clusterIPs"].clone()).unwrap()
}

/// Whether every attempt worked with the peer `peer` (`address/port`), and
/// the names that answered.
fn answered(results: &Value, peer: &str) -> BTreeSet<String> {
    let attempts = results.as_array().expect("a list of attempts");
    assert!(!attempts.is_empty());
    for attempt in attempts {
        assert_eq!(attempt["ok"], true, "{attempt}");
        assert_eq!(attempt["peer"], peer, "{attempt}");
    }
    attempts
        .iter()
        .map(|attempt| attempt["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every attempt failed with ECONNREFUSED within a second.
fn refused(results: &Value) {
    for attempt in results.as_array().expect("a list of attempts") {
        assert_eq!(attempt["ok"], false, "{attempt}");
        assert_eq!(attempt["errno"], 111, "ECONNREFUSED: {attempt}");
        assert!(attempt["seconds"].as_f64().unwrap() < 1.0, "{attempt}");
    }
}

#[test]
fn ipv6_cluster_ips_balance_refuse_and_show_the_cluster_ip() {
    let testbed = dual_stack_pods::start(NAMESPACE);
    let dual = json!(["IPv4", "IPv6"]);
    apply(&testbed, &service("web", dual, "RequireDualStack", "web"));
    apply(
        &testbed,
        &service("web6", json!(["IPv6"]), "SingleStack", "web"),
    );
    apply(
        &testbed,
        &service("empty6", json!(["IPv6"]), "SingleStack", "none"),
    );
    let web = cluster_ips(&testbed, "web");
    assert_eq!(web.len(), 2, "{web:?}");
    let web6 = cluster_ips(&testbed, "web6");
    let empty6 = cluster_ips(&testbed, "empty6");
    assert!(
        web6[0].contains(':') && empty6[0].contains(':'),
        "{web6:?} {empty6:?}"
    );
    assert!(
        ![&web[1], &web6[0], &empty6[0]].contains(&&UNALLOCATED_V6.to_owned()),
        "{UNALLOCATED_V6} was allocated"
    );

    serve_web(
        &testbed,
        NAMESPACE,
        &[("web", "IPv4"), ("web", "IPv6"), ("web6", "IPv6")],
    );

    let client = vec![
        "python3",
        "-c",
        CLIENT,
        &web[0],
        &web[1],
        &web6[0],
        &empty6[0],
        UNALLOCATED_V6,
    ];
    let (_, logs) = run_client(&testbed, NAMESPACE, "client", client);
    let results: Value = serde_json::from_str(logs.trim()).unwrap_or_else(|error| {
        panic!("the client prints JSON ({error}): {logs}");
    });

    let both: BTreeSet<String> = ["web-1", "web-2"].map(str::to_owned).into();
    let targets = [
        ("v4", web[0].clone()),
        ("v6", web[1].clone()),
        ("only6", web6[0].clone()),
        ("mapped", format!("::ffff:{}", web[0])),
    ];
    for (label, address) in &targets {
        let calls = &results[label];
        // TCP's peer is the ClusterIP (getpeername6), and connects are
        // spread over the backends of both nodes.
        assert_eq!(
            answered(&calls["tcp"], &format!("{address}/80")),
            both,
            "{label}: {calls}"
        );
        // An unconnected UDP reply comes from the ClusterIP (recvmsg6).
        assert_eq!(
            answered(&calls["udp"], &format!("{address}/53")),
            both,
            "{label}: {calls}"
        );
        let connected = answered(&calls["udp_connected"], &format!("{address}/53"));
        assert!(connected.is_subset(&both), "{label}: {calls}");
    }
    refused(&results["empty6"]["tcp"]);
    refused(&results["empty6"]["udp"]);
    refused(&results["unknown6"]["tcp"]);

    // The agents name IPv6 frontends with brackets.
    let log = testbed.agent_log(1);
    assert!(
        log.contains(&format!("[{}]:80/TCP", web[1])),
        "node1's agent never logged the IPv6 frontend:\n{log}"
    );
}
