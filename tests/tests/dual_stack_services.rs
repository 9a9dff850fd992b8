//! End to end on a dual-stack cluster (`Testbed::start_dual_stack`): IPv6
//! ClusterIPs through the socket hooks. Pods run by the agents' kubelets
//! (so their connects cross `connect6`, `sendmsg6`, `recvmsg6` and
//! `getpeername6` on the nodes' cgroups) reach a RequireDualStack Service
//! on both its ClusterIPs over TCP, unconnected and connected UDP, see the
//! ClusterIP as their peer and as the source of UDP replies, and are
//! balanced over backends on both nodes. An IPv6 SingleStack Service
//! works; one without endpoints, and an address of the IPv6 service range
//! that no Service has, are refused at once. An IPv6 socket reaches the
//! IPv4 ClusterIP by its IPv4-mapped address. A connected IPv6 UDP
//! socket (to the IPv6 ClusterIP, and to the IPv4 one by its IPv4-mapped
//! address) is reset when its backend leaves, and reaches the other. An
//! IPv6 backend that refuses connects is ejected (`skiff.io/outlier-detection`).
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod dual_stack_pods;
mod dual_stack_web;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use skiff_tests::{Testbed, eventually};

use dual_stack_pods::{TIMEOUT, apply, finished, get, pod, run_client};
use dual_stack_web::{ready_endpoints, serve_web};

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

/// Keeps one connected IPv6 UDP socket on web-1 for each of argv = the
/// IPv6 ClusterIP and the IPv4 one (by its IPv4-mapped address), prints
/// "ready", then asks on both until each is aborted (ECONNABORTED, the
/// agent's reset), connects again and prints who answered the new socket.
/// Sockets it cannot place on web-1, and asks that time out or are refused
/// (web-1's ICMP once it is gone), are retried.
const RESET_CLIENT: &str = r#"
import errno, json, socket, sys, time
targets = {"v6": sys.argv[1], "mapped": "::ffff:" + sys.argv[2]}
def connected(host):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    s.connect((host, 53))
    return s
def ask(s):
    s.send(b"hi")
    return s.recv(100).decode()
def on_web_1(host):
    for _ in range(200):
        s = connected(host)
        try:
            if ask(s) == "web-1":
                return s
        except OSError:
            pass
        s.close()
    sys.exit("no socket to %s reached web-1" % host)
sockets = {label: on_web_1(host) for label, host in targets.items()}
print("ready", flush=True)
answers = {}
deadline = time.monotonic() + 60
while len(answers) < len(sockets) and time.monotonic() < deadline:
    for label, s in sockets.items():
        if label in answers:
            continue
        try:
            ask(s)
        except TimeoutError:
            pass
        except OSError as error:
            code = error.errno
            # Reset between two asks: the send finds the socket no longer
            # connected, and the abort waits in its error slot.
            if code == errno.EDESTADDRREQ:
                code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != errno.ECONNABORTED:
                continue
            again = connected(targets[label])
            for _ in range(20):
                try:
                    answers[label] = ask(again)
                    break
                except TimeoutError:
                    pass
    time.sleep(0.05)
print(json.dumps(answers), flush=True)
"#;

/// Connects over TCP to argv[1] port 80 sixty times, 50 ms apart, and
/// prints who answered each (or "refused").
const CONNECTS_CLIENT: &str = r#"
import json, socket, sys, time
answers = []
for _ in range(60):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((sys.argv[1], 80))
        answers.append(s.recv(100).decode())
    except ConnectionRefusedError:
        answers.append("refused")
    finally:
        s.close()
    time.sleep(0.05)
print(json.dumps(answers), flush=True)
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

/// A dual-stack testbed with skiff-control, the RequireDualStack Service
/// `web` (and `others`) and its pods web-1 on node1 and web-2 on node2,
/// both ready in each family's slice of `web`.
fn web_testbed(others: &[Value]) -> Testbed {
    let testbed = dual_stack_pods::start(NAMESPACE);
    let dual = json!(["IPv4", "IPv6"]);
    apply(&testbed, &service("web", dual, "RequireDualStack", "web"));
    for other in others {
        apply(&testbed, other);
    }
    serve_web(&testbed, NAMESPACE, &[("web", "IPv4"), ("web", "IPv6")]);
    testbed
}

