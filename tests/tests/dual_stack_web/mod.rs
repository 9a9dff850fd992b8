//! The backends the dual-stack Service tests share: pods `web-1` on node1
//! and `web-2` on node2 (label `app: web`), each answering its name over
//! both families.
use serde_json::json;
use skiff_tests::{Testbed, eventually};

use crate::dual_stack_pods::{TIMEOUT, apply, get, pod};

/// Answers its name (argv[1]) on TCP 8080 and UDP 5353, on one socket per
/// protocol for both families.
const SERVER: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def bound(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    return s
def udp():
    s = bound(socket.SOCK_DGRAM, 5353)
    while True:
        _, peer = s.recvfrom(512)
        s.sendto(name, peer)
threading.Thread(target=udp, daemon=True).start()
s = bound(socket.SOCK_STREAM, 8080)
s.listen(64)
while True:
    c, _ = s.accept()
    c.sendall(name)
    c.close()
"#;

/// Starts `web-1` and `web-2` in `namespace` and waits until each
/// (service, address type) of `ready` lists both as ready endpoints.
pub fn serve_web(testbed: &Testbed, namespace: &str, ready: &[(&str, &str)]) {
    for (name, node) in [("web-1", "node1"), ("web-2", "node2")] {
        let command = vec!["python3", "-c", SERVER, name];
        apply(
            testbed,
            &pod(namespace, name, node, json!({ "app": "web" }), command),
        );
    }
    eventually("both web pods ready in the slices", TIMEOUT, || {
        ready
            .iter()
            .all(|(service, family)| {
                ready_endpoints(testbed, namespace, service, family) == Some(2)
            })
            .then_some(())
    });
}

/// How many ready endpoints the Service's slices in `namespace` of `address_type` list.
pub fn ready_endpoints(
    testbed: &Testbed,
    namespace: &str,
    service: &str,
    address_type: &str,
) -> Option<usize> {
    let label = format!("kubernetes.io/service-name={service}");
    let list = get(
        testbed,
        &[
            "get",
            "endpointslices",
            "-n",
            namespace,
            "-l",
            &label,
            "-o",
            "json",
        ],
    )?;
    let count = (list["items"].as_array()?.iter())
        .filter(|slice| slice["addressType"] == address_type)
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|endpoint| endpoint["conditions"]["ready"] == true)
        .count();
    Some(count)
}