#[test]
fn ipv6_cluster_ips_balance_refuse_and_show_the_cluster_ip() {
    let testbed = web_testbed(&[
        service("web6", json!(["IPv6"]), "SingleStack", "web"),
        service("empty6", json!(["IPv6"]), "SingleStack", "none"),
    ]);
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

    eventually("web-1 and web-2 ready in web6's slice", TIMEOUT, || {
        (ready_endpoints(&testbed, NAMESPACE, "web6", "IPv6")? == 2).then_some(())
    });

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

#[test]
fn connected_ipv6_udp_sockets_are_reset_when_their_backend_leaves() {
    let testbed = web_testbed(&[]);
    let web = cluster_ips(&testbed, "web");
    let client = vec!["python3", "-c", RESET_CLIENT, &web[1], &web[0]];
    apply(
        &testbed,
        &pod(NAMESPACE, "client", "node1", json!({}), client),
    );
    eventually("the client's sockets on web-1", TIMEOUT, || {
        let logs = testbed
            .run_kubectl(&["logs", "client", "-n", NAMESPACE], "")
            .ok()?;
        logs.contains("ready").then_some(())
    });

    testbed.kubectl_ok(
        &["delete", "pod", "web-1", "-n", NAMESPACE, "--wait=false"],
        "",
    );
    let (_, logs) = finished(&testbed, NAMESPACE, "client");
    let last = logs.lines().last().unwrap_or_default();
    let answers: Value = serde_json::from_str(last).unwrap_or_else(|error| {
        panic!("the client prints JSON ({error}): {logs}");
    });
    assert_eq!(
        answers,
        json!({ "v6": "web-2", "mapped": "web-2" }),
        "each socket is reset and its new one reaches web-2: {logs}"
    );

    let log = testbed.agent_log(1);
    for frontend in [format!("[{}]:53/UDP", web[1]), format!("{}:53/UDP", web[0])] {
        assert!(
            log.lines()
                .any(|line| line.contains("UDP socket reset") && line.contains(&frontend)),
            "node1's agent never logged the reset of a socket of {frontend}:\n{log}"
        );
    }
}

#[test]
fn an_ipv6_backend_that_refuses_connects_is_ejected() {
    let mut flaky = service("flaky6", json!(["IPv6"]), "SingleStack", "web");
    flaky["metadata"]["annotations"] = json!({
        "skiff.io/outlier-detection":
            json!({ "consecutiveFailures": 2, "baseEjectionSeconds": 60, "maxEjectionPercent": 50 })
                .to_string(),
    });
    let testbed = web_testbed(&[flaky]);
    // Selected, ready, and listening on nothing: its SYNs get resets.
    let sleep = vec!["python3", "-c", "import time; time.sleep(3600)"];
    apply(
        &testbed,
        &pod(
            NAMESPACE,
            "refuser",
            "node2",
            json!({ "app": "web" }),
            sleep,
        ),
    );
    eventually(
        "web-1, web-2 and refuser ready in flaky6's slice",
        TIMEOUT,
        || (ready_endpoints(&testbed, NAMESPACE, "flaky6", "IPv6")? == 3).then_some(()),
    );
    let refuser = get(
        &testbed,
        &["get", "pod", "refuser", "-n", NAMESPACE, "-o", "json"],
    )
    .unwrap();
    let refuser_ipv6 = refuser["status"]["podIPs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ip| ip["ip"].as_str())
        .find(|ip| ip.contains(':'))
        .unwrap()
        .to_owned();

    let flaky6 = cluster_ips(&testbed, "flaky6");
    let client = vec!["python3", "-c", CONNECTS_CLIENT, &flaky6[0]];
    let (_, logs) = run_client(&testbed, NAMESPACE, "client", client);
    let answers: Vec<String> = serde_json::from_str(logs.trim()).unwrap_or_else(|error| {
        panic!("the client prints JSON ({error}): {logs}");
    });
    let refusals = answers.iter().filter(|answer| *answer == "refused").count();
    assert!(
        refusals >= 2,
        "the refuser was never tried twice: {answers:?}"
    );
    let last: BTreeSet<&str> = answers[40..].iter().map(String::as_str).collect();
    assert!(
        last.iter()
            .all(|answer| ["web-1", "web-2"].contains(answer)),
        "the refuser is still chosen once ejected: {answers:?}"
    );

    let log = testbed.agent_log(1);
    assert!(
        log.lines().any(|line| line.contains("backend ejected")
            && line.contains(&format!("[{refuser_ipv6}]:8080"))
            && line.contains(&format!("[{}]:80/TCP", flaky6[0]))),
        "node1's agent never logged the ejection of [{refuser_ipv6}]:8080:\n{log}"
    );
}
